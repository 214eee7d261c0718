/**
 * Async I/O: calls an asynchronous function per record (`mapAsync`, `flatMapAsync`), as Flink's
 * `AsyncDataStream.orderedWait` / `unorderedWait` do. The contract:
 *
 * - **Bounds.** At most `concurrency` calls are in flight. The operator's queue holds the records whose
 *   results are not out yet: those in flight, those waiting for a free slot, and (in order) results waiting
 *   for an earlier one. When it holds twice `concurrency` records it presses the job's flow control, so the
 *   sources pause (as a sink at `maxInFlight` does), and releases when it is back at `concurrency`: so the
 *   slots stay busy while the sources resume. Records that still arrive while the sources pause (the rest of
 *   a source's batch) wait in the queue, in order, and are called as calls finish.
 * - **Order.** `ordered: true` (default) emits results in input order. `ordered: false` emits each result as
 *   its call completes, but never across a watermark: the watermarks divide the queue into segments, a
 *   result goes out only once every record of earlier segments is out, and a watermark only after every
 *   result before it (as Flink's unordered queue). `ordered: "per-key"` is unordered across keys and ordered
 *   within one key (by the record's key: for keyed streams).
 * - **Failures.** A call that rejects, throws or times out (`timeoutMs`, which also aborts the call's
 *   `AbortSignal`) is tried again by the retry policy; once the attempts are used up the record goes to the
 *   DEAD_LETTERS side output with the reason (in its place in the order), or the job fails with a
 *   UserFunctionError under `onUserError: "fail"`. Cancelling or failing the job aborts every call's signal.
 * - **Checkpoints.** A barrier passes at once (it does not wait for calls), and the inputs of every record
 *   whose result is not out yet, with the watermarks between them, are written to the operator's state
 *   first, so the checkpoint holds them. On recovery they are called again, before any new input: calls are
 *   at-least-once towards the external system, results exactly-once downstream.
 * - **End.** At the end of the input the operator waits for every call and emits the results before the end.
 *
 * Results keep the input's timestamp, key and split.
 * @module
 */
import { z } from "zod";
import { AsyncCache, type AsyncCacheOptions } from "../async-cache.ts";
import type { Clock, CancelTimer } from "../clock.ts";
import { validate } from "../config.ts";
import { DEAD_LETTERS, type Element, END, type Key, sideRecord, watermark as watermarkElement } from "../element.ts";
import { ConfigError, UserFunctionError } from "../errors.ts";
import type { JobMetrics, OperatorMetrics } from "../metrics.ts";
import type { JobContext, OperatorContext, UserErrorPolicy } from "../operator-context.ts";
import { type ChainableOperator, type Downstream, operate } from "../operate.ts";
import { RecordOutput } from "../record-output.ts";
import type { StateTable } from "../state/backend.ts";

/**
 * What an async function gets besides the value: the signal that aborts the call (on its timeout, or when
 * the job is cancelled or fails), and which attempt this is (1 for the first call).
 *
 * @example
 * ```ts
 * import { type AsyncCallContext, fromIterable } from "gress";
 *
 * // Pass the signal on to fetch, so a timed-out or cancelled call stops the request too.
 * const lookup = async (id: string, { signal, attempt }: AsyncCallContext): Promise<string> => {
 *   const res = await fetch(`http://127.0.0.1:8080/users/${id}?try=${attempt}`, { signal });
 *   return res.text();
 * };
 * const users = fromIterable(["1", "2"]).mapAsync(lookup, { timeoutMs: 500 });
 * ```
 */
export interface AsyncCallContext {
  readonly signal: AbortSignal;
  readonly attempt: number;
}

/**
 * When and how often a failed or timed-out call is tried again.
 *
 * @example
 * ```ts
 * import { fromIterable, type RetryPolicy } from "gress";
 *
 * // Up to 4 attempts, 100 ms, 200 ms, 400 ms apart (at most 1 s), not for a 4xx answer.
 * const retry: RetryPolicy = { maxAttempts: 4, backoff: "exponential", delayMs: 100, maxDelayMs: 1_000, retryIf: (err) => !String(err).includes("HTTP 4") };
 * const scored = fromIterable([1, 2]).mapAsync(async (x) => x * 2, { timeoutMs: 250, retry });
 * ```
 */
export interface RetryPolicy {
  /** Attempts in all, the first call included (1: no retry). */
  readonly maxAttempts: number;
  /** "fixed" (default): `delayMs` between attempts; "exponential": `delayMs`, then doubled each time. */
  readonly backoff?: "fixed" | "exponential";
  /** Delay before the second attempt, in ms of the job's clock. Default 0. */
  readonly delayMs?: number;
  /** Cap of the exponential delay. Default: none. */
  readonly maxDelayMs?: number;
  /** Whether this error (or AsyncTimeoutError) is worth another attempt. Default: every error is. */
  readonly retryIf?: (error: unknown) => boolean;
}

/**
 * Options of `mapAsync` and `flatMapAsync`.
 *
 * @example
 * ```ts
 * import { type AsyncOptions, fromIterable } from "gress";
 *
 * const options: AsyncOptions<number> = { concurrency: 500, ordered: false, timeoutMs: 1_000, retry: { maxAttempts: 3, delayMs: 50 } };
 * const doubled = fromIterable([1, 2, 3]).mapAsync(async (x) => x * 2, options);
 * ```
 */
export interface AsyncOptions<I> {
  /** Calls in flight at most (default 100). The operator holds up to twice as many records before it pauses the sources. */
  readonly concurrency?: number;
  /** true (default): results in input order; false: as they complete, never across a watermark. */
  readonly ordered?: boolean;
  /**
   * Each attempt is aborted and counts as failed after this many ms of the job's clock. Default: none; then a
   * call that never settles holds its slot (and, in order, every result after it) and the input never ends.
   */
  readonly timeoutMs?: number;
  /** Retries of failed and timed-out calls. Default: one attempt. */
  readonly retry?: RetryPolicy;
  /**
   * A bounded LRU cache with TTL in front of the function, for lookups: the result for a value is reused for
   * every later value with the same `key` while it lives, so use it when the result depends on the key alone
   * (a profile by user id), not when it carries the rest of the value. Undefined results are not cached.
   */
  readonly cache?: AsyncCacheOptions<I>;
  /** What a record whose attempts all failed does. Default: the job's `onUserError`. */
  readonly onUserError?: UserErrorPolicy;
  /** Stable id for the operator's state (the inputs in flight at a checkpoint) and metrics. */
  readonly uid?: string;
}

/**
 * Options of `mapAsync` and `flatMapAsync` on a keyed stream: `ordered` may also be "per-key".
 *
 * @example
 * ```ts
 * import { fromIterable, type KeyedAsyncOptions } from "gress";
 *
 * // Each user's results stay in order; different users' results pass each other.
 * const options: KeyedAsyncOptions<{ user: string }> = { ordered: "per-key", concurrency: 200 };
 * const out = fromIterable([{ user: "ann" }]).keyBy((e) => e.user).mapAsync(async (e) => e.user.length, options);
 * ```
 */
export interface KeyedAsyncOptions<I> extends Omit<AsyncOptions<I>, "ordered"> {
  /** true (default): input order; false: completion order; "per-key": input order within each key. */
  readonly ordered?: boolean | "per-key";
}

/**
 * The error an attempt fails with when it took longer than `timeoutMs`; also the reason its signal is aborted with.
 *
 * @example
 * ```ts
 * import { AsyncTimeoutError, type RetryPolicy } from "gress";
 *
 * // Retry timeouts only.
 * const retry: RetryPolicy = { maxAttempts: 3, retryIf: (err) => err instanceof AsyncTimeoutError };
 * ```
 */
export class AsyncTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AsyncTimeoutError";
  }
}

const retrySchema = z.strictObject({
  maxAttempts: z.number().int().positive(),
  backoff: z.enum(["fixed", "exponential"]).optional(),
  delayMs: z.number().nonnegative().optional(),
  maxDelayMs: z.number().nonnegative().optional(),
  retryIf: z.custom<(e: unknown) => boolean>((f) => typeof f === "function", "a function").optional(),
});

const optionsSchema = z.strictObject({
  concurrency: z.number().int().positive().optional(),
  ordered: z.union([z.boolean(), z.literal("per-key")]).optional(),
  timeoutMs: z.number().positive().optional(),
  retry: retrySchema.optional(),
  cache: z.custom<AsyncCacheOptions<unknown>>((c) => typeof c === "object" && c !== null, "an object").optional(),
  onUserError: z.enum(["dead-letter", "fail"]).optional(),
  uid: z.string().optional(),
});

// ---------------------------------------------------------------------------------------------------------
// Metrics

/** Upper bounds of the call latency histogram, in seconds. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Counters and gauges of one async operator, exported as `gress_async_*` in the job's registry.
 *
 * @example
 * ```ts
 * import { asyncMetrics, Job } from "gress";
 *
 * const job = new Job();
 * job.fromIterable([1, 2, 3]).mapAsync(async (x) => x + 1, { uid: "plus-one" }).sinkTo({ name: "s", write() {} });
 * await job.run();
 * const m = asyncMetrics(job.metrics, "plus-one");
 * console.log(m.calls, m.inFlight, m.timeouts, m.retries); // 3 0 0 0
 * ```
 */
export class AsyncOperatorMetrics {
  readonly operator: string;
  /** Calls in flight now (retries waiting for their delay included). */
  inFlight: number = 0;
  /** Attempts made (first calls and retries). */
  calls: number = 0;
  timeouts: number = 0;
  retries: number = 0;
  cacheHits: number = 0;
  cacheMisses: number = 0;
  /** Settled attempts per latency bucket (the last counts those above every bound), and their total seconds. */
  readonly latencyBuckets: number[] = new Array<number>(BUCKETS.length + 1).fill(0);
  latencySum: number = 0;
  constructor(operator: string) {
    this.operator = operator;
  }
  /** Counts one settled attempt that took `seconds`. */
  observe(seconds: number): void {
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    this.latencyBuckets[i]!++;
    this.latencySum += seconds;
  }
}

const registries = new WeakMap<JobMetrics, Map<string, AsyncOperatorMetrics>>();

/**
 * The async-I/O metrics of operator `operator` (its uid, or `mapAsync-N`), registered in the job's registry
 * on first use: `gress_async_in_flight`, `gress_async_calls_total`, `gress_async_timeouts_total`,
 * `gress_async_retries_total`, `gress_async_cache_hits_total`, `gress_async_cache_misses_total` and the
 * histogram `gress_async_call_duration_seconds`.
 *
 * @example
 * ```ts
 * import { asyncMetrics, Job } from "gress";
 *
 * const job = new Job();
 * job.fromIterable(["a"]).mapAsync(async (s) => s.toUpperCase(), { uid: "upper" }).sinkTo({ name: "s", write() {} });
 * await job.run();
 * console.log(asyncMetrics(job.metrics, "upper").calls); // 1
 * console.log(await job.metrics.text()); // ... gress_async_call_duration_seconds_bucket{le="0.001",operator="upper",...} 1 ...
 * ```
 */
export function asyncMetrics(metrics: JobMetrics, operator: string): AsyncOperatorMetrics {
  let ops = registries.get(metrics);
  if (ops === undefined) {
    ops = new Map();
    registries.set(metrics, ops);
    register(metrics, ops);
  }
  let m = ops.get(operator);
  if (m === undefined) ops.set(operator, (m = new AsyncOperatorMetrics(operator)));
  return m;
}

interface MetricValue {
  readonly value: number;
  readonly labels: Record<string, string | number>;
  readonly metricName?: string;
}

/** Registers the async metrics of a job: read from the operators' fields at scrape time, as lib/metrics.ts does. */
function register(metrics: JobMetrics, ops: Map<string, AsyncOperatorMetrics>): void {
  const simple = (name: string, help: string, type: "counter" | "gauge", read: (m: AsyncOperatorMetrics) => number): void => {
    metrics.registry.registerMetric(
      custom(name, help, type, () => [...ops.values()].map((m) => ({ value: read(m), labels: { operator: m.operator } }))),
    );
  };
  simple("gress_async_in_flight", "Async calls in flight.", "gauge", (m) => m.inFlight);
  simple("gress_async_calls_total", "Async call attempts (first calls and retries).", "counter", (m) => m.calls);
  simple("gress_async_timeouts_total", "Async call attempts that timed out.", "counter", (m) => m.timeouts);
  simple("gress_async_retries_total", "Async calls tried again.", "counter", (m) => m.retries);
  simple("gress_async_cache_hits_total", "Lookups answered by the async operator's cache.", "counter", (m) => m.cacheHits);
  simple("gress_async_cache_misses_total", "Lookups the async operator's cache could not answer.", "counter", (m) => m.cacheMisses);
  const name = "gress_async_call_duration_seconds";
  metrics.registry.registerMetric(
    custom(name, "Duration of async call attempts.", "histogram", () => {
      const values: MetricValue[] = [];
      for (const m of ops.values()) {
        let cumulative = 0;
        BUCKETS.forEach((le, i) => {
          cumulative += m.latencyBuckets[i]!;
          values.push({ metricName: `${name}_bucket`, value: cumulative, labels: { le, operator: m.operator } });
        });
        cumulative += m.latencyBuckets[BUCKETS.length]!;
        values.push({ metricName: `${name}_bucket`, value: cumulative, labels: { le: "+Inf", operator: m.operator } });
        values.push({ metricName: `${name}_sum`, value: m.latencySum, labels: { operator: m.operator } });
        values.push({ metricName: `${name}_count`, value: cumulative, labels: { operator: m.operator } });
      }
      return values;
    }),
  );
}

/** A metric for prom-client's Registry whose values are computed at scrape time. */
function custom(name: string, help: string, type: string, values: () => MetricValue[]): Parameters<JobMetrics["registry"]["registerMetric"]>[0] {
  const metric = {
    name,
    help,
    type,
    aggregator: "sum",
    get: async () => ({ name, help, type, aggregator: "sum", values: values() }),
    reset: () => {},
  };
  return metric as unknown as Parameters<JobMetrics["registry"]["registerMetric"]>[0];
}

// ---------------------------------------------------------------------------------------------------------
// The operator

const WAITING = 0;
const RUNNING = 1;
const DONE = 2;

/** One element of the queue: a record (with its call), or a watermark or the end, in input order. */
class Entry {
  // Linked in input order; unlinked when emitted.
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;
  /** For "per-key": the next record of the same key. */
  keyNext: Entry | undefined = undefined;
  state: number = WAITING;
  attempt = 0;
  /** The current attempt (its context aborts it; an old attempt's late result is ignored). */
  call: CallContext | undefined = undefined;
  timer: CancelTimer | undefined = undefined;
  result: unknown = undefined;
  /** Why every attempt failed: the record goes to dead letters. */
  failure: string | undefined = undefined;
  readonly seq: number;
  /** "record", "watermark" or "end". */
  readonly kind: "record" | "watermark" | "end";
  readonly value: unknown;
  readonly timestamp: number;
  readonly key: Key | undefined;
  readonly split: string | undefined;
  /** Watermarks close a segment; records of a later segment wait for every earlier one (unordered). */
  readonly segment: number;
  constructor(
    seq: number,
    kind: Entry["kind"],
    value: unknown,
    timestamp: number,
    key: Key | undefined,
    split: string | undefined,
    segment: number,
  ) {
    this.seq = seq;
    this.kind = kind;
    this.value = value;
    this.timestamp = timestamp;
    this.key = key;
    this.split = split;
    this.segment = segment;
  }
}

/** The context of one attempt. The AbortController is made only when the function reads `signal`. */
class CallContext implements AsyncCallContext {
  readonly attempt: number;
  readonly started: number;
  #controller: AbortController | undefined = undefined;
  #reason: unknown = undefined;
  constructor(attempt: number, started: number) {
    this.attempt = attempt;
    this.started = started;
  }
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }
  abort(reason: unknown): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
  get aborted(): boolean {
    return this.#reason !== undefined;
  }
}

/** A record of the in-flight state, as stored at a checkpoint: a record's input, or a watermark. */
type Stored = { readonly v: unknown; readonly t: number; readonly k?: Key; readonly s?: string } | { readonly w: number };

/** How the operator turns a call's result into output values. */
export type AsyncEmit = "one" | "many";

/**
 * Builds the operator of `Stream.mapAsync` ("one": the result is the output value) or `flatMapAsync`
 * ("many": the result is an iterable of output values), with its operator id, after checking the options.
 * @param job the job (operator ids, flow control, metrics)
 * @param fn the async function
 * @param options the user's options
 * @param emit "one" or "many"
 * @param keyed whether the input stream is keyed (needed by `ordered: "per-key"`)
 * @returns a chainable operator on element streams
 */
export function asyncOperator<I, O>(
  job: JobContext,
  fn: (value: I, call: AsyncCallContext) => unknown,
  options: KeyedAsyncOptions<I>,
  emit: AsyncEmit,
  keyed: boolean,
): ChainableOperator<Element<I>, Element<O>> {
  const kind = emit === "one" ? "mapAsync" : "flatMapAsync";
  if (typeof fn !== "function") throw new ConfigError(`${kind}: expected a function, got ${typeof fn}`, [{ path: [kind], code: "custom", message: "a function" }]);
  const o = validate(optionsSchema, options, kind) as KeyedAsyncOptions<I>;
  if (o.ordered === "per-key" && !keyed) {
    throw new ConfigError(`${kind}: ordered "per-key" needs a keyed stream (call keyBy first)`, [
      { path: [kind, "ordered"], code: "custom", message: "needs a keyed stream" },
    ]);
  }
  const ctx = job.operator(kind, o.uid);
  const am = asyncMetrics(job.metrics, ctx.id);
  const cache = o.cache === undefined ? undefined : new AsyncCache<string | number, unknown>(o.cache, ctx.clock);
  const table = ctx.state.table<Stored>(ctx.id, "in-flight");
  return operate<Element<I>, Element<O>>(
    (downstream) =>
      new AsyncBody<I, O>(
        job,
        ctx,
        am,
        downstream,
        fn as (value: unknown, call: AsyncCallContext) => unknown,
        o,
        emit,
        cache,
        o.cache?.key as ((v: unknown) => string | number) | undefined,
        table,
      ),
  );
}

class AsyncBody<I, O> {
  readonly records = "consume" as const;
  readonly completesItself = true;
  readonly #job: JobContext;
  readonly #ctx: OperatorContext;
  readonly #m: OperatorMetrics;
  readonly #am: AsyncOperatorMetrics;
  readonly #clock: Clock;
  readonly #downstream: Downstream<Element<O>>;
  readonly #out: RecordOutput<O>;
  readonly #fn: (value: unknown, call: AsyncCallContext) => unknown;
  readonly #capacity: number;
  readonly #mode: "ordered" | "unordered" | "per-key";
  readonly #timeoutMs: number | undefined;
  readonly #retry: RetryPolicy | undefined;
  readonly #policy: UserErrorPolicy;
  readonly #many: boolean;
  readonly #cache: AsyncCache<string | number, unknown> | undefined;
  readonly #cacheKey: ((v: unknown) => string | number) | undefined;
  readonly #table: StateTable<Stored>;
  readonly #who: string;

  #head: Entry | undefined = undefined;
  #tail: Entry | undefined = undefined;
  /** Records in the queue (their results not out yet). */
  #queued = 0;
  #inFlight = 0;
  /** Records waiting for a free call slot, in input order. */
  #waiting: Entry[] = [];
  #waitingAt = 0;
  /** Per key, the first and last queued record ("per-key" only). */
  readonly #keys = new Map<Key, { first: Entry; last: Entry }>();
  #seq = 0;
  #segment = 0;
  #pressing = false;
  #closed = false;
  #completing = false;
  #draining = false;
  #starting = false;
  /** Keys of the entries stored in the state table at the last barrier. */
  #stored = new Set<number>();
  #restored: Entry[] | undefined;
  /** Resolved when the queue is empty (the final checkpoint waits for it). */
  #idleWaiters: (() => void)[] = [];
  readonly #unregister: (() => void) | undefined;

  constructor(
    job: JobContext,
    ctx: OperatorContext,
    am: AsyncOperatorMetrics,
    downstream: Downstream<Element<O>>,
    fn: (value: unknown, call: AsyncCallContext) => unknown,
    o: KeyedAsyncOptions<I>,
    emit: AsyncEmit,
    cache: AsyncCache<string | number, unknown> | undefined,
    cacheKey: ((v: unknown) => string | number) | undefined,
    table: StateTable<Stored>,
  ) {
    this.#job = job;
    this.#ctx = ctx;
    this.#m = ctx.metrics;
    this.#am = am;
    this.#clock = ctx.clock;
    this.#downstream = downstream;
    this.#out = new RecordOutput(downstream);
    this.#fn = fn;
    this.#capacity = o.concurrency ?? 100;
    this.#mode = o.ordered === false ? "unordered" : o.ordered === "per-key" ? "per-key" : "ordered";
    this.#timeoutMs = o.timeoutMs;
    this.#retry = o.retry;
    this.#policy = o.onUserError ?? ctx.onUserError;
    this.#many = emit === "many";
    this.#cache = cache;
    this.#cacheKey = cacheKey;
    this.#table = table;
    this.#who = `async:${ctx.id}`;
    this.#m.bufferCapacity = 2 * this.#capacity;
    this.#m.buffered = 0;
    am.inFlight = 0;
    // The final checkpoint waits until the results of the last records are out, so that it commits them.
    this.#unregister = job.checkpoints?.beforeFinal(() => this.#idle());
    this.#restored = this.#readStored();
    // Recovery: the restored inputs go first, before any new input (or on the next microtask if none comes).
    if (this.#restored !== undefined) queueMicrotask(() => this.#reissue());
  }

  /** The inputs in flight at the restored checkpoint, in input order. */
  #readStored(): Entry[] | undefined {
    // Read the entries, not the table's size: the entries are what the checkpoint holds.
    const rows = [...this.#table.entries()].sort((a, b) => (a[0] as number) - (b[0] as number));
    if (rows.length === 0) return undefined;
    const entries: Entry[] = [];
    for (const [k, , s] of rows) {
      this.#stored.add(k as number);
      this.#seq = Math.max(this.#seq, (k as number) + 1);
      if ("w" in s) entries.push(new Entry(k as number, "watermark", undefined, s.w, undefined, undefined, 0));
      else entries.push(new Entry(k as number, "record", s.v, s.t, s.k, s.s, 0));
    }
    return entries;
  }

  #reissue(): void {
    const entries = this.#restored;
    if (entries === undefined) return;
    this.#restored = undefined;
    if (this.#closed) return;
    for (const e of entries) {
      if (e.kind === "watermark") this.#watermark(e.timestamp, e.seq);
      else this.#record(e.value, e.timestamp, e.key, e.split, e.seq);
    }
  }

  next(e: Element<I>): void {
    if (this.#restored !== undefined) this.#reissue();
    switch (e.kind) {
      case "record":
        this.#m.recordsIn++;
        this.#record(e.value, e.timestamp, e.key, e.split, this.#seq++);
        return;
      case "watermark":
        this.#watermark(e.timestamp, this.#seq++);
        return;
      case "barrier":
        this.#snapshot();
        this.#downstream.next(e);
        return;
      case "end":
        this.#append(new Entry(this.#seq++, "end", undefined, 0, undefined, undefined, this.#segment++));
        this.#drain();
        return;
      default:
        // Side records and split announcements do not wait for calls.
        this.#downstream.next(e);
    }
  }

  complete(): void {
    if (this.#restored !== undefined) this.#reissue();
    this.#completing = true;
    this.#drain();
  }

  teardown(): void {
    this.#unregister?.();
    if (this.#closed) return;
    this.#closed = true;
    const reason = new Error(`operator "${this.#ctx.id}" stopped (the job was cancelled or failed)`);
    reason.name = "AbortError";
    for (let e = this.#head; e !== undefined; e = e.next) {
      e.timer?.();
      e.call?.abort(reason);
    }
    this.#head = this.#tail = undefined;
    this.#waiting = [];
    this.#keys.clear();
    this.#inFlight = this.#queued = 0;
    this.#am.inFlight = 0;
    this.#m.buffered = 0;
    if (this.#pressing) {
      this.#pressing = false;
      this.#job.flow.release(this.#who);
    }
    this.#wakeIdle();
  }

  /** Resolves once no record is queued (at once if none is). */
  #idle(): Promise<void> {
    if (this.#head === undefined || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #wakeIdle(): void {
    if (this.#idleWaiters.length > 0) for (const w of this.#idleWaiters.splice(0)) w();
  }

  // --- input

  #append(e: Entry): void {
    if (this.#tail === undefined) this.#head = e;
    else {
      this.#tail.next = e;
      e.prev = this.#tail;
    }
    this.#tail = e;
  }

  #watermark(timestamp: number, seq: number): void {
    this.#append(new Entry(seq, "watermark", undefined, timestamp, undefined, undefined, this.#segment++));
    this.#drain();
  }

  #record(value: unknown, timestamp: number, key: Key | undefined, split: string | undefined, seq: number): void {
    if (this.#mode === "per-key" && key === undefined) {
      throw new TypeError(`operator "${this.#ctx.id}": ordered "per-key" needs a keyed stream (use keyBy first)`);
    }
    const e = new Entry(seq, "record", value, timestamp, key, split, this.#segment);
    this.#append(e);
    if (this.#mode === "per-key") {
      const k = this.#keys.get(key as Key);
      if (k === undefined) this.#keys.set(key as Key, { first: e, last: e });
      else {
        k.last.keyNext = e;
        k.last = e;
      }
    }
    this.#m.buffered = ++this.#queued;
    if (this.#queued >= 2 * this.#capacity && !this.#pressing) {
      this.#pressing = true;
      this.#job.flow.press(this.#who);
    }
    if (this.#inFlight < this.#capacity && this.#waitingAt === this.#waiting.length) this.#start(e);
    else this.#waiting.push(e);
  }

  // --- calls

  #start(e: Entry): void {
    this.#am.inFlight = ++this.#inFlight;
    e.state = RUNNING;
    const cache = this.#cache;
    if (cache !== undefined) {
      const hit = cache.get(this.#cacheKeyOf(e.value));
      this.#am.cacheHits = cache.hits;
      this.#am.cacheMisses = cache.misses;
      if (hit !== undefined) {
        this.#succeeded(e, hit);
        return;
      }
    }
    this.#attempt(e);
  }

  #cacheKeyOf(value: unknown): string | number {
    return this.#cacheKey === undefined ? (value as string | number) : this.#cacheKey(value);
  }

  #attempt(e: Entry): void {
    const call = new CallContext(++e.attempt, performance.now());
    e.call = call;
    this.#am.calls++;
    const timeout = this.#timeoutMs;
    if (timeout !== undefined) {
      e.timer = this.#clock.setTimer(this.#clock.now() + timeout, () => {
        if (e.call !== call || this.#closed) return;
        this.#am.timeouts++;
        const err = new AsyncTimeoutError(`call timed out after ${timeout} ms`);
        call.abort(err);
        this.#failed(e, call, err);
      });
    }
    let result: unknown;
    try {
      result = this.#fn(e.value, call);
    } catch (err) {
      this.#failed(e, call, err);
      return;
    }
    if (result !== null && typeof result === "object" && typeof (result as PromiseLike<unknown>).then === "function") {
      (result as PromiseLike<unknown>).then(
        (v) => {
          if (e.call === call && !call.aborted) this.#succeeded(e, v);
        },
        (err: unknown) => {
          if (e.call === call && !call.aborted) this.#failed(e, call, err);
        },
      );
    } else this.#succeeded(e, result);
  }

  #settled(e: Entry): void {
    const call = e.call;
    if (call !== undefined) this.#am.observe((performance.now() - call.started) / 1000);
    e.timer?.();
    e.timer = undefined;
    e.call = undefined;
  }

  #succeeded(e: Entry, value: unknown): void {
    if (this.#closed) return;
    const attempted = e.call !== undefined;
    this.#settled(e);
    if (this.#many) {
      try {
        e.result = Array.from(value as Iterable<unknown>);
      } catch (err) {
        // Not an iterable (or one that throws): a fault of the function, not of the call; no retry.
        this.#finish(e, `result is not an iterable: ${message(err)}`, err);
        return;
      }
    } else e.result = value;
    if (attempted && this.#cache !== undefined && value !== undefined) this.#cache.set(this.#cacheKeyOf(e.value), value);
    this.#finish(e, undefined, undefined);
  }

  #failed(e: Entry, call: CallContext, err: unknown): void {
    if (this.#closed) return;
    this.#settled(e);
    const retry = this.#retry;
    if (retry !== undefined && call.attempt < retry.maxAttempts) {
      let again: boolean;
      try {
        again = retry.retryIf?.(err) ?? true;
      } catch (thrown) {
        this.#finish(e, `retryIf threw: ${message(thrown)}`, thrown);
        return;
      }
      if (again) {
        this.#am.retries++;
        const base = retry.delayMs ?? 0;
        const delay = retry.backoff === "exponential" ? Math.min(retry.maxDelayMs ?? Number.POSITIVE_INFINITY, base * 2 ** (call.attempt - 1)) : base;
        if (delay <= 0) this.#attempt(e);
        else
          e.timer = this.#clock.setTimer(this.#clock.now() + delay, () => {
            e.timer = undefined;
            if (!this.#closed) this.#attempt(e);
          });
        return;
      }
    }
    const attempts = call.attempt === 1 ? "" : ` (after ${call.attempt} attempts)`;
    this.#finish(e, `${message(err)}${attempts}`, err);
  }

  /** The record's call is over: success (`failure` undefined) or failure. Frees its slot and emits what may go out. */
  #finish(e: Entry, failure: string | undefined, cause: unknown): void {
    e.state = DONE;
    e.failure = failure;
    this.#am.inFlight = --this.#inFlight;
    if (failure !== undefined && this.#policy === "fail") {
      this.#fail(
        new UserFunctionError(`async function of operator "${this.#ctx.id}" failed: ${failure}`, {
          cause,
          details: { operator: this.#ctx.id },
        }),
      );
      return;
    }
    // Start the next waiting records before emitting, so the slots stay busy.
    this.#startWaiting();
    if (this.#closed) return;
    if (this.#mode === "ordered") {
      if (e === this.#head) this.#drain();
      return;
    }
    // Unordered and per key: out at once if it is in the first segment (and first of its key).
    const head = this.#head;
    if (head === undefined || e.segment !== head.segment) return;
    this.#emitFrom(e);
    this.#drain();
  }

  /** Starts waiting records while slots are free; not re-entered by calls that complete synchronously. */
  #startWaiting(): void {
    if (this.#starting) return;
    this.#starting = true;
    try {
      while (this.#inFlight < this.#capacity && this.#waitingAt < this.#waiting.length && !this.#closed) {
        const next = this.#waiting[this.#waitingAt++]!;
        if (this.#waitingAt === this.#waiting.length) {
          this.#waiting.length = 0;
          this.#waitingAt = 0;
        }
        this.#start(next);
      }
      // Records keep arriving while others wait (the queue never empties): drop the started ones from the front.
      if (this.#waitingAt > 1024 && this.#waitingAt * 2 > this.#waiting.length) {
        this.#waiting.splice(0, this.#waitingAt);
        this.#waitingAt = 0;
      }
    } finally {
      this.#starting = false;
    }
  }

  #fail(err: unknown): void {
    if (this.#closed) return;
    this.#downstream.error(err);
    this.teardown();
  }

  // --- output

  /** Emits `e` if it may go out now (it is done, and first of its key for "per-key"), then its key's followers. */
  #emitFrom(e: Entry | undefined): void {
    while (e !== undefined && e.state === DONE && !this.#closed) {
      if (this.#mode === "per-key") {
        const k = this.#keys.get(e.key as Key);
        if (k === undefined || k.first !== e) return;
      }
      const after = e.keyNext;
      this.#emitRecord(e);
      // The key's next record follows if it is done and in the first segment too.
      const head = this.#head;
      if (this.#mode !== "per-key" || after === undefined || head === undefined || after.segment !== head.segment) return;
      e = after;
    }
  }

  /** Emits a done record and unlinks it. */
  #emitRecord(e: Entry): void {
    this.#unlink(e);
    this.#m.buffered = --this.#queued;
    if (this.#mode === "per-key") {
      const k = this.#keys.get(e.key as Key)!;
      if (e.keyNext === undefined) this.#keys.delete(e.key as Key);
      else k.first = e.keyNext;
      e.keyNext = undefined;
    }
    if (this.#pressing && this.#queued <= this.#capacity) {
      this.#pressing = false;
      this.#job.flow.release(this.#who);
    }
    if (e.failure !== undefined) {
      this.#m.deadLetters++;
      this.#downstream.next(sideRecord(DEAD_LETTERS.id, e.value, e.timestamp, `${this.#ctx.id}: ${e.failure}`));
      return;
    }
    if (this.#many) {
      for (const v of e.result as O[]) {
        this.#m.recordsOut++;
        this.#out.send(v, e.timestamp, e.key, e.split);
      }
    } else {
      this.#m.recordsOut++;
      this.#out.send(e.result as O, e.timestamp, e.key, e.split);
    }
    e.result = undefined;
  }

  #unlink(e: Entry): void {
    if (e.prev === undefined) this.#head = e.next;
    else e.prev.next = e.next;
    if (e.next === undefined) this.#tail = e.prev;
    else e.next.prev = e.prev;
    e.prev = e.next = undefined;
  }

  /** Emits from the head what may go out: done records (in order), and watermarks and the end once reached. */
  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (let h = this.#head; h !== undefined && !this.#closed; h = this.#head) {
        if (h.kind === "record") {
          if (h.state !== DONE) break;
          if (this.#mode === "per-key") {
            // The head is first of its key (every earlier record of its key is out).
            this.#emitFrom(h);
          } else this.#emitRecord(h);
          continue;
        }
        this.#unlink(h);
        if (h.kind === "watermark") {
          this.#downstream.next(watermarkElement(h.timestamp));
          // A new first segment: its records that completed meanwhile go out now.
          if (this.#mode !== "ordered") this.#emitSegment();
        } else this.#downstream.next(END);
      }
    } finally {
      this.#draining = false;
    }
    if (this.#head === undefined) this.#wakeIdle();
    if (this.#head === undefined && this.#completing && !this.#closed) {
      this.#closed = true;
      if (this.#pressing) {
        this.#pressing = false;
        this.#job.flow.release(this.#who);
      }
      this.#unregister?.();
      this.#downstream.complete();
    }
  }

  /** Emits the done records of the first segment (unordered and per key). */
  #emitSegment(): void {
    const head = this.#head;
    if (head === undefined) return;
    const segment = head.segment;
    for (let e: Entry | undefined = head; e !== undefined && e.kind === "record" && e.segment === segment && !this.#closed; ) {
      const next: Entry | undefined = e.next;
      if (e.state === DONE) this.#emitFrom(e);
      e = next;
    }
  }

  // --- checkpoints

  /** Stores the inputs whose results are not out yet (and the watermarks between them) for the checkpoint. */
  #snapshot(): void {
    const now = new Set<number>();
    for (let e = this.#head; e !== undefined; e = e.next) {
      if (e.kind === "end") continue;
      now.add(e.seq);
      if (this.#stored.has(e.seq)) continue;
      const s: Stored =
        e.kind === "watermark"
          ? { w: e.timestamp }
          : { v: e.value, t: e.timestamp, ...(e.key === undefined ? {} : { k: e.key }), ...(e.split === undefined ? {} : { s: e.split }) };
      this.#table.put(e.seq, "", s);
    }
    for (const seq of this.#stored) if (!now.has(seq)) this.#table.delete(seq, "");
    this.#stored = now;
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
