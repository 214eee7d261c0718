import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { boundedOutOfOrderness, type Stream, tumbling, type WatermarkStrategy } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Ev {
  readonly split: string;
  readonly at: number;
}
type Op =
  | { readonly kind: "record"; readonly split: string; readonly at: number }
  | { readonly kind: "advance"; readonly ms: number }
  | { readonly kind: "watermark"; readonly at: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("record" as const), split: fc.constantFrom("p0", "p1", "p2"), at: fc.integer({ min: 0, max: 5000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 1500 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("watermark" as const), at: fc.integer({ min: 0, max: 5000 }) }) },
);

const strategyArb = fc.record({
  boundMs: fc.integer({ min: 0, max: 300 }),
  everyRecords: fc.integer({ min: 1, max: 5 }),
  everyMs: fc.integer({ min: 20, max: 500 }),
  idleTimeoutMs: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
  heartbeatMs: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
});
type StrategyParams = typeof strategyArb extends fc.Arbitrary<infer P> ? P : never;

function strategy(p: StrategyParams): WatermarkStrategy<Ev> {
  return boundedOutOfOrderness<Ev>(p.boundMs, {
    timestamp: (e) => e.at,
    everyRecords: p.everyRecords,
    everyMs: p.everyMs,
    ...(p.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: p.idleTimeoutMs }),
    ...(p.heartbeatMs === undefined ? {} : { heartbeatMs: p.heartbeatMs }),
  });
}

/** Pipelines whose output watermarks must be increasing: the assigner alone, behind a window, and a union. */
const pipelines: Record<string, (p: StrategyParams) => (s: Stream<Ev>) => Stream<unknown>> = {
  assigner: (p) => (s) => s.withTimestamps(strategy(p)),
  window: (p) => (s) =>
    s
      .withTimestamps(strategy(p))
      .keyBy((e) => e.split)
      .window(tumbling(100))
      .count(),
  union: (p) => (s) => s.filter((e) => e.split === "p0").withTimestamps(strategy(p)).union(s.filter((e) => e.split !== "p0").withTimestamps(strategy(p))),
};

describe("watermark properties", () => {
  it("law: output watermarks strictly increase, with several splits, idleness, heartbeats, windows and unions", () => {
    fc.assert(
      fc.property(
        strategyArb,
        fc.constantFrom(...Object.keys(pipelines)),
        fc.array(opArb, { maxLength: 60 }),
        (params, pipeline, ops) => {
          const d = new TestDriver<Ev, unknown>(pipelines[pipeline]!(params), { startTime: 1000 });
          for (const op of ops) {
            if (op.kind === "record") d.pipeInput({ split: op.split, at: op.at }, 0, { split: op.split });
            else if (op.kind === "advance") d.advanceProcessingTime(op.ms);
            else d.advanceWatermark(op.at);
          }
          d.endInput();
          const wms = d.readWatermarks();
          for (let i = 1; i < wms.length; i++) {
            assert.ok(wms[i]! > wms[i - 1]!, `watermark ${wms[i]} after ${wms[i - 1]} at position ${i}`);
          }
          assert.equal(wms.at(-1), Number.POSITIVE_INFINITY, "the end of input closes event time");
        },
      ),
      { numRuns: 600 },
    );
  });
});
