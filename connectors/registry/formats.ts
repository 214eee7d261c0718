/**
 * One codec per registry schema, built from the schema text by the format's own library: avsc for Avro,
 * protobufjs for Protobuf (.proto text as registries store it), Ajv for JSON Schema. A codec decodes the body
 * of a Confluent frame (after the 5-byte header) into a value or a reason, and encodes a value into a body,
 * throwing with the reason when the value does not fit the schema.
 *
 * Schema evolution: an Avro codec may have a reader schema besides the writer's (avsc resolves the writer's
 * records into the reader's shape: added fields take their defaults, removed ones are skipped); a JSON Schema
 * codec validates with the reader schema when one is given; Protobuf needs nothing (unknown fields are skipped,
 * missing ones read as their defaults).
 * @module
 */
import { Buffer } from "node:buffer";
import { type DescMessage, fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import AjvImport from "ajv";
import Ajv2020Import from "ajv/dist/2020.js";
import avro from "avsc";
import protobuf from "protobufjs";
import { type Decoded, decodeUtf8, parseJsonSafely } from "../ingest/decode.ts";
import type { RegistrySchema, SchemaType } from "./client.ts";
import { readMessageIndexes, writeMessageIndexes } from "./wire.ts";

/**
 * Decodes frame bodies of one schema and encodes values for it.
 *
 * @example
 * ```ts
 * import { codecFor } from "gress/registry";
 *
 * const codec = codecFor({ schemaType: "AVRO", schema: '{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]}' });
 * const body = codec.encode({ x: 3 });
 * console.log(codec.decode(body)); // { ok: true, value: { x: 3 } }
 * ```
 */
export interface Codec {
  readonly schemaType: SchemaType;
  /** The value of a frame body, or why the body does not decode with this schema. Never throws. */
  decode(body: Uint8Array): Decoded<unknown>;
  /** The frame body of a value; throws (with the reason) when the value does not fit the schema. */
  encode(value: unknown): Uint8Array;
}

/**
 * Options of {@link codecFor}.
 *
 * @example
 * ```ts
 * import type { CodecOptions } from "gress/registry";
 *
 * // Read Avro records with the newest schema, whatever version wrote them; Protobuf messages of type shop.Order.
 * const options: CodecOptions = { readerSchema: '{"type":"record","name":"U","fields":[{"name":"id","type":"long"}]}', messageType: "shop.Order" };
 * ```
 */
export interface CodecOptions {
  /** Avro or JSON Schema: the schema to read with (schema evolution). Default: the writer's schema. */
  readonly readerSchema?: string;
  /** Protobuf: the full name of the message type to encode (decoding follows the frame's message indexes). Default: the file's first message. */
  readonly messageType?: string;
  /**
   * Protobuf with generated types: the message schema protoc-gen-es generated (`OrderSchema`). Records are
   * decoded by @bufbuild/protobuf into typed messages (int64 as bigint), and must be of that message type;
   * values to encode are such messages. It names the message type to encode, too.
   */
  readonly protobufMessage?: DescMessage;
}

/**
 * A codec for a registry schema.
 *
 * @example
 * ```ts
 * import { codecFor } from "gress/registry";
 *
 * const codec = codecFor({ schemaType: "PROTOBUF", schema: 'syntax = "proto3"; message Click { string page = 1; int64 at = 2; }' });
 * console.log(codec.decode(codec.encode({ page: "/", at: 5 }))); // { ok: true, value: { page: "/", at: 5 } }
 * ```
 * @param schema the schema text and its type
 * @param options reader schema (evolution), Protobuf message type
 * @returns the codec; throws when the schema itself does not parse
 */
export function codecFor(schema: RegistrySchema, options: CodecOptions = {}): Codec {
  switch (schema.schemaType) {
    case "AVRO":
      return avroCodec(schema.schema, options.readerSchema);
    case "PROTOBUF":
      return protobufCodec(schema.schema, options.protobufMessage?.typeName ?? options.messageType, options.protobufMessage);
    case "JSON":
      return jsonSchemaCodec(schema.schema, options.readerSchema);
    default:
      throw new RangeError(`unsupported schema type ${JSON.stringify(schema.schemaType)} (AVRO, PROTOBUF or JSON)`);
  }
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** avsc decodes records into instances of generated classes; users get plain objects (bytes stay Buffers). */
function plain(value: unknown): unknown {
  if (typeof value !== "object" || value === null || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map(plain);
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const key in out) {
    const v = out[key];
    if (typeof v === "object" && v !== null) out[key] = plain(v);
  }
  return out;
}

function avroCodec(writerText: string, readerText: string | undefined): Codec {
  const writer = avro.Type.forSchema(JSON.parse(writerText));
  const reader = readerText === undefined ? writer : avro.Type.forSchema(JSON.parse(readerText));
  let resolver: avro.Resolver | undefined;
  let unresolvable: string | undefined;
  if (reader !== writer && !reader.equals(writer)) {
    try {
      resolver = reader.createResolver(writer);
    } catch (err) {
      unresolvable = `the writer's Avro schema cannot be read with the reader schema: ${message(err)}`;
    }
  }
  return {
    schemaType: "AVRO",
    decode(body) {
      if (unresolvable !== undefined) return { ok: false, reason: unresolvable };
      const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      try {
        const { value, offset } = reader.decode(buf, 0, resolver);
        if (offset < 0) return { ok: false, reason: "undecodable AVRO payload: truncated" };
        if (offset !== buf.length) return { ok: false, reason: `undecodable AVRO payload: ${buf.length - offset} bytes left after the record` };
        return { ok: true, value: plain(value) };
      } catch (err) {
        return { ok: false, reason: `undecodable AVRO payload: ${message(err)}` };
      }
    },
    encode(value) {
      const bad: string[] = [];
      if (!writer.isValid(value, { errorHook: (path) => bad.push(path.length > 0 ? path.join(".") : "(root)") })) {
        throw new TypeError(`value does not fit the Avro schema at ${bad.slice(0, 5).join(", ")}`);
      }
      const buf = writer.toBuffer(value);
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    },
  };
}

function protobufCodec(text: string, messageType: string | undefined, typed: DescMessage | undefined): Codec {
  const parsed = protobuf.parse(text, { keepCase: true });
  const root = parsed.root.resolveAll();
  const fileScope = parsed.package === undefined ? root : root.lookup(parsed.package);
  const messagesOf = (ns: protobuf.NamespaceBase | null): protobuf.Type[] => (ns?.nestedArray ?? []).filter((n): n is protobuf.Type => n instanceof protobuf.Type);
  const top = messagesOf(fileScope as protobuf.NamespaceBase | null);
  if (top.length === 0) throw new RangeError("the Protobuf schema declares no message");
  const byIndexes = (indexes: readonly number[]): protobuf.Type | undefined => {
    let type = top[indexes[0] as number];
    for (let i = 1; i < indexes.length && type !== undefined; i++) type = messagesOf(type)[indexes[i] as number];
    return type;
  };
  // The message type to encode and its path of indexes in the file.
  let encodeType = top[0] as protobuf.Type;
  let encodeIndexes: number[] = [0];
  if (messageType !== undefined) {
    const want = messageType.replace(/^\./, "");
    const find = (types: protobuf.Type[], path: number[]): boolean => {
      for (let i = 0; i < types.length; i++) {
        const t = types[i] as protobuf.Type;
        if (t.fullName.replace(/^\./, "") === want) {
          encodeType = t;
          encodeIndexes = [...path, i];
          return true;
        }
        if (find(messagesOf(t), [...path, i])) return true;
      }
      return false;
    };
    if (!find(top, [])) throw new RangeError(`the Protobuf schema has no message ${messageType}`);
  }
  const indexBytes = writeMessageIndexes(encodeIndexes);
  const toObject: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true };
  const decodeAs = (type: protobuf.Type, payload: Uint8Array): Decoded<unknown> => {
    try {
      if (typed !== undefined) {
        const name = type.fullName.replace(/^\./, "");
        if (name !== typed.typeName) return { ok: false, reason: `the record is a ${name}, expected ${typed.typeName}` };
        return { ok: true, value: fromBinary(typed, payload) };
      }
      return { ok: true, value: type.toObject(type.decode(payload), toObject) };
    } catch (err) {
      return { ok: false, reason: `undecodable PROTOBUF payload (${type.name}): ${message(err)}` };
    }
  };
  return {
    schemaType: "PROTOBUF",
    decode(body) {
      // Most frames name the file's first message as the single byte 0.
      if (body[0] === 0) return decodeAs(top[0] as protobuf.Type, body.subarray(1));
      const read = readMessageIndexes(body);
      if (!read.ok) return read;
      const type = byIndexes(read.value.indexes);
      if (type === undefined) return { ok: false, reason: `no Protobuf message at indexes [${read.value.indexes.join(", ")}] in the schema` };
      return decodeAs(type, read.value.payload);
    },
    encode(value) {
      if (typed !== undefined) {
        const payload = toBinary(typed, value as Message);
        const out = new Uint8Array(indexBytes.byteLength + payload.byteLength);
        out.set(indexBytes, 0);
        out.set(payload, indexBytes.byteLength);
        return out;
      }
      const invalid = encodeType.verify(value as Record<string, unknown>);
      if (invalid !== null) throw new TypeError(`value does not fit the Protobuf message ${encodeType.name}: ${invalid}`);
      const payload = encodeType.encode(encodeType.fromObject(value as Record<string, unknown>)).finish();
      const out = new Uint8Array(indexBytes.byteLength + payload.byteLength);
      out.set(indexBytes, 0);
      out.set(payload, indexBytes.byteLength);
      return out;
    },
  };
}

const Ajv = AjvImport.default;
const Ajv2020 = Ajv2020Import.default;

function jsonSchemaCodec(writerText: string, readerText: string | undefined): Codec {
  const document = JSON.parse(readerText ?? writerText) as Record<string, unknown>;
  const is2020 = typeof document["$schema"] === "string" && document["$schema"].includes("2020-12");
  // One Ajv per codec: a schema with an $id cannot be added twice to one instance.
  const ajv = is2020 ? new Ajv2020({ strict: false, validateFormats: false }) : new Ajv({ strict: false, validateFormats: false });
  const validate = ajv.compile(document as { $async?: false });
  const violations = (): string =>
    (validate.errors ?? [])
      .slice(0, 5)
      .map((e) => `${e.instancePath === "" ? "(root)" : e.instancePath}: ${e.message ?? e.keyword}`)
      .join("; ");
  const encoder = new TextEncoder();
  return {
    schemaType: "JSON",
    decode(body) {
      const text = decodeUtf8(body);
      if (!text.ok) return text;
      const parsed = parseJsonSafely(text.value);
      if (!parsed.ok) return parsed;
      return validate(parsed.value) ? parsed : { ok: false, reason: `schema violation: ${violations()}` };
    },
    encode(value) {
      if (!validate(value)) throw new TypeError(`value does not fit the JSON Schema: ${violations()}`);
      return encoder.encode(JSON.stringify(value));
    },
  };
}
