/**
 * Deserializers and serializers for records in the Confluent wire format, backed by a schema registry.
 *
 * Decoding: the frame's schema id is looked up once (then cached, as its codec is), so only the first record
 * of each schema id waits for the registry; every later one decodes synchronously. Bad records never throw:
 * an oversized message, a message that is not framed, an unknown schema id, a schema of a type not accepted,
 * or a payload that does not decode with its schema is a reason, and the source sends the record to the
 * dead-letter output with it. A registry that cannot be reached is not the record's fault: that is thrown, and
 * the job fails and restarts from its last checkpoint, losing nothing.
 *
 * Encoding: the serializer's `open()` (the sink calls it when it opens, before the job runs) checks the
 * schema against the subject's latest version under the subject's compatibility rule, and refuses with a
 * {@link SinkError} naming the rule and the registry's reasons when it is incompatible; otherwise it registers
 * the schema (idempotent) and frames every record with the id.
 * @module
 */
import type { DescMessage } from "@bufbuild/protobuf";
import type { z } from "zod";
import { SinkError, SourceError } from "../../lib/errors.ts";
import { type AsyncDecoder, DEFAULT_MAX_BYTES, type Decoded, schemaReason } from "../ingest/decode.ts";
import { type RegistrySchema, SchemaRegistryError, type SchemaRegistryClient, type SchemaType } from "./client.ts";
import { type Codec, type CodecOptions, codecFor } from "./formats.ts";
import { frame, parseFrame } from "./wire.ts";

/**
 * Options of {@link registryDecoder}.
 *
 * @example
 * ```ts
 * import { type RegistryDecoderOptions, schemaRegistry } from "gress/registry";
 *
 * const options: RegistryDecoderOptions<unknown> = { registry: schemaRegistry({ url: "http://127.0.0.1:8081" }), schemaTypes: ["PROTOBUF"], maxBytes: 256 * 1024 };
 * ```
 */
export interface RegistryDecoderOptions<T> {
  readonly registry: SchemaRegistryClient;
  /** Accept only records whose schema is of these types. Default: all three. */
  readonly schemaTypes?: readonly SchemaType[];
  /** Avro or JSON Schema: read every record with this schema (schema evolution). Default: the writer's schema. */
  readonly readerSchema?: string;
  /** Typed ends: decoded values must match this zod schema, whose output is emitted. */
  readonly schema?: z.ZodType<T>;
  /** Typed Protobuf: the message schema protoc-gen-es generated; records are decoded into such messages (see {@link CodecOptions}). */
  readonly protobufMessage?: DescMessage;
  /** Messages larger than this many bytes are refused before anything else. Default 1 MiB. */
  readonly maxBytes?: number;
}

/** Unknown ids and unusable schemas are remembered (up to this many) so that garbage costs one lookup per id. */
const MAX_REMEMBERED_FAILURES = 10_000;

/**
 * A decoder of Confluent-framed records; pass it as a source's `decode`.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { kafkaSource } from "gress/kafka";
 * import { registryDecoder, schemaRegistry } from "gress/registry";
 *
 * const registry = schemaRegistry({ url: "http://127.0.0.1:8081" });
 * const job = new Job({ name: "orders" });
 * // Avro, Protobuf or JSON Schema records, each decoded with the schema its id names; bad ones become dead letters.
 * const orders = job.source(kafkaSource({ name: "orders", brokers: ["127.0.0.1:9092"], topics: ["orders"], groupId: "g", decode: registryDecoder({ registry }) }));
 * ```
 * @param options the registry, accepted schema types, reader schema, size bound
 * @returns a decoder that answers synchronously once a schema id is known
 */
export function registryDecoder<T = unknown>(options: RegistryDecoderOptions<T>): AsyncDecoder<T> {
  const { registry, schema } = options;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const accepted = new Set<SchemaType>(options.schemaTypes ?? ["AVRO", "PROTOBUF", "JSON"]);
  const codecs = new Map<number, Codec>();
  const failures = new Map<number, string>();
  const pending = new Map<number, Promise<void>>();

  const finish = (codec: Codec, body: Uint8Array): Decoded<T> => {
    const decoded = codec.decode(body);
    if (!decoded.ok || schema === undefined) return decoded as Decoded<T>;
    const checked = schema.safeParse(decoded.value);
    return checked.success ? { ok: true, value: checked.data } : { ok: false, reason: schemaReason(checked.error) };
  };
  const fail = (id: number, reason: string): void => {
    if (failures.size < MAX_REMEMBERED_FAILURES) failures.set(id, reason);
  };
  const load = (id: number): Promise<void> => {
    let p = pending.get(id);
    if (p === undefined) {
      p = (async () => {
        let found: RegistrySchema;
        try {
          found = await registry.schemaById(id);
        } catch (err) {
          if (err instanceof SchemaRegistryError && err.status === 404) return fail(id, `unknown schema id ${id}: the registry has no such schema`);
          throw new SourceError(`schema registry unavailable while decoding schema id ${id}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        if (!accepted.has(found.schemaType)) return fail(id, `schema id ${id} is ${found.schemaType}, expected ${[...accepted].join(" or ")}`);
        try {
          codecs.set(
            id,
            codecFor(found, {
              ...(options.readerSchema === undefined ? {} : { readerSchema: options.readerSchema }),
              ...(options.protobufMessage === undefined ? {} : { protobufMessage: options.protobufMessage }),
            }),
          );
        } catch (err) {
          fail(id, `schema id ${id} (${found.schemaType}) is unusable: ${err instanceof Error ? err.message : String(err)}`);
        }
      })().finally(() => pending.delete(id));
      pending.set(id, p);
    }
    return p;
  };

  return (bytes) => {
    if (bytes === null) return { ok: false, reason: "empty message (null value)" };
    if (bytes.byteLength > maxBytes) return { ok: false, reason: `oversized: ${bytes.byteLength} bytes > limit ${maxBytes}` };
    const framed = parseFrame(bytes);
    if (!framed.ok) return framed;
    const { schemaId, body } = framed.value;
    const codec = codecs.get(schemaId);
    if (codec !== undefined) return finish(codec, body);
    const failed = failures.get(schemaId);
    if (failed !== undefined) return { ok: false, reason: failed };
    return load(schemaId).then(() => {
      const loaded = codecs.get(schemaId);
      return loaded === undefined ? { ok: false, reason: failures.get(schemaId) ?? `unknown schema id ${schemaId}` } : finish(loaded, body);
    });
  };
}

/**
 * Serializes a sink's records: opened once when the sink opens, then synchronous per record.
 *
 * @example
 * ```ts
 * import type { RecordSerializer } from "gress/registry";
 *
 * // A serializer of your own: nothing to prepare, UTF-8 text per record.
 * const text: RecordSerializer<string> = { async open() {}, serialize: (v) => new TextEncoder().encode(v) };
 * ```
 */
export interface RecordSerializer<T> {
  /** Prepares (registers the schema, checks compatibility); throws to fail the sink's open. */
  open(): Promise<void>;
  /** The bytes of one record; throws when the value does not fit (the record becomes a dead letter). */
  serialize(value: T): Uint8Array;
}

/**
 * Options of {@link registrySerializer}.
 *
 * @example
 * ```ts
 * import { type RegistrySerializerOptions, schemaRegistry } from "gress/registry";
 *
 * const options: RegistrySerializerOptions = {
 *   registry: schemaRegistry({ url: "http://127.0.0.1:8081" }),
 *   subject: "alerts-value",
 *   schema: { schemaType: "JSON", schema: '{"type":"object","properties":{"card":{"type":"string"}},"required":["card"]}' },
 * };
 * ```
 */
export interface RegistrySerializerOptions {
  readonly registry: SchemaRegistryClient;
  /** The subject to register under, by Confluent's default naming `<topic>-value`. */
  readonly subject: string;
  /** The writer schema. */
  readonly schema: RegistrySchema;
  /** Protobuf: the full name of the message type written. Default: the file's first message. */
  readonly messageType?: string;
  /** Typed Protobuf: values are messages of this generated schema, encoded by @bufbuild/protobuf. */
  readonly protobufMessage?: DescMessage;
}

/**
 * A serializer that writes records in the Confluent wire format with a registered schema; pass it as a Kafka
 * sink's `serialize`. Opening it fails when the schema is incompatible under the subject's rule.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { kafkaSink } from "gress/kafka";
 * import { registrySerializer, schemaRegistry } from "gress/registry";
 *
 * const registry = schemaRegistry({ url: "http://127.0.0.1:8081" });
 * const proto = 'syntax = "proto3"; package shop; message Alert { string card = 1; double score = 2; }';
 * const job = new Job({ name: "alerts" });
 * job.fromIterable([{ card: "c1", score: 0.97 }])
 *   .sinkTo(kafkaSink({ name: "alerts", brokers: ["127.0.0.1:9092"], topic: "alerts", serialize: registrySerializer({ registry, subject: "alerts-value", schema: { schemaType: "PROTOBUF", schema: proto } }) }));
 * ```
 * @param options registry, subject, schema, Protobuf message type
 * @returns a serializer to open before use
 */
export function registrySerializer<T>(options: RegistrySerializerOptions): RecordSerializer<T> {
  const { registry, subject } = options;
  // Parse the schema now: a schema that does not parse is a mistake to report before any job runs.
  const codec = codecFor(options.schema, {
    ...(options.messageType === undefined ? {} : { messageType: options.messageType }),
    ...(options.protobufMessage === undefined ? {} : { protobufMessage: options.protobufMessage }),
  });
  let schemaId: number | undefined;
  return {
    async open() {
      if (schemaId !== undefined) return;
      try {
        const verdict = await registry.checkCompatibility(subject, options.schema);
        if (!verdict.compatible) {
          const why = verdict.messages.length > 0 ? `: ${verdict.messages.join("; ")}` : "";
          throw new SinkError(`schema for subject "${subject}" is incompatible with its latest version under the subject's ${verdict.level ?? "compatibility"} rule${why}`, {
            details: { subject, level: verdict.level, messages: verdict.messages },
          });
        }
        schemaId = await registry.register(subject, options.schema);
      } catch (err) {
        if (err instanceof SinkError) throw err;
        throw new SinkError(`schema registry: cannot register the schema of subject "${subject}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    },
    serialize(value) {
      if (schemaId === undefined) throw new SinkError(`serializer for subject "${subject}" used before open()`);
      return frame(schemaId, codec.encode(value));
    },
  };
}
