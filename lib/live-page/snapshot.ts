/**
 * The live page's data: one snapshot of a job's metrics, read from the same fields as /metrics, so that the
 * page and a Prometheus scrape taken at the same moment agree. Rates are left to the page (differences of
 * consecutive snapshots); latency percentiles are estimated from the histogram's buckets as PromQL's
 * histogram_quantile does.
 * @module
 */
import type { Job } from "../job.ts";
import type { LatencyHistogram } from "../metrics.ts";

/** Health as reported by the job runner. */
export interface JobHealth {
  status: "starting" | "running" | "finished" | "failed";
  error?: string;
}

/** Percentiles (seconds) of one latency series; null without observations. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
}

/** One snapshot as the live page receives it (JSON). */
export interface LiveSnapshot {
  readonly job: string;
  readonly status: JobHealth["status"];
  readonly error: string | undefined;
  /** Processing time of the job's clock (epoch ms). */
  readonly time: number;
  /** Monotonic time of the snapshot (ms), for rates. */
  readonly at: number;
  readonly uptimeSeconds: number;
  readonly restarts: number;
  /** `lag`: records still to read over the source's partitions (gress_kafka_consumer_lag_records summed); null for sources without it. */
  readonly sources: readonly { name: string; records: number; paused: boolean; lag: number | null }[];
  readonly sinks: readonly {
    name: string;
    written: number;
    inFlight: number;
    maxInFlight: number;
    latency: LatencySummary | null;
    committedLatency: LatencySummary | null;
  }[];
  readonly operators: readonly {
    id: string;
    in: number;
    out: number;
    late: number;
    deadLetters: number;
    watermark: number | null;
    eventTimeLagMs: number | null;
    buffered: number;
    partialMatches: number | null;
    timeouts: number | null;
  }[];
  readonly splits: readonly { operator: string; split: string; watermark: number }[];
  readonly checkpoints: { readonly completed: number; readonly lastDurationSeconds: number };
  readonly recoverySeconds: number;
}

function summary(h: LatencyHistogram): LatencySummary | null {
  return h.count === 0 ? null : { count: h.count, p50: h.quantile(0.5), p95: h.quantile(0.95), p99: h.quantile(0.99) };
}

/**
 * A snapshot of `job` for the live page (and /status).
 */
export function liveSnapshot(job: Job, health: JobHealth): LiveSnapshot {
  const m = job.metrics;
  const now = job.clock.now();
  return {
    job: job.name,
    status: health.status,
    error: health.error,
    time: now,
    at: performance.now(),
    uptimeSeconds: m.uptimeSeconds,
    restarts: m.restarts,
    sources: job.sources.map((s) => {
      const sm = m.source(s.name);
      const lag = sm.lag?.();
      return { name: s.name, records: sm.emitted, paused: sm.paused, lag: lag === undefined ? null : [...lag.values()].reduce((a, b) => a + b, 0) };
    }),
    sinks: m.sinks().map((s) => ({
      name: s.sink,
      written: s.written,
      inFlight: s.inFlight,
      maxInFlight: s.maxInFlight,
      latency: summary(s.latency("written")),
      committedLatency: summary(s.latency("committed")),
    })),
    operators: m.operators().map((o) => ({
      id: o.operator,
      in: o.recordsIn,
      out: o.recordsOut,
      late: o.lateRecords,
      deadLetters: o.deadLetters,
      watermark: Number.isFinite(o.watermark) ? o.watermark : null,
      // How far event time (the watermark) trails processing time.
      eventTimeLagMs: Number.isFinite(o.watermark) ? now - o.watermark : null,
      buffered: o.buffered,
      partialMatches: Number.isFinite(o.partialMatches) ? o.partialMatches : null,
      timeouts: Number.isFinite(o.partialMatches) ? o.timeouts : null,
    })),
    splits: m.operators().flatMap((o) =>
      [...o.splits].flatMap(([split, g]) => {
        const w = g.current();
        return Number.isFinite(w) ? [{ operator: o.operator, split, watermark: w }] : [];
      }),
    ),
    checkpoints: { completed: m.checkpointsCompleted, lastDurationSeconds: m.lastCheckpointDurationSeconds },
    recoverySeconds: m.recoverySeconds,
  };
}
