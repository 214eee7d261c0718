/**
 * Random watermark strategies for the property tests: bound, emission periods, idleness and heartbeat.
 * @module
 */
import fc from "fast-check";
import { boundedOutOfOrderness, type WatermarkStrategy } from "../../lib/index.ts";

/** The parameters of a bounded-out-of-orderness strategy. */
export interface StrategyParams {
  readonly boundMs: number;
  readonly everyRecords: number;
  readonly everyMs: number;
  readonly idleTimeoutMs: number | undefined;
  readonly heartbeatMs: number | undefined;
}

/** Random {@link StrategyParams}. */
export const strategyParamsArb: fc.Arbitrary<StrategyParams> = fc.record({
  boundMs: fc.integer({ min: 0, max: 300 }),
  everyRecords: fc.integer({ min: 1, max: 5 }),
  everyMs: fc.integer({ min: 20, max: 500 }),
  idleTimeoutMs: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
  heartbeatMs: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
});

/** The strategy for `p`, reading event time from each value's `at`. */
export function strategyOf<E extends { readonly at: number }>(p: StrategyParams): WatermarkStrategy<E> {
  return boundedOutOfOrderness<E>(p.boundMs, {
    timestamp: (e) => e.at,
    everyRecords: p.everyRecords,
    everyMs: p.everyMs,
    ...(p.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: p.idleTimeoutMs }),
    ...(p.heartbeatMs === undefined ? {} : { heartbeatMs: p.heartbeatMs }),
  });
}
