/**
 * Records in the Confluent wire format against a real schema registry (Apicurio's Confluent API, started by
 * scripts/services) and real Kafka: Avro, Protobuf and JSON Schema round trips Kafka → Gress → Kafka; schema
 * evolution (old and new Avro records read with the newer schema); an incompatible schema refused when the
 * job starts; bad bytes, unknown ids, oversized and undecodable messages as dead letters with exact counts.
 *
 * The input is written and the output checked independently of Gress' serdes: schemas are registered with
 * plain HTTP requests, frames are built and split here with Buffer, and payloads are encoded and decoded with
 * avsc, protobufjs and JSON.parse directly.
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import process from "node:process";
import { describe, it } from "node:test";
import { create, createFileRegistry, type DescMessage, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import avro from "avsc";
import protobuf from "protobufjs";
import { kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { confluentSchemaRegistry, registryDecoder, registrySerializer, type SchemaRegistryClient, type SchemaRegistryOptions, schemaRegistry } from "../../connectors/registry/index.ts";
import { DEAD_LETTERS, isGressError, Job, type SideRecord } from "../../lib/index.ts";
import { brokers, createTopic, produce, readCommitted, uniqueName } from "./kafka-support.ts";

function registryUrl(): string {
  const v = process.env.GRESS_SCHEMA_REGISTRY_URL;
  if (v === undefined || v === "") throw new Error('GRESS_SCHEMA_REGISTRY_URL is not set: run `scripts/services up registry` and `eval "$(scripts/services env)"` first');
  return v;
}

/** Plain HTTP against the registry, independent of Gress' client. */
async function http(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${registryUrl()}${path}`, {
    method,
    headers: { "content-type": "application/vnd.schemaregistry.v1+json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text === "" ? undefined : JSON.parse(text) };
}

async function registerRaw(subject: string, schemaType: string, schema: string): Promise<number> {
  const { status, json } = await http("POST", `/subjects/${subject}/versions`, { schemaType, schema });
  assert.equal(status, 200, JSON.stringify(json));
  return (json as { id: number }).id;
}

async function latestId(subject: string): Promise<number> {
  const { status, json } = await http("GET", `/subjects/${subject}/versions/latest`);
  assert.equal(status, 200, JSON.stringify(json));
  return (json as { id: number }).id;
}

/** Magic byte 0, big-endian id, optional extra bytes (Protobuf message indexes), payload. */
function framed(id: number, payload: Uint8Array, extra: number[] = []): Uint8Array {
  const header = Buffer.alloc(5);
  header.writeInt32BE(id, 1);
  return Buffer.concat([header, Buffer.from(extra), Buffer.from(payload)]);
}

function unframe(bytes: Uint8Array | null): { id: number; body: Buffer } {
  assert.ok(bytes !== null && bytes.length >= 5, "a framed record");
  const b = Buffer.from(bytes);
  assert.equal(b[0], 0, "magic byte");
  return { id: b.readInt32BE(1), body: b.subarray(5) };
}

/** Runs input → decode → map → serialize → output, bounded; returns the dead letters of source and sink. */
async function roundTrip<I, O>(options: {
  input: string;
  output: string;
  decode: ReturnType<typeof registryDecoder<I>>;
  serialize: ReturnType<typeof registrySerializer<O>>;
  map: (v: I) => O;
}): Promise<SideRecord[]> {
  const job = new Job({ name: uniqueName("registry") });
  const stream = job.source(kafkaSource<I>({ name: "in", brokers: brokers(), topics: [options.input], groupId: uniqueName("g"), bounded: true, decode: options.decode }));
  const sunk = stream.map(options.map).sinkTo(kafkaSink<O>({ name: "out", brokers: brokers(), topic: options.output, transactionalId: uniqueName("tx"), serialize: options.serialize }));
  const dead: SideRecord[] = [];
  stream.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
  sunk.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
  await job.run();
  return dead;
}

const USER_V1 = { type: "record", name: "User", namespace: "shop", fields: [{ name: "id", type: "long" }, { name: "name", type: "string" }] } as const;
const USER_V2 = { ...USER_V1, fields: [...USER_V1.fields, { name: "email", type: ["null", "string"], default: null }] } as const;
const GREETING = { type: "record", name: "Greeting", namespace: "shop", fields: [{ name: "text", type: "string" }, { name: "userId", type: "long" }] } as const;

/** Every test runs with each registry client: the hand-written fetch one and the one on @confluentinc/schemaregistry. */
const clients: Record<string, (options: SchemaRegistryOptions) => SchemaRegistryClient> = {
  fetch: (options) => schemaRegistry(options),
  confluent: (options) => confluentSchemaRegistry(options),
};

for (const [clientName, makeRegistry] of Object.entries(clients)) {
describe(`schema registry and the Confluent wire format (Kafka → Gress → Kafka), ${clientName} client`, () => {
  it("Avro: records of a registered schema are decoded, mapped and written framed with the output subject's id", { timeout: 120_000 }, async () => {
    const input = uniqueName("reg-avro-in");
    const output = uniqueName("reg-avro-out");
    await createTopic(input, 1);
    await createTopic(output, 1);
    const writer = avro.Type.forSchema(USER_V1 as unknown as avro.Schema);
    const id = await registerRaw(`${input}-value`, "AVRO", JSON.stringify(USER_V1));
    const users = Array.from({ length: 50 }, (_, i) => ({ id: i, name: `user-${i}` }));
    await produce(
      input,
      users.map((u) => ({ value: framed(id, writer.toBuffer(u)) })),
    );

    const registry = makeRegistry({ url: registryUrl() });
    const dead = await roundTrip<{ id: number; name: string }, { text: string; userId: number }>({
      input,
      output,
      decode: registryDecoder({ registry }),
      serialize: registrySerializer({ registry, subject: `${output}-value`, schema: { schemaType: "AVRO", schema: JSON.stringify(GREETING) } }),
      map: (u) => ({ text: `hello ${u.name}`, userId: u.id }),
    });
    assert.deepEqual(dead, []);
    assert.equal(registry.lookups, 1, "one registry lookup for the one schema id, not one per record");

    const outId = await latestId(`${output}-value`);
    const reader = avro.Type.forSchema(GREETING as unknown as avro.Schema);
    const got = (await readCommitted(output)).map((m) => {
      const { id: schemaId, body } = unframe(m.bytes);
      assert.equal(schemaId, outId);
      return { ...reader.fromBuffer(body) };
    });
    assert.deepEqual(
      got,
      users.map((u) => ({ text: `hello ${u.name}`, userId: u.id })),
    );
  });

  it("Protobuf: messages (a nested type, with message indexes) are decoded to plain objects and written with indexes [0]", { timeout: 120_000 }, async () => {
    const input = uniqueName("reg-proto-in");
    const output = uniqueName("reg-proto-out");
    await createTopic(input, 1);
    await createTopic(output, 1);
    const inProto = 'syntax = "proto3";\npackage shop;\nmessage Envelope { string source = 1; }\nmessage Order { string id = 1; int64 cents = 2; repeated string items = 3; }\n';
    const outProto = 'syntax = "proto3";\npackage shop;\nmessage Total { string order = 1; int64 cents = 2; int32 items = 3; }\n';
    const id = await registerRaw(`${input}-value`, "PROTOBUF", inProto);
    const Order = protobuf.parse(inProto, { keepCase: true }).root.lookupType("shop.Order");
    const orders = Array.from({ length: 20 }, (_, i) => ({ id: `o${i}`, cents: 100 * i + 1, items: Array.from({ length: (i % 3) + 1 }, (_, j) => `item${j}`) }));
    // Order is the file's second message: message indexes [1] are written as count 1 (zig-zag 2), index 1 (zig-zag 2).
    await produce(
      input,
      orders.map((o) => ({ value: framed(id, Order.encode(Order.create(o)).finish(), [2, 2]) })),
    );

    const registry = makeRegistry({ url: registryUrl() });
    const dead = await roundTrip<{ id: string; cents: number; items: string[] }, { order: string; cents: number; items: number }>({
      input,
      output,
      decode: registryDecoder({ registry, schemaTypes: ["PROTOBUF"] }),
      serialize: registrySerializer({ registry, subject: `${output}-value`, schema: { schemaType: "PROTOBUF", schema: outProto } }),
      map: (o) => ({ order: o.id, cents: o.cents, items: o.items.length }),
    });
    assert.deepEqual(dead, []);

    const outId = await latestId(`${output}-value`);
    const Total = protobuf.parse(outProto, { keepCase: true }).root.lookupType("shop.Total");
    const got = (await readCommitted(output)).map((m) => {
      const { id: schemaId, body } = unframe(m.bytes);
      assert.equal(schemaId, outId);
      assert.equal(body[0], 0, "message indexes [0] as the single byte 0");
      return Total.toObject(Total.decode(body.subarray(1)), { longs: Number });
    });
    assert.deepEqual(
      got,
      orders.map((o) => ({ order: o.id, cents: o.cents, items: o.items.length })),
    );
  });

  it("Protobuf with generated types: the stream carries @bufbuild/protobuf messages of the generated schema", { timeout: 120_000 }, async () => {
    const input = uniqueName("reg-typed-in");
    await createTopic(input, 1);
    const proto = 'syntax = "proto3";\npackage shop;\nmessage Order { string id = 1; int64 cents = 2; }\n';
    const id = await registerRaw(`${input}-value`, "PROTOBUF", proto);
    // The descriptor protoc-gen-es would embed in generated code for this file.
    const file = create(FileDescriptorProtoSchema, {
      name: "shop.proto",
      package: "shop",
      syntax: "proto3",
      messageType: [
        {
          name: "Order",
          field: [
            { name: "id", number: 1, type: 9, label: 1, jsonName: "id" },
            { name: "cents", number: 2, type: 3, label: 1, jsonName: "cents" },
          ],
        },
      ],
    });
    const OrderSchema = createFileRegistry(file, () => undefined).getMessage("shop.Order") as DescMessage;
    await produce(input, [
      { value: framed(id, toBinary(OrderSchema, create(OrderSchema, { id: "o1", cents: 9_007_199_254_740_993n } as never)), [0]) },
      { value: framed(id, toBinary(OrderSchema, create(OrderSchema, { id: "o2", cents: 5n } as never)), [0]) },
    ]);
    const registry = makeRegistry({ url: registryUrl() });
    const job = new Job({ name: uniqueName("registry-typed") });
    const got: { $typeName: string; id: string; cents: bigint }[] = [];
    job
      .source(kafkaSource<{ $typeName: string; id: string; cents: bigint }>({ name: "in", brokers: brokers(), topics: [input], groupId: uniqueName("g"), bounded: true, decode: registryDecoder({ registry, protobufMessage: OrderSchema }) }))
      .sinkTo({ name: "collect", write: (v) => void got.push(v) });
    await job.run();
    // int64 beyond 2^53 survives as a bigint.
    assert.deepEqual(
      got.map((o) => [o.$typeName, o.id, o.cents]),
      [
        ["shop.Order", "o1", 9_007_199_254_740_993n],
        ["shop.Order", "o2", 5n],
      ],
    );
  });

  it("JSON Schema: valid documents pass, a document that violates the writer's schema is a dead letter naming the field", { timeout: 120_000 }, async () => {
    const input = uniqueName("reg-json-in");
    const output = uniqueName("reg-json-out");
    await createTopic(input, 1);
    await createTopic(output, 1);
    const schema = JSON.stringify({ type: "object", properties: { sku: { type: "string" }, qty: { type: "integer", minimum: 1 } }, required: ["sku", "qty"] });
    const id = await registerRaw(`${input}-value`, "JSON", schema);
    const docs = [{ sku: "a", qty: 1 }, { sku: "b", qty: 0 }, { sku: "c", qty: 3 }];
    await produce(
      input,
      docs.map((d) => ({ value: framed(id, Buffer.from(JSON.stringify(d))) })),
    );

    const registry = makeRegistry({ url: registryUrl() });
    const outSchema = JSON.stringify({ type: "object", properties: { sku: { type: "string" }, double: { type: "integer" } }, required: ["sku", "double"], additionalProperties: false });
    const dead = await roundTrip<{ sku: string; qty: number }, { sku: string; double: number }>({
      input,
      output,
      decode: registryDecoder({ registry }),
      serialize: registrySerializer({ registry, subject: `${output}-value`, schema: { schemaType: "JSON", schema: outSchema } }),
      map: (d) => ({ sku: d.sku, double: d.qty * 2 }),
    });
    assert.equal(dead.length, 1);
    assert.equal(dead[0]?.reason, "schema violation: /qty: must be >= 1");
    const outId = await latestId(`${output}-value`);
    const got = (await readCommitted(output)).map((m) => {
      const { id: schemaId, body } = unframe(m.bytes);
      assert.equal(schemaId, outId);
      return JSON.parse(body.toString("utf8"));
    });
    assert.deepEqual(got, [
      { sku: "a", double: 2 },
      { sku: "c", double: 6 },
    ]);
  });

  it("schema evolution: records written with v1 and with v2 (an added optional field) are both read with v2", { timeout: 120_000 }, async () => {
    const input = uniqueName("reg-evolve-in");
    const output = uniqueName("reg-evolve-out");
    await createTopic(input, 1);
    await createTopic(output, 1);
    const subject = `${input}-value`;
    assert.equal((await http("PUT", `/config/${subject}`, { compatibility: "BACKWARD" })).status, 200);
    const v1 = await registerRaw(subject, "AVRO", JSON.stringify(USER_V1));
    const v2 = await registerRaw(subject, "AVRO", JSON.stringify(USER_V2));
    assert.notEqual(v1, v2);
    const w1 = avro.Type.forSchema(USER_V1 as unknown as avro.Schema);
    const w2 = avro.Type.forSchema(USER_V2 as unknown as avro.Schema);
    // v1 twice, then v2: the lookup of v2 comes after a message decoded at once (from the cached v1), in the
    // same run of decoded messages (see the Kafka source's `handle`); the order must hold across it.
    await produce(input, [
      { value: framed(v1, w1.toBuffer({ id: 1, name: "old" })) },
      { value: framed(v1, w1.toBuffer({ id: 3, name: "old again" })) },
      { value: framed(v2, w2.toBuffer({ id: 2, name: "new", email: "n@example.com" })) },
      { value: framed(v1, w1.toBuffer({ id: 4, name: "old once more" })) },
    ]);

    const registry = makeRegistry({ url: registryUrl() });
    type User = { id: number; name: string; email: string | null };
    const dead = await roundTrip<User, User>({
      input,
      output,
      decode: registryDecoder({ registry, readerSchema: JSON.stringify(USER_V2) }),
      serialize: registrySerializer({ registry, subject: `${output}-value`, schema: { schemaType: "AVRO", schema: JSON.stringify(USER_V2) } }),
      map: (u) => ({ id: u.id, name: u.name, email: u.email }),
    });
    assert.deepEqual(dead, []);
    assert.equal(registry.lookups, 2, "one lookup per writer schema id");
    const got = (await readCommitted(output)).map((m) => ({ ...w2.fromBuffer(unframe(m.bytes).body) }));
    assert.deepEqual(got, [
      { id: 1, name: "old", email: null },
      { id: 3, name: "old again", email: null },
      { id: 2, name: "new", email: "n@example.com" },
      { id: 4, name: "old once more", email: null },
    ]);
  });

  it("an incompatible schema is refused when the job starts, under the subject's rule, and nothing is registered", { timeout: 120_000 }, async () => {
    const output = uniqueName("reg-incompatible");
    await createTopic(output, 1);
    const subject = `${output}-value`;
    assert.equal((await http("PUT", `/config/${subject}`, { compatibility: "BACKWARD" })).status, 200);
    await registerRaw(subject, "AVRO", JSON.stringify(USER_V1));
    // id changes from long to string: a v1 record cannot be read with it.
    const incompatible = { ...USER_V1, fields: [{ name: "id", type: "string" }, { name: "name", type: "string" }] };
    const registry = makeRegistry({ url: registryUrl() });
    const job = new Job({ name: uniqueName("registry-refused") });
    job
      .fromIterable([{ id: "x", name: "y" }])
      .sinkTo(kafkaSink({ name: "out", brokers: brokers(), topic: output, transactionalId: uniqueName("tx"), serialize: registrySerializer({ registry, subject, schema: { schemaType: "AVRO", schema: JSON.stringify(incompatible) } }) }));
    await assert.rejects(job.run(), (err: unknown) => {
      assert.ok(isGressError(err), String(err));
      assert.match(err.message, new RegExp(`schema for subject "${subject}" is incompatible with its latest version under the subject's BACKWARD rule`));
      return true;
    });
    const versions = await http("GET", `/subjects/${subject}/versions`);
    assert.deepEqual(versions.json, [1]);
    assert.deepEqual(await readCommitted(output), []);
  });

  it("a registry that cannot be reached fails the job with the reason; the record is neither dead-lettered nor skipped", { timeout: 120_000 }, async () => {
    const input = uniqueName("reg-down-in");
    await createTopic(input, 1);
    const id = await registerRaw(`${input}-value`, "AVRO", JSON.stringify(USER_V1));
    await produce(input, [{ value: framed(id, avro.Type.forSchema(USER_V1 as unknown as avro.Schema).toBuffer({ id: 1, name: "a" })) }]);
    // Nothing listens on port 9 of the loopback: every request is refused at once.
    const unreachable = makeRegistry({ url: "http://127.0.0.1:9", retries: 0 });
    const job = new Job({ name: uniqueName("registry-down") });
    const stream = job.source(kafkaSource({ name: "in", brokers: brokers(), topics: [input], groupId: uniqueName("g"), bounded: true, decode: registryDecoder({ registry: unreachable }) }));
    const got: unknown[] = [];
    stream.sinkTo({ name: "collect", write: (v) => void got.push(v) });
    const dead: SideRecord[] = [];
    // The side output errors with the job: without an error callback RxJS would report it as uncaught.
    stream.sideRecords(DEAD_LETTERS).subscribe({ next: (r) => void dead.push(r), error: () => {} });
    await assert.rejects(job.run(), (err: unknown) => {
      assert.ok(isGressError(err, "ERR_SOURCE"), String(err));
      assert.match(err.message, new RegExp(`schema registry unavailable while decoding schema id ${id}`));
      return true;
    });
    assert.deepEqual(got, []);
    assert.deepEqual(dead, []);
  });

  it("bad bytes, unknown schema ids, oversized and undecodable messages are dead letters with exact counts; the rest is delivered", { timeout: 120_000 }, async () => {
    const input = uniqueName("reg-dead-in");
    const output = uniqueName("reg-dead-out");
    await createTopic(input, 1);
    await createTopic(output, 1);
    const id = await registerRaw(`${input}-value`, "AVRO", JSON.stringify(USER_V1));
    const writer = avro.Type.forSchema(USER_V1 as unknown as avro.Schema);
    const good = (i: number): Uint8Array => framed(id, writer.toBuffer({ id: i, name: `u${i}` }));
    const unknownIds = [987_654_321, 987_654_322];
    const messages = [
      good(0),
      Buffer.from('{"id":1,"name":"plain json"}'), // bad bytes: no magic byte
      good(1),
      new Uint8Array([0, 0, 0]), // bad bytes: shorter than the header
      framed(unknownIds[0] as number, writer.toBuffer({ id: 9, name: "x" })),
      good(2),
      framed(unknownIds[1] as number, writer.toBuffer({ id: 9, name: "x" })),
      framed(unknownIds[0] as number, writer.toBuffer({ id: 9, name: "x" })), // the same unknown id again
      framed(id, writer.toBuffer({ id: 3, name: "x".repeat(600) })), // oversized (limit 512)
      framed(id, writer.toBuffer({ id: 4, name: "truncated" }).subarray(0, 4)), // undecodable with its schema
      good(5),
    ];
    await produce(
      input,
      messages.map((value) => ({ value })),
    );

    const registry = makeRegistry({ url: registryUrl() });
    const dead = await roundTrip<{ id: number; name: string }, { id: number; name: string }>({
      input,
      output,
      decode: registryDecoder({ registry, maxBytes: 512 }),
      serialize: registrySerializer({ registry, subject: `${output}-value`, schema: { schemaType: "AVRO", schema: JSON.stringify(USER_V1) } }),
      map: (u) => ({ id: u.id, name: u.name }),
    });
    const count = (re: RegExp): number => dead.filter((d) => re.test(d.reason)).length;
    assert.equal(dead.length, 7, JSON.stringify(dead.map((d) => d.reason)));
    assert.equal(count(/^not in the Confluent wire format: first byte 0x7b, expected magic byte 0x00$/), 1);
    assert.equal(count(/^not in the Confluent wire format: 3 bytes, shorter than the 5-byte header$/), 1);
    assert.equal(count(new RegExp(`^unknown schema id ${unknownIds[0]}: the registry has no such schema$`)), 2);
    assert.equal(count(new RegExp(`^unknown schema id ${unknownIds[1]}: the registry has no such schema$`)), 1);
    assert.equal(count(/^oversized: \d+ bytes > limit 512$/), 1);
    assert.equal(count(/^undecodable AVRO payload: truncated$/), 1);
    // Dead letters say where the bytes were: the input partition and offset.
    assert.deepEqual(
      dead.map((d) => (d.value as { position: number }).position).sort((a, b) => a - b),
      [1, 3, 4, 6, 7, 8, 9],
    );
    assert.equal(registry.lookups, 3, "one lookup per schema id (the good one and the two unknown ones)");
    const got = (await readCommitted(output)).map((m) => ({ ...writer.fromBuffer(unframe(m.bytes).body) }));
    assert.deepEqual(
      got,
      [0, 1, 2, 5].map((i) => ({ id: i, name: `u${i}` })),
    );
  });
});
}
