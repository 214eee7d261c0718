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
import { type CheckpointOptions, CheckpointCoordinator, type RunningSource } from "./checkpoint/coordinator.ts";
import { type Clock, SystemClock } from "./clock.ts";
import { validate } from "./config.ts";
import { barrier, END, type Element, type Key, record, sideRecord, splitsAnnouncement, DEAD_LETTERS, MAX_WATERMARK, watermark } from "./element.ts";
import { GressError, UserFunctionError } from "./errors.ts";
import { downstreamPressure, FlowControl, SourceThrottle, type ThrottleOptions, throttleOptions } from "./flow.ts";
import { JobMetrics, LATENCY_SAMPLE_EVERY, type LatencyProbe, type SourceMetrics } from "./metrics.ts";
import { DirectSource, type Downstream } from "./operate.ts";
import type { JobContext, OperatorContext, UserErrorPolicy } from "./operator-context.ts";
import { RecordOutput } from "./record-output.ts";
import { type RestartOptions, RestartTracker, restartLine, restartOptionsSchema } from "./restart.ts";
import type { Positions, Source, SourceContext, SourceSpillStats } from "./source.ts";
import type { StateBackend } from "./state/backend.ts";
import { MemoryStateBackend } from "./state/memory.ts";
import { type QueriedState, QueryableState } from "./state/queryable.ts";
import { handleUserError } from "./operators/user-error.ts";
import { SplitWatermarks } from "./split-watermarks.ts";
import { iterableSource } from "./sources/iterable.ts";
import { declareTime, Stream } from "./stream.ts";
import { eventTime, validateStrategy, type WatermarkStrategy } from "./watermarks.ts";

/**
 * Options of a job.
 *
 * @example
 * ```ts
 * import { Job, type JobOptions, lmdbState } from "gress";
 *
 * const options: JobOptions = {
 *   name: "orders",
 *   state: lmdbState({ path: "state/orders" }),
 *   checkpoints: { intervalMs: 5_000 },
 *   maxInFlight: 256,
 *   onUserError: "fail",
 * };
 * const job = new Job(options);
 * ```
 */
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
   * How long run() waits, once the job ended, for its sources to close (release connections and files)
   * before it settles anyway. A wall-clock bound, not the job's Clock. Default 10 000 ms.
   */
  readonly closeTimeoutMs?: number;
  /**
   * Periodic checkpoints and recovery (needs the `lmdb` state backend). With them the job restores its last
   * completed checkpoint on start and gives exactly-once results with replayable sources and 2PC sinks.
   */
  readonly checkpoints?: CheckpointOptions;
  /**
   * What run() does when the job fails: `none` (default: fail at once), `fixed-delay` or
   * `exponential-backoff`, optionally with a failure-rate limit. A restart recovers from the last completed
   * checkpoint in the same process. See lib/restart.ts for the strategies and which failures restart.
   */
  readonly restart?: RestartOptions;
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
  closeTimeoutMs: z.number().positive().optional(),
  checkpoints: z.custom<CheckpointOptions>((c) => typeof c === "object" && c !== null, "checkpoint options").optional(),
  restart: restartOptionsSchema.optional(),
});

/**
 * Options of `job.source()`.
 *
 * @example
 * ```ts
 * import { boundedOutOfOrderness, Job, rides } from "gress";
 *
 * const job = new Job();
 * // Event time and watermarks made in the source, per split, as Flink's fromSource(source, strategy).
 * const stream = job.source(rides({ count: 1_000 }), { watermarks: boundedOutOfOrderness(5_000, { timestamp: (r) => r.at }) });
 * ```
 */
export interface SourceOptions<T = unknown> {
  /** Start positions, e.g. from a restored checkpoint. */
  readonly from?: Positions;
  /**
   * Event time and watermarks generated in the source, per split, as Flink's `fromSource(source, strategy)`
   * does: the same as a `withTimestamps(strategy)` right after the source, without the extra operator.
   * A timestamp function that throws routes the value to dead letters (or fails the job, with
   * `onUserError: "fail"`) under an operator `watermarks-N`, which also carries the watermark gauge.
   */
  readonly watermarks?: WatermarkStrategy<T>;
  /**
   * Adaptive throttling (lib/flow.ts): the source's rate limit follows downstream pressure, growing additively
   * and shrinking multiplicatively, before the hard bounds pause it. The current limit is the metric
   * `gress_source_rate_limit{source}` (and `job.metrics.source(name).rateLimit`).
   */
  readonly throttle?: ThrottleOptions;
}

interface RegisteredSource {
  readonly source: Source<unknown>;
}

/**
 * A runnable job.
 *
 * @example
 * ```ts
 * import { Job, sinkFn } from "gress";
 *
 * const job = new Job({ name: "doubler" });
 * job.fromIterable([1, 2, 3]).map((x) => x * 2).sinkTo(sinkFn("print", (x) => console.log(x)));
 * await job.run(); // 2, 4, 6
 * ```
 */
export class Job implements JobContext {
  readonly name: string;
  readonly clock: Clock;
  readonly state: StateBackend;
  readonly metrics: JobMetrics;
  readonly flow: FlowControl = new FlowControl();
  readonly maxInFlight: number;
  readonly onUserError: UserErrorPolicy;
  readonly closeTimeoutMs: number;
  /** The checkpoint coordinator, when the job was created with `checkpoints`. */
  readonly checkpoints: CheckpointCoordinator | undefined;
  /** The restart strategy. */
  readonly restart: RestartOptions;
  /** The state backend as operators get it: it remembers which tables they opened, for queryState(). */
  readonly #queryable: QueryableState;
  readonly #operatorIds = new Set<string>();
  readonly #counters = new Map<string, number>();
  readonly #sources: RegisteredSource[] = [];
  readonly #runners: (() => Observable<unknown>)[] = [];
  #subscriptions: Subscription[] = [];
  readonly #running = new Set<SourceRun<unknown>>();
  /** Between the start of run() and its settling. */
  #runningNow = false;
  /** Sources and sinks whose close() has not finished yet: run() settles only after them. */
  readonly #closing = new Set<Promise<void>>();
  #fail: ((error: unknown) => void) | undefined;
  #cancelled: (() => void) | undefined;
  /** cancel() was called during this run(): no restart, and an attempt not started yet does not start. */
  #cancelRequested = false;
  /** Ends a restart back-off early (cancel()). */
  #endBackoff: (() => void) | undefined;
  /** Restarts of this run() so far: a source opens from the last checkpoint instead of its `from` option. */
  #restarted = false;

  constructor(options: JobOptions = {}) {
    const o = validate(jobOptionsSchema, options, "job");
    this.name = o.name ?? "gress";
    this.clock = o.clock ?? new SystemClock();
    this.state = o.state ?? new MemoryStateBackend();
    this.maxInFlight = o.maxInFlight ?? 1024;
    this.onUserError = o.onUserError ?? "dead-letter";
    this.closeTimeoutMs = o.closeTimeoutMs ?? 10_000;
    this.restart = (o.restart as RestartOptions | undefined) ?? { strategy: "none" };
    this.metrics = new JobMetrics(this.name, () => this.clock.now());
    this.#queryable = new QueryableState(this.state, () => this.clock.now());
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
      clock: this.clock,
      state: this.#queryable,
      metrics: this.metrics.operator(id),
      onUserError: this.onUserError,
    };
  }

  /**
   * Reads state `name` of operator `operator` (its uid, or `kind-N`) for `key`, from outside the pipeline:
   * a process function's value, map or list state, a broadcast state (`key` names its entry), or an internal
   * table such as a window's `acc`. Reads the live state between two records: not yet committed by a checkpoint,
   * so a recovery may roll it back. Undefined if the operator has no such state. See lib/state/queryable.ts.
   */
  queryState(operator: string, name: string, key: Key): QueriedState | undefined {
    return this.#queryable.query(operator, name, key);
  }

  /** A stream from a {@link Source}. */
  source<T>(source: Source<T>, options: SourceOptions<T> = {}): Stream<T> {
    const metrics = this.metrics.source(source.name);
    if (source.lag !== undefined) metrics.lag = () => source.lag?.() ?? new Map();
    if (source.tenantStats !== undefined) metrics.tenantStats = () => source.tenantStats?.();
    if (source.spillStats !== undefined) metrics.spillStats = () => source.spillStats?.() as SourceSpillStats;
    const strategy = options.watermarks === undefined ? undefined : validateStrategy(options.watermarks, `source "${source.name}" watermarks`);
    const watermarks = strategy === undefined ? undefined : { strategy, ctx: this.operator("watermarks") };
    // Checked here, so that bad bounds fail where the source is declared, naming it.
    const throttleWhat = `source "${source.name}"`;
    const throttled = options.throttle === undefined ? undefined : { options: options.throttle, pressure: downstreamPressure(this.flow, this.metrics, throttleOptions(options.throttle, throttleWhat)) };
    this.#sources.push({ source: source as Source<unknown> });
    const elements = new DirectSource<Element<T>>((downstream) => {
      // Read at each start: after a restart the last checkpoint decides, not the option given for the first start.
      const restored = this.checkpoints?.positionsOf(source.name);
      const from = this.#restarted && this.checkpoints?.restored !== undefined ? restored : (options.from ?? restored);
      // The source is paused while the flow control or its throttle holds it; it sees each change once.
      let sourcePaused = false;
      const apply = (): void => {
        const pause = this.flow.paused || throttle?.held === true;
        if (pause === sourcePaused) return;
        sourcePaused = pause;
        if (pause) source.pause();
        else source.resume();
      };
      const throttle = throttled === undefined ? undefined : new SourceThrottle(throttled.options, this.clock, throttled.pressure, apply, `source "${source.name}"`);
      if (throttle !== undefined) metrics.rateLimit = () => throttle.rate;
      const run = new SourceRun<T>(this, source, metrics, downstream, watermarks, throttle);
      // One source object reads one input: a second run would share its position and end. This happens when a
      // stream is subscribed (records(), sideRecords(), elements...) before all of its consumers were declared,
      // so the first subscription gets a pipeline of its own.
      for (const other of this.#running) {
        if (other.source !== source) continue;
        run.fail(
          new GressError(
            "ERR_CONFIG",
            `source "${source.name}" is already running: subscribe to a stream only after declaring all of its consumers (sinks, side outputs), or give each consumer a source of its own`,
          ),
        );
        return () => {};
      }
      const unlisten = this.flow.listen((paused) => {
        metrics.paused = paused;
        if (throttle === undefined) {
          if (paused) source.pause();
          else source.resume();
        } else apply();
      });
      throttle?.start();
      let closed = false;
      this.#running.add(run as SourceRun<unknown>);
      // Start on a microtask: every branch subscribes first, so none misses the first records.
      queueMicrotask(() => {
        if (closed) return;
        Promise.resolve()
          .then(() => source.open(run, from))
          .catch((e: unknown) => run.fail(e));
      });
      return () => {
        closed = true;
        run.stop();
        this.#running.delete(run as SourceRun<unknown>);
        unlisten();
        throttle?.stop();
        this.trackRelease(Promise.resolve().then(() => source.close()));
      };
    });
    // Without a watermark strategy the records carry their arrival time (or what the source stamped them with).
    return declareTime(new Stream<T>(this, elements), strategy === undefined ? "arrival" : "event");
  }

  /**
   * A bounded stream of the values of an iterable. `timestamp` gives a value's source timestamp (default:
   * processing time); `watermarks` generates event time and watermarks in the source (see {@link SourceOptions}).
   */
  fromIterable<T>(
    values: Iterable<T>,
    options: { name?: string; timestamp?: (value: T, index: number) => number; watermarks?: WatermarkStrategy<T> } = {},
  ): Stream<T> {
    const source = iterableSource(options.name ?? `iterable-${this.#sources.length + 1}`, values, options.timestamp);
    const stream = this.source(source, options.watermarks === undefined ? {} : { watermarks: options.watermarks });
    // Explicit timestamps of a bounded input are event time: the end of the input is their exact watermark.
    return options.timestamp === undefined ? stream : declareTime(stream, "event");
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
   * Subscribes every registered sink chain; resolves when all have completed, rejects on the first error,
   * and in either case (and after cancel()) only once every source has closed.
   * With checkpoints, first recovers (resolves the pending sink transactions of the restored checkpoint) and
   * then takes checkpoints until the input ends. A failure restarts the job as its restart strategy says:
   * the failed attempt is torn down and closed, and after the back-off the job runs again from its last
   * completed checkpoint (without checkpoints: from the start, with the state run() began with).
   */
  async run(): Promise<void> {
    if (this.#runners.length === 0) throw new GressError("ERR_CONFIG", `job "${this.name}" has no sinks`);
    if (this.#runningNow) throw new GressError("ERR_CONFIG", `job "${this.name}" is already running: await its run() before running it again`);
    this.#runningNow = true;
    this.#cancelRequested = false;
    this.#restarted = false;
    // The Clock's timers are unref'd; a running job (a throttled source, periodic checkpoints) keeps the
    // process alive until it completes.
    const keepAlive = setInterval(() => {}, 1 << 30);
    const restarts = new RestartTracker(this.restart);
    const log = this.restart.log ?? ((m: string) => console.error(`gress: job "${this.name}": ${m}`));
    // Without checkpoints there is no recovery point: a restart begins again with the state run() began with.
    const initialState = this.restart.strategy !== "none" && this.checkpoints === undefined ? this.state.snapshot() : undefined;
    try {
      for (;;) {
        const startedAt = this.clock.now();
        this.metrics.runningSince = startedAt;
        try {
          await this.#attempt();
          return;
        } catch (error) {
          const now = this.clock.now();
          this.metrics.runningSince = undefined;
          this.metrics.lastFailure = { at: now, error };
          if (this.#cancelRequested) throw error;
          const decision = restarts.onFailure(error, now, startedAt);
          if (!decision.restart) {
            if (this.restart.strategy !== "none") log(`not restarted: ${decision.reason}`);
            throw error;
          }
          log(restartLine(decision, error));
          this.metrics.restarts++;
          if (!(await this.#backoff(decision.delayMs))) return;
          this.#restarted = true;
          if (initialState !== undefined) this.state.restore(initialState);
        }
      }
    } finally {
      this.metrics.runningSince = undefined;
      this.flow.release(STOP);
      clearInterval(keepAlive);
      this.#runningNow = false;
    }
  }

  /** One attempt of run(): recover, subscribe, run until the end, a failure or cancel(), then close everything. */
  async #attempt(): Promise<void> {
    const coordinator = this.checkpoints;
    try {
      if (this.#restarted) await coordinator?.restart();
      await coordinator?.recover();
      if (this.#cancelRequested) return;
      await new Promise<void>((resolve, reject) => {
        let pending = this.#runners.length;
        let failed = false;
        this.#fail = (e: unknown) => {
          if (failed) return;
          failed = true;
          this.#cancelled = undefined;
          this.#teardown();
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
      this.#fail = undefined;
      this.#cancelled = undefined;
      coordinator?.stop();
      // Completed, failed or cancelled: the sources and sinks were told to close. Settle once they have, so that
      // their connections and files are released when run() returns (or the job restarts); but not later than
      // closeTimeoutMs, so that a close() that hangs cannot hold back the job's result.
      await this.#sourcesClosed();
    }
  }

  /** Waits `ms` on the job's Clock before a restart; false if cancel() ended the wait. */
  #backoff(ms: number): Promise<boolean> {
    if (this.#cancelRequested) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const clock = this.clock;
      const cancelTimer = clock.setTimer(clock.now() + ms, () => {
        this.#endBackoff = undefined;
        resolve(!this.#cancelRequested);
      });
      this.#endBackoff = () => {
        this.#endBackoff = undefined;
        cancelTimer();
        resolve(false);
      };
    });
  }

  /**
   * Registers the closing of a source or sink: run() settles only once it has settled (or closeTimeoutMs
   * passed). Its failure is not reported: the job's result is already decided when things close.
   */
  trackRelease(closing: Promise<unknown>): void {
    const tracked: Promise<void> = closing
      .then(() => {})
      .catch(() => {})
      .finally(() => this.#closing.delete(tracked));
    this.#closing.add(tracked);
  }

  /** Resolves when every source and sink that was told to close has, or after closeTimeoutMs. */
  async #sourcesClosed(): Promise<void> {
    if (this.#closing.size === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.closeTimeoutMs);
    });
    const closed = (async () => {
      while (this.#closing.size > 0) await Promise.all([...this.#closing]);
    })();
    await Promise.race([closed, timeout]);
    clearTimeout(timer);
  }

  /** Fails the running job with `error` (used by the checkpoint coordinator when a checkpoint fails). */
  fail(error: unknown): void {
    this.#fail?.(error);
  }

  /**
   * Stops every running chain and closes the sources; a pending `run()` resolves (once they closed). During a
   * restart back-off it ends the wait at once; the job is not restarted.
   */
  cancel(): void {
    if (this.#runningNow) this.#cancelRequested = true;
    this.#endBackoff?.();
    const cancelled = this.#cancelled;
    this.#cancelled = undefined;
    this.#teardown();
    cancelled?.();
  }

  /**
   * Stops the job gracefully, like Flink's `stop`: the sources stop reading. With checkpoints, a last
   * checkpoint then commits everything processed so far, and the job is cancelled: its state stays as that
   * checkpoint has it (windows are not fired early), and the next start resumes from there. Without
   * checkpoints, every source's input ends as a bounded input does, so every window fires and the sinks flush.
   * run() resolves when that is done (or rejects if that last checkpoint fails). Does nothing when not running.
   */
  async stop(): Promise<void> {
    if (!this.#runningNow || this.#cancelRequested) return;
    this.flow.press(STOP);
    const coordinator = this.checkpoints;
    if (coordinator === undefined) {
      this.#endBackoff?.();
      for (const run of [...this.#running]) run.end();
      return;
    }
    // Nothing has run since the restored checkpoint (a back-off, or recovery still under way): a checkpoint
    // now would record no source positions.
    if (this.#endBackoff !== undefined || this.#running.size === 0) return this.cancel();
    try {
      await coordinator.trigger(false);
    } catch (err) {
      return this.fail(err);
    }
    this.cancel();
  }

  /** Unsubscribes every running chain (which closes the sources and sinks) and stops the checkpoints. */
  #teardown(): void {
    const subs = this.#subscriptions;
    this.#subscriptions = [];
    for (const s of subs) s.unsubscribe();
    this.checkpoints?.stop();
  }
}

/**
 * Watermarks generated in a source (see `SourceOptions.watermarks`). A class, not an object literal: built by
 * spreading a literal, each job's got a hidden class of its own, and the source's per-record path, which
 * reads its fields, deoptimised with every new job.
 */
class SourceWatermarks<T> {
  readonly strategy: WatermarkStrategy<T>;
  /** The operator the watermarks, their metrics and the dead letters of the timestamp function are under. */
  readonly ctx: OperatorContext;
  readonly splits: SplitWatermarks;
  constructor(strategy: WatermarkStrategy<T>, ctx: OperatorContext, splits: SplitWatermarks) {
    this.strategy = strategy;
    this.ctx = ctx;
    this.splits = splits;
  }
}

/**
 * One running source: the context it emits into, and the handle through which the checkpoint coordinator
 * injects barriers. A class rather than closures, so that the emit path is the same function in every job
 * and V8 keeps inlining it into the sources' loops.
 */
class SourceRun<T> implements SourceContext<T>, RunningSource {
  readonly source: Source<unknown>;
  readonly #job: Job;
  readonly #metrics: SourceMetrics;
  readonly #downstream: Downstream<Element<T>>;
  readonly #coordinator: CheckpointCoordinator | undefined;
  /** Watermarks generated in the source: the strategy, the operator they report under, the split tracking. */
  readonly #watermarks: SourceWatermarks<T> | undefined;
  /** Where records go (one record object refilled, when the chain is transient). */
  readonly #out: RecordOutput<T>;
  /** End-to-end latency sampling (metrics.ts). */
  readonly #latency: LatencyProbe;
  /** The record count at which the next sample is due. */
  #nextSample = 0;
  #rearmQueued = false;
  // After the current synchronous run of emissions, the next record is sampled again.
  readonly #rearm = (): void => {
    this.#rearmQueued = false;
    this.#nextSample = 0;
  };
  /** The stream has ended (completed, failed or unsubscribed): nothing more goes out. */
  #ended = false;
  /** The source signalled the end of its input. */
  #finished = false;
  /** A record was emitted. */
  #flowing = false;
  readonly #throttle: SourceThrottle | undefined;
  readonly #complete = (): void => {
    if (this.#ended) return;
    this.#ended = true;
    this.#watermarks?.splits.stop();
    this.#downstream.next(END);
    this.#downstream.complete();
  };

  constructor(
    job: Job,
    source: Source<T>,
    metrics: SourceMetrics,
    downstream: Downstream<Element<T>>,
    watermarks: { readonly strategy: WatermarkStrategy<T>; readonly ctx: OperatorContext } | undefined,
    throttle?: SourceThrottle,
  ) {
    this.#job = job;
    this.#throttle = throttle;
    this.source = source as Source<unknown>;
    this.#metrics = metrics;
    this.#downstream = downstream;
    this.#coordinator = job.checkpoints;
    this.#out = new RecordOutput(downstream);
    this.#latency = job.metrics.latency;
    this.#watermarks =
      watermarks === undefined
        ? undefined
        : new SourceWatermarks(
            watermarks.strategy,
            watermarks.ctx,
            new SplitWatermarks(watermarks.strategy, job.clock, watermarks.ctx.metrics, downstream),
          );
  }

  emit(value: T, timestamp?: number, split?: string): void {
    if (this.#ended || this.#finished) return;
    // One comparison per record: the record count reached the next sample (metrics.ts, end-to-end latency).
    if (this.#metrics.emitted++ >= this.#nextSample) this.#sample();
    this.#throttle?.emitted();
    if (!this.#flowing) {
      // The first record of this run (also after a restart) ends the recovery measurement.
      this.#flowing = true;
      this.#coordinator?.processing();
    }
    const ts = timestamp ?? this.#job.clock.now();
    const sp = split ?? this.source.name;
    if (this.#watermarks === undefined) this.#out.send(value, ts, undefined, sp);
    else this.#emitWithWatermarks(this.#watermarks, value, ts, sp);
  }
  /** The record being emitted is a latency sample; the next comes 1024 records on, or after this synchronous run. */
  #sample(): void {
    this.#nextSample = this.#metrics.emitted + LATENCY_SAMPLE_EVERY;
    if (!this.#rearmQueued) {
      this.#rearmQueued = true;
      queueMicrotask(this.#rearm);
    }
    this.#latency.sample();
  }
  /** Emits a record with the event time the strategy gives it, and the watermarks that follow from it. */
  #emitWithWatermarks(watermarks: SourceWatermarks<T>, value: T, sourceTimestamp: number, split: string): void {
    const m = watermarks.ctx.metrics;
    m.recordsIn++;
    const ts = eventTime(watermarks.strategy, value, sourceTimestamp);
    if (typeof ts !== "number") {
      try {
        handleUserError(watermarks.ctx, this.#downstream, record(value, sourceTimestamp, undefined, split), ts.error);
      } catch (err) {
        this.fail(err);
      }
      return;
    }
    watermarks.splits.observe(split, ts);
    m.recordsOut++;
    this.#out.send(value, ts, undefined, split);
    watermarks.splits.forwarded();
  }
  announceSplits(splits: readonly string[]): void {
    if (this.#ended || this.#finished || splits.length === 0) return;
    this.#watermarks?.splits.announce(splits);
    this.#downstream.next(splitsAnnouncement(splits));
  }
  deadLetter(value: unknown, reason: string): void {
    if (this.#ended) return;
    this.#job.metrics.operator(`source:${this.source.name}`).deadLetters++;
    this.#downstream.next(sideRecord(DEAD_LETTERS.id, value, this.#job.clock.now(), reason));
  }
  userError(value: unknown, error: unknown, what: string): void {
    if (this.#ended) return;
    const name = this.source.name;
    const message = `${what} of source "${name}" threw: ${error instanceof Error ? error.message : String(error)}`;
    if (this.#job.onUserError === "fail") this.fail(new UserFunctionError(message, { cause: error, details: { source: name } }));
    else this.deadLetter(value, message);
  }
  end(): void {
    if (this.#ended || this.#finished) return;
    this.#finished = true;
    this.#coordinator?.processing();
    if (this.#watermarks === undefined) this.#downstream.next(watermark(MAX_WATERMARK));
    else this.#watermarks.splits.finish();
    // With checkpoints, the input ends only after a final checkpoint committed everything before it.
    if (this.#coordinator === undefined) this.#complete();
    else this.#coordinator.sourceFinished(this, this.#complete);
  }
  fail(error: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#watermarks?.splits.stop();
    this.#downstream.error(error);
  }
  get paused(): boolean {
    return this.#job.flow.paused || this.#throttle?.held === true;
  }
  get ended(): boolean {
    return this.#ended || this.#finished;
  }
  get clock(): Clock {
    return this.#job.clock;
  }
  injectBarrier(checkpointId: number): void {
    if (!this.#ended) this.#downstream.next(barrier(checkpointId));
  }
  get finished(): boolean {
    return this.#finished;
  }
  /** The subscription ended: nothing more goes out. */
  stop(): void {
    this.#ended = true;
    this.#watermarks?.splits.stop();
  }
}

/** The flow-control pressure that holds the sources during a graceful stop. */
const STOP = "job:stop";

function validateUidError(id: string): GressError {
  return new GressError("ERR_CONFIG", `operator uid "${id}" may only contain letters, digits, '_', '.', ':' or '-'`);
}
