/**
 * A scale-out worker the scale-out tests run as a child process (and kill with SIGKILL). Config is the JSON in
 * argv[2]. The pipeline: a Kafka source (rate-limited per task) → per key, a sequence number counted in keyed
 * state (state that did not move with its task shows as a gap or a repeat) → a Kafka sink in the task's
 * transaction. The input is keyed by the same key, so the keyBy needs no shuffle (declared `copartitioned`).
 * With `pipeline: "window-shuffle"` it runs tests/integration/scaleout-shuffle-pipeline.ts instead (a keyBy
 * through a repartition topic, an event-time window count per key). Logs go to stderr; SIGTERM
 * stops the worker gracefully (exit 0), SIGINT too but without leaving the group (a static member keeps its
 * place); a worker failure exits 1.
 */
import process from "node:process";
import { kafkaSink, kafkaSource, runScaledOut } from "../../connectors/kafka/index.ts";
import type { Job } from "../../lib/index.ts";
import { type Sequenced, type SequencedInput, sequencePerKey } from "../support/sequence.ts";
import { type UserCount, windowPipeline } from "./scaleout-shuffle-pipeline.ts";

interface Config {
  readonly job: string;
  readonly state: string;
  readonly brokers: string[];
  readonly client: "kafkajs" | "platformatic";
  readonly input: string;
  readonly output: string;
  readonly intervalMs: number;
  readonly ratePerSecond: number;
  readonly pipeline?: "sequence" | "window-shuffle";
  /** window-shuffle: declare the keyBy copartitioned (wrongly), to show what the shuffle is for. */
  readonly copartitioned?: boolean;
  /** window-shuffle: the watermark strategy's idle timeout. */
  readonly idleTimeoutMs?: number;
  /** Static membership: the worker's group instance id. */
  readonly instanceId?: string;
  /** Default 6 000. */
  readonly sessionTimeoutMs?: number;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const sequence = (job: Job): void => {
  job
    .source(kafkaSource<SequencedInput>({ name: "in", brokers: cfg.brokers, topics: [cfg.input], groupId: "unused-in-scale-out", rateLimit: { ratePerSecond: cfg.ratePerSecond, burst: 50 } }))
    .keyBy((e) => e.key, { copartitioned: true })
    .process(sequencePerKey())
    .sinkTo(kafkaSink<Sequenced>({ name: "out", brokers: cfg.brokers, topic: cfg.output, key: (o) => o.key }));
};
const pipeline =
  cfg.pipeline === "window-shuffle"
    ? windowPipeline({
        input: cfg.input,
        kafka: { brokers: cfg.brokers },
        bounded: false,
        copartitioned: cfg.copartitioned === true,
        ratePerSecond: cfg.ratePerSecond,
        ...(cfg.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: cfg.idleTimeoutMs }),
        sink: () => kafkaSink<UserCount>({ name: "out", brokers: cfg.brokers, topic: cfg.output, key: (o) => o.user }),
      })
    : sequence;
const worker = runScaledOut(
  {
    name: cfg.job,
    kafka: { brokers: cfg.brokers, client: cfg.client },
    state: cfg.state,
    checkpoints: { intervalMs: cfg.intervalMs },
    sessionTimeoutMs: cfg.sessionTimeoutMs ?? 6000,
    ...(cfg.instanceId === undefined ? {} : { instanceId: cfg.instanceId }),
    mapSize: 64 * 1024 * 1024,
    log: (m) => process.stderr.write(`gress: ${m}\n`),
  },
  pipeline,
);
process.once("SIGTERM", () => void worker.stop());
// A static member's stop that keeps its place in the group for its next incarnation.
process.once("SIGINT", () => void worker.stop({ leaveGroup: false }));
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
