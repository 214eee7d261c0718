/**
 * A job: the environment a pipeline runs in, like Flink's StreamExecutionEnvironment. It owns the clock,
 * the state backend, the metrics registry and flow control; it creates sources, numbers operators, and runs
 * every sink registered on it.
 *
 * Sources start on the next microtask after they are subscribed, so that `run()` can subscribe every branch
 * of the pipeline first and no branch misses the beginning.
 *
 * @example
 * ```ts
 * const job = new Job({ name: "clicks" });
 * job.fromIterable([1, 2, 3]).map((x) => x * 2).sinkTo(sinkFn("log", console.log));
 * await job.run();
 * ```
 * @module
 */
import type { Observable, Subscription } from "rxjs";
import { z } from "zod";
import { type CheckpointOptions, CheckpointCoordinator } from "./checkpoint/coordinator.ts";
import { type Clock, SystemClock } from "./clock.ts";
import { validate } from "./config.ts";
import { END, type Element, record, sideRecord, DEAD_LETTERS, MAX_WATERMARK, watermark } from "./element.ts";
import { GressError, SourceError } from "./errors.ts";
import { FlowControl } from "./flow.ts";
import { JobMetrics, type OperatorMetrics } from "./metrics.ts";
import { DirectSource } from "./operate.ts";
import { runSoon } from "./runtime.ts";
import type { Positions, Source, SourceContext } from "./source.ts";
import type { StateBackend } from "./state/backend.ts";
import { MemoryStateBackend } from "./state/memory.ts";
import { Stream } from "./stream.ts";

/** What to do when a user function throws on a record. */
export type UserErrorPolicy = "dead-letter" | "fail";

/** Options of a job. */
export interface JobOptions {
  /** Job name, used in metrics and checkpoints. Default "gress". */
  readonly name?: string;
  /** Processing time. Default: the system clock. */
  readonly clock?: Clock;
  /** Keyed state. Default: in memory. */
  readonly state?: StateBackend;
  /** Default bound on unacknowledged writes per sink. Default 1024. */
  readonly maxInFlight?: number;
  /** A throwing map/filter/... sends the record to dead letters (default) or fails the job. */
  readonly onUserError?: UserErrorPolicy;
  /**
   * Periodic checkpoints and recovery (needs the `lmdb` state backend). With them the job restores its last
   * completed checkpoint on start and gives exactly-once results with replayable sources and 2PC sinks.
   */
  readonly checkpoints?: CheckpointOptions;
}

const jobOptionsSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, '_', '.' or '-'")
    .optional(),
  clock: z.custom<Clock>((c) => typeof (c as Clock)?.now === "function", "a Clock").optional(),
  state: z.custom<StateBackend>((s) => typeof (s as StateBackend)?.table === "function", "a StateBackend").optional(),
  maxInFlight: z.number().int().positive().optional(),
  onUserError: z.enum(["dead-letter", "fail"]).optional(),
  checkpoints: z.custom<CheckpointOptions>((c) => typeof c === "object" && c !== null, "checkpoint options").optional(),
});

/** What every operator gets from its job. */
export interface OperatorContext {
  readonly id: string;
  readonly job: Job;
  readonly clock: Clock;
  readonly state: StateBackend;
  readonly metrics: OperatorMetrics;
  readonly onUserError: UserErrorPolicy;
}

/** Options of `job.source()`. */
export interface SourceOptions {
  /** Start positions, e.g. from a restored checkpoint. */
  readonly from?: Positions;
}

/** A source as the checkpoint coordinator sees it while the job runs. */
export interface RunningSource {
  readonly source: Source<unknown>;
  /** Puts a checkpoint barrier into the source's stream, in order with its records. */
  injectBarrier(checkpointId: number): void;
  /** True once the source emitted its last record (bounded input). */
  readonly finished: boolean;
}

interface RegisteredSource {
  readonly source: Source<unknown>;
}

/** A runnable job. */
export class Job {
  readonly name: string;
  readonly clock: Clock;
  readonly state: StateBackend;
  readonly metrics: JobMetrics;
  readonly flow: FlowControl = new FlowControl();
  readonly maxInFlight: number;
  readonly onUserError: UserErrorPolicy;
  /** The checkpoint coordinator, when the job was created with `checkpoints`. */
  readonly checkpoints: CheckpointCoordinator | undefined;
  readonly #operatorIds = new Set<string>();
  readonly #counters = new Map<string, number>();
  readonly #sources: RegisteredSource[] = [];
  readonly #runners: (() => Observable<unknown>)[] = [];
  #subscriptions: Subscription[] = [];
  readonly #running = new Set<RunningSource>();
  #fail: ((error: unknown) => void) | undefined;
  #cancelled: (() => void) | undefined;

  constructor(options: JobOptions = {}) {
    const o = validate(jobOptionsSchema, options, "job");
    this.name = o.name ?? "gress";
    this.clock = o.clock ?? new SystemClock();
    this.state = o.state ?? new MemoryStateBackend();
    this.maxInFlight = o.maxInFlight ?? 1024;
    this.onUserError = o.onUserError ?? "dead-letter";
    this.metrics = new JobMetrics(this.name);
    // Last: recovery reads the last checkpoint now, so that sources created next start from its positions.
    this.checkpoints = o.checkpoints === undefined ? undefined : new CheckpointCoordinator(this, o.checkpoints);
  }

  /**
   * Allocates the id of a new operator. Ids are `kind-N` in construction order unless the user gives a
   * `uid`; state and checkpoints are stored under them, so a uid keeps state across pipeline edits.
   */
  operator(kind: string, uid?: string): OperatorContext {
    let id = uid;
    if (id === undefined) {
      const n = (this.#counters.get(kind) ?? 0) + 1;
      this.#counters.set(kind, n);
      id = `${kind}-${n}`;
    }
    if (!/^[A-Za-z0-9_.:-]+$/.test(id)) {
      throw validateUidError(id);
    }
    if (this.#operatorIds.has(id)) throw new GressError("ERR_CONFIG", `operator uid "${id}" is used twice in job "${this.name}"`);
    this.#operatorIds.add(id);
    return {
      id,
      job: this,
      clock: this.clock,
      state: this.state,
      metrics: this.metrics.operator(id),
      onUserError: this.onUserError,
    };
  }

  /** A stream from a {@link Source}. */
  source<T>(source: Source<T>, options: SourceOptions = {}): Stream<T> {
    const metrics = this.metrics.source(source.name);
    this.#sources.push({ source: source as Source<unknown> });
    const job = this;
    const coordinator = this.checkpoints;
    const from = options.from ?? coordinator?.positionsOf(source.name);
    const elements = new DirectSource<Element<T>>((subscriber) => {
      let ended = false;
      let finished = false;
      const running: RunningSource = {
        source: source as Source<unknown>,
        injectBarrier(checkpointId) {
          if (!ended) subscriber.next({ kind: "barrier", checkpointId });
        },
        get finished() {
          return finished;
        },
      };
      const complete = (): void => {
        if (ended) return;
        ended = true;
        subscriber.next(END);
        subscriber.complete();
      };
      const ctx: SourceContext<T> = {
        emit(value, timestamp, split) {
          if (ended || finished) return;
          if (metrics.emitted++ === 0) coordinator?.processing();
          subscriber.next(record(value, timestamp ?? job.clock.now(), undefined, split ?? source.name));
        },
        announceSplits(splits) {
          if (ended || finished || splits.length === 0) return;
          subscriber.next({ kind: "splits", splits: [...splits] });
        },
        deadLetter(value, reason) {
          if (ended) return;
          job.metrics.operator(`source:${source.name}`).deadLetters++;
          subscriber.next(sideRecord(DEAD_LETTERS.id, value, job.clock.now(), reason));
        },
        end() {
          if (ended || finished) return;
          finished = true;
          coordinator?.processing();
          subscriber.next(watermark(MAX_WATERMARK));
          // With checkpoints, the input ends only after a final checkpoint committed everything before it.
          if (coordinator === undefined) complete();
          else coordinator.sourceFinished(running, complete);
        },
        fail(error) {
          if (ended) return;
          ended = true;
          subscriber.error(error);
        },
        get paused() {
          return job.flow.paused;
        },
        clock: job.clock,
      };
      const unlisten = job.flow.listen((paused) => {
        metrics.paused = paused;
        if (paused) source.pause();
        else source.resume();
      });
      let closed = false;
      job.#running.add(running);
      // Start on a microtask: every branch subscribes first, so none misses the first records.
      queueMicrotask(() => {
        if (closed) return;
        Promise.resolve()
          .then(() => source.open(ctx, from))
          .catch((e: unknown) => ctx.fail(e));
      });
      return () => {
        closed = true;
        ended = true;
        job.#running.delete(running);
        unlisten();
        void Promise.resolve()
          .then(() => source.close())
          .catch(() => {});
      };
    });
    return new Stream<T>(this, elements);
  }

  /** A bounded stream of the values of an iterable. `timestamp` assigns event time (default: processing time). */
  fromIterable<T>(values: Iterable<T>, options: { name?: string; timestamp?: (value: T, index: number) => number } = {}): Stream<T> {
    return this.source(iterableSource(options.name ?? `iterable-${this.#sources.length + 1}`, values, options.timestamp));
  }

  /** Registers a runner (a sink chain) to be subscribed by run(). Used by Stream.sinkTo. */
  register(runner: () => Observable<unknown>): void {
    this.#runners.push(runner);
  }

  /** Sources registered so far. */
  get sources(): readonly Source<unknown>[] {
    return this.#sources.map((s) => s.source);
  }

  /** The sources running now (subscribed and not torn down). Used by the checkpoint coordinator. */
  get runningSources(): readonly RunningSource[] {
    return [...this.#running];
  }

  /**
   * Subscribes every registered sink chain; resolves when all have completed, rejects on the first error.
   * With checkpoints, first recovers (resolves the pending sink transactions of the restored checkpoint) and
   * then takes checkpoints until the input ends.
   */
  async run(): Promise<void> {
    if (this.#runners.length === 0) throw new GressError("ERR_CONFIG", `job "${this.name}" has no sinks`);
    const coordinator = this.checkpoints;
    // The Clock's timers are unref'd; a running job (a throttled source, periodic checkpoints) keeps the
    // process alive until it completes.
    const keepAlive = setInterval(() => {}, 1 << 30);
    try {
      await coordinator?.recover();
      await new Promise<void>((resolve, reject) => {
        let pending = this.#runners.length;
        let failed = false;
        this.#fail = (e: unknown) => {
          if (failed) return;
          failed = true;
          this.#cancelled = undefined;
          this.cancel();
          reject(e);
        };
        this.#cancelled = resolve;
        for (const runner of this.#runners) {
          this.#subscriptions.push(
            runner().subscribe({
              error: (e: unknown) => this.#fail?.(e),
              complete: () => {
                if (--pending === 0 && !failed) resolve();
              },
            }),
          );
        }
        coordinator?.start();
      });
    } finally {
      clearInterval(keepAlive);
      this.#fail = undefined;
      this.#cancelled = undefined;
      coordinator?.stop();
    }
  }

  /** Fails the running job with `error` (used by the checkpoint coordinator when a checkpoint fails). */
  fail(error: unknown): void {
    this.#fail?.(error);
  }

  /** Stops every running chain and closes the sources; a pending `run()` resolves. */
  cancel(): void {
    const subs = this.#subscriptions;
    this.#subscriptions = [];
    for (const s of subs) s.unsubscribe();
    const cancelled = this.#cancelled;
    this.#cancelled = undefined;
    this.checkpoints?.stop();
    cancelled?.();
  }
}

function validateUidError(id: string): GressError {
  return new GressError("ERR_CONFIG", `operator uid "${id}" may only contain letters, digits, '_', '.', ':' or '-'`);
}

/** A source over an iterable, emitting in batches and honouring pause/resume. Position = index. */
function iterableSource<T>(name: string, values: Iterable<T>, timestamp?: (value: T, index: number) => number): Source<T> {
  let iterator: Iterator<T> | undefined;
  let index = 0;
  let paused = false;
  let closed = false;
  let ctxRef: SourceContext<T> | undefined;
  const BATCH = 4096;
  /** Emits up to one batch; true if there is more to emit on a later turn. */
  const emitBatch = (ctx: SourceContext<T>, it: Iterator<T>): boolean => {
    for (let n = 0; n < BATCH; n++) {
      if (paused || closed) return false;
      const step = it.next();
      if (step.done === true) {
        ctx.end();
        return false;
      }
      ctx.emit(step.value, timestamp ? timestamp(step.value, index) : undefined, name);
      index++;
    }
    return true;
  };
  /** The same for an array, read by index. */
  const emitArrayBatch = (ctx: SourceContext<T>, array: readonly T[]): boolean => {
    for (let n = 0; n < BATCH; n++) {
      if (paused || closed) return false;
      if (index >= array.length) {
        ctx.end();
        return false;
      }
      const value = array[index] as T;
      ctx.emit(value, timestamp ? timestamp(value, index) : undefined, name);
      index++;
    }
    return true;
  };
  // Emit a bounded batch per turn, so timers, checkpoints and pause requests get their turn too. The loop
  // lives in its own function: written inline here, V8 compiled it on-stack and discarded that code again at
  // the rescheduling call after the loop, on every batch.
  const pump = (): void => {
    const ctx = ctxRef;
    if (ctx === undefined || closed) return;
    const more = Array.isArray(values) ? emitArrayBatch(ctx, values) : iterator !== undefined && emitBatch(ctx, iterator);
    if (more) runSoon(pump);
  };
  return {
    name,
    open(ctx, from) {
      ctxRef = ctx;
      // Replay from a position: skip what was already emitted before the restore.
      const position = from?.[name];
      if (position !== undefined && (typeof position !== "number" || !Number.isInteger(position) || position < 0)) {
        throw new SourceError(`iterable source "${name}": position must be a non-negative integer, got ${JSON.stringify(position)}`);
      }
      const skip = position ?? 0;
      if (Array.isArray(values)) index = Math.min(skip, values.length);
      else {
        iterator = values[Symbol.iterator]();
        while (index < skip && iterator.next().done !== true) index++;
      }
      pump();
    },
    pause() {
      paused = true;
    },
    resume() {
      if (!paused) return;
      paused = false;
      runSoon(pump);
    },
    positions: () => ({ [name]: index }),
    close() {
      closed = true;
    },
  };
}
