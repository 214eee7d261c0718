/**
 * A scale-out worker that writes to PostgreSQL, run as a child process by scaleout-postgres.test.ts (and killed
 * with SIGKILL there). Config is the JSON in argv[2]. The pipeline: a Kafka source (rate-limited per task) → per
 * key (the input is keyed by the same key: `copartitioned`, no shuffle), a sequence number counted in keyed
 * state → a PostgreSQL sink into a table without a key (so that a row committed twice stays twice) and a Kafka
 * sink in the task's transaction. Logs go to stderr; SIGTERM stops the worker gracefully (exit 0); a worker
 * failure exits 1.
 */
import process from "node:process";
import { kafkaSink, kafkaSource, runScaledOut } from "../../connectors/kafka/index.ts";
import { postgresSink } from "../../connectors/postgres/index.ts";
import type { Job } from "../../lib/index.ts";
import { type Sequenced, type SequencedInput, sequencePerKey } from "../support/sequence.ts";

interface Config {
  readonly job: string;
  readonly state: string;
  readonly brokers: string[];
  readonly client: "kafkajs" | "platformatic";
  readonly input: string;
  readonly output: string;
  readonly pgUrl: string;
  readonly table: string;
  readonly intervalMs: number;
  readonly ratePerSecond: number;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const pipeline = (job: Job): void => {
  const sequenced = job
    .source(kafkaSource<SequencedInput>({ name: "in", brokers: cfg.brokers, topics: [cfg.input], groupId: "unused-in-scale-out", rateLimit: { ratePerSecond: cfg.ratePerSecond, burst: 50 } }))
    .keyBy((e) => e.key, { copartitioned: true })
    .process(sequencePerKey());
  sequenced.sinkTo(
    postgresSink<Sequenced>({
      name: "pg",
      job: cfg.job,
      url: cfg.pgUrl,
      table: cfg.table,
      createTable: true,
      columns: { key: { type: "text", value: (o) => o.key }, seq: { type: "bigint", value: (o) => o.seq }, i: { type: "bigint", value: (o) => o.i } },
    }),
  );
  sequenced.sinkTo(kafkaSink<Sequenced>({ name: "out", brokers: cfg.brokers, topic: cfg.output, key: (o) => o.key }));
};
const worker = runScaledOut(
  {
    name: cfg.job,
    kafka: { brokers: cfg.brokers, client: cfg.client },
    state: cfg.state,
    checkpoints: { intervalMs: cfg.intervalMs },
    sessionTimeoutMs: 6000,
    mapSize: 64 * 1024 * 1024,
    log: (m) => process.stderr.write(`gress: ${m}\n`),
  },
  pipeline,
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
