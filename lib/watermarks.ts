/**
 * Watermark strategies: how event time is read from records and how far behind the largest timestamp seen
 * the watermark trails. A generator runs per source split; the `withTimestamps` operator merges the splits'
 * watermarks by minimum, leaves idle splits out, and never lets the result move backwards.
 *
 * Emission is periodic: after every `everyRecords` records and every `everyMs` of processing time, the
 * merged watermark is emitted if it advanced.
 *
 * @example
 * ```ts
 * rides.withTimestamps(boundedOutOfOrderness(5_000, { timestamp: (r) => r.at, idleTimeoutMs: 30_000 }))
 * ```
 * @module
 */
import { z } from "zod";
import { validate } from "./config.ts";
import { MIN_WATERMARK } from "./element.ts";

/**
 * Tracks one split and proposes a watermark.
 *
 * @example
 * ```ts
 * import { customWatermarks, type WatermarkGenerator } from "gress";
 *
 * // The watermark of one split: here the smallest of the last 100 timestamps.
 * class SlidingMin implements WatermarkGenerator {
 *   readonly #last: number[] = [];
 *   onEvent(timestamp: number): void {
 *     this.#last.push(timestamp);
 *     if (this.#last.length > 100) this.#last.shift();
 *   }
 *   current(): number {
 *     return this.#last.length === 0 ? Number.NEGATIVE_INFINITY : Math.min(...this.#last) - 1;
 *   }
 * }
 * const strategy = customWatermarks<{ at: number }>(() => new SlidingMin(), { timestamp: (e) => e.at });
 * ```
 */
export interface WatermarkGenerator {
  /** Observes the timestamp of a record of this split. */
  onEvent(timestamp: number): void;
  /** The watermark this split allows now. */
  current(): number;
}

/**
 * A complete watermark strategy.
 *
 * @example
 * ```ts
 * import { boundedOutOfOrderness, fromIterable, type WatermarkStrategy } from "gress";
 *
 * type Reading = { at: number };
 * // One strategy can be used in the source (per split) or as an operator.
 * const strategy: WatermarkStrategy<Reading> = boundedOutOfOrderness(2_000, { timestamp: (r) => r.at, heartbeatMs: 10_000 });
 * const a = fromIterable<Reading>([{ at: 0 }], { watermarks: strategy });
 * const b = fromIterable<Reading>([{ at: 0 }]).withTimestamps(strategy);
 * ```
 */
export interface WatermarkStrategy<T> {
  /** Extracts event time from a value; by default the record keeps the timestamp its source gave it. */
  readonly timestamp?: ((value: T, sourceTimestamp: number) => number) | undefined;
  /** Creates the generator of one split. */
  readonly generator: () => WatermarkGenerator;
  /** A split that sent nothing for this long (processing time) no longer holds the watermark back. */
  readonly idleTimeoutMs?: number | undefined;
  /** Emit after this many records. Default 100. */
  readonly everyRecords: number;
  /** Emit after this much processing time. Default 200 ms. */
  readonly everyMs: number;
  /**
   * Heartbeat: when no record arrived for this long, advance the watermark as if processing time were event
   * time (now − the strategy's delay), so windows and timeouts close on a quiet stream. Off by default.
   */
  readonly heartbeatMs?: number | undefined;
  /** How far the heartbeat keeps the watermark behind processing time. */
  readonly heartbeatDelayMs: number;
}

const strategySchema = z.looseObject({
  timestamp: z.function().optional(),
  generator: z.function(),
  idleTimeoutMs: z.number().positive().optional(),
  everyRecords: z.number().int().positive(),
  everyMs: z.number().positive(),
  heartbeatMs: z.number().positive().optional(),
  heartbeatDelayMs: z.number().nonnegative(),
});

/**
 * Checks that `strategy` is a watermark strategy (as the built-in constructors make): a ConfigError naming
 * `where` and the bad field otherwise, instead of a job that never emits a watermark.
 * @returns the strategy
 *
 * @example
 * ```ts
 * import { monotonic, validateStrategy } from "gress";
 *
 * // Checks a strategy (e.g. one built by hand) before use; throws a ConfigError naming what is wrong.
 * const strategy = validateStrategy(monotonic<number>(), "my source");
 * ```
 */
export function validateStrategy<T>(strategy: WatermarkStrategy<T>, where: string): WatermarkStrategy<T> {
  validate(strategySchema, strategy, where);
  return strategy;
}

/**
 * What {@link eventTime} returns when a strategy's timestamp function throws or gives no finite number.
 *
 * @example
 * ```ts
 * import { type EventTimeError, eventTime, monotonic } from "gress";
 *
 * const strategy = monotonic<{ at: number }>({ timestamp: (v) => v.at });
 * const t: number | EventTimeError = eventTime(strategy, { at: Number.NaN }, 0);
 * if (typeof t !== "number") console.error("no event time:", t.error);
 * ```
 */
export interface EventTimeError {
  readonly error: unknown;
}

/**
 * The event time `strategy` gives a value from a source timestamp: `sourceTimestamp` itself without a
 * timestamp function, else what the function returns, which must be a finite number.
 * @returns the event time, or the error to report for the record
 *
 * @example
 * ```ts
 * import { eventTime, monotonic } from "gress";
 *
 * const strategy = monotonic<{ at: number }>({ timestamp: (v) => v.at });
 * console.log(eventTime(strategy, { at: 5 }, 1_000)); // 5: the value's own time (without a timestamp function: the source's 1000)
 * ```
 */
export function eventTime<T>(strategy: WatermarkStrategy<T>, value: T, sourceTimestamp: number): number | EventTimeError {
  const extract = strategy.timestamp;
  return extract === undefined ? sourceTimestamp : callTimestamp(extract, value, sourceTimestamp);
}

/**
 * Calls a user's timestamp function `fn(value, extra)`: the shared check behind {@link eventTime} and the
 * sources' `timestampOf`.
 * @returns the timestamp if it is a finite number, or the error to report: what it threw, or a TypeError
 *
 * @example
 * ```ts
 * import { callTimestamp } from "gress";
 *
 * // Calls a user's timestamp function: a number, or { error } if it threw or returned something else.
 * const t = callTimestamp((v: { at: string }) => Date.parse(v.at), { at: "2026-01-01T00:00:00Z" }, undefined);
 * console.log(typeof t === "number" ? t : "bad timestamp");
 * ```
 */
export function callTimestamp<V, X>(fn: (value: V, extra: X) => number, value: V, extra: X): number | EventTimeError {
  let ts: unknown;
  try {
    ts = fn(value, extra);
  } catch (error) {
    return { error };
  }
  if (typeof ts === "number" && Number.isFinite(ts)) return ts;
  return { error: new TypeError(`timestamp must be a finite number, got ${String(ts)}`) };
}

/**
 * Options shared by the built-in strategies.
 *
 * @example
 * ```ts
 * import { monotonic, type WatermarkOptions } from "gress";
 *
 * type Reading = { at: number };
 * // A split quiet for 1 min stops holding the watermark back; a silent stream still closes windows after 30 s.
 * const options: WatermarkOptions<Reading> = { timestamp: (r) => r.at, idleTimeoutMs: 60_000, heartbeatMs: 30_000 };
 * const strategy = monotonic(options);
 * ```
 */
export interface WatermarkOptions<T> {
  readonly timestamp?: (value: T, sourceTimestamp: number) => number;
  readonly idleTimeoutMs?: number;
  readonly everyRecords?: number;
  readonly everyMs?: number;
  readonly heartbeatMs?: number;
}

const optionsSchema = z.strictObject({
  timestamp: z.function().optional(),
  idleTimeoutMs: z.number().positive().optional(),
  everyRecords: z.number().int().positive().optional(),
  everyMs: z.number().positive().optional(),
  heartbeatMs: z.number().positive().optional(),
});

function strategy<T>(
  where: string,
  options: WatermarkOptions<T>,
  generator: () => WatermarkGenerator,
  delay: number,
): WatermarkStrategy<T> {
  const o = validate(optionsSchema, options, where);
  return {
    timestamp: options.timestamp,
    generator,
    idleTimeoutMs: o.idleTimeoutMs,
    everyRecords: o.everyRecords ?? 100,
    everyMs: o.everyMs ?? 200,
    heartbeatMs: o.heartbeatMs,
    heartbeatDelayMs: delay,
  };
}

/**
 * Records may arrive up to `maxOutOfOrdernessMs` behind the largest timestamp seen; the watermark is
 * `max − maxOutOfOrdernessMs − 1`, so a record that is exactly that much behind is still on time.
 *
 * @example
 * ```ts
 * import { boundedOutOfOrderness, fromIterable } from "gress";
 *
 * type Reading = { sensor: string; at: number };
 * const readings = fromIterable<Reading>([{ sensor: "a", at: 5_000 }, { sensor: "a", at: 1_000 }]);
 * // Records may be up to 5 s late; a quiet split is left out of the watermark after 30 s.
 * const timed = readings.withTimestamps(boundedOutOfOrderness(5_000, { timestamp: (r) => r.at, idleTimeoutMs: 30_000 }));
 * ```
 */
export function boundedOutOfOrderness<T>(maxOutOfOrdernessMs: number, options: WatermarkOptions<T> = {}): WatermarkStrategy<T> {
  validate(z.number().nonnegative(), maxOutOfOrdernessMs, "boundedOutOfOrderness.maxOutOfOrdernessMs");
  return strategy("boundedOutOfOrderness", options, () => new BoundedOutOfOrderness(maxOutOfOrdernessMs), maxOutOfOrdernessMs);
}

/** The generator of {@link boundedOutOfOrderness}; a class, so that `onEvent` is one function in every job. */
class BoundedOutOfOrderness implements WatermarkGenerator {
  #max = MIN_WATERMARK;
  readonly #bound: number;
  constructor(bound: number) {
    this.#bound = bound;
  }
  onEvent(ts: number): void {
    if (ts > this.#max) this.#max = ts;
  }
  current(): number {
    return this.#max - this.#bound - 1;
  }
}

/**
 * Timestamps never decrease within a split: the watermark is the largest timestamp seen minus 1.
 *
 * @example
 * ```ts
 * import { fromIterable, monotonic } from "gress";
 *
 * // Timestamps only grow (a log, a sequence): the watermark follows the largest timestamp.
 * const log = fromIterable([{ at: 1 }, { at: 2 }, { at: 3 }]).withTimestamps(monotonic({ timestamp: (e) => e.at }));
 * ```
 */
export function monotonic<T>(options: WatermarkOptions<T> = {}): WatermarkStrategy<T> {
  return boundedOutOfOrderness(0, options);
}

/**
 * A user-defined generator per split, with the same periodic emission and idleness as the built-ins.
 *
 * @example
 * ```ts
 * import { customWatermarks, fromIterable, type WatermarkGenerator } from "gress";
 *
 * // Event time that a device with a clock in the future cannot push ahead: such timestamps are not observed.
 * class NotAhead implements WatermarkGenerator {
 *   #max = Number.NEGATIVE_INFINITY;
 *   onEvent(timestamp: number): void {
 *     if (timestamp <= Date.now()) this.#max = Math.max(this.#max, timestamp);
 *   }
 *   current(): number {
 *     return this.#max - 1;
 *   }
 * }
 * const timed = fromIterable([{ at: 20_000 }]).withTimestamps(customWatermarks(() => new NotAhead(), { timestamp: (e) => e.at }));
 * ```
 */
export function customWatermarks<T>(generator: () => WatermarkGenerator, options: WatermarkOptions<T> = {}): WatermarkStrategy<T> {
  return strategy("customWatermarks", options, generator, 0);
}
