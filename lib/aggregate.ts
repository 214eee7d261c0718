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

/** An incremental aggregation from values T through accumulator A to result R. */
export interface Aggregator<T, A, R> {
  readonly name: string;
  create(): A;
  add(accumulator: A, value: T): A;
  merge(a: A, b: A): A;
  result(accumulator: A): R;
}

/** A custom aggregation. */
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

/** Number of values. */
export function count<T>(): Aggregator<T, number, number> {
  return { name: "count", ...countFns };
}

/** Sum of `field(value)`. */
export function sum<T>(field: (value: T) => number): Aggregator<T, number, number> {
  return { name: "sum", create: () => 0, add: (s, v) => s + field(v), merge: (a, b) => a + b, result: (s) => s };
}

/** Arithmetic mean of `field(value)`; NaN for no values. */
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

/** Smallest `field(value)`; undefined for no values. */
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

/** Largest `field(value)`; undefined for no values. */
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

/** Folds values with an associative `combine`, like Flink's ReduceFunction. */
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

/** Keeps every value: the whole list, for when the user really needs it. Memory grows with the window. */
export function collectAll<T>(): Aggregator<T, T[], T[]> {
  return { name: "collectAll", ...(collectAllFns as unknown as Omit<Aggregator<T, T[], T[]>, "name">) };
}
