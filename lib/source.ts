/**
 * The source contract. A source pushes values into a {@link SourceContext}; the job wraps that in an
 * Observable of elements. Sources that can replay (Kafka, NATS JetStream, files, the generator) report a
 * position per split, open from a position, and are acknowledged up to a position once a checkpoint that
 * contains it is durable.
 *
 * Lifecycle: `open → (pause/resume)* → close`, and after a restart `open` again on the same object:
 *
 * - `open(ctx, from)` starts a run. `from` holds the positions to start at: the restored checkpoint's (after
 *   a restart, the last completed checkpoint's), else the `from` option of `job.source`, else none — then the
 *   source starts at its configured start. It may resolve before the input ends (a server that listens).
 * - `pause()` / `resume()` may come at any time, also before `open` settles; `ctx.paused` tells the state
 *   at open.
 * - `close()` ends the run: stop emitting, release every connection, server, port, file and timer. It may
 *   come while `open` is still under way (the job failed or was cancelled meanwhile): it then waits for
 *   `open`, and releases what `open` acquired; `open` must go no further once it sees the close.
 * - `open` again after `close` (a restart, see the job's `restart` option) must work as the first `open`:
 *   reset in `open` whatever `close` ended (the closed flag, buffers, counters, the server), start from the
 *   `from` it is now given (not from where the closed run was), and ignore late callbacks of the closed run
 *   (a read or a message that arrives after close). The job calls `open` only after the previous `close`
 *   settled (or `closeTimeoutMs` passed: so `open` should wait for a close still releasing). A source that
 *   serves senders (HTTP, WebSocket) binds the same port again. `positions()` called while the new run opens
 *   must report where that run starts, never the closed run's position.
 *
 * Flow control: the job calls `pause()` when downstream is under pressure and `resume()` when it is not.
 * A source must stop emitting promptly while paused (the generator checks before every record).
 * @module
 */
import type { Clock } from "./clock.ts";
import { callTimestamp } from "./watermarks.ts";

/**
 * A source's position in one split (an offset, a sequence number, a byte offset...). JSON-serialisable.
 *
 * @example
 * ```ts
 * import type { Position, Positions } from "gress";
 *
 * // A position is plain data (a number, a string, an object of them), stored in checkpoints.
 * const offset: Position = 42;
 * const positions: Positions = { "orders-0": offset, "orders-1": 17 };
 * ```
 */
export type Position = string | number | boolean | null | readonly Position[] | { readonly [k: string]: Position };

/**
 * Position per split.
 *
 * @example
 * ```ts
 * import { Job, type Positions, rides } from "gress";
 *
 * // Where each split of a source is: restored from a checkpoint, or given to start a source elsewhere.
 * const from: Positions = { rides: 5_000 };
 * const job = new Job();
 * const stream = job.source(rides({ count: 10_000 }), { from }); // skips the first 5 000 events
 * ```
 */
export type Positions = Readonly<Record<string, Position>>;

/**
 * What a running source emits into. Call its methods on the object (`ctx.emit(v)`): they are methods of a
 * class, so a destructured `emit` has no context. To hand one to a callback, wrap it (`(v) => ctx.emit(v)`).
 *
 * @example
 * ```ts
 * import type { SourceContext } from "gress";
 *
 * // How a source pushes one line of input: a value with its event time, or a dead letter with the reason.
 * function onLine(ctx: SourceContext<{ at: number; text: string }>, line: string): void {
 *   if (ctx.ended) return;
 *   try {
 *     const value = JSON.parse(line) as { at: number; text: string };
 *     ctx.emit(value, value.at, "lines");
 *   } catch (err) {
 *     ctx.deadLetter(line, `not JSON: ${String(err)}`);
 *   }
 * }
 * ```
 */
export interface SourceContext<T> {
  /** Emits a value. `timestamp` defaults to the current processing time; `split` to the source's name. */
  emit(value: T, timestamp?: number, split?: string): void;
  /** Routes bad input to the dead-letter output with the reason, and counts it. Never throws. */
  deadLetter(value: unknown, reason: string): void;
  /**
   * A user function the source runs (a timestamp function...) threw `error` on `value`, or gave a bad result.
   * As for operators, the job's `onUserError` decides: the value goes to dead letters with a reason naming
   * `what` and the source, or the job fails with a UserFunctionError. Never throws. See {@link timestampOf}.
   */
  userError(value: unknown, error: unknown, what: string): void;
  /**
   * Announces the splits this source reads before their first records arrive. Per-split watermarks then wait
   * for every announced split (or its idleness), so the first split to deliver cannot make the others late.
   */
  announceSplits(splits: readonly string[]): void;
  /** Signals the end of a bounded input. */
  end(): void;
  /** Fails the job with this error. */
  fail(error: unknown): void;
  /** True while the job asks the source to hold back. */
  readonly paused: boolean;
  /**
   * True once the stream ended (the input finished, the job failed or was cancelled): emit() does nothing any
   * more, so a source should stop reading, and stop calling user functions, even before close() reaches it.
   */
  readonly ended: boolean;
  readonly clock: Clock;
}

/**
 * Calls a source's timestamp function: `fn(value, extra)`, if that is a finite number. Otherwise (it threw,
 * or gave NaN, Infinity or no number) reports it with `ctx.userError` and returns undefined: the source then
 * skips the value, which went to dead letters (or failed the job).
 *
 * @example
 * ```ts
 * import { type SourceContext, timestampOf } from "gress";
 *
 * type Line = { at: string; text: string };
 * // In a source: the user's timestamp function is called through timestampOf, so that a throw or a NaN sends
 * // the value to dead letters (or fails the job) instead of failing the source.
 * function emitLine(ctx: SourceContext<Line>, line: Line, lineNumber: number, timestamp: (l: Line, n: number) => number): void {
 *   const ts = timestampOf(ctx, line, timestamp, lineNumber);
 *   if (ts !== undefined) ctx.emit(line, ts);
 * }
 * ```
 */
export function timestampOf<V, X>(ctx: SourceContext<V>, value: V, fn: (value: V, extra: X) => number, extra: X): number | undefined {
  const ts = callTimestamp(fn, value, extra);
  if (typeof ts === "number") return ts;
  ctx.userError(value, ts.error, "timestamp function");
  return undefined;
}

/**
 * A source of values.
 *
 * @example
 * ```ts
 * import { Job, type Positions, sinkFn, type Source, type SourceContext } from "gress";
 *
 * // Counts from 0 to n - 1; replayable: its position is the next number.
 * class Counter implements Source<number> {
 *   readonly name = "counter";
 *   #next = 0;
 *   #paused = false;
 *   #ctx: SourceContext<number> | undefined;
 *   readonly n: number;
 *   constructor(n: number) {
 *     this.n = n;
 *   }
 *   open(ctx: SourceContext<number>, from?: Positions): void {
 *     this.#ctx = ctx;
 *     this.#next = Number(from?.[this.name] ?? 0);
 *     this.#pump();
 *   }
 *   #pump(): void {
 *     const ctx = this.#ctx;
 *     while (ctx !== undefined && !this.#paused && !ctx.ended && this.#next < this.n) ctx.emit(this.#next++);
 *     if (ctx !== undefined && this.#next >= this.n) ctx.end();
 *   }
 *   pause(): void { this.#paused = true; }
 *   resume(): void { this.#paused = false; this.#pump(); }
 *   positions(): Positions { return { [this.name]: this.#next }; }
 *   close(): void { this.#ctx = undefined; }
 * }
 *
 * const job = new Job();
 * job.source(new Counter(3)).sinkTo(sinkFn("print", (n) => console.log(n)));
 * await job.run(); // 0, 1, 2
 * ```
 */
export interface Source<T> {
  /** Unique within the job; used in metrics and checkpoints. */
  readonly name: string;
  /**
   * Starts producing (a run), from `from` if given (after a restore), else from the source's configured start.
   * Called again after close() when the job restarts: see the lifecycle in the module header.
   */
  open(ctx: SourceContext<T>, from?: Positions): void | Promise<void>;
  /** Stop emitting until resume(). */
  pause(): void;
  /** Continue after pause(). */
  resume(): void;
  /** Current position per split: everything before it has been emitted. Replayable sources only. */
  positions?(): Positions;
  /** Tells the upstream system that everything before `positions` is safely checkpointed. */
  ack?(positions: Positions): Promise<void>;
  /** Ends the run and releases its resources (also while open() is under way); open() may follow. */
  close(): void | Promise<void>;
  /**
   * How far a source with a known end has got, for progress bars (`gress run` on a terminal); undefined while
   * the end is unknown. Sources without an end (or that cannot tell) leave it out.
   */
  progress?(): SourceProgress | undefined;
  /**
   * Consumer lag of a source that reads partitioned logs (Kafka): per partition (its split name), the records
   * between the next offset the source will read and the partition's end as its last fetch saw it. Sources
   * keep it per fetch, never per record; partitions not fetched yet are left out.
   */
  lag?(): ReadonlyMap<string, number>;
  /**
   * Admitted and refused traffic per tenant of a source with quotas (HTTP, WebSocket): keyed by tenant id, or
   * by "*" for all tenants together unless the source was allowed per-tenant counts. Read at scrape time for
   * the `gress_source_quota_*` metrics; undefined without quotas.
   */
  tenantStats?(): ReadonlyMap<string, Readonly<SourceQuotaStats>> | undefined;
  /**
   * What a source that cannot pause (core NATS) holds while the job is paused, and what it had to drop. Read
   * at scrape time for the `gress_source_buffered_records`, `gress_source_spill_bytes`,
   * `gress_source_spilled_total` and `gress_source_dropped_total` metrics.
   */
  spillStats?(): SourceSpillStats;
}

/**
 * Buffer counts of a source that cannot pause (see {@link Source.spillStats}).
 *
 * @example
 * ```ts
 * import type { SourceSpillStats } from "gress";
 *
 * const held = (s: SourceSpillStats): number => s.memoryRecords + s.diskRecords;
 * ```
 */
export interface SourceSpillStats {
  /** Records waiting in memory now. */
  readonly memoryRecords: number;
  /** Records waiting in spill files now. */
  readonly diskRecords: number;
  /** Bytes the spill files take now. */
  readonly diskBytes: number;
  /** Records that went to the spill files so far. */
  readonly spilled: number;
  /** Records refused so far because memory and disk were full. */
  readonly dropped: number;
}

/**
 * Quota counts of one tenant of a source (see {@link Source.tenantStats}).
 *
 * @example
 * ```ts
 * import type { SourceQuotaStats } from "gress";
 *
 * const refusedShare = (s: SourceQuotaStats): number => s.refusedRecords / Math.max(1, s.admittedRecords + s.refusedRecords);
 * ```
 */
export interface SourceQuotaStats {
  /** Records of admitted batches (requests, messages). */
  readonly admittedRecords: number;
  readonly admittedBytes: number;
  /** Records of refused batches that were read (a request refused before its body was read adds none). */
  readonly refusedRecords: number;
  readonly refusedBytes: number;
  /** Batches refused. */
  readonly refusals: number;
}

/**
 * How far a bounded source has got: `done` of `total` in `unit` (records, bytes).
 *
 * @example
 * ```ts
 * import type { SourceProgress } from "gress";
 *
 * const percent = (p: SourceProgress): string => `${((100 * p.done) / p.total).toFixed(0)}% of ${p.total} ${p.unit}`;
 * ```
 */
export interface SourceProgress {
  readonly done: number;
  readonly total: number;
  readonly unit: "records" | "bytes";
}
