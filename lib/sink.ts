/**
 * The sink contract. `write` returns a promise; the job bounds the number of unresolved writes per sink and
 * pauses the sources while the bound is reached, so pressure flows back to the sources instead of into a
 * queue. Sinks that take part in exactly-once (issue: checkpoints) also implement the two-phase-commit
 * methods, keyed by checkpoint id.
 *
 * A record the sink cannot take (its serialiser or a column extractor throws, a value has no encoding) is not
 * a sink failure: `write` throws a {@link BadRecordError} synchronously, before it changed anything, and the
 * sink operator sends that record to dead letters and goes on (or fails the job, under the policy "fail").
 * {@link encodeRecord} does the wrapping for a sink's per-record functions.
 *
 * Lifecycle: `open → write* (→ preCommit → commit | abort)* → flush → close` for a bounded input; a job that
 * fails or is cancelled skips `flush`. After a restart the same object goes through it again: `close()`, then
 * recovery (`commit` or `abort` of the restored checkpoint's pending transactions, with their handles, before
 * `open`), then `open()` and the replay from that checkpoint. So:
 *
 * - `close()` releases every connection, server, timer and in-flight retry of the run, and may come while
 *   `open()` is still under way (it then releases what `open` acquired).
 * - `open()` after `close()` must work as the first one: a new connection, nothing buffered from the failed
 *   run (its records are replayed), no failure of that run remembered, a server bound to the same port again.
 * - State that the replay depends on (the counter behind generated ids) comes from the restored
 *   checkpoint's handle through `commit`, or starts over when there is none — never from the failed run.
 * @module
 */
import type { StreamRecord } from "./element.ts";
import { BadRecordError, isGressError } from "./errors.ts";

/**
 * What a sink learns about its job when it opens.
 *
 * @example
 * ```ts
 * import { DEAD_LETTERS, Job, type Sink, type SinkContext, sinkFn } from "gress";
 *
 * // A batching sink that learns at flush which values the external system refused, and dead-letters them.
 * let ctx: SinkContext | undefined;
 * let batch: number[] = [];
 * const sink: Sink<number> = {
 *   name: "batched",
 *   open(c) {
 *     ctx = c;
 *   },
 *   write(v) {
 *     batch.push(v);
 *   },
 *   async flush() {
 *     for (const v of batch) if (v < 0) ctx?.deadLetter?.(v, 0, `negative value ${v} refused`);
 *     batch = [];
 *   },
 * };
 * const job = new Job({ name: "batched" });
 * const out = job.fromIterable([1, -2, 3]).sinkTo(sink);
 * out.sideOutput(DEAD_LETTERS).sinkTo(sinkFn("refused", (d) => console.log(d))); // -2
 * await job.run();
 * ```
 */
export interface SinkContext {
  /** The job's name (e.g. to derive ids that must differ between jobs). */
  readonly jobName: string;
  /** The checkpoint interval, when the job takes checkpoints. */
  readonly checkpointIntervalMs: number | undefined;
  /**
   * Dead-letters a record that the sink found bad only after `write` returned (a batching sink learns it from
   * the external system when the batch goes out): it goes to the sink's DEAD_LETTERS side output with the
   * reason, as a BadRecordError thrown by `write` would (and fails the job under the policy "fail"). Call it
   * before the flush or pre-commit that found it resolves, so that it comes before the checkpoint's barrier.
   */
  readonly deadLetter?: (value: unknown, timestamp: number, reason: string) => void;
}

/**
 * What `commit` reports when the external system had already aborted the pre-committed transaction on its
 * own (a Kafka transaction timeout): nothing of it is visible. `lost` says what it held, for the error
 * message. Recovery then rolls back to an older checkpoint to produce that output again.
 */
export interface CommitAborted {
  readonly aborted: true;
  readonly lost: string;
}

/**
 * A destination for results.
 *
 * @example
 * ```ts
 * import { fromIterable, type Sink } from "gress";
 *
 * // A sink with a batch flushed at the end of the input (and at each checkpoint, if it pre-commits).
 * const batch: number[] = [];
 * const sumSink: Sink<number> = {
 *   name: "sum",
 *   write(value) { batch.push(value); },
 *   flush() { console.log("sum", batch.reduce((a, b) => a + b, 0)); },
 * };
 * const stream = fromIterable([1, 2, 3]);
 * stream.sinkTo(sumSink);
 * await stream.job.run(); // sum 6
 * ```
 */
export interface Sink<T> {
  readonly name: string;
  /** Called before the first write; again after close() when the job restarts (see the module header). */
  open?(ctx?: SinkContext): void | Promise<void>;
  /** Writes one value. The returned promise resolves when the sink accepted it. */
  write(value: T, record: StreamRecord<T>): void | Promise<void>;
  /**
   * False when `write` is done with its `record` argument (the envelope; the value may be kept) once it
   * returns, also when it returns a promise: the job may then hand this sink one record object refilled for
   * every record instead of a new one each (see `Downstream.transient`). Default true: it may keep it.
   */
  readonly keepsRecords?: boolean;
  /** Called after the last write of a bounded input, before close. */
  flush?(): void | Promise<void>;
  /** Releases the run's resources (also while open() is under way); open() may follow on a restart. */
  close?(): void | Promise<void>;
  /** Two-phase commit: make everything written so far ready to commit under `checkpointId`. */
  preCommit?(checkpointId: number): Promise<unknown>;
  /**
   * Two-phase commit: commit what preCommit prepared. Idempotent. Resolves to {@link CommitAborted} (only
   * possible with `preCommitExpires`) when the transaction had been aborted by the external system instead.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: sinks that never report an abort keep returning Promise<void>
  commit?(checkpointId: number, handle: unknown): Promise<void | CommitAborted>;
  /**
   * True when the external system may abort a pre-committed transaction by itself (a transaction timeout).
   * Checkpoints commit such sinks before the others, so that when one was aborted no other sink has committed
   * that checkpoint yet, and recovery can roll back and produce it again without duplicates.
   */
  readonly preCommitExpires?: boolean;
  /** Two-phase commit: abort what preCommit prepared. Idempotent. */
  abort?(checkpointId: number, handle: unknown): Promise<void>;
  /**
   * The highest checkpoint id under which the external system holds this sink's committed output for job
   * `jobName` (its progress rows, its part files), or undefined when none. Asked on every start and restart,
   * before `open`; the job's checkpoint ids then continue above it. Sinks that recognise committed work by
   * checkpoint id need it: a job restored from an older savepoint into a fresh state directory would count
   * from the savepoint's id again, and a sink would take its new output for output it had already committed.
   */
  committedCheckpoint?(jobName: string): Promise<number | undefined>;
}

/**
 * A sink that calls a function for each value.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 *
 * const stream = fromIterable(["a", "b"]);
 * const seen: string[] = [];
 * stream.sinkTo(sinkFn("collect", (value) => { seen.push(value); }));
 * // An async function is awaited: at most maxInFlight writes are pending at once.
 * stream.sinkTo(sinkFn("slow", async (value) => { await new Promise((r) => setTimeout(r, 1)); }));
 * await stream.job.run();
 * ```
 */
export function sinkFn<T>(name: string, write: (value: T) => void | Promise<void>): Sink<T> {
  return { name, write: (value) => write(value), keepsRecords: false };
}

/**
 * Calls one of a sink's per-record functions (serialiser, key, column value, subject), turning a throw into
 * a {@link BadRecordError} that says what failed, so that the sink operator dead-letters the record. A
 * `JSON.stringify` of a value nested too deeply throws a RangeError (stack overflow) here, a cyclic one a
 * TypeError: neither may fail the job, or it would fail again on the same record after every restart.
 *
 * @example
 * ```ts
 * import { encodeRecord, type Sink } from "gress";
 *
 * // A sink's serialiser called through encodeRecord: a value it cannot serialise (a cycle, a BigInt) becomes a
 * // dead letter of the sink instead of failing the job.
 * const lines: string[] = [];
 * const ndjson: Sink<unknown> = {
 *   name: "ndjson",
 *   write(value) {
 *     lines.push(encodeRecord("serialise", JSON.stringify, value)); // throws BadRecordError("serialise failed: ...")
 *   },
 * };
 * ```
 * @param what the function, as the dead-letter reason names it (`serialise`, `column "amount"`)
 * @param fn the function
 * @param value the record's value
 * @returns what `fn` returned
 */
export function encodeRecord<T, R>(what: string, fn: (value: T) => R, value: T): R {
  try {
    return fn(value);
  } catch (err) {
    if (isGressError(err, "ERR_BAD_RECORD")) throw err;
    throw new BadRecordError(`${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
