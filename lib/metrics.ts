/**
 * Metrics in Gress' own prom-client Registry (never the global one). Operators count into plain numeric
 * fields on the hot path; prom-client reads them at scrape time through `collect()`, so a record costs an
 * increment, not a label lookup.
 *
 * Names start with `gress_`, use base units (seconds, ratios) and counters end in `_total`. Labels are job,
 * operator, source and sink — never record keys.
 * @module
 */
import { Counter, Gauge, Registry } from "prom-client";
import { failureCode } from "./restart.ts";

/**
 * Counters and gauges of one operator.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 *
 * const job = new Job();
 * job.fromIterable(["1", "x"]).map((s) => { if (Number.isNaN(Number(s))) throw new Error("not a number"); return Number(s); }).sinkTo({ name: "n", write() {} });
 * await job.run();
 * const m = job.metrics.operator("map-1");
 * console.log(m.recordsIn, m.recordsOut, m.deadLetters); // 2 1 1
 * ```
 */
export class OperatorMetrics {
  recordsIn: number = 0;
  recordsOut: number = 0;
  lateRecords: number = 0;
  deadLetters: number = 0;
  /** Current event-time watermark in ms (−Infinity before the first). */
  watermark: number = Number.NEGATIVE_INFINITY;
  /** Entries held in buffers / state that have a bound, and that bound (0 = none). */
  buffered: number = 0;
  bufferCapacity: number = 0;
  readonly operator: string;
  constructor(operator: string) {
    this.operator = operator;
  }
}

/**
 * Counters and gauges of one sink.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 *
 * const job = new Job();
 * job.fromIterable([1, 2]).sinkTo({ name: "db", write: async () => {} });
 * await job.run();
 * const m = job.metrics.sink("db");
 * console.log(m.written, m.inFlight, m.failures); // 2 0 0
 * ```
 */
export class SinkMetrics {
  written: number = 0;
  inFlight: number = 0;
  maxInFlight: number = 0;
  failures: number = 0;
  readonly sink: string;
  constructor(sink: string) {
    this.sink = sink;
  }
}

/**
 * Counters and gauges of one source.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 *
 * const job = new Job();
 * job.fromIterable([1, 2, 3], { name: "numbers" }).sinkTo({ name: "s", write() {} });
 * await job.run();
 * console.log(job.metrics.source("numbers").emitted); // 3
 * ```
 */
export class SourceMetrics {
  emitted: number = 0;
  paused: boolean = false;
  readonly source: string;
  constructor(source: string) {
    this.source = source;
  }
}

/**
 * All metrics of one job, in its own Registry.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 *
 * const job = new Job({ name: "clicks" });
 * job.fromIterable([1, 2, 3]).filter((x) => x > 1).sinkTo({ name: "none", write() {} });
 * await job.run();
 * console.log(job.metrics.operator("filter-1").recordsOut); // 2
 * console.log(await job.metrics.text()); // Prometheus text format: gress_records_in_total{...} ...
 * ```
 */
export class JobMetrics {
  readonly registry: Registry = new Registry();
  readonly #operators = new Map<string, OperatorMetrics>();
  readonly #sinks = new Map<string, SinkMetrics>();
  readonly #sources = new Map<string, SourceMetrics>();
  /** Set by the checkpoint coordinator and recovery. */
  lastCheckpointDurationSeconds: number = 0;
  checkpointsCompleted: number = 0;
  recoverySeconds: number = 0;
  /** Set by job.run(): restarts so far, when the running attempt began (job Clock ms), the last failure. */
  restarts: number = 0;
  runningSince: number | undefined = undefined;
  lastFailure: { readonly at: number; readonly error: unknown } | undefined = undefined;

  readonly job: string;
  readonly #now: () => number;

  /** @param now the job's processing time (its Clock), for the uptime */
  constructor(job: string, now: () => number = Date.now) {
    this.job = job;
    this.#now = now;
    this.registry.setDefaultLabels({ job });
    const ops = () => this.#operators.values();
    const perOperator = (name: string, help: string, read: (m: OperatorMetrics) => number, counter: boolean) => {
      const Kind = counter ? Counter : Gauge;
      new Kind({
        name,
        help,
        labelNames: ["operator"],
        registers: [this.registry],
        collect(this: Counter | Gauge) {
          this.reset();
          for (const m of ops()) {
            const v = read(m);
            if (!Number.isFinite(v)) continue;
            if (counter) (this as Counter).inc({ operator: m.operator }, v);
            else (this as Gauge).set({ operator: m.operator }, v);
          }
        },
      });
    };
    // Counters are rebuilt from monotonically increasing fields at each scrape (reset, then inc by the
    // total), which keeps the counter semantics Prometheus relies on.
    perOperator("gress_records_in_total", "Records received by the operator.", (m) => m.recordsIn, true);
    perOperator("gress_records_out_total", "Records emitted by the operator.", (m) => m.recordsOut, true);
    perOperator("gress_late_records_total", "Records that arrived after the allowed lateness.", (m) => m.lateRecords, true);
    perOperator("gress_dead_letters_total", "Bad records routed to the dead-letter output.", (m) => m.deadLetters, true);
    perOperator("gress_watermark_seconds", "Current event-time watermark of the operator.", (m) => m.watermark / 1000, false);
    perOperator("gress_buffered_entries", "Entries held in the operator's bounded buffers or state.", (m) => m.buffered, false);
    perOperator(
      "gress_buffer_fill_ratio",
      "Fill of the operator's bounded buffer (0..1).",
      (m) => (m.bufferCapacity > 0 ? m.buffered / m.bufferCapacity : Number.NaN),
      false,
    );
    const sinks = () => this.#sinks.values();
    new Gauge({
      name: "gress_sink_in_flight",
      help: "Writes issued to the sink and not yet acknowledged.",
      labelNames: ["sink"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of sinks()) this.set({ sink: s.sink }, s.inFlight);
      },
    });
    new Counter({
      name: "gress_sink_records_written_total",
      help: "Records acknowledged by the sink.",
      labelNames: ["sink"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of sinks()) this.inc({ sink: s.sink }, s.written);
      },
    });
    const sources = () => this.#sources.values();
    new Counter({
      name: "gress_source_records_total",
      help: "Records emitted by the source.",
      labelNames: ["source"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of sources()) this.inc({ source: s.source }, s.emitted);
      },
    });
    new Gauge({
      name: "gress_source_paused",
      help: "1 while the source is paused by backpressure.",
      labelNames: ["source"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of sources()) this.set({ source: s.source }, s.paused ? 1 : 0);
      },
    });
    const self = this;
    new Gauge({
      name: "gress_checkpoint_duration_seconds",
      help: "Duration of the last completed checkpoint.",
      registers: [this.registry],
      collect() {
        this.set(self.lastCheckpointDurationSeconds);
      },
    });
    new Counter({
      name: "gress_checkpoints_completed_total",
      help: "Checkpoints completed since start.",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(self.checkpointsCompleted);
      },
    });
    new Counter({
      name: "gress_job_restarts_total",
      help: "Restarts of the job by its restart strategy.",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(self.restarts);
      },
    });
    new Gauge({
      name: "gress_job_uptime_seconds",
      help: "Time the job has been running since it (re)started; 0 while it is not running.",
      registers: [this.registry],
      collect() {
        this.set(self.uptimeSeconds);
      },
    });
    new Gauge({
      name: "gress_job_last_failure_timestamp_seconds",
      help: "When the job last failed (epoch seconds of the job's clock); 0 before the first failure.",
      registers: [this.registry],
      collect() {
        this.set(self.lastFailure === undefined ? 0 : self.lastFailure.at / 1000);
      },
    });
    new Gauge({
      name: "gress_job_last_failure_info",
      help: "1, labelled with the error code of the job's last failure (the code, never the message).",
      labelNames: ["code"],
      registers: [this.registry],
      collect() {
        this.reset();
        if (self.lastFailure !== undefined) this.set({ code: failureCode(self.lastFailure.error) }, 1);
      },
    });
    new Gauge({
      name: "gress_recovery_duration_seconds",
      help: "Time from start to processing again after restoring a checkpoint.",
      registers: [this.registry],
      collect() {
        this.set(self.recoverySeconds);
      },
    });
  }

  /** Seconds since the running attempt began, or 0 when the job is not running. */
  get uptimeSeconds(): number {
    return this.runningSince === undefined ? 0 : Math.max(0, this.#now() - this.runningSince) / 1000;
  }

  operator(id: string): OperatorMetrics {
    let m = this.#operators.get(id);
    if (m === undefined) this.#operators.set(id, (m = new OperatorMetrics(id)));
    return m;
  }
  sink(id: string): SinkMetrics {
    let m = this.#sinks.get(id);
    if (m === undefined) this.#sinks.set(id, (m = new SinkMetrics(id)));
    return m;
  }
  source(id: string): SourceMetrics {
    let m = this.#sources.get(id);
    if (m === undefined) this.#sources.set(id, (m = new SourceMetrics(id)));
    return m;
  }
  operators(): OperatorMetrics[] {
    return [...this.#operators.values()];
  }
  sinks(): SinkMetrics[] {
    return [...this.#sinks.values()];
  }
  sources(): SourceMetrics[] {
    return [...this.#sources.values()];
  }
  /** Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
