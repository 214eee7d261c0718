/**
 * A bounded cache for lookups made by async operators (`mapAsync(fn, { cache })`): least recently used
 * entries go first once `maxEntries` is reached, and an entry older than `ttlMs` (processing time of the
 * given clock) is a miss. It counts hits and misses. Nothing in it is checkpointed: a cache is rebuilt by
 * calling again after a restart.
 * @module
 */
import { z } from "zod";
import type { Clock } from "./clock.ts";
import { validate } from "./config.ts";

/**
 * Options of an {@link AsyncCache}, and of the `cache` option of `mapAsync` / `flatMapAsync`.
 *
 * @example
 * ```ts
 * import { type AsyncCacheOptions, fromIterable } from "gress";
 *
 * // Up to 10 000 profiles, each kept for a minute, looked up by user id.
 * const cache: AsyncCacheOptions<{ user: string }> = { maxEntries: 10_000, ttlMs: 60_000, key: (v) => v.user };
 * const enriched = fromIterable([{ user: "ann" }]).mapAsync(async (v) => ({ ...v, tier: "gold" }), { cache });
 * ```
 */
export interface AsyncCacheOptions<I> {
  /** Entries kept at most; the least recently used goes first. */
  readonly maxEntries: number;
  /** An entry is used for this long after it was stored (processing time, ms). Default: no expiry. */
  readonly ttlMs?: number;
  /**
   * The cache key of an input value. Default: the value itself (a string or number). With `mapAsync`, the
   * result cached for a key is reused for every value with that key: the result must depend on the key alone.
   */
  readonly key?: (value: I) => string | number;
}

const optionsSchema = z.strictObject({
  maxEntries: z.number().int().positive(),
  ttlMs: z.number().positive().optional(),
  key: z.custom<(v: unknown) => string | number>((f) => typeof f === "function", "a function").optional(),
});

interface Entry<V> {
  readonly value: V;
  readonly expires: number;
}

/**
 * A bounded LRU cache with a time to live, counting hits and misses.
 *
 * @example
 * ```ts
 * import { AsyncCache, SystemClock } from "gress";
 *
 * const cache = new AsyncCache<string, number>({ maxEntries: 2, ttlMs: 1_000 }, new SystemClock());
 * cache.set("a", 1);
 * console.log(cache.get("a"), cache.get("b"), cache.hits, cache.misses); // 1 undefined 1 1
 * ```
 */
export class AsyncCache<K, V> {
  /** Lookups that found a live entry. */
  hits: number = 0;
  /** Lookups that found none, or an expired one. */
  misses: number = 0;
  readonly #max: number;
  readonly #ttl: number;
  readonly #clock: Clock;
  // A Map iterates in insertion order: re-inserting on a hit keeps the least recently used first.
  readonly #entries = new Map<K, Entry<V>>();

  /**
   * @param options the bound and the time to live (`key` is used by the async operator, not here)
   * @param clock the processing time that entries expire in
   */
  constructor(options: AsyncCacheOptions<never>, clock: Clock) {
    const o = validate(optionsSchema, options, "cache");
    this.#max = o.maxEntries;
    this.#ttl = o.ttlMs ?? Number.POSITIVE_INFINITY;
    this.#clock = clock;
  }

  /** Entries held now (expired ones included until they are looked up or pushed out). */
  get size(): number {
    return this.#entries.size;
  }

  /** The live value of `key` (a hit), or undefined (a miss). */
  get(key: K): V | undefined {
    const e = this.#entries.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    this.#entries.delete(key);
    if (e.expires <= this.#clock.now()) {
      this.misses++;
      return undefined;
    }
    this.#entries.set(key, e);
    this.hits++;
    return e.value;
  }

  /** Stores `value` under `key` as the most recently used entry, dropping the least recently used beyond the bound. */
  set(key: K, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, { value, expires: this.#ttl === Number.POSITIVE_INFINITY ? this.#ttl : this.#clock.now() + this.#ttl });
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
  }

  /**
   * The live value of `key`, or else what `load()` resolves to, stored unless it is undefined. For enrichment
   * inside an async function, where the `cache` option of `mapAsync` does not fit (its cached result is the
   * whole output for a key).
   *
   * @example
   * ```ts
   * import { AsyncCache, fromIterable, SystemClock } from "gress";
   *
   * const tiers = new AsyncCache<string, string>({ maxEntries: 10_000, ttlMs: 60_000 }, new SystemClock());
   * const lookupTier = async (user: string, signal: AbortSignal): Promise<string> => (signal.aborted ? "none" : user === "ann" ? "gold" : "silver");
   * const orders = fromIterable([{ id: 1, user: "ann" }, { id: 2, user: "ann" }]);
   * // Each order keeps its own id; the tier of "ann" is looked up once.
   * const enriched = orders.mapAsync(async (o, { signal }) => ({ ...o, tier: await tiers.getOrLoad(o.user, () => lookupTier(o.user, signal)) }));
   * ```
   */
  async getOrLoad(key: K, load: () => V | PromiseLike<V>): Promise<V> {
    const hit = this.get(key);
    if (hit !== undefined) return hit;
    const value = await load();
    if (value !== undefined) this.set(key, value);
    return value;
  }

  /** Forgets every entry. */
  clear(): void {
    this.#entries.clear();
  }
}
