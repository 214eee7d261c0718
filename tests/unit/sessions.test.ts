import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEAD_LETTERS, LATE_DATA, session, type WindowResult } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Ev {
  readonly k: string;
  readonly n: number;
  readonly gap?: number;
}
const ev = (k: string, n = 1, gap?: number): Ev => (gap === undefined ? { k, n } : { k, n, gap });
type Res = WindowResult<string, number>;
const rows = (rs: Res[]): [string, number, number, number][] =>
  rs.map((r): [string, number, number, number] => [r.key, r.start, r.end, r.value]).sort((a, b) => a[0].localeCompare(b[0]) || a[1] - b[1]);

const sessionSum = (options: { gapMs: number } | { gapOf: (v: Ev) => number }, allowedLatenessMs = 0) =>
  new TestDriver<Ev, Res>((s) =>
    s
      .keyBy((v) => v.k)
      .window(session(options), { allowedLatenessMs })
      .sum((v) => {
        if (v.n < 0) throw new RangeError("negative");
        return v.n;
      }),
  );

describe("session windows", () => {
  it("records less than a gap apart form one session [first, last+gap)", () => {
    const d = sessionSum({ gapMs: 10 });
    d.pipeInput(ev("a"), 0).pipeInput(ev("a"), 5).pipeInput(ev("a"), 12).pipeInput(ev("a"), 30).endInput();
    assert.deepEqual(rows(d.readOutput()), [
      ["a", 0, 22, 3],
      ["a", 30, 40, 1],
    ]);
  });

  it("windows that touch merge: records exactly one gap apart share a session", () => {
    const d = sessionSum({ gapMs: 10 });
    d.pipeInput(ev("a"), 0).pipeInput(ev("a"), 10).pipeInput(ev("a"), 21).endInput();
    assert.deepEqual(rows(d.readOutput()), [
      ["a", 0, 20, 2],
      ["a", 21, 31, 1],
    ]);
  });

  it("a record that bridges two sessions merges them and their accumulators", () => {
    const d = sessionSum({ gapMs: 10 });
    d.pipeInput(ev("a", 1), 0).pipeInput(ev("a", 10), 18).pipeInput(ev("a", 100), 9).endInput();
    assert.deepEqual(rows(d.readOutput()), [["a", 0, 28, 111]]);
  });

  it("sessions are per key", () => {
    const d = sessionSum({ gapMs: 10 });
    d.pipeInput(ev("a"), 0).pipeInput(ev("b"), 5).pipeInput(ev("a"), 8).endInput();
    assert.deepEqual(rows(d.readOutput()), [
      ["a", 0, 18, 2],
      ["b", 5, 15, 1],
    ]);
  });

  it("a session fires when the watermark reaches its end-1, and not before", () => {
    const d = sessionSum({ gapMs: 10 });
    d.pipeInput(ev("a"), 0).pipeInput(ev("a"), 4);
    d.advanceWatermark(12);
    assert.deepEqual(d.readOutput(), []);
    d.advanceWatermark(13);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 14, value: 2, timing: "on-time" }]);
  });

  it("extending a session moves its firing time", () => {
    const d = sessionSum({ gapMs: 10 });
    d.pipeInput(ev("a"), 0).advanceWatermark(5).pipeInput(ev("a"), 8);
    d.advanceWatermark(9);
    assert.deepEqual(d.readOutput(), [], "the old end-1 = 9 no longer fires");
    d.advanceWatermark(17);
    assert.deepEqual(rows(d.readOutput()), [["a", 0, 18, 2]]);
  });

  it("dynamic gap: each record's gap comes from its value", () => {
    const d = sessionSum({ gapOf: (v) => v.gap ?? 10 });
    d.pipeInput(ev("a", 1, 50), 0).pipeInput(ev("a", 1, 5), 40).pipeInput(ev("a", 1, 5), 60).endInput();
    // [0,50) ∪ [40,45) = [0,50); [60,65) does not touch it.
    assert.deepEqual(rows(d.readOutput()), [
      ["a", 0, 50, 2],
      ["a", 60, 65, 1],
    ]);
  });

  it("a record past a closed session within the lateness merges into it and re-fires as late", () => {
    const d = sessionSum({ gapMs: 10 }, 100);
    d.pipeInput(ev("a", 1), 0).advanceWatermark(30);
    assert.deepEqual(rows(d.readOutput()), [["a", 0, 10, 1]]);
    d.pipeInput(ev("a", 2), 5);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 15, value: 3, timing: "late" }]);
    d.advanceWatermark(50).endInput();
    assert.deepEqual(d.readOutput(), [], "the late merge does not fire again on time");
  });

  it("a record whose session would be past the lateness goes to the late side output", () => {
    const d = sessionSum({ gapMs: 10 });
    d.advanceWatermark(100).pipeInput(ev("a", 1), 50).endInput();
    assert.deepEqual(d.readOutput(), []);
    assert.deepEqual(d.readSideOutput(LATE_DATA), [ev("a", 1)]);
    assert.equal(d.job.metrics.operator("window-1").lateRecords, 1);
  });

  it("a non-positive dynamic gap dead-letters the record with the reason", () => {
    const d = sessionSum({ gapOf: (v) => v.gap ?? 10 });
    d.pipeInput(ev("a", 1, 0), 0).pipeInput(ev("a", 1), 1).endInput();
    assert.deepEqual(rows(d.readOutput()), [["a", 1, 11, 1]]);
    const dead = d.readSideRecords(DEAD_LETTERS);
    assert.equal(dead.length, 1);
    assert.match(dead[0]?.reason ?? "", /window-1: session gap must be a positive finite number, got 0/);
  });

  it("a record whose aggregation throws while bridging two sessions leaves both sessions intact", () => {
    const d = sessionSum({ gapMs: 10 });
    d.pipeInput(ev("a", 1), 0).pipeInput(ev("a", 2), 20).pipeInput(ev("a", -1), 10).endInput();
    assert.deepEqual(rows(d.readOutput()), [
      ["a", 0, 10, 1],
      ["a", 20, 30, 2],
    ]);
    assert.equal(d.readSideOutput(DEAD_LETTERS).length, 1);
  });
});
