/**
 * Incremental aggregations. A window (or a rolling aggregate) holds one accumulator, never the list of its
 * records: `add` folds a value in, `merge` combines two accumulators (session windows merge), `result`
 * reads the answer. Accumulators are stored in keyed state, so they must be plain data (structured-cloneable).
 *
 * @example
 * ```ts
 * const avgPrice = avg((bid: Bid) => bid.price);
 * keyed.window(tumbling(60_000)).aggregate(avgPrice)
 * ```
 * @module
 */

/**
 * An incremental aggregation from values T through accumulator A to result R.
 *
 * @example
 * ```ts
 * import { type Aggregator, fromIterable, tumbling } from "gress";
 *
 * // Distinct values per window: the accumulator is a Set, merged when session windows merge.
 * const distinct: Aggregator<string, Set<string>, number> = {
 *   name: "distinct",
 *   create: () => new Set(),
 *   add: (set, value) => set.add(value),
 *   merge: (a, b) => new Set([...a, ...b]),
 *   result: (set) => set.size,
 * };
 * const pages = fromIterable([{ user: "ann", page: "/" }, { user: "ann", page: "/" }, { user: "ann", page: "/a" }], { timestamp: () => 0 });
 * const distinctPages = pages.map((v) => v.page).keyBy(() => "all").window(tumbling(60_000)).aggregate(distinct);
 * ```
 */
export interface Aggregator<T, A, R> {
  readonly name: string;
  create(): A;
  add(accumulator: A, value: T): A;
  merge(a: A, b: A): A;
  result(accumulator: A): R;
}

/**
 * A custom aggregation.
 *
 * @example
 * ```ts
 * import { aggregate, fromIterable, tumbling } from "gress";
 *
 * // Range (max - min) of prices per window, with a [min, max] accumulator.
 * const range = aggregate<{ price: number }, [number, number], number>({
 *   name: "range",
 *   create: () => [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
 *   add: ([lo, hi], t) => [Math.min(lo, t.price), Math.max(hi, t.price)],
 *   merge: (a, b) => [Math.min(a[0], b[0]), Math.max(a[1], b[1])],
 *   result: ([lo, hi]) => hi - lo,
 * });
 * const trades = fromIterable([{ price: 10 }, { price: 14 }, { price: 11 }], { timestamp: () => 0 });
 * const ranges = await trades.keyBy(() => "X").window(tumbling(1_000)).aggregate(range).collect(); // value: 4
 * ```
 */
export function aggregate<T, A, R>(spec: {
  name?: string;
  create(): A;
  add(accumulator: A, value: T): A;
  merge(a: A, b: A): A;
  result(accumulator: A): R;
}): Aggregator<T, A, R> {
  return { name: spec.name ?? "aggregate", create: spec.create, add: spec.add, merge: spec.merge, result: spec.result };
}

// The built-in aggregators are plain objects with their functions as own properties, so that they can be
// spread, destructured or passed to `aggregate()`. Those that take no parameter share module-level functions:
// a window calls `add` once per record, and one function for every instance stays inlinable however many
// windows and jobs use it.

const countFns = {
  create: (): number => 0,
  add: (n: number): number => n + 1,
  merge: (a: number, b: number): number => a + b,
  result: (n: number): number => n,
};

/**
 * Number of values.
 *
 * @example
 * ```ts
 * import { count, fromIterable, tumbling } from "gress";
 *
 * const events = fromIterable(["a", "b", "a"], { timestamp: () => 0 });
 * const counts = events.keyBy((e) => e).window(tumbling(1_000)).aggregate(count()); // same as .count()
 * ```
 */
export function count<T>(): Aggregator<T, number, number> {
  return { name: "count", ...countFns };
}

/**
 * Sum of `field(value)`.
 *
 * @example
 * ```ts
 * import { fromIterable, sum, tumbling } from "gress";
 *
 * const orders = fromIterable([{ shop: "s1", total: 20 }, { shop: "s1", total: 5 }], { timestamp: () => 0 });
 * const revenue = orders.keyBy((o) => o.shop).window(tumbling(3_600_000)).aggregate(sum((o) => o.total)); // value: 25
 * ```
 */
export function sum<T>(field: (value: T) => number): Aggregator<T, number, number> {
  return { name: "sum", create: () => 0, add: (s, v) => s + field(v), merge: (a, b) => a + b, result: (s) => s };
}

/**
 * Arithmetic mean of `field(value)`; NaN for no values.
 *
 * @example
 * ```ts
 * import { avg, fromIterable, tumbling } from "gress";
 *
 * const readings = fromIterable([{ room: "r1", celsius: 20 }, { room: "r1", celsius: 22 }], { timestamp: () => 0 });
 * const mean = readings.keyBy((r) => r.room).window(tumbling(60_000)).aggregate(avg((r) => r.celsius)); // value: 21
 * ```
 */
export function avg<T>(field: (value: T) => number): Aggregator<T, [number, number], number> {
  return {
    name: "avg",
    create: () => [0, 0],
    add: (acc, v) => {
      acc[0] += field(v);
      acc[1]++;
      return acc;
    },
    merge: (a, b) => [a[0] + b[0], a[1] + b[1]],
    result: (acc) => (acc[1] === 0 ? Number.NaN : acc[0] / acc[1]),
  };
}

/**
 * Smallest `field(value)`; undefined for no values.
 *
 * @example
 * ```ts
 * import { fromIterable, min, tumbling } from "gress";
 *
 * const bids = fromIterable([{ item: "i1", price: 7 }, { item: "i1", price: 5 }], { timestamp: () => 0 });
 * const lowest = bids.keyBy((b) => b.item).window(tumbling(60_000)).aggregate(min((b) => b.price)); // value: 5
 * ```
 */
export function min<T>(field: (value: T) => number): Aggregator<T, number | null, number | undefined> {
  return {
    name: "min",
    create: () => null,
    add: (m, v) => {
      const x = field(v);
      return m === null || x < m ? x : m;
    },
    merge: (a, b) => (a === null ? b : b === null ? a : Math.min(a, b)),
    result: (m) => m ?? undefined,
  };
}

/**
 * Largest `field(value)`; undefined for no values.
 *
 * @example
 * ```ts
 * import { fromIterable, max, tumbling } from "gress";
 *
 * const bids = fromIterable([{ item: "i1", price: 7 }, { item: "i1", price: 5 }], { timestamp: () => 0 });
 * const highest = bids.keyBy((b) => b.item).window(tumbling(60_000)).aggregate(max((b) => b.price)); // value: 7
 * ```
 */
export function max<T>(field: (value: T) => number): Aggregator<T, number | null, number | undefined> {
  return {
    name: "max",
    create: () => null,
    add: (m, v) => {
      const x = field(v);
      return m === null || x > m ? x : m;
    },
    merge: (a, b) => (a === null ? b : b === null ? a : Math.max(a, b)),
    result: (m) => m ?? undefined,
  };
}

/**
 * Folds values with an associative `combine`, like Flink's ReduceFunction.
 *
 * @example
 * ```ts
 * import { fromIterable, reduce, tumbling } from "gress";
 *
 * type Bid = { item: string; bidder: string; price: number };
 * const bids = fromIterable<Bid>([{ item: "i1", bidder: "ann", price: 7 }, { item: "i1", bidder: "bob", price: 9 }], { timestamp: () => 0 });
 * // The winning bid of each item per minute (the whole record, not just the price).
 * const winners = bids.keyBy((b) => b.item).window(tumbling(60_000)).aggregate(reduce((a, b) => (b.price > a.price ? b : a)));
 * ```
 */
export function reduce<T>(combine: (a: T, b: T) => T): Aggregator<T, { v: T } | null, T | undefined> {
  return {
    name: "reduce",
    create: () => null,
    add: (acc, v) => ({ v: acc === null ? v : combine(acc.v, v) }),
    merge: (a, b) => (a === null ? b : b === null ? a : { v: combine(a.v, b.v) }),
    result: (acc) => acc?.v,
  };
}

const collectAllFns = {
  create: (): unknown[] => [],
  add: (list: unknown[], v: unknown): unknown[] => {
    list.push(v);
    return list;
  },
  merge: (a: unknown[], b: unknown[]): unknown[] => a.concat(b),
  result: (list: unknown[]): unknown[] => list.slice(),
};

/**
 * Keeps every value: the whole list, for when the user really needs it. Memory grows with the window.
 *
 * @example
 * ```ts
 * import { collectAll, fromIterable, session } from "gress";
 *
 * const clicks = fromIterable([{ user: "ann", page: "/", at: 0 }, { user: "ann", page: "/b", at: 1_000 }], { timestamp: (c) => c.at });
 * // Each session's pages, in order (memory grows with the window: prefer an incremental aggregation).
 * const journeys = clicks.keyBy((c) => c.user).window(session({ gapMs: 30_000 })).aggregate(collectAll());
 * ```
 */
export function collectAll<T>(): Aggregator<T, T[], T[]> {
  return { name: "collectAll", ...(collectAllFns as unknown as Omit<Aggregator<T, T[], T[]>, "name">) };
}
