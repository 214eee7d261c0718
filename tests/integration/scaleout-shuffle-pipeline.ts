/**
 * The pipeline of the shuffle tests (tests/integration/scaleout-shuffle.test.ts), shared by the scale-out
 * workers (tests/integration/scaleout-job.ts, `pipeline: "window-shuffle"`) and the single-process reference
 * run: input partitioned by `region` (partition = region number % P), keyed by `user`, an event-time tumbling
 * window count per user. Each input partition ends with a sentinel event far in the future: it moves the
 * watermark past every real window (the scale-out job never ends) and is filtered out before the keyBy.
 */
import { type Job, type Sink, tumbling } from "../../lib/index.ts";
import { boundedOutOfOrderness } from "../../lib/watermarks.ts";
import { kafkaSource } from "../../connectors/kafka/index.ts";
import type { KafkaClient } from "../../connectors/kafka/client.ts";

export interface ShuffleEvent {
  readonly i: number;
  readonly region: number;
  readonly user: string;
  readonly at: number;
  readonly sentinel?: true;
}

/** One window result as the sinks write it. */
export interface UserCount {
  readonly user: string;
  readonly start: number;
  readonly count: number;
}

export const WINDOW_MS = 10_000;
const BASE = Date.UTC(2023, 0, 1);

/**
 * `count` events over `regions` regions (region i % regions) and `users` users, 50 ms of event time apart and
 * ascending (so no record is late in any partition), then one sentinel per partition. Users are spread so
 * that every user appears in every region: a keyBy that stayed local would split each user's count.
 */
export function shuffleEvents(count: number, regions: number, users: number, partitions: number): { partition: number; event: ShuffleEvent }[] {
  const out: { partition: number; event: ShuffleEvent }[] = [];
  for (let i = 0; i < count; i++) {
    const region = i % regions;
    out.push({ partition: region % partitions, event: { i, region, user: `u${Math.floor(i / regions) % users}`, at: BASE + i * 50 } });
  }
  for (let p = 0; p < partitions; p++) out.push({ partition: p, event: { i: count + p, region: p, user: "-", at: BASE + 1000 * 86_400_000, sentinel: true } });
  return out;
}

/** The windows of the reference: count per (user, window start), from the events themselves. */
export function expectedCounts(events: readonly ShuffleEvent[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of events) {
    if (e.sentinel === true) continue;
    const k = `${e.user}@${e.at - (e.at % WINDOW_MS)}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

export interface WindowPipelineOptions {
  readonly input: string;
  /** Brokers or a client for the source. */
  readonly kafka: { readonly brokers: readonly string[] } | { readonly client: KafkaClient };
  /** A single-process reference reads to the end of the input and stops. */
  readonly bounded: boolean;
  /** Declares the keyBy copartitioned (wrong here: the input is partitioned by region, not user). */
  readonly copartitioned: boolean;
  readonly ratePerSecond?: number;
  /** The watermark strategy's idle timeout (none by default). */
  readonly idleTimeoutMs?: number;
  /** Makes the sink: called once per job built (each task of a worker has sinks of its own). */
  readonly sink: () => Sink<UserCount>;
}

/** Builds the pipeline on `job` (a task's Job in scale-out mode, a plain Job for the reference). */
export function windowPipeline(o: WindowPipelineOptions): (job: Job) => void {
  return (job) => {
    job
      .source(
        kafkaSource<ShuffleEvent>({
          name: "in",
          ...o.kafka,
          topics: [o.input],
          groupId: "shuffle-test",
          bounded: o.bounded,
          ...(o.ratePerSecond === undefined ? {} : { rateLimit: { ratePerSecond: o.ratePerSecond, burst: 50 } }),
        }),
        { watermarks: boundedOutOfOrderness<ShuffleEvent>(0, { timestamp: (e) => e.at, ...(o.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: o.idleTimeoutMs }) }) },
      )
      .filter((e) => e.sentinel !== true)
      .keyBy((e) => e.user, { copartitioned: o.copartitioned })
      .window(tumbling(WINDOW_MS))
      .count()
      .map((r) => ({ user: r.key, start: r.start, count: r.value }))
      .sinkTo(o.sink());
  };
}
