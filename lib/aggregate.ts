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

// The built-in aggregators are classes, not object literals of closures: a window calls `add` once per record,
// and one method shared by every instance stays inlinable however many windows and jobs use it.

class Count<T> implements Aggregator<T, number, number> {
  readonly name = "count";
  create(): number {
    return 0;
  }
  add(n: number, _value: T): number {
    return n + 1;
  }
  merge(a: number, b: number): number {
    return a + b;
  }
  result(n: number): number {
    return n;
  }
}

/** Number of values. */
export function count<T>(): Aggregator<T, number, number> {
  return new Count<T>();
}

class Sum<T> implements Aggregator<T, number, number> {
  readonly name = "sum";
  readonly #field: (value: T) => number;
  constructor(field: (value: T) => number) {
    this.#field = field;
  }
  create(): number {
    return 0;
  }
  add(s: number, v: T): number {
    return s + this.#field(v);
  }
  merge(a: number, b: number): number {
    return a + b;
  }
  result(s: number): number {
    return s;
  }
}

/** Sum of `field(value)`. */
export function sum<T>(field: (value: T) => number): Aggregator<T, number, number> {
  return new Sum(field);
}

class Avg<T> implements Aggregator<T, [number, number], number> {
  readonly name = "avg";
  readonly #field: (value: T) => number;
  constructor(field: (value: T) => number) {
    this.#field = field;
  }
  create(): [number, number] {
    return [0, 0];
  }
  add(acc: [number, number], v: T): [number, number] {
    acc[0] += this.#field(v);
    acc[1]++;
    return acc;
  }
  merge(a: [number, number], b: [number, number]): [number, number] {
    return [a[0] + b[0], a[1] + b[1]];
  }
  result(acc: [number, number]): number {
    return acc[1] === 0 ? Number.NaN : acc[0] / acc[1];
  }
}

/** Arithmetic mean of `field(value)`; NaN for no values. */
export function avg<T>(field: (value: T) => number): Aggregator<T, [number, number], number> {
  return new Avg(field);
}

/** The smallest (`sign` 1) or largest (`sign` −1) of `field(value)`. */
class Extreme<T> implements Aggregator<T, number | null, number | undefined> {
  readonly name: "min" | "max";
  readonly #field: (value: T) => number;
  readonly #sign: 1 | -1;
  constructor(name: "min" | "max", field: (value: T) => number) {
    this.name = name;
    this.#field = field;
    this.#sign = name === "min" ? 1 : -1;
  }
  create(): number | null {
    return null;
  }
  add(m: number | null, v: T): number | null {
    const x = this.#field(v);
    return m === null || this.#sign * x < this.#sign * m ? x : m;
  }
  merge(a: number | null, b: number | null): number | null {
    if (a === null) return b;
    if (b === null) return a;
    return this.#sign === 1 ? Math.min(a, b) : Math.max(a, b);
  }
  result(m: number | null): number | undefined {
    return m ?? undefined;
  }
}

/** Smallest `field(value)`; undefined for no values. */
export function min<T>(field: (value: T) => number): Aggregator<T, number | null, number | undefined> {
  return new Extreme("min", field);
}

/** Largest `field(value)`; undefined for no values. */
export function max<T>(field: (value: T) => number): Aggregator<T, number | null, number | undefined> {
  return new Extreme("max", field);
}

class Reduce<T> implements Aggregator<T, { v: T } | null, T | undefined> {
  readonly name = "reduce";
  readonly #combine: (a: T, b: T) => T;
  constructor(combine: (a: T, b: T) => T) {
    this.#combine = combine;
  }
  create(): { v: T } | null {
    return null;
  }
  add(acc: { v: T } | null, v: T): { v: T } {
    return { v: acc === null ? v : this.#combine(acc.v, v) };
  }
  merge(a: { v: T } | null, b: { v: T } | null): { v: T } | null {
    return a === null ? b : b === null ? a : { v: this.#combine(a.v, b.v) };
  }
  result(acc: { v: T } | null): T | undefined {
    return acc?.v;
  }
}

/** Folds values with an associative `combine`, like Flink's ReduceFunction. */
export function reduce<T>(combine: (a: T, b: T) => T): Aggregator<T, { v: T } | null, T | undefined> {
  return new Reduce(combine);
}

class CollectAll<T> implements Aggregator<T, T[], T[]> {
  readonly name = "collectAll";
  create(): T[] {
    return [];
  }
  add(list: T[], v: T): T[] {
    list.push(v);
    return list;
  }
  merge(a: T[], b: T[]): T[] {
    return a.concat(b);
  }
  result(list: T[]): T[] {
    return list.slice();
  }
}

/** Keeps every value: the whole list, for when the user really needs it. Memory grows with the window. */
export function collectAll<T>(): Aggregator<T, T[], T[]> {
  return new CollectAll<T>();
}
