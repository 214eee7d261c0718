/**
 * fast-check arbitraries for stream tests: timestamped events that arrive out of order by at most a bound,
 * and reorderings of a sorted event list that stay within a bound. Use them to state laws about pipelines
 * ("any arrival order within the bound gives the same windows").
 * @module
 */
import fc from "fast-check";

/**
 * A value with its event time.
 *
 * @example
 * ```ts
 * import type { Timestamped } from "gress/testing";
 *
 * const events: Timestamped<string>[] = [{ value: "a", timestamp: 0 }, { value: "b", timestamp: 1_000 }];
 * ```
 */
export interface Timestamped<T> {
  readonly value: T;
  readonly timestamp: number;
}

/**
 * Options of {@link timestampedEvents}.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { timestampedEvents, type TimestampedEventsOptions } from "gress/testing";
 *
 * const options: TimestampedEventsOptions = { minLength: 1, maxLength: 200, startTime: 0, maxGapMs: 500, maxDisorderMs: 1_000 };
 * const streams = timestampedEvents(fc.string(), options);
 * ```
 */
export interface TimestampedEventsOptions {
  readonly minLength?: number;
  readonly maxLength?: number;
  /** Event time of the first event. Default 0. */
  readonly startTime?: number;
  /** Largest step between consecutive event times. Default 1000. */
  readonly maxGapMs?: number;
  /** Largest disorder: no event arrives more than this far behind the largest timestamp before it. */
  readonly maxDisorderMs?: number;
}

/**
 * Events in arrival order whose event times are out of order by at most `maxDisorderMs`: each event's
 * arrival is its timestamp plus a random delay in [0, maxDisorderMs], so for any two events the later
 * arrival is at most `maxDisorderMs` older than the earlier one.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { maxDisorder, timestampedEvents } from "gress/testing";
 *
 * // Streams of up to 50 events, at most 2 s out of order.
 * fc.assert(
 *   fc.property(timestampedEvents(fc.integer({ min: 0, max: 9 }), { maxLength: 50, maxDisorderMs: 2_000 }), (events) => maxDisorder(events) <= 2_000),
 * );
 * ```
 */
export function timestampedEvents<T>(values: fc.Arbitrary<T>, options: TimestampedEventsOptions = {}): fc.Arbitrary<Timestamped<T>[]> {
  const { minLength = 0, maxLength = 50, startTime = 0, maxGapMs = 1000, maxDisorderMs = 0 } = options;
  return fc
    .array(fc.tuple(values, fc.integer({ min: 0, max: maxGapMs }), fc.integer({ min: 0, max: maxDisorderMs })), {
      minLength,
      maxLength,
    })
    .map((rows) => {
      let ts = startTime;
      const events = rows.map(([value, gap, delay], i) => {
        ts += gap;
        return { value, timestamp: ts, arrival: ts + delay, i };
      });
      events.sort((a, b) => a.arrival - b.arrival || a.i - b.i);
      return events.map(({ value, timestamp }) => ({ value, timestamp }));
    });
}

/**
 * Reorders `sorted` (ascending by timestamp) so that no event arrives more than `boundMs` behind the largest
 * timestamp that arrived before it. Shrinks towards the original order.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { reorderWithin } from "gress/testing";
 *
 * const inOrder = [0, 1_000, 2_000, 3_000].map((timestamp, i) => ({ value: i, timestamp }));
 * // The same events in any arrival order that keeps each at most 1.5 s behind the largest timestamp before it.
 * fc.assert(fc.property(reorderWithin(inOrder, 1_500), (events) => events.length === inOrder.length));
 * ```
 */
export function reorderWithin<T>(sorted: readonly Timestamped<T>[], boundMs: number): fc.Arbitrary<Timestamped<T>[]> {
  return fc.array(fc.integer({ min: 0, max: boundMs }), { minLength: sorted.length, maxLength: sorted.length }).map((delays) =>
    sorted
      .map((e, i) => ({ e, key: e.timestamp + delays[i]!, i }))
      .sort((a, b) => a.key - b.key || a.i - b.i)
      .map(({ e }) => e),
  );
}

/**
 * The largest lateness in an arrival order: max over events of (largest earlier timestamp − its timestamp).
 *
 * @example
 * ```ts
 * import { maxDisorder } from "gress/testing";
 *
 * // How far the most late event is behind the largest timestamp before it.
 * console.log(maxDisorder([{ value: "a", timestamp: 5_000 }, { value: "b", timestamp: 2_000 }])); // 3000
 * ```
 */
export function maxDisorder(events: readonly Timestamped<unknown>[]): number {
  let max = Number.NEGATIVE_INFINITY;
  let worst = 0;
  for (const e of events) {
    if (max - e.timestamp > worst) worst = max - e.timestamp;
    if (e.timestamp > max) max = e.timestamp;
  }
  return worst;
}
