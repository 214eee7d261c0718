/**
 * Kafka for Gress (`gress/kafka`): a replayable, partition-aware source and a transactional two-phase-commit
 * sink, so that Kafka → Gress → Kafka is exactly-once across crashes. Both are written against the small
 * {@link KafkaClient} interface; `platformaticKafkaClient` implements it with @platformatic/kafka (the client
 * made from `brokers` by default, when that optional peer dependency is installed) and `kafkajsClient` with
 * kafkajs (`client: "kafkajs"`, and the default without it).
 *
 * @example
 * ```ts
 * import { Job, lmdbState } from "gress";
 * import { kafkaSource, kafkaSink } from "gress/kafka";
 * const job = new Job({ name: "copy", state: lmdbState({ path: "./state" }), checkpoints: { intervalMs: 1000 } });
 * job.source(kafkaSource({ name: "in", brokers: ["127.0.0.1:9092"], topics: ["in"], groupId: "copy" }))
 *   .sinkTo(kafkaSink({ name: "out", brokers: ["127.0.0.1:9092"], topic: "out" }));
 * await job.run();
 * ```
 * @module
 */
export type * from "./client.ts";
export { DEFAULT_KAFKA_CLIENT, defaultKafkaClient, type KafkaClientName } from "./default-client.ts";
export { type KafkajsClientOptions, kafkajsClient } from "./kafkajs.ts";
export { type PlatformaticKafkaClientOptions, platformaticKafkaClient } from "./platformatic.ts";
export { type KafkaSinkHandle, type KafkaSinkOptions, kafkaSink } from "./sink.ts";
export { type KafkaSourceOptions, kafkaSource, parseSplit, splitOf } from "./source.ts";
export { runScaledOut, type ScaleOutOptions, type ScaleOutWorker } from "../../lib/scaleout/worker.ts";
export { type AsyncDecoder, type Decoded, type Decoder, jsonDecoder, type SourceDeadLetter, textDecoder } from "../ingest/decode.ts";
