import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CEP_OVERFLOW, match, type MatchOptions, type Pattern, type PatternResult, pattern } from "../../cep/index.ts";
import { DEAD_LETTERS, isGressError, LATE_DATA, MemoryStateBackend } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Ev {
  readonly k: string;
  readonly t: string;
  readonly id?: number;
}
const ofType =
  (...types: string[]) =>
  (e: Ev): boolean =>
    types.includes(e.t);
const abc = (within = 10) =>
  pattern<Ev>().begin("a").where(ofType("A")).followedBy("b").where(ofType("B")).followedBy("c").where(ofType("C")).within(within);

type Out = PatternResult<Ev, string>;
const driver = (p: Pattern<Ev, string, string>, options: MatchOptions = {}, state?: MemoryStateBackend): TestDriver<Ev, Out> =>
  new TestDriver<Ev, Out>((s) => match(s.keyBy((e) => e.k), p, { uid: "m", ...options }), state ? { state } : {});
const show = (r: Out): string =>
  `${r.kind}@${r.kind === "match" ? r.end : r.timeoutAt}:${Object.values(r.events)
    .flat()
    .map((e) => e.t + (e.id ?? ""))
    .join(" ")}`;

describe("event-time matching", () => {
  it("buffers and sorts records per key until the watermark passes them", () => {
    const d = driver(abc());
    d.pipeInput({ k: "x", t: "C" }, 3).pipeInput({ k: "x", t: "A" }, 1).pipeInput({ k: "x", t: "B" }, 2);
    assert.deepEqual(d.readOutput(), [], "nothing before the watermark");
    d.advanceWatermark(3);
    assert.deepEqual(d.readOutput().map(show), ["match@3:A B C"]);
  });

  it("a record at or behind the watermark goes to the late side output and is counted", () => {
    const d = driver(abc());
    d.advanceWatermark(10).pipeInput({ k: "x", t: "A" }, 10);
    assert.deepEqual(d.readSideOutput(LATE_DATA), [{ k: "x", t: "A" }]);
    assert.equal(d.job.metrics.operator("m").lateRecords, 1);
  });

  it("keys are matched independently", () => {
    const d = driver(abc());
    d.pipeInput({ k: "x", t: "A" }, 1).pipeInput({ k: "y", t: "A" }, 2).pipeInput({ k: "y", t: "B" }, 3).pipeInput({ k: "x", t: "C" }, 4);
    d.pipeInput({ k: "y", t: "C" }, 5).advanceWatermark(6);
    const out = d.readOutputRecords();
    assert.deepEqual(out.map((r) => [r.key, show(r.value)]), [["y", "match@5:A B C"]]);
  });

  it("a stream that is not keyed is matched globally", () => {
    const d = new TestDriver<Ev, Out>((s) => match(s, abc()));
    d.pipeInput({ k: "x", t: "A" }, 1).pipeInput({ k: "y", t: "B" }, 2).pipeInput({ k: "z", t: "C" }, 3).endInput();
    assert.deepEqual(d.readOutput().map(show), ["match@3:A B C"]);
    assert.equal(d.readOutput().length, 0);
  });
});

describe("timeouts and absences are first-class output", () => {
  it("a partial match whose within passes on the watermark is emitted as a timeout with its events", () => {
    const d = driver(abc(10));
    d.pipeInput({ k: "x", t: "A" }, 1).pipeInput({ k: "x", t: "B" }, 4).advanceWatermark(10);
    assert.deepEqual(d.readOutput(), []);
    d.advanceWatermark(11);
    const [r] = d.readOutput();
    assert.equal(r?.kind, "timeout");
    assert.deepEqual(r && show(r), "timeout@11:A B");
    assert.equal(d.job.state.table("m", "partials").size, 0);
    assert.equal(d.job.state.table("m", "events").size, 0);
  });

  it("A not followed by B within 5 min fires when the 5 minutes pass on the watermark", () => {
    const min = 60_000;
    const p = pattern<Ev>().begin("a").where(ofType("A")).notFollowedBy("b").where(ofType("B")).within(5 * min);
    const d = driver(p);
    d.pipeInput({ k: "x", t: "A", id: 1 }, 0).pipeInput({ k: "y", t: "A", id: 2 }, 0).pipeInput({ k: "y", t: "B" }, 2 * min);
    d.advanceWatermark(5 * min - 1);
    assert.deepEqual(d.readOutput(), [], "not before the bound passes");
    d.advanceWatermark(5 * min);
    assert.deepEqual(d.readOutputRecords().map((r) => [r.key, show(r.value)]), [["x", `match@${5 * min}:A1`]]);
  });

  it("notFollowedBy in the middle discards the partial match when the forbidden event comes first", () => {
    const p = pattern<Ev>().begin("a").where(ofType("A")).notFollowedBy("x").where(ofType("X")).followedBy("c").where(ofType("C"));
    const d = driver(p);
    d.pipeInput({ k: "1", t: "A" }, 1).pipeInput({ k: "1", t: "X" }, 2).pipeInput({ k: "1", t: "C" }, 3);
    d.pipeInput({ k: "2", t: "A" }, 1).pipeInput({ k: "2", t: "N" }, 2).pipeInput({ k: "2", t: "C" }, 3).endInput();
    assert.deepEqual(d.readOutputRecords().map((r) => [r.key, show(r.value)]), [["2", "match@3:A C"]]);
  });

  it("notNext forbids the event right after", () => {
    const p = pattern<Ev>().begin("a").where(ofType("A")).notNext("x").where(ofType("X")).followedBy("c").where(ofType("C"));
    const d = driver(p);
    d.pipeInput({ k: "1", t: "A" }, 1).pipeInput({ k: "1", t: "X" }, 2).pipeInput({ k: "1", t: "C" }, 3);
    d.pipeInput({ k: "2", t: "A" }, 1).pipeInput({ k: "2", t: "N" }, 2).pipeInput({ k: "2", t: "X" }, 3).pipeInput({ k: "2", t: "C" }, 4).endInput();
    assert.deepEqual(d.readOutputRecords().map((r) => [r.key, show(r.value)]), [["2", "match@4:A C"]]);
  });

  it("an event that a discarded branch took stays stored for the other branches that took it", () => {
    // a+ then notNext(a): on a second A the branch that would extend the loop reaches the stop state and is
    // discarded with everything it produced (FlinkCEP's semantics), while a new branch starts at the same A.
    // The discarded branch used to free the shared event under the new one ("shared buffer: event missing").
    const p = pattern<Ev>().begin("a").where(ofType("A")).oneOrMore().notNext("x").where(ofType("A")).followedBy("b").where(ofType("B"));
    const d = driver(p);
    const input = (k: string, types: string): void => {
      for (const [i, t] of [...types].entries()) d.pipeInput({ k, t, id: i }, i + 1);
    };
    input("1", "AAB");
    input("2", "ABAB");
    d.endInput();
    // Per key in emission order; keys are independent (one watermark releases them in event-time order).
    assert.deepEqual(
      d
        .readOutputRecords()
        .map((r) => [r.key, show(r.value)])
        .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      [
        ["1", "match@3:A1 B2"],
        ["2", "match@2:A0 B1"],
        ["2", "match@4:A0 A2 B3"],
        ["2", "match@4:A2 B3"],
      ],
    );
  });

  it("a per-step within bounds the time since the previous event", () => {
    const p = pattern<Ev>().begin("a").where(ofType("A")).followedBy("b").where(ofType("B")).within(5, "step");
    const d = driver(p);
    d.pipeInput({ k: "1", t: "A" }, 1).pipeInput({ k: "1", t: "B" }, 5);
    d.pipeInput({ k: "2", t: "A" }, 1).pipeInput({ k: "2", t: "B" }, 6).endInput();
    assert.deepEqual(
      d.readOutputRecords().map((r) => [r.key, show(r.value)]).sort(),
      [["1", "match@5:A B"], ["2", "timeout@6:A"]],
    );
  });
});

describe("processing-time mode", () => {
  it("matches on arrival with the clock's time and times out on clock timers", () => {
    const d = driver(abc(100), { time: "processing" });
    d.pipeInput({ k: "x", t: "A" }, 999_999).advanceProcessingTime(10).pipeInput({ k: "x", t: "B" }, 0).advanceProcessingTime(10);
    d.pipeInput({ k: "x", t: "C" }, 5);
    assert.deepEqual(d.readOutput().map(show), ["match@20:A B C"]);
    d.pipeInput({ k: "x", t: "A" }, 0);
    d.advanceProcessingTime(99);
    assert.deepEqual(d.readOutput(), []);
    d.advanceProcessingTime(1);
    assert.deepEqual(d.readOutput().map(show), ["timeout@120:A"]);
  });
});

describe("bounded state", () => {
  it("at the per-key limit the oldest partial match is dropped to the overflow side output", () => {
    const d = driver(abc(1000), { maxPartialMatches: 2 });
    for (let i = 1; i <= 3; i++) d.pipeInput({ k: "x", t: "A", id: i }, i);
    d.pipeInput({ k: "x", t: "B" }, 4).pipeInput({ k: "x", t: "C" }, 5).advanceWatermark(5);
    assert.deepEqual(d.readOutput().map(show), ["match@5:A2 B C", "match@5:A3 B C"]);
    const dropped = d.readSideOutput(CEP_OVERFLOW);
    assert.deepEqual(dropped.map((x) => (x.events.a?.[0] as Ev | undefined)?.id), [1]);
  });

  it("policy reject-new keeps the oldest, policy fail stops the job with a StateError", () => {
    const d = driver(abc(1000), { maxPartialMatches: 1, onLimit: "reject-new" });
    d.pipeInput({ k: "x", t: "A", id: 1 }, 1).pipeInput({ k: "x", t: "A", id: 2 }, 2).pipeInput({ k: "x", t: "B" }, 3).pipeInput({ k: "x", t: "C" }, 4).advanceWatermark(4);
    assert.deepEqual(d.readOutput().map(show), ["match@4:A1 B C"]);
    const f = driver(abc(1000), { maxPartialMatches: 1, onLimit: "fail" });
    f.pipeInput({ k: "x", t: "A" }, 1).pipeInput({ k: "x", t: "A" }, 2);
    assert.throws(() => f.advanceWatermark(2), (e: unknown) => isGressError(e, "ERR_STATE") && /over the limit of 1/.test((e as Error).message));
  });

  it("the buffered gauge counts pending records, partial matches and buffered events", () => {
    const d = driver(abc(1000));
    d.pipeInput({ k: "x", t: "A" }, 1).pipeInput({ k: "x", t: "N" }, 2);
    d.advanceWatermark(0);
    const m = d.job.metrics.operator("m");
    assert.equal(m.buffered, 2, "two records wait for the watermark");
    d.advanceWatermark(2);
    assert.equal(m.buffered, 2, "one partial match holding one event");
  });

  it("state survives a snapshot and restore, and matching continues where it stopped", () => {
    const state = new MemoryStateBackend();
    const d = driver(abc(100), {}, state);
    d.pipeInput({ k: "x", t: "A" }, 1).pipeInput({ k: "x", t: "B" }, 2).advanceWatermark(2).pipeInput({ k: "x", t: "C" }, 3);
    const snapshot = state.snapshot();
    const restoredState = new MemoryStateBackend();
    restoredState.restore(snapshot);
    const r = driver(abc(100), {}, restoredState);
    r.advanceWatermark(3);
    assert.deepEqual(r.readOutput().map(show), ["match@3:A B C"]);
  });
});

describe("conditions and groups", () => {
  it("a throwing condition sends the record to dead letters and the job goes on", () => {
    const p = pattern<Ev>()
      .begin("a")
      .where((e) => {
        if (e.t === "boom") throw new Error("bad event");
        return e.t === "A";
      })
      .followedBy("b")
      .where(ofType("B"));
    const d = driver(p);
    d.pipeInput({ k: "x", t: "boom" }, 1).pipeInput({ k: "x", t: "A" }, 2).pipeInput({ k: "x", t: "B" }, 3).endInput();
    assert.deepEqual(d.readSideOutput(DEAD_LETTERS), [{ k: "x", t: "boom" }]);
    assert.deepEqual(d.readOutput().map(show), ["match@3:A B"]);
  });

  it("a group pattern repeats a sub-sequence: (A B){2} then C", () => {
    const ab = pattern<Ev>().begin("ga").where(ofType("A")).next("gb").where(ofType("B"));
    const p = pattern<Ev>().begin("s").where(ofType("S")).followedBy(ab).times(2).followedBy("c").where(ofType("C"));
    const d = driver(p);
    for (const [i, t] of ["S", "A", "B", "N", "A", "B", "C"].entries()) d.pipeInput({ k: "x", t, id: i }, i + 1);
    d.endInput();
    assert.deepEqual(d.readOutput().map(show), ["match@7:S0 A1 A4 B2 B5 C6"]);
  });

  it("a looping group (A B)+ emits one match per repetition count", () => {
    const ab = pattern<Ev>().begin("ga").where(ofType("A")).next("gb").where(ofType("B"));
    const p = pattern<Ev>().begin("s").where(ofType("S")).followedBy(ab).oneOrMore().followedBy("c").where(ofType("C"));
    const d = driver(p);
    for (const [i, t] of ["S", "A", "B", "A", "B", "C"].entries()) d.pipeInput({ k: "x", t, id: i }, i + 1);
    d.endInput();
    assert.deepEqual(d.readOutput().map(show).sort(), ["match@6:S0 A1 A3 B2 B4 C5", "match@6:S0 A1 B2 C5"]);
  });
});
