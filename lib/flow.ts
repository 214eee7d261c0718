/**
 * Flow control. Anything that holds records without a fixed bound of its own — a sink's in-flight writes, an
 * async operator's queue — reports pressure here when it reaches its limit, and the job pauses every
 * source until all pressure is released. That keeps every buffer bounded: nothing queues when downstream
 * is slow, the sources simply stop producing (Kafka pause, NATS pull size, socket pause, HTTP 429).
 *
 * Adaptive throttling ({@link SourceThrottle}, the `throttle` option of `job.source`) comes before that hard
 * bound: a source's rate limit grows additively while downstream keeps up and shrinks multiplicatively under
 * pressure, so the sources slow down smoothly instead of running into the bound and stopping.
 * @module
 */
import type { Clock } from "./clock.ts";
import { ConfigError, type ConfigIssue } from "./errors.ts";
import type { JobMetrics } from "./metrics.ts";

/** Listener for pause/resume transitions. */
export type FlowListener = (paused: boolean) => void;

/**
 * Counts who is under pressure and tells the sources.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 *
 * const job = new Job();
 * // Anything that buffers without a bound of its own presses while full; every source pauses until released.
 * job.flow.listen((paused) => console.log(paused ? "sources paused" : "sources resumed"));
 * job.flow.press("my-cache");
 * job.flow.release("my-cache");
 * ```
 */
export class FlowControl {
  readonly #pressured = new Set<string>();
  readonly #listeners = new Set<FlowListener>();

  /** Who is under pressure now (a sink's `sink:<name>`, `sink:<name>:barrier` while it aligns a checkpoint...). */
  get pressure(): ReadonlySet<string> {
    return this.#pressured;
  }
  /** True while any participant is under pressure. */
  get paused(): boolean {
    return this.#pressured.size > 0;
  }
  /** Marks `who` as under pressure (idempotent). */
  press(who: string): void {
    const was = this.paused;
    this.#pressured.add(who);
    if (!was) for (const l of this.#listeners) l(true);
  }
  /** Releases `who`'s pressure (idempotent). */
  release(who: string): void {
    if (!this.#pressured.delete(who) || this.paused) return;
    for (const l of this.#listeners) l(false);
  }
  /** Subscribes to transitions; returns the unsubscribe function. */
  listen(listener: FlowListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/**
 * Adaptive throttling of one source (`job.source(src, { throttle })`): a rate limit in records per second that
 * follows downstream pressure, as TCP's congestion window does. Every `intervalMs` of the job's clock it
 * looks at the pressure: congested, the rate is multiplied by `decrease`; else `increase` is added to it,
 * within [`minRate`, `maxRate`]. So the rate saws around what downstream can take, instead of running at full
 * speed into the hard bound (a sink's `maxInFlight`, which still pauses every source) and stopping there.
 *
 * Congested means any of: the job's flow control is pressed (a hard bound was reached); a sink has more than
 * `inFlightFraction` of its `maxInFlight` writes unresolved; the end-to-end latency the sinks observed in the
 * last interval averages more than `maxLatencyMs`; the last checkpoint took longer than `maxCheckpointMs`.
 *
 * @example
 * ```ts
 * import type { ThrottleOptions } from "gress";
 *
 * // At most 50 000 records/s; halve on pressure, add 500 records/s every 100 ms without; also back off when
 * // writes take more than 200 ms from the source to the sink, or a checkpoint more than 5 s.
 * const throttle: ThrottleOptions = { maxRate: 50_000, increase: 500, decrease: 0.5, intervalMs: 100, maxLatencyMs: 200, maxCheckpointMs: 5_000 };
 * ```
 */
export interface ThrottleOptions {
  /** The highest rate, records/s. Default 1 000 000. */
  readonly maxRate?: number;
  /** The lowest rate, records/s: the source is never throttled below it. Default 1. */
  readonly minRate?: number;
  /** The rate to start at. Default `maxRate`. */
  readonly initialRate?: number;
  /** Records/s added after each interval without pressure. Default `maxRate / 1000` (at least 1). */
  readonly increase?: number;
  /** Factor applied to the rate after an interval with pressure, in (0, 1). Default 0.5. */
  readonly decrease?: number;
  /** How often the pressure is looked at, ms of the job's clock. Default 100. */
  readonly intervalMs?: number;
  /** A sink with more than this fraction of its `maxInFlight` writes unresolved is pressure, in (0, 1]. Default 0.5. */
  readonly inFlightFraction?: number;
  /** Mean end-to-end latency at the sinks over an interval above this is pressure, ms. Default: not used. */
  readonly maxLatencyMs?: number;
  /** A last checkpoint that took longer than this is pressure, ms. Default: not used. */
  readonly maxCheckpointMs?: number;
}

/**
 * Checks throttle options; every problem is named in the error.
 * @param options the options to check
 * @param what who they belong to, for the message
 * @returns the options with their defaults
 * @throws ConfigError listing each bad option and why
 *
 * @example
 * ```ts
 * import { throttleOptions } from "gress";
 *
 * const o = throttleOptions({ maxRate: 10_000 }, 'source "orders"');
 * console.log(o.increase, o.decrease); // 10 0.5
 * ```
 */
export function throttleOptions(options: ThrottleOptions, what: string): Required<Omit<ThrottleOptions, "maxLatencyMs" | "maxCheckpointMs">> & ThrottleOptions {
  if (options === null || typeof options !== "object") {
    throw new ConfigError(`${what}: throttle must be an object of options ({} for the defaults), got ${JSON.stringify(options)}`, [
      { path: ["throttle"], code: "invalid_type", message: "expected an object" },
    ]);
  }
  const issues: ConfigIssue[] = [];
  const o = options;
  const num = (key: keyof ThrottleOptions, fallback: number, ok: (v: number) => boolean, want: string): number => {
    const v = o[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) {
      issues.push({ path: ["throttle", key], code: "custom", message: `throttle.${key} must be ${want}, got ${typeof v === "number" ? v : JSON.stringify(v)}` });
      return fallback;
    }
    return v;
  };
  const maxRate = num("maxRate", 1_000_000, (v) => v > 0, "a number > 0");
  const minRate = num("minRate", 1, (v) => v > 0, "a number > 0");
  if (minRate > maxRate) issues.push({ path: ["throttle", "minRate"], code: "custom", message: `throttle.minRate (${minRate}) must not exceed throttle.maxRate (${maxRate})` });
  const initialRate = num("initialRate", maxRate, (v) => v >= minRate && v <= maxRate, `between minRate (${minRate}) and maxRate (${maxRate})`);
  const increase = num("increase", Math.max(1, maxRate / 1000), (v) => v > 0, "a number > 0");
  const decrease = num("decrease", 0.5, (v) => v > 0 && v < 1, "a factor between 0 and 1 (exclusive)");
  const intervalMs = num("intervalMs", 100, (v) => v >= 1, "a number of ms >= 1");
  const inFlightFraction = num("inFlightFraction", 0.5, (v) => v > 0 && v <= 1, "a fraction in (0, 1]");
  const maxLatencyMs = o.maxLatencyMs === undefined ? undefined : num("maxLatencyMs", 0, (v) => v > 0, "a number of ms > 0");
  const maxCheckpointMs = o.maxCheckpointMs === undefined ? undefined : num("maxCheckpointMs", 0, (v) => v > 0, "a number of ms > 0");
  if (issues.length > 0) throw new ConfigError(`${what}: ${issues.map((i) => i.message).join("; ")}`, issues);
  return {
    maxRate,
    minRate,
    initialRate,
    increase,
    decrease,
    intervalMs,
    inFlightFraction,
    ...(maxLatencyMs !== undefined ? { maxLatencyMs } : {}),
    ...(maxCheckpointMs !== undefined ? { maxCheckpointMs } : {}),
  };
}

/**
 * The additive-increase, multiplicative-decrease rule alone, without time: one `update` per interval.
 *
 * @example
 * ```ts
 * import { AimdRate } from "gress";
 *
 * const aimd = new AimdRate({ maxRate: 1_000, initialRate: 800, increase: 50, decrease: 0.5 });
 * aimd.update(true); // 400: pressure halves it
 * aimd.update(false); // 450: none adds 50
 * console.log(aimd.rate); // 450
 * ```
 */
export class AimdRate {
  readonly options: ReturnType<typeof throttleOptions>;
  #rate: number;
  /** @param options the bounds and steps (checked: a ConfigError names each bad one) */
  constructor(options: ThrottleOptions, what = "throttle") {
    this.options = throttleOptions(options, what);
    this.#rate = this.options.initialRate;
  }
  /** The current rate, records/s. */
  get rate(): number {
    return this.#rate;
  }
  /**
   * Applies one interval's verdict.
   * @param congested whether downstream was under pressure in the interval
   * @returns the new rate
   */
  update(congested: boolean): number {
    const o = this.options;
    this.#rate = congested ? Math.max(o.minRate, this.#rate * o.decrease) : Math.min(o.maxRate, this.#rate + o.increase);
    return this.#rate;
  }
}

/**
 * Holds one source to an {@link AimdRate}: it counts the source's records against a budget of one interval at
 * the current rate, asks for a hold (the job pauses the source) when the budget is spent, and ends the hold
 * when time has earned the deficit back. Every `intervalMs` it asks `congestion()` and updates the rate.
 *
 * @example
 * ```ts
 * import { SourceThrottle, VirtualClock } from "gress";
 *
 * const clock = new VirtualClock(0);
 * let congested = false;
 * const throttle = new SourceThrottle({ maxRate: 1_000, intervalMs: 100 }, clock, () => (congested ? "slow sink" : undefined), (held) => console.log(held ? "hold" : "go"));
 * throttle.start();
 * for (let i = 0; i < 100; i++) throttle.emitted(); // one interval's budget: "hold"
 * congested = true;
 * clock.advance(100); // "go"; the rate is halved to 500
 * console.log(throttle.rate); // 500
 * throttle.stop();
 * ```
 */
export class SourceThrottle {
  readonly #aimd: AimdRate;
  readonly #clock: Clock;
  readonly #congestion: () => string | undefined;
  readonly #onHold: (held: boolean) => void;
  #credit = 0;
  #creditAt = 0;
  #held = false;
  #running = false;
  #cancelTick: (() => void) | undefined;
  #cancelRelease: (() => void) | undefined;
  /** Why the last interval was congested (undefined when it was not). */
  lastCongestion: string | undefined = undefined;

  /**
   * @param options the AIMD bounds and steps, and the interval
   * @param clock the job's clock (intervals and holds are timed on it)
   * @param congestion the reason downstream is under pressure now, or undefined
   * @param onHold called with true when the source must pause, false when it may go on
   */
  constructor(options: ThrottleOptions, clock: Clock, congestion: () => string | undefined, onHold: (held: boolean) => void, what = "throttle") {
    this.#aimd = new AimdRate(options, what);
    this.#clock = clock;
    this.#congestion = congestion;
    this.#onHold = onHold;
  }
  /** The current rate limit, records/s. */
  get rate(): number {
    return this.#aimd.rate;
  }
  /** True while the source is held for its rate. */
  get held(): boolean {
    return this.#held;
  }
  /** Starts the intervals, with a full budget (a run of the source). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#creditAt = this.#clock.now();
    this.#credit = this.#budget();
    this.#scheduleTick();
  }
  /** Stops the intervals and forgets any hold, without telling: the run ended, its source is being closed. */
  stop(): void {
    this.#running = false;
    this.#cancelTick?.();
    this.#cancelRelease?.();
    this.#cancelTick = this.#cancelRelease = undefined;
    this.#held = false;
  }
  /** One record went out. */
  emitted(): void {
    if (--this.#credit > 0 || this.#held || !this.#running) return;
    this.#refill();
    if (this.#credit > 0) return;
    this.#setHeld(true);
    this.#scheduleRelease();
  }
  /** One interval's records at the current rate (at least one). */
  #budget(): number {
    return Math.max(1, (this.#aimd.rate * this.#aimd.options.intervalMs) / 1000);
  }
  #refill(): void {
    const now = this.#clock.now();
    this.#credit = Math.min(this.#budget(), this.#credit + ((now - this.#creditAt) * this.#aimd.rate) / 1000);
    this.#creditAt = now;
  }
  #scheduleRelease(): void {
    // The time until the deficit is earned back and one record more may go.
    const wait = Math.max(1, Math.ceil(((1 - this.#credit) * 1000) / this.#aimd.rate));
    this.#cancelRelease?.();
    this.#cancelRelease = this.#clock.setTimer(this.#clock.now() + wait, () => {
      this.#cancelRelease = undefined;
      if (!this.#running) return;
      this.#refill();
      if (this.#credit > 0) this.#setHeld(false);
      else this.#scheduleRelease();
    });
  }
  #scheduleTick(): void {
    this.#cancelTick = this.#clock.setTimer(this.#clock.now() + this.#aimd.options.intervalMs, () => {
      if (!this.#running) return;
      this.#refill();
      this.lastCongestion = this.#congestion();
      this.#aimd.update(this.lastCongestion !== undefined);
      // A lower rate lowers the budget at once; a held source waits for its deficit at the new rate.
      this.#credit = Math.min(this.#credit, this.#budget());
      if (this.#held) this.#scheduleRelease();
      this.#scheduleTick();
    });
  }
  #setHeld(held: boolean): void {
    if (held === this.#held) return;
    this.#held = held;
    this.#onHold(held);
  }
}

/**
 * The pressure a throttled source reacts to, read from the job's flow control and metrics (see
 * {@link ThrottleOptions}). A sink's short hold while it aligns a checkpoint barrier, and a graceful stop, are not
 * pressure: they hold every source anyway and say nothing about downstream's capacity.
 * @param flow the job's flow control
 * @param metrics the job's metrics (sinks' in-flight writes and latency, checkpoint duration)
 * @param options the thresholds (checked by {@link throttleOptions})
 * @returns a function giving the reason downstream is under pressure now, or undefined; call it once per interval
 *
 * @example
 * ```ts
 * import { downstreamPressure, Job, throttleOptions } from "gress";
 *
 * const job = new Job();
 * const pressure = downstreamPressure(job.flow, job.metrics, throttleOptions({ maxCheckpointMs: 5_000 }, "mine"));
 * job.flow.press("my-cache");
 * console.log(pressure()); // flow control pressed by my-cache
 * ```
 */
export function downstreamPressure(flow: FlowControl, metrics: JobMetrics, options: ReturnType<typeof throttleOptions>): () => string | undefined {
  // Latency sums and counts at the last call, per sink: the mean over the interval is the difference.
  const seen = new Map<string, { sum: number; count: number }>();
  let checkpoints = metrics.checkpointsCompleted;
  return () => {
    for (const who of flow.pressure) if (!who.endsWith(":barrier") && who !== "job:stop") return `flow control pressed by ${who}`;
    let sum = 0;
    let count = 0;
    for (const s of metrics.sinks()) {
      if (s.maxInFlight > 0 && s.inFlight > s.maxInFlight * options.inFlightFraction) return `sink "${s.sink}": ${s.inFlight} of ${s.maxInFlight} writes in flight`;
      const h = s.latency("written");
      const before = seen.get(s.sink) ?? { sum: 0, count: 0 };
      sum += h.sum - before.sum;
      count += h.count - before.count;
      seen.set(s.sink, { sum: h.sum, count: h.count });
    }
    if (options.maxLatencyMs !== undefined && count > 0 && (sum / count) * 1000 > options.maxLatencyMs) {
      return `mean latency to the sinks ${((sum / count) * 1000).toFixed(1)} ms > ${options.maxLatencyMs} ms`;
    }
    // A slow checkpoint is pressure once, in the interval it completed in (not until the next one completes).
    const fresh = metrics.checkpointsCompleted !== checkpoints;
    checkpoints = metrics.checkpointsCompleted;
    const checkpointMs = metrics.lastCheckpointDurationSeconds * 1000;
    if (fresh && options.maxCheckpointMs !== undefined && checkpointMs > options.maxCheckpointMs) return `last checkpoint took ${checkpointMs.toFixed(0)} ms > ${options.maxCheckpointMs} ms`;
    return undefined;
  };
}
