/**
 * User-facing keyed state: {@link ValueState}, {@link MapState} and {@link ListState}, always scoped to the
 * key (and namespace) of the element being processed, as in Flink's keyed state. Each handle is a thin view
 * over a {@link StateTable}, so the same user code runs on every backend.
 *
 * TTL: a state with `ttl` stores its last-write time beside the value and treats an expired entry as absent
 * (and deletes it) on read. `expireAll()` sweeps a whole table. Time is event time (the operator's watermark,
 * or the timestamp of the element being processed if that is later; in an event-time timer, the timer's time,
 * so that the timers a watermark fires see the state as it was at their time) or processing time (the job's
 * Clock), as configured.
 * @module
 */
import { z } from "zod";
import { validate } from "../config.ts";
import type { Key } from "../element.ts";
import type { Namespace, StateTable } from "./backend.ts";

/**
 * Time-to-live of a state entry.
 *
 * @example
 * ```ts
 * import type { StateTtl } from "gress";
 *
 * // Forget an entry 30 minutes of event time after it was last written or read.
 * const ttl: StateTtl = { ms: 30 * 60_000, time: "event", refreshOnRead: true };
 * ```
 */
export interface StateTtl {
  /** Lifetime in milliseconds after the last write (or read, with `refreshOnRead`). */
  readonly ms: number;
  /** Which time the lifetime is measured in. Default "processing". */
  readonly time?: "event" | "processing" | undefined;
  /** Reading an entry also renews its lifetime. Default false. */
  readonly refreshOnRead?: boolean | undefined;
}

/**
 * Options of a state handle.
 *
 * @example
 * ```ts
 * import { fromIterable, type StateOptions } from "gress";
 *
 * const options: StateOptions = { ttl: { ms: 24 * 3_600_000 } }; // a day of processing time
 * const firstSeen = fromIterable([{ user: "ann", at: 5 }])
 *   .keyBy((v) => v.user)
 *   .process<number>({
 *     processElement(v, ctx) {
 *       const first = ctx.state.value<number>("first", options);
 *       if (first.value() === undefined) first.update(v.at);
 *       ctx.emit(first.value() ?? v.at);
 *     },
 *   });
 * ```
 */
export interface StateOptions {
  readonly ttl?: StateTtl;
}

const ttlSchema = z.strictObject({
  ms: z.number().positive(),
  time: z.enum(["event", "processing"]).optional(),
  refreshOnRead: z.boolean().optional(),
});
const stateOptionsSchema = z.strictObject({ ttl: ttlSchema.optional() });

/**
 * Where a state handle finds the current key, namespace and time. The operator moves it per element.
 *
 * @example
 * ```ts
 * import type { KeyContext } from "gress";
 *
 * // Moved by the operator before each element: the state handles read and write at (currentKey, namespace).
 * const ctx: KeyContext = { currentKey: undefined, namespace: "", eventTime: () => 0, processingTime: () => Date.now() };
 * ```
 */
export interface KeyContext {
  currentKey: Key | undefined;
  namespace: Namespace;
  eventTime(): number;
  processingTime(): number;
}

/**
 * A single value per key.
 *
 * @example
 * ```ts
 * import { fromIterable, type ValueState } from "gress";
 *
 * const totals = fromIterable([{ user: "ann", amount: 5 }, { user: "ann", amount: 7 }])
 *   .keyBy((v) => v.user)
 *   .process<number>({
 *     processElement(v, ctx) {
 *       const total: ValueState<number> = ctx.state.value("total");
 *       total.update((total.value() ?? 0) + v.amount);
 *       ctx.emit(total.value() ?? 0); // 5, then 12
 *     },
 *   });
 * ```
 */
export interface ValueState<T> {
  value(): T | undefined;
  update(value: T): void;
  clear(): void;
}

/**
 * A map per key. Entries are stored individually, so large maps stay cheap to update.
 *
 * @example
 * ```ts
 * import { fromIterable, type MapState } from "gress";
 *
 * // Per user, the last price seen per product: entries are stored one by one, so large maps stay cheap.
 * const prices = fromIterable([{ user: "ann", product: "p1", price: 3 }])
 *   .keyBy((v) => v.user)
 *   .process<number>({
 *     processElement(v, ctx) {
 *       const last: MapState<string, number> = ctx.state.map("last-price");
 *       last.put(v.product, v.price);
 *       ctx.emit(last.entries().length);
 *     },
 *   });
 * ```
 */
export interface MapState<K extends string | number, V> {
  get(key: K): V | undefined;
  has(key: K): boolean;
  put(key: K, value: V): void;
  delete(key: K): void;
  entries(): [K, V][];
  keys(): K[];
  clear(): void;
}

/**
 * A list per key.
 *
 * @example
 * ```ts
 * import { fromIterable, type ListState } from "gress";
 *
 * // The last three pages of each user.
 * const trails = fromIterable([{ user: "ann", page: "/a" }, { user: "ann", page: "/b" }])
 *   .keyBy((v) => v.user)
 *   .process<string[]>({
 *     processElement(v, ctx) {
 *       const pages: ListState<string> = ctx.state.list("pages");
 *       pages.update([...pages.get(), v.page].slice(-3));
 *       ctx.emit(pages.get());
 *     },
 *   });
 * ```
 */
export interface ListState<T> {
  get(): T[];
  add(value: T): void;
  addAll(values: readonly T[]): void;
  update(values: readonly T[]): void;
  clear(): void;
}

interface Stamped<T> {
  readonly v: T;
  readonly t: number;
}

function requireKey(ctx: KeyContext): Key {
  if (ctx.currentKey === undefined) throw new TypeError("keyed state used outside of a keyed context");
  return ctx.currentKey;
}

// The TTL of each table written through a handle with one, for queries from outside (state/queryable.ts).
const tableTtls = new WeakMap<StateTable<unknown>, StateTtl>();

/**
 * The value a state handle would read from `raw`, a table entry: `raw` itself, or, for a table with TTL, its
 * value unless expired at `time` (processing time, or the operator's event time). For queryable state.
 *
 * @example
 * ```ts
 * import { type KeyContext, liveValue, memoryState, valueState } from "gress";
 *
 * const table = memoryState().table("op", "seen");
 * const ctx: KeyContext = { currentKey: "ann", namespace: "", eventTime: () => 0, processingTime: () => 0 };
 * valueState<string>(table, ctx, { ttl: { ms: 1_000 } }).update("yes");
 * console.log(liveValue(table, table.get("ann", ""), { processing: 500, event: 0 })); // "yes"
 * console.log(liveValue(table, table.get("ann", ""), { processing: 1_000, event: 0 })); // undefined: expired
 * ```
 */
export function liveValue(table: StateTable<unknown>, raw: unknown, time: { readonly processing: number; readonly event: number }): unknown {
  const ttl = tableTtls.get(table);
  if (raw === undefined || ttl === undefined) return raw;
  const stamped = raw as Stamped<unknown>;
  const now = ttl.time === "event" ? time.event : time.processing;
  return stamped.t + ttl.ms <= now ? undefined : stamped.v;
}

/** Reads and writes one table with optional TTL; the base of the three handle kinds. */
class TtlView<T> {
  readonly #table: StateTable<unknown>;
  readonly #ctx: KeyContext;
  readonly #ttl: StateTtl | undefined;

  constructor(table: StateTable<unknown>, ctx: KeyContext, options: StateOptions | undefined) {
    this.#table = table;
    this.#ctx = ctx;
    this.#ttl = validate(stateOptionsSchema, options ?? {}, "state").ttl;
    if (this.#ttl !== undefined) tableTtls.set(table, this.#ttl);
  }
  #now(): number {
    return this.#ttl?.time === "event" ? this.#ctx.eventTime() : this.#ctx.processingTime();
  }
  read(key: Key, ns: Namespace): T | undefined {
    const raw = this.#table.get(key, ns);
    if (raw === undefined || this.#ttl === undefined) return raw as T | undefined;
    const stamped = raw as Stamped<T>;
    const now = this.#now();
    if (stamped.t + this.#ttl.ms <= now) {
      this.#table.delete(key, ns);
      return undefined;
    }
    if (this.#ttl.refreshOnRead === true) this.#table.put(key, ns, { v: stamped.v, t: now });
    return stamped.v;
  }
  write(key: Key, ns: Namespace, value: T): void {
    this.#table.put(key, ns, this.#ttl === undefined ? value : { v: value, t: this.#now() });
  }
  remove(key: Key, ns: Namespace): void {
    this.#table.delete(key, ns);
  }
  entriesOf(key: Key): [Namespace, T][] {
    const out: [Namespace, T][] = [];
    for (const [ns] of this.#table.entriesOf(key)) {
      const v = this.read(key, ns);
      if (v !== undefined) out.push([ns, v]);
    }
    return out;
  }
  get key(): Key {
    return requireKey(this.#ctx);
  }
  get ns(): Namespace {
    return this.#ctx.namespace;
  }
  /** Deletes every expired entry of the table. Returns how many were deleted. */
  expireAll(): number {
    if (this.#ttl === undefined) return 0;
    const now = this.#now();
    let n = 0;
    for (const [key, ns, raw] of this.#table.entries()) {
      if ((raw as Stamped<T>).t + this.#ttl.ms <= now) {
        this.#table.delete(key, ns);
        n++;
      }
    }
    return n;
  }
}

/**
 * Anything that can drop its expired entries.
 *
 * @example
 * ```ts
 * import { type KeyContext, memoryState, valueState } from "gress";
 *
 * // State handles with a TTL can be swept: the engine calls expireAll() at checkpoints.
 * const ctx: KeyContext = { currentKey: "k", namespace: "", eventTime: () => 0, processingTime: () => Date.now() };
 * const seen = valueState<boolean>(memoryState().table("op", "seen"), ctx, { ttl: { ms: 1_000 } });
 * seen.expireAll();
 * ```
 */
export interface Expirable {
  expireAll(): number;
}

/**
 * Creates a ValueState handle over a table.
 *
 * @example
 * ```ts
 * import { type KeyContext, memoryState, valueState } from "gress";
 *
 * // Keyed state over a table, for operators of your own: the handle reads the key the context points at.
 * const ctx: KeyContext = { currentKey: "ann", namespace: "", eventTime: () => 0, processingTime: () => Date.now() };
 * const total = valueState<number>(memoryState().table("my-op", "total"), ctx);
 * total.update(5);
 * ctx.currentKey = "bob";
 * console.log(total.value()); // undefined: bob has none
 * ```
 */
export function valueState<T>(
  table: StateTable<unknown>,
  ctx: KeyContext,
  options?: StateOptions,
): ValueState<T> & Expirable {
  const view = new TtlView<T>(table, ctx, options);
  return {
    value: () => view.read(view.key, view.ns),
    update: (value) => view.write(view.key, view.ns, value),
    clear: () => view.remove(view.key, view.ns),
    expireAll: () => view.expireAll(),
  };
}

// Map entries share the table with other namespaces: the entry's namespace is "<ns>\u0000<mapKey>" and the
// type of the map key is kept by a one-letter prefix so 1 and "1" stay distinct.
const SEP = "\u0000";
function entryNs(ns: Namespace, mapKey: string | number): string {
  return `${ns}${SEP}${typeof mapKey === "number" ? "n" : "s"}${mapKey}`;
}
function parseEntryNs(ns: Namespace, entry: Namespace): string | number | undefined {
  const prefix = `${ns}${SEP}`;
  if (typeof entry !== "string" || !entry.startsWith(prefix)) return undefined;
  const body = entry.slice(prefix.length);
  return body[0] === "n" ? Number(body.slice(1)) : body.slice(1);
}

/**
 * Creates a MapState handle over a table.
 *
 * @example
 * ```ts
 * import { type KeyContext, mapState, memoryState } from "gress";
 *
 * const ctx: KeyContext = { currentKey: "ann", namespace: "", eventTime: () => 0, processingTime: () => Date.now() };
 * const visits = mapState<string, number>(memoryState().table("my-op", "visits"), ctx);
 * visits.put("/home", 1);
 * console.log(visits.entries()); // [["/home", 1]]
 * ```
 */
export function mapState<K extends string | number, V>(
  table: StateTable<unknown>,
  ctx: KeyContext,
  options?: StateOptions,
): MapState<K, V> & Expirable {
  const view = new TtlView<V>(table, ctx, options);
  const entries = (): [K, V][] => {
    const out: [K, V][] = [];
    for (const [ns, v] of view.entriesOf(view.key)) {
      const k = parseEntryNs(view.ns, ns);
      if (k !== undefined) out.push([k as K, v]);
    }
    return out;
  };
  return {
    get: (k) => view.read(view.key, entryNs(view.ns, k)),
    has: (k) => view.read(view.key, entryNs(view.ns, k)) !== undefined,
    put: (k, v) => view.write(view.key, entryNs(view.ns, k), v),
    delete: (k) => view.remove(view.key, entryNs(view.ns, k)),
    entries,
    keys: () => entries().map(([k]) => k),
    clear: () => {
      for (const [k] of entries()) view.remove(view.key, entryNs(view.ns, k));
    },
    expireAll: () => view.expireAll(),
  };
}

/**
 * Creates a ListState handle over a table.
 *
 * @example
 * ```ts
 * import { type KeyContext, listState, memoryState } from "gress";
 *
 * const ctx: KeyContext = { currentKey: "ann", namespace: "", eventTime: () => 0, processingTime: () => Date.now() };
 * const pages = listState<string>(memoryState().table("my-op", "pages"), ctx, { ttl: { ms: 60_000 } });
 * pages.add("/a");
 * console.log(pages.get()); // ["/a"]
 * ```
 */
export function listState<T>(
  table: StateTable<unknown>,
  ctx: KeyContext,
  options?: StateOptions,
): ListState<T> & Expirable {
  const view = new TtlView<T[]>(table, ctx, options);
  const get = (): T[] => view.read(view.key, view.ns) ?? [];
  return {
    get: () => [...get()],
    add: (v) => view.write(view.key, view.ns, [...get(), v]),
    addAll: (vs) => view.write(view.key, view.ns, [...get(), ...vs]),
    update: (vs) => (vs.length === 0 ? view.remove(view.key, view.ns) : view.write(view.key, view.ns, [...vs])),
    clear: () => view.remove(view.key, view.ns),
    expireAll: () => view.expireAll(),
  };
}
