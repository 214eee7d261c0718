/**
 * What a window emits: shared by the general window operator (window.ts) and its aligned fast path
 * (aligned-windows.ts), which window.ts builds, so that neither imports the other for these types.
 * @module
 */

/** When a window result was emitted relative to the watermark. */
export type FireTiming = "early" | "on-time" | "late";

/** The output of a window: its key, bounds, aggregate result, and when it was emitted. */
export interface WindowResult<K, R> {
  readonly key: K;
  readonly start: number;
  readonly end: number;
  readonly value: R;
  readonly timing: FireTiming;
}
