/**
 * The job the fault scenarios run in a child process. argv[2] is JSON (see {@link FaultJobConfig}).
 *
 * Every kind numbers each key's records 1, 2, 3, … in keyed state (tests/support/sequence.ts) and writes
 * `{ key, seq, i }` to one exactly-once sink, checkpointing on LMDB, so a lost record shows as a gap, a
 * duplicate as a repeated (key, seq), and lost or doubled state as a shifted sequence:
 * - kafka: Kafka topic (bounded at its end offsets) → Kafka topic (transactional);
 * - pg: generator → PostgreSQL table (append-only, no key: a duplicate would show);
 * - nats: generator → JetStream stream (Nats-Msg-Id deduplication).
 * The input's key of record i is `k<(i * 7919) % keys>`. Prints "running" once records flow and "done" when
 * the input ended and everything was committed, then exits 0.
 */
import process from "node:process";
import { kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { natsJetStreamSink } from "../../connectors/nats/index.ts";
import { postgresSink } from "../../connectors/postgres/index.ts";
import { generator, Job } from "../../lib/index.ts";
import { lmdbState } from "../../lib/state/lmdb.ts";
import { type Sequenced, type SequencedInput, sequencePerKey } from "../support/sequence.ts";
import { type FaultJobConfig, keyOf } from "./config.ts";

const cfg = JSON.parse(process.argv[2] ?? "{}") as FaultJobConfig;
const job = new Job({
  name: cfg.job,
  state: lmdbState({ path: cfg.stateDir, mapSize: 128 * 1024 * 1024, durability: "process" }),
  checkpoints: { intervalMs: cfg.intervalMs, log: (m) => process.stderr.write(`checkpoints: ${m}\n`) },
  ...(cfg.restart === undefined ? {} : { restart: { ...cfg.restart, log: (m: string) => process.stdout.write(`restart: ${m}\n`) } }),
});
let running = false;
const input =
  cfg.kind === "kafka"
    ? job.source(
        kafkaSource<SequencedInput>({
          name: "in",
          brokers: cfg.brokers!,
          topics: [cfg.input!],
          groupId: cfg.groupId!,
          bounded: true,
          rateLimit: { ratePerSecond: cfg.ratePerSecond, burst: 200 },
        }),
      )
    : job.source(
        generator<SequencedInput>({
          name: "in",
          count: cfg.count,
          ratePerSecond: cfg.ratePerSecond,
          make: (i) => ({ i, key: keyOf(i, cfg.keys) }),
        }),
      );
const out = input
  .tap(() => {
    if (running) return;
    running = true;
    process.stdout.write("running\n");
  })
  .keyBy((e) => e.key)
  .process(sequencePerKey());
if (cfg.kind === "kafka") {
  out.sinkTo(
    kafkaSink<Sequenced>({
      name: "out",
      brokers: cfg.brokers!,
      topic: cfg.output!,
      key: (o) => o.key,
      transactionalId: `${cfg.job}-out`,
      ...(cfg.transactionTimeoutMs === undefined ? {} : { transactionTimeoutMs: cfg.transactionTimeoutMs }),
    }),
  );
} else if (cfg.kind === "pg") {
  out.sinkTo(
    postgresSink<Sequenced>({
      name: "out",
      job: cfg.job,
      url: cfg.pgUrl!,
      table: cfg.table!,
      createTable: true,
      batchSize: 500,
      // Explicit: the private cluster allows prepared transactions, and each scenario is timed by one path's SQL.
      twoPhase: cfg.twoPhase ?? "staging",
      columns: {
        key: { type: "text", value: (o) => o.key },
        seq: { type: "integer", value: (o) => o.seq },
        i: { type: "bigint", value: (o) => o.i },
      },
    }),
  );
} else {
  out.sinkTo(natsJetStreamSink<Sequenced>({ name: "out", servers: cfg.natsUrl!, subject: cfg.subject!, idPrefix: cfg.job }));
}
await job.run();
process.stdout.write("done\n");
process.exit(0);
