/**
 * The pipeline of the scale-out acceptance test (tests/integration/scaleout-acceptance.test.ts), and, run as a
 * program with a JSON config in argv[2], one scale-out worker of it (SIGTERM stops it gracefully, exit 0; a
 * worker failure exits 1; logs go to stderr).
 *
 * Input: the events of tests/integration/scaleout-shuffle-pipeline.ts (partitioned by `region`, a sentinel far
 * in the future closing each partition). After the sentinels are dropped, `keyBy(user)` repartitions (a shuffle
 * in a task), and the keyed stream feeds two branches, merged into one output stream:
 * - an event-time tumbling window count per user: `{ kind: "w", key: user, start, n: count }`;
 * - a CEP pattern per user, an A event followed by a B event within 2 s of event time (A and B are functions of
 *   the event's index): `{ kind: "m", key: user, start: A's index, n: B's index }`.
 * Each output has a unique id (`outputId`); the same output twice is a duplicate.
 */
import { fileURLToPath } from "node:url";
import process from "node:process";
import { isMatch, match, pattern } from "../../cep/index.ts";
import type { KafkaClient } from "../../connectors/kafka/client.ts";
import { kafkaSink, kafkaSource, runScaledOut } from "../../connectors/kafka/index.ts";
import { postgresSink } from "../../connectors/postgres/index.ts";
import { type Job, type Sink, tumbling } from "../../lib/index.ts";
import { boundedOutOfOrderness } from "../../lib/watermarks.ts";
import { type ShuffleEvent, WINDOW_MS } from "./scaleout-shuffle-pipeline.ts";

/** One output record: a window count ("w") or a match ("m"). */
export interface AcceptanceOutput {
  readonly kind: "w" | "m";
  readonly key: string;
  /** Window start, or the index of the match's A event. */
  readonly start: number;
  /** Window count, or the index of the match's B event. */
  readonly n: number;
}

/** What identifies an output: a window (user, start) or a match (user, A event) comes once. */
export const outputId = (o: AcceptanceOutput): string => `${o.kind}:${o.key}:${o.start}`;

/** About 2 events in 5 are A events, the others B; spread so that a user's A and B events interleave. */
export const isA = (i: number): boolean => (i * 7) % 5 < 2;
const WITHIN_MS = 2000;

export interface AcceptancePipelineOptions {
  readonly input: string;
  readonly kafka: { readonly brokers: readonly string[] } | { readonly client: KafkaClient };
  /** The single-process reference reads to the end of the input and stops. */
  readonly bounded: boolean;
  readonly ratePerSecond?: number;
  /** The sinks of the output stream, made once per job built (a worker builds one job per task). */
  readonly sinks: () => Sink<AcceptanceOutput>[];
}

/** Builds the pipeline on `job` (a task's Job in scale-out mode, a plain Job for the reference). */
export function acceptancePipeline(o: AcceptancePipelineOptions): (job: Job) => void {
  return (job) => {
    const byUser = job
      .source(
        kafkaSource<ShuffleEvent>({
          name: "in",
          ...o.kafka,
          topics: [o.input],
          groupId: "acceptance-test",
          bounded: o.bounded,
          ...(o.ratePerSecond === undefined ? {} : { rateLimit: { ratePerSecond: o.ratePerSecond, burst: 50 } }),
        }),
        { watermarks: boundedOutOfOrderness<ShuffleEvent>(0, { timestamp: (e) => e.at }) },
      )
      .filter((e) => e.sentinel !== true)
      .keyBy((e) => e.user);
    const windows = byUser
      .window(tumbling(WINDOW_MS))
      .count()
      .map((r): AcceptanceOutput => ({ kind: "w", key: r.key, start: r.start, n: r.value }));
    const ab = pattern<ShuffleEvent>()
      .begin("a")
      .where((e) => isA(e.i))
      .followedBy("b")
      .where((e) => !isA(e.i))
      .within(WITHIN_MS);
    const matches = match(byUser, ab, { uid: "a-then-b" })
      .filter(isMatch)
      .map((m): AcceptanceOutput => ({ kind: "m", key: m.key, start: m.events.a[0]?.i ?? -1, n: m.events.b[0]?.i ?? -1 }));
    const out = windows.union(matches);
    for (const sink of o.sinks()) out.sinkTo(sink);
  };
}

interface WorkerConfig {
  readonly job: string;
  readonly state: string;
  readonly brokers: string[];
  readonly client: "kafkajs" | "platformatic";
  readonly input: string;
  readonly output: string;
  readonly pgUrl: string;
  readonly table: string;
  readonly intervalMs: number;
  readonly transactionTimeoutMs: number;
  readonly ratePerSecond: number;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const cfg = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig;
  const worker = runScaledOut(
    {
      name: cfg.job,
      kafka: { brokers: cfg.brokers, client: cfg.client },
      state: cfg.state,
      checkpoints: { intervalMs: cfg.intervalMs },
      transactionTimeoutMs: cfg.transactionTimeoutMs,
      sessionTimeoutMs: 6000,
      mapSize: 64 * 1024 * 1024,
      log: (m) => process.stderr.write(`gress: ${m}\n`),
    },
    acceptancePipeline({
      input: cfg.input,
      kafka: { brokers: cfg.brokers },
      bounded: false,
      ratePerSecond: cfg.ratePerSecond,
      sinks: () => [
        kafkaSink<AcceptanceOutput>({ name: "out", brokers: cfg.brokers, topic: cfg.output, key: (o) => o.key }),
        postgresSink<AcceptanceOutput>({
          name: "pg",
          job: cfg.job,
          url: cfg.pgUrl,
          table: cfg.table,
          createTable: true,
          columns: {
            kind: { type: "text", value: (o) => o.kind },
            key: { type: "text", value: (o) => o.key },
            start: { type: "bigint", value: (o) => o.start },
            n: { type: "bigint", value: (o) => o.n },
          },
        }),
      ],
    }),
  );
  process.once("SIGTERM", () => void worker.stop());
  worker.started.then(
    () => process.stderr.write("worker started\n"),
    () => undefined,
  );
  worker.done.then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`worker failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
