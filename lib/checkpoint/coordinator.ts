/**
 * The checkpoint coordinator: periodic, exactly-once checkpoints of a job on the LMDB state backend, and
 * recovery from the last one.
 *
 * One checkpoint, in order:
 *  1. between two turns of the event loop (no source is mid-batch, so no record is in flight in the
 *     synchronous pipeline) read every source's position and put a barrier into every source;
 *  2. the barriers pass through the operators in the same turn, so every operator's state now reflects
 *     exactly the records before them: capture the state backend's changes (synchronously);
 *  3. each sink drains its pending writes when its barrier arrives and pre-commits; wait for the handles;
 *  4. write the state changes, the positions and the sink handles in one LMDB transaction; wait for
 *     `flushed`;
 *  5. only then commit the sinks (idempotent) and acknowledge the sources.
 * A crash before 4 is durable replays from the previous checkpoint and aborts the pre-committed data (the
 * file sink deletes stale temporary files); a crash after it re-commits the recorded handles on restart.
 *
 * When every source has ended, a final checkpoint commits the rest, and only then does the input end.
 * Recovery happens when the job is created (positions for `job.source()`) and when it runs (pending sink
 * transactions); the time until records flow again is reported in `JobMetrics.recoverySeconds` and the log.
 * @module
 */
import { z } from "zod";
import type { CancelTimer, Clock } from "../clock.ts";
import { validate } from "../config.ts";
import { CheckpointError, ConfigError } from "../errors.ts";
import type { FlowControl } from "../flow.ts";
import type { JobMetrics } from "../metrics.ts";
import type { CommitAborted, Sink } from "../sink.ts";
import type { Positions, Source } from "../source.ts";
import type { StateBackend } from "../state/backend.ts";
import { LmdbStateBackend, type StateCapture } from "../state/lmdb.ts";
import { failpoint } from "./failpoints.ts";
import { restoreSavepointInto, type SavepointInfo, writeSavepointFrom } from "./savepoint.ts";
import { type CheckpointRecord, latestCheckpoint, listCheckpoints, recordCheckpoint } from "./storage.ts";

/**
 * Options of `new Job({ checkpoints })`.
 *
 * @example
 * ```ts
 * import { type CheckpointOptions, Job, lmdbState } from "gress";
 *
 * // Every 10 s, at least 2 s apart, keeping the last 3 checkpoints restorable.
 * const checkpoints: CheckpointOptions = { intervalMs: 10_000, minPauseMs: 2_000, retain: 3, timeoutMs: 30_000 };
 * const job = new Job({ name: "orders", state: lmdbState({ path: "state/orders" }), checkpoints });
 * ```
 */
export interface CheckpointOptions {
  /** Time between the start of two checkpoints, in ms of the job's Clock. */
  readonly intervalMs: number;
  /** Minimum time from the end of one checkpoint to the start of the next. Default 0. */
  readonly minPauseMs?: number;
  /**
   * Checkpoints kept restorable, the latest included. With more than 1, each checkpoint also records the
   * values it replaces (an undo log), so that `restoreCheckpoint` can go back to an older one, and so that
   * recovery can produce again the output of a checkpoint whose sink transaction the external system aborted
   * (see `recover`). Default 2 when the job has a two-phase-commit sink, else 1 (as in Flink).
   */
  readonly retain?: number;
  /**
   * Start from this retained checkpoint instead of the latest. The newer checkpoints are discarded; what
   * their sinks committed was committed, and the records after this checkpoint are processed again.
   */
  readonly restoreCheckpoint?: number;
  /** A checkpoint that does not complete within this time fails the job. Default 60 000. */
  readonly timeoutMs?: number;
  /** Start from this savepoint directory when the state directory holds no checkpoint of it yet. */
  readonly fromSavepoint?: string;
  /** Where recovery and failures are logged. Default: console.error. */
  readonly log?: (message: string) => void;
}

const optionsSchema = z.strictObject({
  intervalMs: z.number().positive(),
  minPauseMs: z.number().nonnegative().optional(),
  retain: z.number().int().positive().optional(),
  restoreCheckpoint: z.number().int().positive().optional(),
  timeoutMs: z.number().positive().optional(),
  fromSavepoint: z.string().min(1).optional(),
  log: z.custom<(m: string) => void>((f) => typeof f === "function", "a function").optional(),
});

/**
 * A sink taking part in checkpoints; created by the sink operator.
 *
 * @example
 * ```ts
 * import { Job, lmdbState, type SinkParticipant } from "gress";
 *
 * // How a sink operator takes part in checkpoints (the built-in sink operator does this for every sink).
 * const job = new Job({ name: "j", state: lmdbState({ path: "state/j" }), checkpoints: { intervalMs: 1_000 } });
 * const participant: SinkParticipant | undefined = job.checkpoints?.registerSink({ name: "my-sink", write() {} });
 * ```
 */
export interface SinkParticipant {
  /** The sink operator reports the promise of its pre-commit for a checkpoint. */
  prepared(checkpointId: number, handle: Promise<unknown>): void;
  /** The sink operator's barrier handler, for sinks whose input dropped the barrier. */
  attach(onBarrier: (checkpointId: number) => void): void;
}

interface SinkEntry {
  readonly sink: Sink<unknown>;
  onBarrier: ((checkpointId: number) => void) | undefined;
  readonly handles: Map<number, Promise<unknown>>;
}

/**
 * Statistics of one completed checkpoint.
 *
 * @example
 * ```ts
 * import type { CheckpointStats } from "gress";
 *
 * // One completed checkpoint of this run (job.checkpoints.history).
 * const slow = (history: readonly CheckpointStats[]): CheckpointStats[] => history.filter((c) => c.durationSeconds > 1);
 * ```
 */
export interface CheckpointStats {
  readonly id: number;
  readonly changedEntries: number;
  readonly durationSeconds: number;
  readonly final: boolean;
}

/**
 * Commits checkpoints through an external transaction (a scale-out task's Kafka transaction, see
 * lib/scaleout/task-checkpoint.ts). `commit` runs once every sink has pre-committed, before the state is written
 * to LMDB: its success is the checkpoint's commit point, and LMDB becomes a cache written after it. It returns
 * what to write into the LMDB transaction's metadata besides the checkpoint record. A failure fails the
 * checkpoint (nothing is written to LMDB).
 */
export interface CheckpointCommitter {
  commit(record: CheckpointRecord, capture: StateCapture): Promise<(() => void) | undefined>;
}

/** A source as the checkpoint coordinator sees it while the job runs. */
export interface RunningSource {
  readonly source: Source<unknown>;
  /** Puts a checkpoint barrier into the source's stream, in order with its records. */
  injectBarrier(checkpointId: number): void;
  /** True once the source emitted its last record (bounded input). */
  readonly finished: boolean;
}

/** The job as the checkpoint coordinator sees it (implemented by `Job`). */
export interface CheckpointedJob {
  readonly name: string;
  readonly clock: Clock;
  readonly state: StateBackend;
  readonly metrics: JobMetrics;
  readonly flow: FlowControl;
  /** Sources registered so far: each must report positions. */
  readonly sources: readonly Source<unknown>[];
  /** The sources running now, into which barriers are injected. */
  readonly runningSources: readonly RunningSource[];
  /** Fails the running job (a checkpoint failed). */
  fail(error: unknown): void;
}

/**
 * Coordinates checkpoints and recovery of one job. Created by the Job when `checkpoints` is set.
 *
 * @example
 * ```ts
 * import { Job, lmdbState } from "gress";
 *
 * const job = new Job({ name: "orders", state: lmdbState({ path: "state/orders" }), checkpoints: { intervalMs: 5_000 } });
 * job.fromIterable([1, 2, 3]).sinkTo({ name: "s", write() {} });
 * await job.run();
 * // The coordinator of a checkpointed job: what it restored, and the checkpoints of this run.
 * console.log(job.checkpoints?.restored?.id, job.checkpoints?.history.map((c) => c.id));
 * ```
 */
export class CheckpointCoordinator {
  readonly job: CheckpointedJob;
  readonly backend: LmdbStateBackend;
  /** The checkpoint the job restored on start (after a restart: the one it restarted from; after recovery
   * rolled back: that older one), if any. */
  get restored(): CheckpointRecord | undefined {
    return this.#restored;
  }
  #restored: CheckpointRecord | undefined;
  readonly #interval: number;
  readonly #minPause: number;
  readonly #retainOption: number | undefined;
  readonly #timeout: number;
  readonly #log: (message: string) => void;
  readonly #sinks = new Map<string, SinkEntry>();
  readonly #finished = new Map<RunningSource, () => void>();
  /** What the final checkpoint waits for: operators still working on records (see beforeFinal). */
  readonly #beforeFinal = new Set<() => Promise<void>>();
  #started: number;
  /** Counts restarts: a checkpoint of an earlier attempt that fails late must not fail the next one. */
  #generation = 0;
  /** Cuts short the wait of the checkpoint under way for its sinks' pre-commits (on restart). */
  #abortWait: ((error: unknown) => void) | undefined;
  #lastId: number;
  #savepointId: string | undefined;
  #timer: CancelTimer | undefined;
  #inProgress: Promise<void> | undefined;
  #running = false;
  #finalTaken = false;
  #recovering = false;
  #urgent = false;
  #committer: CheckpointCommitter | undefined;
  /** Completed checkpoints of this run. */
  readonly history: CheckpointStats[] = [];

  constructor(job: CheckpointedJob, options: CheckpointOptions) {
    this.#started = performance.now();
    this.job = job;
    const o = validate(optionsSchema, options, "checkpoints");
    if (!(job.state instanceof LmdbStateBackend)) {
      throw new ConfigError(`job "${job.name}": checkpoints need a durable state backend (lmdbState), not "${job.state.kind}"`, [
        { path: ["checkpoints"], code: "custom", message: "needs state: lmdbState({ path })" },
      ]);
    }
    this.backend = job.state;
    this.#interval = o.intervalMs;
    this.#minPause = o.minPauseMs ?? 0;
    this.#retainOption = o.retain;
    this.#timeout = o.timeoutMs ?? 60_000;
    this.#log = o.log ?? ((m) => console.error(`gress: ${m}`));
    if (o.fromSavepoint !== undefined && o.restoreCheckpoint !== undefined) {
      throw new ConfigError(`job "${job.name}": give fromSavepoint or restoreCheckpoint, not both`, [
        { path: ["checkpoints", "restoreCheckpoint"], code: "custom", message: "conflicts with fromSavepoint" },
      ]);
    }
    if (o.restoreCheckpoint !== undefined) this.#rollBack(o.restoreCheckpoint);
    this.#restored = this.#restore(o.fromSavepoint);
    // Checkpoint ids are never reused, also after a roll-back: sinks recognise committed work by them.
    const issued = this.backend.meta.get("issued");
    this.#lastId = Math.max(this.restored?.id ?? 0, typeof issued === "number" ? issued : 0);
    this.#savepointId = this.restored?.savepoint;
    this.backend.onDirtyLimit(() => this.#requestUrgent());
  }

  /** Rolls the state directory back to retained checkpoint `target` (see CheckpointOptions.restoreCheckpoint). */
  #rollBack(target: number): void {
    const meta = this.backend.meta;
    const latest = latestCheckpoint(meta);
    const retained = listCheckpoints(meta).map((r) => r.id);
    if (latest === undefined || !retained.includes(target)) {
      throw new CheckpointError(
        `state directory "${this.backend.path}" has no checkpoint ${target} to restore; it keeps ${retained.length === 0 ? "none" : retained.join(", ")}`,
      );
    }
    if (target === latest.id) return;
    const newer = retained.filter((id) => id > target);
    const missing = newer.filter((id) => !this.backend.hasUndo(id));
    if (missing.length > 0) {
      throw new CheckpointError(
        `checkpoint ${target} can no longer be restored: checkpoint${missing.length > 1 ? "s" : ""} ${missing.join(", ")} kept no undo log (was retain below ${latest.id - target + 1}?)`,
      );
    }
    this.backend.rollback(newer, () => {
      for (const id of newer) meta.remove(["checkpoint", id]);
      meta.put("latest", target);
      meta.put("issued", Math.max(latest.id, (meta.get("issued") as number | undefined) ?? 0));
    });
    this.#log(`rolled back to checkpoint ${target}; discarded checkpoint${newer.length > 1 ? "s" : ""} ${newer.join(", ")}`);
  }

  /** Makes `committer` the commit point of every checkpoint from now on (scale-out tasks; set before run()). */
  commitThrough(committer: CheckpointCommitter): void {
    this.#committer = committer;
  }

  /** Checkpoints kept (see CheckpointOptions.retain); sinks register while the pipeline is built, before run(). */
  get retain(): number {
    return this.#retainOption ?? ([...this.#sinks.values()].some((e) => e.sink.preCommit !== undefined) ? 2 : 1);
  }

  /** The checkpoint interval, in ms. */
  get intervalMs(): number {
    return this.#interval;
  }

  /**
   * The order in which a checkpoint's sinks are committed: sinks whose pre-commit may expire first, so that
   * when one of them lost its transaction no other sink has committed the same checkpoint yet.
   */
  #commitOrder<E extends readonly [string, unknown]>(entries: readonly E[]): E[] {
    const expires = (name: string): boolean => this.#sinks.get(name)?.sink.preCommitExpires === true;
    return [...entries.filter(([n]) => expires(n)), ...entries.filter(([n]) => !expires(n))];
  }

  /** The oldest checkpoint still retained once checkpoint `id` is recorded. */
  #oldestKept(id: number): number {
    const ids = [...listCheckpoints(this.backend.meta).map((r) => r.id), id];
    return ids[Math.max(0, ids.length - this.retain)]!;
  }

  #restore(fromSavepoint: string | undefined): CheckpointRecord | undefined {
    const meta = this.backend.meta;
    if (this.backend.hasUncheckpointedState && fromSavepoint === undefined) {
      throw new CheckpointError(
        `state directory "${this.backend.path}" holds state written without checkpoints (or an interrupted savepoint restore); remove it, or restore a savepoint into it`,
      );
    }
    const latest = latestCheckpoint(meta);
    if (fromSavepoint === undefined) return latest;
    const info = restoreSavepointInto(fromSavepoint, this.backend, this.job.name, latest);
    if (info.restoredNow) this.#log(`restored savepoint ${info.savepoint.id} (checkpoint ${info.savepoint.checkpointId}) from ${fromSavepoint}`);
    return latestCheckpoint(meta);
  }

  /** The positions a source starts from after recovery, or undefined for a fresh start. */
  positionsOf(sourceName: string): Positions | undefined {
    return this.restored?.positions[sourceName];
  }

  /** Retained checkpoint records, oldest first. */
  checkpoints(): CheckpointRecord[] {
    return listCheckpoints(this.backend.meta);
  }

  /** Registers a sink (called by the sink operator at pipeline construction). */
  registerSink(sink: Sink<unknown>): SinkParticipant {
    if (this.#sinks.has(sink.name)) throw new ConfigError(`job "${this.job.name}": two sinks are named "${sink.name}"; checkpoints key sink transactions by name`, [{ path: ["sink", "name"], code: "custom", message: "sink names must be unique" }]);
    const entry: SinkEntry = { sink, onBarrier: undefined, handles: new Map() };
    this.#sinks.set(sink.name, entry);
    return {
      prepared: (id, handle) => {
        if (!entry.handles.has(id)) entry.handles.set(id, handle);
      },
      attach: (onBarrier) => {
        entry.onBarrier = onBarrier;
      },
    };
  }

  /** Resolves the restored checkpoint's pending sink transactions. Called by `job.run()` before sources open. */
  async recover(): Promise<void> {
    const cp = this.restored;
    for (const rs of this.job.sources) {
      if (rs.positions === undefined) {
        throw new ConfigError(`job "${this.job.name}": source "${rs.name}" cannot report positions, so it cannot be checkpointed`, [
          { path: ["source", rs.name], code: "custom", message: "a replayable source (positions/open from) is needed" },
        ]);
      }
    }
    if (cp !== undefined) await this.#commitRestored(cp);
    await this.#continueIds();
  }

  /**
   * Makes the next checkpoint ids higher than any a sink has committed output under (see
   * Sink.committedCheckpoint): after a restore of an older savepoint into a fresh state directory, the restored
   * id is below what the job had reached, and reusing those ids would make a sink skip, or overwrite, output.
   */
  async #continueIds(): Promise<void> {
    for (const [name, { sink }] of this.#sinks) {
      if (sink.committedCheckpoint === undefined) continue;
      let top: number | undefined;
      try {
        top = await sink.committedCheckpoint(this.job.name);
      } catch (err) {
        throw new CheckpointError(`recovery: sink "${name}" could not tell its last committed checkpoint: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      if (top !== undefined && top > this.#lastId) {
        this.#log(`sink "${name}" holds committed output of checkpoint ${top} (an earlier run${this.restored === undefined ? "" : `, past the restored checkpoint ${this.restored.id}`}): checkpoint ids continue from ${top + 1}`);
        this.#lastId = top;
      }
    }
  }

  /** Commits the restored checkpoint's pending sink transactions (they are idempotent). */
  async #commitRestored(cp: CheckpointRecord): Promise<void> {
    this.#recovering = true;
    const entries = this.#commitOrder(Object.entries(cp.sinks));
    const committed: string[] = [];
    let n = 0;
    for (const [name, handle] of entries) {
      // Half-way through, a crash here must leave the commits retryable (they are idempotent).
      if (n++ === entries.length >> 1) failpoint("recovery");
      const entry = this.#sinks.get(name);
      if (entry === undefined) {
        this.#log(`checkpoint ${cp.id}: sink "${name}" is not in the job any more; its pending transaction stays uncommitted`);
        continue;
      }
      let result: unknown;
      try {
        result = await entry.sink.commit?.(cp.id, handle);
      } catch (err) {
        throw new CheckpointError(`recovery: sink "${name}" failed to commit checkpoint ${cp.id}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      const aborted = result as CommitAborted | undefined;
      if (aborted?.aborted === true) return this.#produceAgain(cp, name, aborted.lost, committed, entries.slice(n));
      committed.push(name);
    }
    if (entries.length === 0) failpoint("recovery");
  }

  /**
   * Sink `name`'s transaction of checkpoint `cp` was aborted by the external system (a Kafka transaction
   * timeout while the job was down), so its output of that checkpoint is gone. Rolls state and positions back
   * to the retained checkpoint before `cp`, so that the records after it are processed and written again,
   * after aborting the pending transactions of the sinks not committed yet (`rest`). Impossible, and a
   * CheckpointError that says what was lost, when another sink committed `cp` already (its output would be
   * written twice) or when no older checkpoint can be restored.
   */
  async #produceAgain(cp: CheckpointRecord, name: string, lost: string, committed: readonly string[], rest: readonly (readonly [string, unknown])[]): Promise<void> {
    const what = `checkpoint ${cp.id}: the transaction of sink "${name}" was aborted before it could be committed (${lost})`;
    const meta = this.backend.meta;
    if (committed.length > 0) {
      const others = committed.map((n) => `"${n}"`).join(", ");
      throw new CheckpointError(
        `${what}. That output is lost: it cannot be produced again without writing twice what sink${committed.length > 1 ? "s" : ""} ${others} committed for the same checkpoint. The job stops here; the state directory still holds checkpoint ${cp.id}`,
        { details: { checkpoint: cp.id, sink: name, lost, committed } },
      );
    }
    const older = listCheckpoints(meta).filter((r) => r.id < cp.id);
    const target = older[older.length - 1];
    if (target === undefined || !this.backend.hasUndo(cp.id)) {
      const why =
        target === undefined
          ? `no checkpoint before ${cp.id} is retained to process those records again from`
          : `checkpoint ${target.id} can no longer be restored (checkpoint ${cp.id} was taken without an undo log: retain was 1)`;
      throw new CheckpointError(`${what}. That output is lost: ${why}. The job stops here; the state directory still holds checkpoint ${cp.id}`, {
        details: { checkpoint: cp.id, sink: name, lost },
      });
    }
    // The sinks after this one were not committed (commits go in this order): their output comes again too.
    for (const [other, handle] of rest) {
      try {
        await this.#sinks.get(other)?.sink.abort?.(cp.id, handle);
      } catch (err) {
        throw new CheckpointError(`recovery: sink "${other}" failed to abort checkpoint ${cp.id}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
    this.#log(`${what}; processing the records after checkpoint ${target.id} again to produce it`);
    this.#rollBack(target.id);
    this.#restored = latestCheckpoint(meta);
    this.#savepointId = this.#restored?.savepoint;
  }

  /**
   * Prepares a restart of the job in the same process (called by job.run() before the next attempt): waits for
   * a checkpoint still under way (its wait for the failed attempt's sinks is cut short), drops the state
   * changes made since the last completed checkpoint, and makes that checkpoint the one that recovery and the
   * sources start from. A checkpoint that completed while the attempt failed counts.
   */
  async restart(): Promise<void> {
    this.stop();
    this.#generation++;
    this.#abortWait?.(new CheckpointError("checkpoint abandoned: the job restarts"));
    await this.#inProgress?.catch(() => {});
    this.backend.discardUncommitted();
    this.#restored = latestCheckpoint(this.backend.meta);
    this.#savepointId = this.#restored?.savepoint;
    this.#finished.clear();
    this.#finalTaken = false;
    if (this.#urgent) {
      this.#urgent = false;
      this.job.flow.release("checkpoint:dirty-state");
    }
    for (const entry of this.#sinks.values()) {
      entry.handles.clear();
      entry.onBarrier = undefined;
    }
    this.#started = performance.now();
  }

  /** Fails the job with a checkpoint's error, unless the job restarted since the checkpoint began. */
  #failJob(generation: number, error: unknown): void {
    if (generation === this.#generation) this.job.fail(error);
  }

  /** Called once when records flow again after start; ends the recovery measurement. */
  processing(): void {
    if (!this.#recovering) return;
    this.#recovering = false;
    const seconds = (performance.now() - this.#started) / 1000;
    this.job.metrics.recoverySeconds = seconds;
    const cp = this.restored;
    if (cp !== undefined) this.#log(`job "${this.job.name}" recovered checkpoint ${cp.id} in ${(seconds * 1000).toFixed(1)} ms`);
  }

  /** Starts the periodic checkpoints (called by `job.run()`). */
  start(): void {
    this.#running = true;
    this.#schedule(this.#interval);
  }

  /** Stops the periodic checkpoints. */
  stop(): void {
    this.#running = false;
    this.#timer?.();
    this.#timer = undefined;
  }

  /** A source has ended: when all have, take the final checkpoint, then let the input end. */
  sourceFinished(source: RunningSource, end: () => void): void {
    this.#finished.set(source, end);
    if (this.job.runningSources.every((s) => s.finished)) void this.#finish();
  }

  /**
   * Registers an operator that still produces output after the input ended (an async operator's calls in
   * flight): the final checkpoint waits until `idle()` resolves, so that it commits that output too, as
   * Flink's endInput drains async operators. Returns the function that unregisters it.
   */
  beforeFinal(idle: () => Promise<void>): () => void {
    this.#beforeFinal.add(idle);
    return () => this.#beforeFinal.delete(idle);
  }

  async #finish(): Promise<void> {
    if (this.#finalTaken) return;
    this.#finalTaken = true;
    this.stop();
    const generation = this.#generation;
    try {
      await this.#inProgress;
      await Promise.all([...this.#beforeFinal].map((idle) => idle()));
      if (generation !== this.#generation) return;
      await this.trigger(true);
    } catch (err) {
      return this.#failJob(generation, err);
    }
    if (generation !== this.#generation) return;
    const ends = [...this.#finished.values()];
    this.#finished.clear();
    for (const end of ends) end();
  }

  #schedule(delay: number): void {
    if (!this.#running) return;
    this.#timer?.();
    const clock = this.job.clock;
    this.#timer = clock.setTimer(clock.now() + delay, () => {
      this.#timer = undefined;
      if (this.#inProgress !== undefined || this.#finalTaken) return;
      const generation = this.#generation;
      this.trigger(false).catch((err: unknown) => this.#failJob(generation, err));
    });
  }

  #requestUrgent(): void {
    // The dirty set is full: checkpoint now, and hold the sources until it is captured.
    this.#urgent = true;
    this.job.flow.press("checkpoint:dirty-state");
    if (this.#inProgress === undefined && this.#running) this.#schedule(0);
  }

  /**
   * Takes one checkpoint now (see the module comment). Resolves when it is durable, the sinks committed and
   * the sources acknowledged. Normally driven by the interval; `final` marks the end-of-input checkpoint.
   */
  trigger(final = false): Promise<void> {
    if (this.#inProgress !== undefined) return this.#inProgress.then(() => this.trigger(final));
    const p = this.#checkpoint(final).finally(() => {
      this.#inProgress = undefined;
    });
    this.#inProgress = p;
    return p;
  }

  async #checkpoint(final: boolean): Promise<void> {
    // Capture at a record boundary. trigger() may be called while a record is on its way through the
    // pipeline (from a user function, a sink, a timer run by it): positions, barriers and state captured
    // there would split that record. Sources emit synchronously, so after this no record is half-processed.
    await Promise.resolve();
    const clock = this.job.clock;
    const began = performance.now();
    const id = ++this.#lastId;
    if (id > 1 || this.restored !== undefined) failpoint("between-checkpoints");
    const sources = this.job.runningSources;
    const positions: Record<string, Positions> = {};
    for (const s of sources) positions[s.source.name] = s.source.positions?.() ?? {};
    for (const s of sources) s.injectBarrier(id);
    // Sinks whose input dropped the barrier (a filter on side outputs) are aligned directly: the pipeline is
    // synchronous, so they have seen every record before it.
    for (const entry of this.#sinks.values()) if (!entry.handles.has(id)) entry.onBarrier?.(id);
    const capture = this.backend.capture();
    if (this.#urgent) {
      this.#urgent = false;
      this.job.flow.release("checkpoint:dirty-state");
    }
    let cancelTimeout: CancelTimer | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      cancelTimeout = clock.setTimer(clock.now() + this.#timeout, () =>
        reject(new CheckpointError(`checkpoint ${id} did not complete within ${this.#timeout} ms`)),
      );
    });
    timedOut.catch(() => {});
    const abandoned = new Promise<never>((_, reject) => {
      this.#abortWait = reject;
    });
    abandoned.catch(() => {});
    try {
      const sinks: Record<string, unknown> = {};
      const names: string[] = [];
      const pending: Promise<unknown>[] = [];
      for (const [name, entry] of this.#commitOrder([...this.#sinks])) {
        const h = entry.handles.get(id);
        if (h === undefined) continue;
        entry.handles.delete(id);
        names.push(name);
        pending.push(h);
      }
      const handles = await Promise.race([Promise.all(pending), timedOut, abandoned]);
      this.#abortWait = undefined;
      names.forEach((name, i) => {
        if (handles[i] !== undefined) sinks[name] = handles[i];
      });
      const record: CheckpointRecord = {
        id,
        job: this.job.name,
        at: clock.now(),
        positions,
        sinks,
        final,
        changedEntries: capture.entries,
        ...(this.#savepointId === undefined ? {} : { savepoint: this.#savepointId }),
      };
      const committed = this.#committer === undefined ? undefined : await Promise.race([this.#committer.commit(record, capture), timedOut]);
      await Promise.race([
        this.backend.commit(
          capture,
          () => {
            recordCheckpoint(this.backend.meta, record, this.retain);
            committed?.();
          },
          () => failpoint("checkpoint-snapshot"),
          // An older checkpoint stays restorable while the undo logs of every newer one are kept.
          this.retain > 1 ? { id, keepFrom: this.#oldestKept(id) + 1 } : undefined,
        ),
        timedOut,
      ]);
      failpoint("after-commit");
      await this.backend.flushed();
      failpoint("after-flush");
      for (const [name, handle] of Object.entries(sinks)) await this.#sinks.get(name)?.sink.commit?.(id, handle);
      failpoint("after-sink-commit");
      for (const s of sources) {
        const pos = positions[s.source.name];
        if (pos !== undefined) await s.source.ack?.(pos);
      }
    } catch (err) {
      throw err instanceof CheckpointError ? err : new CheckpointError(`checkpoint ${id} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    } finally {
      this.#abortWait = undefined;
      cancelTimeout?.();
    }
    const durationSeconds = (performance.now() - began) / 1000;
    this.job.metrics.lastCheckpointDurationSeconds = durationSeconds;
    this.job.metrics.checkpointCompleted(id, capture.entries);
    this.history.push({ id, changedEntries: capture.entries, durationSeconds, final });
    if (this.history.length > 100) this.history.shift();
    if (!final) {
      const sinceStart = durationSeconds * 1000;
      this.#schedule(this.#urgent ? 0 : Math.max(this.#minPause, this.#interval - sinceStart));
    }
  }

  /** Takes a checkpoint now and writes it as a savepoint into `dir` (which must not exist or be empty). */
  async savepoint(dir: string): Promise<SavepointInfo> {
    await this.trigger(false);
    const cp = latestCheckpoint(this.backend.meta);
    if (cp === undefined) throw new CheckpointError("no checkpoint to write as a savepoint");
    return writeSavepointFrom(this.backend, cp, dir);
  }
}
