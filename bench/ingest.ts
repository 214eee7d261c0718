/**
 * Ingest decoding throughput on one core: each decoder against the raw library decoding the same bytes in the
 * same run (target ≥ 0.8×).
 *
 * - JSON with zod: `jsonDecoder({ schema })` against TextDecoder + JSON.parse + `schema.safeParse`.
 * - JSON Schema, Protobuf, Avro in the Confluent wire format: `registryDecoder` (schemas registered in the real
 *   registry of scripts/services; the one lookup per schema id happens in the warm-up) against the header read
 *   by hand plus Ajv's validate after JSON.parse, protobufjs' decode + toObject, and avsc's decode.
 *
 * `scripts/services up registry && eval "$(scripts/services env)" && npm run bench -- ingest`
 * @module
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import AjvImport from "ajv";
import avro from "avsc";
import protobuf from "protobufjs";
import { z } from "zod";
import { type AsyncDecoder, type Decoder, jsonDecoder } from "../connectors/kafka/index.ts";
import { codecFor, frame, registryDecoder, type SchemaType, schemaRegistry } from "../connectors/registry/index.ts";
import { compare } from "./harness.ts";

const COUNT = 100_000;

interface Order {
  readonly id: string;
  readonly user: string;
  readonly cents: number;
  readonly items: number;
  readonly express: boolean;
}

const orders: Order[] = Array.from({ length: COUNT }, (_, i) => ({ id: `o-${i}`, user: `u${i % 1000}`, cents: (i * 37) % 10_000, items: (i % 7) + 1, express: i % 3 === 0 }));

const AVRO = JSON.stringify({
  type: "record",
  name: "Order",
  fields: [
    { name: "id", type: "string" },
    { name: "user", type: "string" },
    { name: "cents", type: "long" },
    { name: "items", type: "int" },
    { name: "express", type: "boolean" },
  ],
});
const PROTO = 'syntax = "proto3";\npackage bench;\nmessage Order { string id = 1; string user = 2; int64 cents = 3; int32 items = 4; bool express = 5; }\n';
const JSON_SCHEMA = JSON.stringify({
  type: "object",
  properties: { id: { type: "string" }, user: { type: "string" }, cents: { type: "integer", minimum: 0 }, items: { type: "integer", minimum: 1 }, express: { type: "boolean" } },
  required: ["id", "user", "cents", "items", "express"],
});

/** Runs a decoder over every message; a message that does not decode is a benchmark bug. */
async function decodeAll(decode: Decoder<unknown> | AsyncDecoder<unknown>, messages: readonly Uint8Array[]): Promise<number> {
  let ok = 0;
  for (const m of messages) {
    let d = decode(m);
    if (d instanceof Promise) d = await d;
    if (!d.ok) throw new Error(`bench input did not decode: ${d.reason}`);
    ok++;
  }
  return ok;
}

function header(m: Uint8Array): number {
  if (m[0] !== 0) throw new Error("bad magic byte");
  return new DataView(m.buffer, m.byteOffset, 5).getInt32(1, false);
}

async function register(url: string, subject: string, schemaType: SchemaType, schema: string): Promise<number> {
  const res = await fetch(`${url}/subjects/${subject}/versions`, { method: "POST", headers: { "content-type": "application/vnd.schemaregistry.v1+json" }, body: JSON.stringify({ schemaType, schema }) });
  if (!res.ok) throw new Error(`registering ${subject}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: number }).id;
}

/** Runs the ingest benchmark. */
export async function run(): Promise<void> {
  const enc = new TextEncoder();
  const Schema = z.object({ id: z.string(), user: z.string(), cents: z.number().int().nonnegative(), items: z.number().int().positive(), express: z.boolean() });
  const jsonMessages = orders.map((o) => enc.encode(JSON.stringify(o)));
  const zodDecoder = jsonDecoder({ schema: Schema });
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  await compare(
    "JSON + zod",
    () => decodeAll(zodDecoder, jsonMessages),
    () => {
      let ok = 0;
      for (const m of jsonMessages) if (Schema.safeParse(JSON.parse(utf8.decode(m))).success) ok++;
      return ok;
    },
  );

  const url = process.env.GRESS_SCHEMA_REGISTRY_URL;
  if (url === undefined || url === "") {
    console.log("JSON Schema, Protobuf, Avro: skipped, GRESS_SCHEMA_REGISTRY_URL is not set (scripts/services up registry)");
    return;
  }
  const tag = `bench-ingest-${process.pid}-${Date.now().toString(36)}`;
  const registry = schemaRegistry({ url });
  const decoder = registryDecoder({ registry });

  // JSON Schema
  const jsonId = await register(url, `${tag}-json`, "JSON", JSON_SCHEMA);
  const jsonCodec = codecFor({ schemaType: "JSON", schema: JSON_SCHEMA });
  const jsonFramed = orders.map((o) => frame(jsonId, jsonCodec.encode(o)));
  const ajv = new AjvImport.default({ strict: false, validateFormats: false });
  const validate = ajv.compile(JSON.parse(JSON_SCHEMA));
  await compare(
    "JSON Schema (Confluent framed)",
    () => decodeAll(decoder, jsonFramed),
    () => {
      let ok = 0;
      for (const m of jsonFramed) {
        header(m);
        if (validate(JSON.parse(utf8.decode(m.subarray(5))))) ok++;
      }
      return ok;
    },
  );

  // Protobuf
  const protoId = await register(url, `${tag}-proto`, "PROTOBUF", PROTO);
  const protoCodec = codecFor({ schemaType: "PROTOBUF", schema: PROTO });
  const protoFramed = orders.map((o) => frame(protoId, protoCodec.encode(o)));
  const Type = protobuf.parse(PROTO, { keepCase: true }).root.lookupType("bench.Order");
  const toObject = { longs: Number, enums: String, defaults: true };
  await compare(
    "Protobuf (Confluent framed)",
    () => decodeAll(decoder, protoFramed),
    () => {
      let ok = 0;
      for (const m of protoFramed) {
        header(m);
        if (m[5] !== 0) throw new Error("message indexes");
        if (Type.toObject(Type.decode(m.subarray(6)), toObject) !== null) ok++;
      }
      return ok;
    },
  );

  // Avro
  const avroId = await register(url, `${tag}-avro`, "AVRO", AVRO);
  const avroCodec = codecFor({ schemaType: "AVRO", schema: AVRO });
  const avroFramed = orders.map((o) => frame(avroId, avroCodec.encode(o)));
  const type = avro.Type.forSchema(JSON.parse(AVRO));
  await compare(
    "Avro (Confluent framed)",
    () => decodeAll(decoder, avroFramed),
    () => {
      let ok = 0;
      for (const m of avroFramed) {
        header(m);
        const body = Buffer.from(m.buffer, m.byteOffset + 5, m.byteLength - 5);
        if (type.decode(body, 0).offset === body.length) ok++;
      }
      return ok;
    },
  );
  console.log(`registry lookups: ${registry.lookups} (one per schema id)`);
}
