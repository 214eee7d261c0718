/**
 * Metrics in Gress' own prom-client Registry (never the global one). Operators count into plain numeric
 * fields on the hot path; prom-client reads them at scrape time through `collect()`, so a record costs an
 * increment, not a label lookup.
 *
 * Names start with `gress_`, use base units (seconds, ratios) and counters end in `_total`. Labels are job,
 * operator, source, sink and partition — never record keys.
 *
 * End-to-end latency (`gress_end_to_end_latency_seconds{sink, stage}`) is sampled, as Flink's latency markers
 * are, but through the user's own operators: reading the clock for every record would cost a third of a
 * stateless pipeline's time. A source takes a sample ({@link LatencyProbe}) at the first record it emits in
 * each synchronous run of emissions (a fetched batch, a timer tick) and then at every 1024th record of that
 * run, at most one per millisecond (a comparison per record): it notes when that record entered the job. Each sink, at its next write,
 * observes the time from that entry to the moment the write was done (`stage="written"`: returned, or its
 * promise resolved), and for sinks with two-phase commit also to the moment the checkpoint that covers the
 * write completed (`stage="committed"`). A write that a record causes synchronously (map, filter, keyed state,
 * CEP) therefore measures that record; a window result measures the latest sampled record before it, i.e.
 * how long the window held its last input.
 * @module
 */
import type { SourceQuotaStats, SourceSpillStats } from "./source.ts";
import { Counter, Gauge, type Metric, Registry } from "prom-client";
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
  /** CEP operators: partial matches held now (NaN for any other operator), and partial matches timed out. */
  partialMatches: number = Number.NaN;
  timeouts: number = 0;
  /** Per source split, its watermark generator (where watermarks are generated per split). */
  readonly splits: Map<string, { current(): number }> = new Map();
  readonly operator: string;
  constructor(operator: string) {
    this.operator = operator;
  }
}

/**
 * Upper bounds (seconds) of the end-to-end latency histogram's buckets: 1 ms … 60 s.
 *
 * @example
 * ```ts
 * import { LATENCY_BUCKETS } from "gress";
 *
 * // The `le` labels of gress_end_to_end_latency_seconds_bucket, besides +Inf.
 * console.log(LATENCY_BUCKETS[0], LATENCY_BUCKETS.at(-1)); // 0.001 60
 * ```
 */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Records between two latency samples within one synchronous run of a source's emissions. */
export const LATENCY_SAMPLE_EVERY = 1024;

/**
 * Where end-to-end latency samples start: each source counts its records down and calls
 * {@link LatencyProbe.sample} at the first record of a synchronous run of emissions and every
 * {@link LATENCY_SAMPLE_EVERY}th after it; sinks compare `seq` with the last sample they observed (one
 * comparison per write) and observe `performance.now() - at` for a new one. See the module header.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 *
 * const job = new Job();
 * job.fromIterable([1, 2, 3]).sinkTo({ name: "out", write() {} });
 * await job.run();
 * // At least the first record was sampled, and the sink observed it.
 * console.log(job.metrics.latency.seq > 0, job.metrics.sink("out").latency("written").count > 0); // true true
 * ```
 */
export class LatencyProbe {
  /** performance.now() at which the latest sampled record entered the job. */
  at: number = Number.NEGATIVE_INFINITY;
  /** Number of the latest sample (0: none yet). */
  seq: number = 0;

  /** The record being emitted now is a sample, unless one was taken less than 1 ms ago. */
  sample(): void {
    const now = performance.now();
    if (now - this.at < 1) return;
    this.at = now;
    this.seq++;
  }
}

/**
 * Bucket counts of one latency series, read by the Prometheus exposition and the live page.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "gress";
 *
 * const h = new LatencyHistogram();
 * for (const s of [0.002, 0.004, 0.2]) h.observe(s);
 * console.log(h.count, h.quantile(0.5)); // 3 0.004375 (interpolated in the 2.5–5 ms bucket)
 * ```
 */
export class LatencyHistogram {
  /** Observations per bucket of {@link LATENCY_BUCKETS}, and the last one above 60 s (not cumulative). */
  readonly counts: number[] = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
  count: number = 0;
  sum: number = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sum += seconds;
  }

  /**
   * The q-quantile estimated from the buckets as PromQL's histogram_quantile does (linear within the bucket,
   * the first bucket from 0; above the last bound, that bound); NaN without observations.
   */
  quantile(q: number): number {
    return bucketQuantile(q, LATENCY_BUCKETS, this.counts);
  }
}

/**
 * histogram_quantile over non-cumulative bucket counts (`counts[i]` ≤ `bounds[i]`, the last one +Inf).
 *
 * @example
 * ```ts
 * import { bucketQuantile } from "gress";
 *
 * // 10 observations ≤ 1, 10 in (1, 2]: the median is the upper end of the first bucket.
 * console.log(bucketQuantile(0.5, [1, 2], [10, 10, 0])); // 1
 * ```
 */
export function bucketQuantile(q: number, bounds: readonly number[], counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return Number.NaN;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (below + c >= rank && c > 0) {
      if (i === bounds.length) return bounds[bounds.length - 1]!;
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      return lo + (bounds[i]! - lo) * ((rank - below) / c);
    }
    below += c;
  }
  return bounds[bounds.length - 1]!;
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
  readonly #written = new LatencyHistogram();
  readonly #committed = new LatencyHistogram();
  /** Entry times (performance.now()) of samples written since the last barrier, then per checkpoint id. */
  #uncommitted: number[] = [];
  readonly #awaitingCommit = new Map<number, number[]>();
  constructor(sink: string) {
    this.sink = sink;
  }

  /** The end-to-end latency histogram of one stage. */
  latency(stage: "written" | "committed"): LatencyHistogram {
    return stage === "written" ? this.#written : this.#committed;
  }
  /** A sampled record that entered at `enteredAt` (performance.now()) has been written; `transactional`: it waits for a commit. */
  observeWritten(enteredAt: number, transactional: boolean): void {
    this.#written.observe((performance.now() - enteredAt) / 1000);
    if (transactional) this.#uncommitted.push(enteredAt);
  }
  /** The sink pre-commits checkpoint `id`: the samples written so far are committed with it. */
  barrier(id: number): void {
    if (this.#uncommitted.length === 0) return;
    this.#awaitingCommit.set(id, this.#uncommitted);
    this.#uncommitted = [];
  }
  /** Checkpoint `id` completed (its sink transactions committed). */
  checkpointCompleted(id: number): void {
    if (this.#awaitingCommit.size === 0) return;
    const now = performance.now();
    for (const [cp, entered] of this.#awaitingCommit) {
      if (cp > id) continue;
      for (const t of entered) this.#committed.observe((now - t) / 1000);
      this.#awaitingCommit.delete(cp);
    }
  }
  /** A restart: what was written and not committed is written again from the restored checkpoint. */
  forgetUncommitted(): void {
    this.#uncommitted = [];
    this.#awaitingCommit.clear();
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
  /** The source's consumer lag per partition, read at scrape time (Source.lag; unset for other sources). */
  lag: (() => ReadonlyMap<string, number>) | undefined = undefined;
  /** The source's current rate limit in records/s, read at scrape time (set when the source is throttled). */
  rateLimit: (() => number) | undefined = undefined;
  /** The source's quota counts per tenant, read at scrape time (Source.tenantStats; unset for other sources). */
  tenantStats: (() => ReadonlyMap<string, Readonly<SourceQuotaStats>> | undefined) | undefined = undefined;
  /** What a source that cannot pause holds and dropped, read at scrape time (Source.spillStats; unset for others). */
  spillStats: (() => SourceSpillStats) | undefined = undefined;
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
  /** State entries the last completed checkpoint wrote (changed since the one before). */
  lastCheckpointEntries: number = 0;
  checkpointsCompleted: number = 0;
  recoverySeconds: number = 0;
  /** Set by job.run(): restarts so far, when the running attempt began (job Clock ms), the last failure. */
  restarts: number = 0;
  runningSince: number | undefined = undefined;
  lastFailure: { readonly at: number; readonly error: unknown } | undefined = undefined;

  /** Where end-to-end latency samples start (see the module header). */
  readonly latency: LatencyProbe = new LatencyProbe();

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
    perOperator("gress_cep_partial_matches", "Partial matches a CEP operator holds.", (m) => m.partialMatches, false);
    perOperator("gress_cep_timeouts_total", "Partial matches of a CEP operator that timed out.", (m) => (Number.isFinite(m.partialMatches) ? m.timeouts : Number.NaN), true);
    new Gauge({
      name: "gress_split_watermark_seconds",
      help: "Watermark of one source split (Kafka partition, NATS stream...), before splits are merged.",
      labelNames: ["operator", "split"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of ops()) {
          for (const [split, g] of m.splits) {
            const w = g.current();
            if (Number.isFinite(w)) this.set({ operator: m.operator, split }, w / 1000);
          }
        }
      },
    });
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
    // Per tenant only where the source was allowed per-tenant counts (label cardinality), else tenant="*".
    const perTenant = (name: string, help: string, outcome: boolean, read: (s: Readonly<SourceQuotaStats>, admitted: boolean) => number) =>
      new Counter({
        name,
        help,
        labelNames: outcome ? ["source", "tenant", "outcome"] : ["source", "tenant"],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const s of sources()) {
            for (const [tenant, stats] of s.tenantStats?.() ?? []) {
              if (!outcome) this.inc({ source: s.source, tenant }, read(stats, false));
              else for (const admitted of [true, false]) this.inc({ source: s.source, tenant, outcome: admitted ? "admitted" : "refused" }, read(stats, admitted));
            }
          }
        },
      });
    perTenant("gress_source_quota_records_total", "Records a source with quotas admitted or refused, per tenant (tenant=\"*\": all together, unless per-tenant counts are allowed).", true, (s, a) =>
      a ? s.admittedRecords : s.refusedRecords,
    );
    perTenant("gress_source_quota_bytes_total", "Bytes a source with quotas admitted or refused, per tenant.", true, (s, a) => (a ? s.admittedBytes : s.refusedBytes));
    perTenant("gress_source_quota_refusals_total", "Batches (requests, messages) a source refused for its tenant's quota, per tenant.", false, (s) => s.refusals);
    const spilling = (name: string, help: string, counter: boolean, labels: string[], each: (s: SourceSpillStats, set: (labels: Record<string, string>, v: number) => void) => void) => {
      const Kind = counter ? Counter : Gauge;
      new Kind({
        name,
        help,
        labelNames: ["source", ...labels],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const s of sources()) {
            const stats = s.spillStats?.();
            if (stats !== undefined) each(stats, (l, v) => (counter ? (this as Counter).inc({ source: s.source, ...l }, v) : (this as Gauge).set({ source: s.source, ...l }, v)));
          }
        },
      });
    };
    spilling("gress_source_buffered_records", "Records a source that cannot pause holds while the job is paused, in memory or on disk (spill files).", false, ["where"], (s, set) => {
      set({ where: "memory" }, s.memoryRecords);
      set({ where: "disk" }, s.diskRecords);
    });
    spilling("gress_source_spill_bytes", "Bytes a source's spill files take now.", false, [], (s, set) => set({}, s.diskBytes));
    spilling("gress_source_spilled_total", "Records a source wrote to its spill files.", true, [], (s, set) => set({}, s.spilled));
    spilling("gress_source_dropped_total", "Records a source that cannot pause dropped because its buffer (memory and spill files) was full.", true, [], (s, set) => set({}, s.dropped));
    new Gauge({
      name: "gress_source_rate_limit",
      help: "Records/s a throttled source may emit now: adaptive throttling's current rate (additive increase, multiplicative decrease under downstream pressure).",
      labelNames: ["source"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of sources()) if (s.rateLimit !== undefined) this.set({ source: s.source }, s.rateLimit());
      },
    });
    new Gauge({
      name: "gress_kafka_consumer_lag_records",
      help: "Records between the next offset a Kafka source will read and the partition's end as its last fetch saw it (last stable offset under read_committed on @platformatic/kafka, else high watermark).",
      labelNames: ["source", "partition"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of sources()) if (s.lag !== undefined) for (const [partition, lag] of s.lag()) this.set({ source: s.source, partition }, lag);
      },
    });
    // A histogram kept in plain bucket counts by the sinks, exposed in the Prometheus format at scrape time.
    this.registry.registerMetric(latencyMetric(sinks));
    const self = this;
    new Gauge({
      name: "gress_checkpoint_duration_seconds",
      help: "Duration of the last completed checkpoint.",
      registers: [this.registry],
      collect() {
        this.set(self.lastCheckpointDurationSeconds);
      },
    });
    new Gauge({
      name: "gress_checkpoint_size_entries",
      help: "State entries written by the last completed checkpoint (those changed since the previous one).",
      registers: [this.registry],
      collect() {
        this.set(self.lastCheckpointEntries);
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

  /** Checkpoint `id` completed, having written `entries` changed state entries: counts it, and gives its commit time to the sinks' latency. */
  checkpointCompleted(id: number, entries = 0): void {
    this.checkpointsCompleted++;
    this.lastCheckpointEntries = entries;
    for (const s of this.#sinks.values()) s.checkpointCompleted(id);
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

/** One sample line of a metric, as prom-client's registry formats it. */
interface SampleLine {
  readonly metricName: string;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
}

/** The latency histogram as a prom-client metric: read from the sinks' bucket counts at each scrape. */
function latencyMetric(sinks: () => Iterable<SinkMetrics>): Metric {
  const name = "gress_end_to_end_latency_seconds";
  const help =
    'Sampled time from a record entering the job at its source to its result being written by the sink (stage="written") or committed with a checkpoint (stage="committed", two-phase-commit sinks).';
  const values = (): SampleLine[] => {
    const out: SampleLine[] = [];
    for (const s of sinks()) {
      for (const stage of ["written", "committed"] as const) {
        const h = s.latency(stage);
        if (stage === "committed" && h.count === 0) continue;
        const labels = { sink: s.sink, stage };
        let cumulative = 0;
        LATENCY_BUCKETS.forEach((le, i) => {
          cumulative += h.counts[i]!;
          out.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative });
        });
        out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: h.count });
        out.push({ metricName: `${name}_sum`, labels, value: h.sum });
        out.push({ metricName: `${name}_count`, labels, value: h.count });
      }
    }
    return out;
  };
  // The registry only calls get() (and reset() from resetMetrics(), which has nothing to reset here).
  const metric = { name, help, type: "histogram", aggregator: "sum", get: () => Promise.resolve({ name, help, type: "histogram", aggregator: "sum", values: values() }), reset() {} };
  return metric as unknown as Metric;
}
