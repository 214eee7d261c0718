import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEAD_LETTERS, type Element, isGressError, type KeyedStream, sinkFn, type Stream, tumbling } from "../../lib/index.ts";
import { keyedOperator } from "../../lib/operators/key-by.ts";
import { TestDriver } from "../../lib/testing/index.ts";

// A keyBy whose only consumer is a keyed operator (window, process) is fused into it: the operator applies the
// key selector itself, as in Flink, where keyBy is not an operator of its own. These tests pin down when that
// happens and that it changes nothing a pipeline can observe.

interface Ev {
  readonly k: unknown;
  readonly v: number;
}

/** A keyed pass-through that reports whether it was built to apply the key selection itself. */
function probe(modes: string[]) {
  return keyedOperator<Ev, Ev>((downstream, keys) => {
    modes.push(keys === undefined ? "reads record.key" : "applies the selector");
    return {
      next(e: Element<Ev>) {
        if (e.kind !== "record") return downstream.next(e);
        const key = keys === undefined ? e.key : keys.keyOf(e, downstream);
        if (key !== undefined) downstream.next({ ...e, key });
      },
    };
  });
}

const selector = (e: Ev) => e.k as string;

/** The same windowed count, with the keyBy fused into the window or, given `second`, shared with a second consumer. */
function windowedCount(second: boolean) {
  return (s: Stream<Ev>) => {
    const keyed: KeyedStream<Ev, string> = s.keyBy(selector);
    // Never subscribed (the driver runs no sinks), but it makes the keyBy a stream of two consumers.
    if (second) keyed.sinkTo(sinkFn("other", () => {}));
    return keyed.window(tumbling(10)).count();
  };
}

function feed(d: TestDriver<Ev, unknown>): void {
  const input: [Ev, number][] = [
    [{ k: "a", v: 1 }, 1],
    [{ k: null, v: 2 }, 2],
    [{ k: "b", v: 3 }, 3],
    [{ k: "a", v: 4 }, 12],
    [{ k: Number.NaN, v: 5 }, 13],
    [{ k: "b", v: 6 }, 14],
  ];
  for (const [e, t] of input) d.pipeInput(e, t);
  d.advanceWatermark(100);
}

describe("keyBy fused into the keyed operator after it", () => {
  it("happens when the keyBy feeds only that operator, and not when the keyBy has a second consumer", () => {
    const fused: string[] = [];
    new TestDriver<Ev, Ev>((s) => s.keyBy(selector).transform(probe(fused)));
    assert.deepEqual(fused, ["applies the selector"]);

    const shared: string[] = [];
    new TestDriver<Ev, Ev>((s) => {
      const keyed = s.keyBy(selector);
      keyed.sinkTo(sinkFn("other", () => {}));
      return keyed.transform(probe(shared));
    });
    assert.deepEqual(shared, ["reads record.key"]);
  });

  it("a second consumer added after the keyed operator still turns the fusion off", () => {
    const modes: string[] = [];
    new TestDriver<Ev, Ev>((s) => {
      const keyed = s.keyBy(selector);
      const out = keyed.transform(probe(modes));
      keyed.sinkTo(sinkFn("later", () => {}));
      return out;
    });
    assert.deepEqual(modes, ["reads record.key"]);
  });

  it("windows give the same results, dead letters and keyBy metrics either way", () => {
    const run = (second: boolean) => {
      const d = new TestDriver<Ev, unknown>(windowedCount(second));
      feed(d);
      const keyBy = d.job.metrics.operator("keyBy-1");
      return {
        results: d.readOutputRecords().map((r) => [r.key, r.value]),
        dead: d.readSideRecords(DEAD_LETTERS).map((r) => [r.value, r.timestamp, r.reason]),
        metrics: [keyBy.recordsIn, keyBy.recordsOut, keyBy.deadLetters, d.job.metrics.operator("window-1").recordsIn],
      };
    };
    const fused = run(false);
    assert.deepEqual(fused, run(true));
    assert.deepEqual(fused.results, [
      ["a", { key: "a", start: 0, end: 10, value: 1, timing: "on-time" }],
      ["b", { key: "b", start: 0, end: 10, value: 1, timing: "on-time" }],
      ["a", { key: "a", start: 10, end: 20, value: 1, timing: "on-time" }],
      ["b", { key: "b", start: 10, end: 20, value: 1, timing: "on-time" }],
    ]);
    assert.equal(fused.dead.length, 2);
    assert.match(String(fused.dead[0]?.[2]), /^keyBy-1: key must be a string or a finite number, got null$/);
    assert.deepEqual(fused.metrics, [6, 4, 2, 4]);
  });

  it("a process function sees the same keys, and bad keys go to dead letters", () => {
    const d = new TestDriver<Ev, [string, number]>((s) =>
      s.keyBy(selector).process<[string, number]>({
        processElement(e, ctx) {
          ctx.emit([ctx.key, e.v]);
        },
      }),
    );
    feed(d);
    assert.deepEqual(d.readOutput(), [
      ["a", 1],
      ["b", 3],
      ["a", 4],
      ["b", 6],
    ]);
    assert.equal(d.readSideRecords(DEAD_LETTERS).length, 2);
  });

  it("with onUserError 'fail', a throwing key selector fails the job naming the keyBy, not the window", () => {
    const d = new TestDriver<Ev, unknown>(
      (s) =>
        s
          .keyBy((e) => {
            if (e.v === 2) throw new Error("no key for 2");
            return String(e.k);
          })
          .window(tumbling(10))
          .count(),
      { onUserError: "fail" },
    );
    d.pipeInput({ k: "a", v: 1 }, 1);
    assert.throws(
      () => d.pipeInput({ k: "a", v: 2 }, 2),
      (e: unknown) => isGressError(e, "ERR_USER_FUNCTION") && e.details.operator === "keyBy-1" && /no key for 2/.test(e.message),
    );
  });
});
