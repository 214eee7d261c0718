import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type Stream, tumbling } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { type StrategyParams, strategyOf, strategyParamsArb } from "../support/watermark-strategies.ts";

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


/** Pipelines whose output watermarks must be increasing: the assigner alone, behind a window, and a union. */
const pipelines: Record<string, (p: StrategyParams) => (s: Stream<Ev>) => Stream<unknown>> = {
  assigner: (p) => (s) => s.withTimestamps(strategyOf<Ev>(p)),
  window: (p) => (s) =>
    s
      .withTimestamps(strategyOf<Ev>(p))
      .keyBy((e) => e.split)
      .window(tumbling(100))
      .count(),
  union: (p) => (s) => s.filter((e) => e.split === "p0").withTimestamps(strategyOf<Ev>(p)).union(s.filter((e) => e.split !== "p0").withTimestamps(strategyOf<Ev>(p))),
};

describe("watermark properties", () => {
  it("law: output watermarks strictly increase, with several splits, idleness, heartbeats, windows and unions", () => {
    fc.assert(
      fc.property(
        strategyParamsArb,
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
