/**
 * The job the Kafka reliability tests (kafka-txn-timeout, kafka-quick-restart) run in a child process and kill
 * with SIGKILL. Config is the JSON in argv[2]. A bounded Kafka source → per key, a sequence number counted in
 * keyed state (so state that was not rolled back with the positions shows as a gap or a repeat) → a
 * transactional Kafka sink with the default transactional id and `transactionTimeoutMs`. Checkpoints every
 * `intervalMs` in LMDB. Prints "running" once records flow, the coordinator's log lines to stderr, and "done"
 * when the input ended and everything was committed.
 */
import process from "node:process";
import { kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { connection } from "./kafka-support.ts";
import { Job } from "../../lib/index.ts";
import { lmdbState } from "../../lib/state/lmdb.ts";
import { type Sequenced, sequencePerKey } from "../support/sequence.ts";

interface Config {
  readonly job: string;
  readonly stateDir: string;
  readonly brokers: string[];
  readonly input: string;
  readonly output: string;
  readonly groupId: string;
  readonly intervalMs: number;
  readonly ratePerSecond: number;
  readonly transactionTimeoutMs: number;
  readonly retain?: number;
}
interface Event {
  readonly i: number;
  readonly key: string;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const job = new Job({
  name: cfg.job,
  state: lmdbState({ path: cfg.stateDir, mapSize: 256 * 1024 * 1024 }),
  checkpoints: { intervalMs: cfg.intervalMs, log: (m) => process.stderr.write(`gress: ${m}\n`), ...(cfg.retain === undefined ? {} : { retain: cfg.retain }) },
});
let running = false;
job
  .source(
    kafkaSource<Event>({
      name: "in",
      ...connection(cfg.brokers, false),
      topics: [cfg.input],
      groupId: cfg.groupId,
      bounded: true,
      sessionTimeoutMs: 6000,
      rateLimit: { ratePerSecond: cfg.ratePerSecond, burst: 200 },
    }),
  )
  .tap(() => {
    if (running) return;
    running = true;
    process.stdout.write("running\n");
  })
  .keyBy((e) => e.key)
  .process(sequencePerKey())
  .sinkTo(kafkaSink<Sequenced>({ name: "out", ...connection(cfg.brokers, false), topic: cfg.output, key: (o) => o.key, transactionTimeoutMs: cfg.transactionTimeoutMs }));
try {
  await job.run();
} catch (err) {
  process.stderr.write(`FAILED: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}\n`);
  process.exit(1);
}
process.stdout.write("done\n");
process.exit(0);
