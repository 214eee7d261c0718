/**
 * Quotas per tenant for push ingestion (HTTP, WebSocket): each tenant has its own token buckets, one of
 * records per second and one of bytes per second, so a tenant over its quota is refused (429 with
 * Retry-After) while the others go on untouched. A batch is admitted when each bucket holds what the batch
 * needs, or is full (a batch larger than the burst then passes and leaves the bucket in debt, so the average
 * rate still holds); otherwise nothing is taken and the answer says how long to wait.
 *
 * Tenants are identified by the source (a bearer token mapped to a tenant, or a header the user names). The
 * number of tenants tracked at once is bounded: the least recently seen one is forgotten first (it comes back
 * with full buckets, which only ever favours it by one burst). Counts per tenant are kept only when
 * `perTenantStats` is set, since tenant ids in metric labels can have unbounded cardinality; otherwise all
 * tenants are counted together under `"*"`.
 * @module
 */
import type { Clock } from "../../lib/clock.ts";
import { TokenBucket } from "./token-bucket.ts";

/**
 * The quota of one tenant.
 *
 * @example
 * ```ts
 * import type { TenantQuota } from "gress/http";
 *
 * const quota: TenantQuota = { recordsPerSecond: 1000, bytesPerSecond: 1 << 20 };
 * ```
 */
export interface TenantQuota {
  /** Records per second; unset: no record limit. */
  readonly recordsPerSecond?: number;
  /** Bytes per second (request or message bodies); unset: no byte limit. */
  readonly bytesPerSecond?: number;
  /** Seconds of rate a tenant may spend at once. Default 1. */
  readonly burstSeconds?: number;
}

/**
 * Options of a source's per-tenant quotas.
 *
 * @example
 * ```ts
 * import type { TenantQuotaOptions } from "gress/http";
 *
 * // 500 records/s and 256 KiB/s for every tenant named by the X-Tenant header, 5 000 records/s for "bigco".
 * const quotas: TenantQuotaOptions = {
 *   tenant: { header: "x-tenant" },
 *   quota: { recordsPerSecond: 500, bytesPerSecond: 256 * 1024 },
 *   overrides: { bigco: { recordsPerSecond: 5000 } },
 * };
 * ```
 */
export interface TenantQuotaOptions {
  /**
   * Where the tenant comes from: `{ header }`, a request header (case-insensitive); or `{ tokens }`, a map of
   * tenant id to bearer token (those tokens are then also accepted for authentication).
   */
  readonly tenant: { readonly header: string } | { readonly tokens: Readonly<Record<string, string>> };
  /** The quota of every tenant. */
  readonly quota: TenantQuota;
  /** Quotas of particular tenants, instead of `quota`. */
  readonly overrides?: Readonly<Record<string, TenantQuota>>;
  /** Tenants tracked at once; the least recently seen is forgotten first. Default 10 000. */
  readonly maxTenants?: number;
  /** Keep counts per tenant id (tenant ids become labels). Default false: one total under "*". */
  readonly perTenantStats?: boolean;
}

/**
 * Admitted and refused traffic of one tenant (or of all, under "*").
 *
 * @example
 * ```ts
 * import type { TenantQuotaStats } from "gress/http";
 *
 * const refusedShare = (s: TenantQuotaStats): number => s.refusedRecords / Math.max(1, s.admittedRecords + s.refusedRecords);
 * ```
 */
export interface TenantQuotaStats {
  /** Records of admitted batches. */
  admittedRecords: number;
  admittedBytes: number;
  /** Records of refused batches that were read (a request refused before its body was read adds none). */
  refusedRecords: number;
  refusedBytes: number;
  /** Batches (requests, messages) refused. */
  refusals: number;
}

interface Buckets {
  readonly records: TokenBucket | undefined;
  readonly bytes: TokenBucket | undefined;
}

/**
 * Token buckets per tenant on the job's clock.
 *
 * @example
 * ```ts
 * import { TenantQuotas } from "gress/http";
 *
 * const quotas = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 2 } }, { now: () => 0 });
 * console.log(quotas.admit("acme", 2, 100)); // 0: admitted
 * console.log(quotas.admit("acme", 1, 10)); // 500: wait half a second
 * console.log(quotas.admit("other", 1, 10)); // 0: another tenant is not affected
 * ```
 */
export class TenantQuotas {
  readonly options: TenantQuotaOptions;
  readonly #clock: Pick<Clock, "now">;
  readonly #buckets = new Map<string, Buckets>();
  readonly #stats = new Map<string, TenantQuotaStats>();
  readonly #maxTenants: number;

  constructor(options: TenantQuotaOptions, clock: Pick<Clock, "now">) {
    for (const [who, q] of [["quota", options.quota], ...Object.entries(options.overrides ?? {})] as [string, TenantQuota][]) {
      for (const [field, v] of [["recordsPerSecond", q.recordsPerSecond], ["bytesPerSecond", q.bytesPerSecond], ["burstSeconds", q.burstSeconds]] as const) {
        if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new RangeError(`tenant quotas: ${who}.${field} must be a number > 0, got ${v}`);
      }
    }
    this.options = options;
    this.#clock = clock;
    this.#maxTenants = options.maxTenants ?? 10_000;
  }

  /**
   * Admits a batch of `records` records and `bytes` bytes from `tenant`: 0 when admitted (the tokens are
   * taken), otherwise the milliseconds to wait before trying again (nothing is taken).
   */
  admit(tenant: string, records: number, bytes: number): number {
    const b = this.#bucketsOf(tenant);
    const wait = Math.max(waitFor(b.records, records), waitFor(b.bytes, bytes));
    const stats = this.#statsOf(tenant);
    if (wait > 0) {
      stats.refusedRecords += records;
      stats.refusedBytes += bytes;
      stats.refusals++;
      return wait;
    }
    b.records?.take(records);
    b.bytes?.take(bytes);
    stats.admittedRecords += records;
    stats.admittedBytes += bytes;
    return 0;
  }

  /**
   * Checks a request before its body is read: 0 when the tenant has at least one record's worth and
   * `bytes` (the announced size) of tokens, else the wait, and the request counts as refused (its records
   * unknown). Nothing is taken: {@link admit} takes once the batch is read. This keeps a tenant that ignores
   * Retry-After from making the source read and decode what it will refuse anyway.
   */
  precheck(tenant: string, bytes: number): number {
    const b = this.#bucketsOf(tenant);
    const wait = Math.max(waitFor(b.records, 1), waitFor(b.bytes, bytes));
    if (wait > 0) {
      const stats = this.#statsOf(tenant);
      stats.refusedBytes += bytes;
      stats.refusals++;
    }
    return wait;
  }

  /**
   * Charges a batch that has already arrived and cannot be refused (a WebSocket message): the tokens are
   * taken even into debt, and the answer is the milliseconds until the tenant's buckets are positive again,
   * for which the tenant's senders should be held (0: no need).
   */
  charge(tenant: string, records: number, bytes: number): number {
    const b = this.#bucketsOf(tenant);
    b.records?.take(records);
    b.bytes?.take(bytes);
    const stats = this.#statsOf(tenant);
    stats.admittedRecords += records;
    stats.admittedBytes += bytes;
    return Math.max(debt(b.records), debt(b.bytes));
  }

  /** Counts per tenant (or under "*"; see the module comment). */
  get stats(): ReadonlyMap<string, Readonly<TenantQuotaStats>> {
    return this.#stats;
  }

  /** The tenant a bearer token belongs to, with `{ tokens }` identification. */
  tenantOfToken(token: string): string | undefined {
    const t = this.options.tenant;
    if (!("tokens" in t)) return undefined;
    for (const [tenant, secret] of Object.entries(t.tokens)) if (secret === token) return tenant;
    return undefined;
  }

  #bucketsOf(tenant: string): Buckets {
    let b = this.#buckets.get(tenant);
    if (b !== undefined) {
      // Most recently seen last, so the first key is the one to forget.
      this.#buckets.delete(tenant);
      this.#buckets.set(tenant, b);
      return b;
    }
    const q = this.options.overrides?.[tenant] ?? this.options.quota;
    const burst = q.burstSeconds ?? 1;
    const bucket = (rate: number | undefined): TokenBucket | undefined => (rate === undefined ? undefined : new TokenBucket({ ratePerSecond: rate, burst: Math.max(1, rate * burst) }, this.#clock));
    b = { records: bucket(q.recordsPerSecond), bytes: bucket(q.bytesPerSecond) };
    this.#buckets.set(tenant, b);
    if (this.#buckets.size > this.#maxTenants) this.#buckets.delete(this.#buckets.keys().next().value as string);
    return b;
  }

  #statsOf(tenant: string): TenantQuotaStats {
    const key = this.options.perTenantStats === true ? tenant : "*";
    let s = this.#stats.get(key);
    if (s === undefined) {
      if (key !== "*" && this.#stats.size >= this.#maxTenants) return (this.#stats.get("*") ?? this.#newStats("*")) as TenantQuotaStats;
      s = this.#newStats(key);
    }
    return s;
  }

  #newStats(key: string): TenantQuotaStats {
    const s: TenantQuotaStats = { admittedRecords: 0, admittedBytes: 0, refusedRecords: 0, refusedBytes: 0, refusals: 0 };
    this.#stats.set(key, s);
    return s;
  }
}

/** 0 when the bucket holds `n` tokens or is full; else the wait for that. */
function waitFor(bucket: TokenBucket | undefined, n: number): number {
  if (bucket === undefined || n <= 0) return 0;
  if (bucket.tokens >= Math.min(n, bucket.burst)) return 0;
  return Math.max(1, bucket.delayFor(n));
}

/** Milliseconds until a bucket in debt is positive again. */
function debt(bucket: TokenBucket | undefined): number {
  if (bucket === undefined) return 0;
  const tokens = bucket.tokens;
  return tokens >= 0 ? 0 : Math.ceil((-tokens * 1000) / bucket.ratePerSecond);
}
