/**
 * fast-check arbitraries for stream tests: timestamped events that arrive out of order by at most a bound,
 * and reorderings of a sorted event list that stay within a bound. Use them to state laws about pipelines
 * ("any arrival order within the bound gives the same windows").
 * @module
 */
import fc from "fast-check";

/** A value with its event time. */
export interface Timestamped<T> {
  readonly value: T;
  readonly timestamp: number;
}

/** Options of {@link timestampedEvents}. */
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
 */
export function reorderWithin<T>(sorted: readonly Timestamped<T>[], boundMs: number): fc.Arbitrary<Timestamped<T>[]> {
  return fc.array(fc.integer({ min: 0, max: boundMs }), { minLength: sorted.length, maxLength: sorted.length }).map((delays) =>
    sorted
      .map((e, i) => ({ e, key: e.timestamp + delays[i]!, i }))
      .sort((a, b) => a.key - b.key || a.i - b.i)
      .map(({ e }) => e),
  );
}

/** The largest lateness in an arrival order: max over events of (largest earlier timestamp − its timestamp). */
export function maxDisorder(events: readonly Timestamped<unknown>[]): number {
  let max = Number.NEGATIVE_INFINITY;
  let worst = 0;
  for (const e of events) {
    if (max - e.timestamp > worst) worst = max - e.timestamp;
    if (e.timestamp > max) max = e.timestamp;
  }
  return worst;
}
