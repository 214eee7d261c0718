/**
 * The pipeline module tests/integration/scaleout-cli.test.ts runs with `gress run --workers 2`: a Kafka source
 * (rate-limited per task, so that the run lasts a few seconds; event time `SO_CLI_T0 + 2 ms × i` with
 * watermarks {@link BOUND_MS} out of order, so that each task's watermark advances as it reads) → per key, a
 * sequence number in keyed state → a Kafka sink. Brokers and topics come from the environment, as a user's
 * module would take them.
 */
import process from "node:process";
import { kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { boundedOutOfOrderness, type Job } from "../../lib/index.ts";
import { type Sequenced, type SequencedInput, sequencePerKey } from "../support/sequence.ts";

const brokers = (process.env.SO_CLI_BROKERS ?? "").split(",");
const t0 = Number(process.env.SO_CLI_T0 ?? 0);

/** The watermarks' out-of-orderness bound (ms): a task's final watermark is t0 + 2 × its last i − BOUND_MS − 1. */
export const BOUND_MS = 100;

export default (job: Job): void => {
  job
    .source(kafkaSource<SequencedInput>({ name: "in", brokers, topics: [process.env.SO_CLI_INPUT ?? ""], groupId: "unused-in-scale-out", rateLimit: { ratePerSecond: 150, burst: 50 } }), {
      watermarks: boundedOutOfOrderness<SequencedInput>(BOUND_MS, { timestamp: (e) => t0 + 2 * e.i }),
    })
    .keyBy((e) => e.key, { copartitioned: true }) // the input is keyed by the same key: no shuffle
    .process(sequencePerKey())
    .sinkTo(kafkaSink<Sequenced>({ name: "out", brokers, topic: process.env.SO_CLI_OUTPUT ?? "", key: (o) => o.key }));
};
