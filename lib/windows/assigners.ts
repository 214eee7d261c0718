/**
 * Window assigners: which windows a record belongs to. Time windows are half-open `[start, end)` in event
 * time; a window's last timestamp is `end − 1`, and it fires when the watermark reaches that.
 *
 * - tumbling(size): fixed, non-overlapping windows aligned to the epoch (plus an optional offset).
 * - sliding(size, slide): fixed windows that start every `slide` (slide ≤ size); a record is in size/slide of them.
 * - session({ gap } | { gapOf }): per-key windows that grow while records arrive less than a gap apart, and
 *   merge when a record bridges two of them. The gap may depend on the record (dynamic gap).
 * - global(): one window per key for all time; it needs a trigger to ever fire.
 * @module
 */
import { z } from "zod";
import { validate } from "../config.ts";

/**
 * A window `[start, end)`.
 *
 * @example
 * ```ts
 * import { maxTimestamp, type Window } from "gress";
 *
 * // A window covers [start, end): its last timestamp is end - 1.
 * const w: Window = { start: 0, end: 60_000 };
 * console.log(maxTimestamp(w)); // 59999
 * ```
 */
export interface Window {
  readonly start: number;
  readonly end: number;
}

/**
 * The global window's bounds: finite, so that they serialise.
 *
 * @example
 * ```ts
 * import { GLOBAL_WINDOW, maxTimestamp } from "gress";
 *
 * // The single window of global(): it never closes by time, only by its trigger.
 * console.log(GLOBAL_WINDOW.start, maxTimestamp(GLOBAL_WINDOW));
 * ```
 */
export const GLOBAL_WINDOW: Window = Object.freeze({ start: Number.MIN_SAFE_INTEGER, end: Number.MAX_SAFE_INTEGER });

/**
 * The last timestamp that belongs to a window.
 *
 * @example
 * ```ts
 * import { maxTimestamp } from "gress";
 *
 * console.log(maxTimestamp({ start: 60_000, end: 120_000 })); // 119999: the watermark that closes the window
 * ```
 */
export function maxTimestamp(w: Window): number {
  return w.end - 1;
}

/**
 * Assigns records to windows.
 *
 * @example
 * ```ts
 * import { session, sliding, tumbling, type WindowAssigner } from "gress";
 *
 * type Click = { user: string };
 * const assigners: WindowAssigner<Click>[] = [tumbling(60_000), sliding(60_000, 10_000), session({ gapMs: 30_000 })];
 * console.log(assigners.map((a) => a.kind)); // ["tumbling", "sliding", "session"]
 * ```
 */
export type WindowAssigner<T> =
  | { readonly kind: "tumbling"; readonly size: number; readonly offset: number }
  | { readonly kind: "sliding"; readonly size: number; readonly slide: number; readonly offset: number }
  | { readonly kind: "session"; gapOf(value: T): number }
  | { readonly kind: "global" };

const positive = z.number().positive().finite();

/**
 * Fixed-size, non-overlapping windows.
 *
 * @example
 * ```ts
 * import { fromIterable, tumbling } from "gress";
 *
 * const clicks = fromIterable([{ at: 10_000 }, { at: 70_000 }], { timestamp: (c) => c.at });
 * // Fixed, non-overlapping 1-minute windows: [0, 60000), [60000, 120000), ...
 * const perMinute = await clicks.keyBy(() => "all").window(tumbling(60_000)).count().collect();
 * ```
 */
export function tumbling<T>(sizeMs: number, options: { offsetMs?: number } = {}): WindowAssigner<T> {
  validate(positive, sizeMs, "tumbling.sizeMs");
  const offset = validate(z.number().finite().default(0), options.offsetMs, "tumbling.offsetMs");
  return { kind: "tumbling", size: sizeMs, offset };
}

/**
 * Fixed-size windows that start every `slideMs`.
 *
 * @example
 * ```ts
 * import { fromIterable, sliding } from "gress";
 *
 * const clicks = fromIterable([{ at: 10_000 }, { at: 70_000 }], { timestamp: (c) => c.at });
 * // 1-minute windows every 30 seconds: each record falls into two windows.
 * const rolling = clicks.keyBy(() => "all").window(sliding(60_000, 30_000)).count();
 * ```
 */
export function sliding<T>(sizeMs: number, slideMs: number, options: { offsetMs?: number } = {}): WindowAssigner<T> {
  validate(
    z.object({ sizeMs: positive, slideMs: positive }).refine((o) => o.slideMs <= o.sizeMs, {
      path: ["slideMs"],
      message: "must not exceed sizeMs: a record between two windows would belong to none",
    }),
    { sizeMs, slideMs },
    "sliding",
  );
  const offset = validate(z.number().finite().default(0), options.offsetMs, "sliding.offsetMs");
  return { kind: "sliding", size: sizeMs, slide: slideMs, offset };
}

/**
 * Session windows with a fixed gap (`{ gapMs }`) or a gap computed per record (`{ gapOf }`).
 *
 * @example
 * ```ts
 * import { fromIterable, session } from "gress";
 *
 * const clicks = fromIterable([{ user: "ann", at: 0 }, { user: "ann", at: 10_000 }, { user: "ann", at: 100_000 }], { timestamp: (c) => c.at });
 * // A session closes after 30 s without a click of the same user: two sessions for ann here.
 * const sessions = await clicks.keyBy((c) => c.user).window(session({ gapMs: 30_000 })).count().collect();
 * ```
 */
export function session<T>(options: { gapMs: number } | { gapOf: (value: T) => number }): WindowAssigner<T> {
  if ("gapOf" in options && typeof options.gapOf === "function") return { kind: "session", gapOf: options.gapOf };
  const gap = validate(z.object({ gapMs: positive }), options, "session").gapMs;
  return { kind: "session", gapOf: () => gap };
}

/**
 * A single window per key for all time; combine with a trigger.
 *
 * @example
 * ```ts
 * import { countTrigger, fromIterable, global } from "gress";
 *
 * const orders = fromIterable([1, 2, 3, 4, 5], { timestamp: () => 0 });
 * // One window per key for all time, fired by its trigger: the sum of every 2 orders.
 * const pairs = orders.keyBy(() => "all").window(global(), { trigger: countTrigger(2, { purge: true }) }).sum((n) => n);
 * ```
 */
export function global<T>(): WindowAssigner<T> {
  return { kind: "global" };
}

/**
 * Start of the window of size `size` (with `offset`) that holds `ts`. Correct for negative timestamps too.
 *
 * @example
 * ```ts
 * import { windowStart } from "gress";
 *
 * // The start of the tumbling window of size 60 000 (offset 0) holding timestamp 125 000.
 * console.log(windowStart(125_000, 60_000, 0)); // 120000
 * ```
 */
export function windowStart(ts: number, size: number, offset: number): number {
  // Floor division instead of `%`: on non-Smi numbers (epoch milliseconds, or any timestamp held as a double)
  // V8 compiles `%` to a call of C's fmod, while a division and a floor are single instructions. The result
  // is exact for every timestamp below 2^53 / size; the two corrections keep it exact above that as well.
  let start = offset + Math.floor((ts - offset) / size) * size;
  if (start > ts) start -= size;
  else if (start + size <= ts) start += size;
  return start;
}
