/**
 * The job the Kafka end-to-end exactly-once test runs in a child process (and kills with SIGKILL). Config is
 * the JSON in argv[2]. Kafka input (bounded at the end offsets) → parse → per-record transform → two
 * exactly-once sinks: a transactional Kafka topic and an append-only PostgreSQL table (no key, so a
 * duplicate would show). Checkpoints every `intervalMs` in LMDB. Prints "running" once records flow and
 * "done" when the input ended and everything was committed.
 */
import process from "node:process";
import { kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { connection } from "./kafka-support.ts";
import { postgresSink } from "../../connectors/postgres/index.ts";
import { Job } from "../../lib/index.ts";
import { lmdbState } from "../../lib/state/lmdb.ts";

interface Config {
  readonly job: string;
  readonly stateDir: string;
  readonly brokers: string[];
  readonly pgUrl: string;
  readonly input: string;
  readonly output: string;
  readonly table: string;
  readonly groupId: string;
  readonly intervalMs: number;
  readonly ratePerSecond: number;
}
interface Event {
  readonly id: number;
  readonly k: string;
  readonly seq: number;
}
interface Out {
  readonly id: number;
  readonly k: string;
  readonly seq: number;
  readonly sq: number;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const job = new Job({
  name: cfg.job,
  state: lmdbState({ path: cfg.stateDir, mapSize: 256 * 1024 * 1024 }),
  checkpoints: { intervalMs: cfg.intervalMs, log: () => {} },
});
let running = false;
const out = job
  .source(
    kafkaSource<Event>({
      name: "in",
      ...connection(cfg.brokers, false),
      topics: [cfg.input],
      // Recovery seeks to the checkpointed offsets; the group only assigns partitions. A group per
      // incarnation avoids waiting for the killed member's session to expire.
      groupId: cfg.groupId,
      bounded: true,
      rateLimit: { ratePerSecond: cfg.ratePerSecond, burst: 500 },
    }),
  )
  .tap(() => {
    if (running) return;
    running = true;
    process.stdout.write("running\n");
  })
  .map((e): Out => ({ id: e.id, k: e.k, seq: e.seq, sq: (e.id * e.id) % 1_000_003 }));
out.sinkTo(kafkaSink<Out>({ name: "out-kafka", ...connection(cfg.brokers, false), topic: cfg.output, key: (o) => o.k, transactionalId: `${cfg.job}-out-kafka` }));
out.sinkTo(
  postgresSink<Out>({
    name: "out-pg",
    job: cfg.job,
    url: cfg.pgUrl,
    table: cfg.table,
    createTable: true,
    columns: {
      id: { type: "bigint", value: (o) => o.id },
      k: { type: "text", value: (o) => o.k },
      seq: { type: "integer", value: (o) => o.seq },
      sq: { type: "bigint", value: (o) => o.sq },
    },
  }),
);
await job.run();
process.stdout.write("done\n");
process.exit(0);
