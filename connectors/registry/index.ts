/**
 * Schema registry and the Confluent wire format for Gress (`gress/registry`): Avro, Protobuf and JSON Schema
 * records as Kafka Streams and Flink read and write them. {@link registryDecoder} is a source's `decode`: it
 * reads the schema id of each record, fetches that schema once, and decodes with avsc, protobufjs or Ajv;
 * bad bytes, unknown ids and oversized messages become dead letters with the reason. {@link registrySerializer}
 * is a Kafka sink's `serialize`: when the sink opens it checks the schema against the subject's compatibility
 * rule (failing the job start if it is incompatible), registers it, and frames each record with its id.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { kafkaSink, kafkaSource } from "gress/kafka";
 * import { registryDecoder, registrySerializer, schemaRegistry } from "gress/registry";
 *
 * const registry = schemaRegistry({ url: "http://127.0.0.1:8081" });
 * const avro = JSON.stringify({ type: "record", name: "Order", fields: [{ name: "id", type: "string" }, { name: "total", type: "double" }] });
 * const job = new Job({ name: "orders" });
 * job.source(kafkaSource({ name: "in", brokers: ["127.0.0.1:9092"], topics: ["orders"], groupId: "orders", decode: registryDecoder({ registry }) }))
 *   .sinkTo(kafkaSink({ name: "out", brokers: ["127.0.0.1:9092"], topic: "orders-copy", serialize: registrySerializer({ registry, subject: "orders-copy-value", schema: { schemaType: "AVRO", schema: avro } }) }));
 * await job.run();
 * ```
 * @module
 */
export {
  type CompatibilityVerdict,
  type RegistrySchema,
  type SchemaRegistryClient,
  SchemaRegistryError,
  type SchemaRegistryOptions,
  type SchemaType,
  schemaRegistry,
} from "./client.ts";
export { type ConfluentSchemaRegistryOptions, confluentSchemaRegistry } from "./confluent.ts";
export { type Codec, type CodecOptions, codecFor } from "./formats.ts";
export { type RecordSerializer, type RegistryDecoderOptions, type RegistrySerializerOptions, registryDecoder, registrySerializer } from "./serde.ts";
export { type Frame, frame, parseFrame } from "./wire.ts";
export type { AsyncDecoder, Decoded } from "../ingest/decode.ts";
