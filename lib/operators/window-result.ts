/**
 * What a window emits: shared by the general window operator (window.ts) and its aligned fast path
 * (aligned-windows.ts), which window.ts builds, so that neither imports the other for these types.
 * @module
 */

/**
 * When a window result was emitted relative to the watermark.
 *
 * @example
 * ```ts
 * import type { FireTiming, WindowResult } from "gress";
 *
 * // "early": a speculative result before the window closed; "on-time": at the watermark; "late": an update.
 * const isFinal = (w: WindowResult<string, number>): boolean => (w.timing satisfies FireTiming) !== "early";
 * ```
 */
export type FireTiming = "early" | "on-time" | "late";

/**
 * The output of a window: its key, bounds, aggregate result, and when it was emitted.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn, tumbling, type WindowResult } from "gress";
 *
 * const counts = fromIterable(["a", "a"], { timestamp: () => 0 }).keyBy((x) => x).window(tumbling(1_000)).count();
 * counts.sinkTo(sinkFn("print", (w: WindowResult<string, number>) => console.log(w.key, w.start, w.end, w.value, w.timing)));
 * await counts.job.run(); // a 0 1000 2 on-time
 * ```
 */
export interface WindowResult<K, R> {
  readonly key: K;
  readonly start: number;
  readonly end: number;
  readonly value: R;
  readonly timing: FireTiming;
}
