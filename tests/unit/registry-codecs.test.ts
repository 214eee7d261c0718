/**
 * The Confluent wire format and the per-schema codecs of gress/registry, without a registry: framing and
 * Protobuf message indexes byte for byte, Avro/Protobuf/JSON Schema round trips, schema evolution with an Avro
 * reader schema, and the reasons given for bytes that do not decode.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, createFileRegistry, type DescMessage, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { codecFor, frame, parseFrame } from "../../connectors/registry/index.ts";
import { readMessageIndexes, writeMessageIndexes } from "../../connectors/registry/wire.ts";

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
const USER_V1 = JSON.stringify({ type: "record", name: "User", fields: [{ name: "id", type: "long" }, { name: "name", type: "string" }] });
const USER_V2 = JSON.stringify({
  type: "record",
  name: "User",
  fields: [
    { name: "id", type: "long" },
    { name: "name", type: "string" },
    { name: "email", type: ["null", "string"], default: null },
  ],
});

describe("Confluent wire format", () => {
  it("frames as magic byte 0, the id big-endian, then the payload", () => {
    assert.deepEqual(frame(0x01020304, bytes(9, 8)), bytes(0, 1, 2, 3, 4, 9, 8));
    assert.deepEqual(parseFrame(bytes(0, 1, 2, 3, 4, 9, 8)), { ok: true, value: { schemaId: 0x01020304, body: bytes(9, 8) } });
  });

  it("a message shorter than the header or without the magic byte is a reason, not an exception", () => {
    assert.deepEqual(parseFrame(bytes(0, 0, 1)), { ok: false, reason: "not in the Confluent wire format: 3 bytes, shorter than the 5-byte header" });
    assert.deepEqual(parseFrame(new TextEncoder().encode('{"a":1}')), { ok: false, reason: "not in the Confluent wire format: first byte 0x7b, expected magic byte 0x00" });
  });

  it("refuses schema ids outside int32", () => {
    assert.throws(() => frame(-1, bytes()), RangeError);
    assert.throws(() => frame(2 ** 31, bytes()), RangeError);
  });

  it("writes Protobuf message indexes [0] as one zero byte and others as zig-zag varints with a count", () => {
    assert.deepEqual(writeMessageIndexes([0]), bytes(0));
    assert.deepEqual(writeMessageIndexes([1]), bytes(2, 2));
    assert.deepEqual(writeMessageIndexes([0, 70]), bytes(4, 0, 0x8c, 0x01));
    assert.deepEqual(readMessageIndexes(bytes(0, 42)), { ok: true, value: { indexes: [0], payload: bytes(42) } });
    assert.deepEqual(readMessageIndexes(bytes(4, 0, 0x8c, 0x01, 42)), { ok: true, value: { indexes: [0, 70], payload: bytes(42) } });
    assert.deepEqual(readMessageIndexes(bytes(2, 0x80)), { ok: false, reason: "bad Protobuf message indexes after the schema id" });
  });

  it("law: message indexes read back as written, and the payload after them is untouched", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(100_000), { minLength: 1, maxLength: 8 }), fc.uint8Array({ maxLength: 16 }), (indexes, payload) => {
        const written = writeMessageIndexes(indexes);
        const body = new Uint8Array([...written, ...payload]);
        assert.deepEqual(readMessageIndexes(body), { ok: true, value: { indexes, payload } });
      }),
    );
  });
});

describe("codecs", () => {
  it("Avro: round trip; a truncated payload and trailing bytes are reasons", () => {
    const codec = codecFor({ schemaType: "AVRO", schema: USER_V1 });
    const body = codec.encode({ id: 7, name: "ann" });
    assert.deepEqual(codec.decode(body), { ok: true, value: { id: 7, name: "ann" } });
    assert.deepEqual(codec.decode(body.subarray(0, 2)), { ok: false, reason: "undecodable AVRO payload: truncated" });
    assert.deepEqual(codec.decode(new Uint8Array([...body, 0])), { ok: false, reason: "undecodable AVRO payload: 1 bytes left after the record" });
    assert.throws(() => codec.encode({ id: "seven", name: "ann" }), /value does not fit the Avro schema at id/);
  });

  it("Avro schema evolution: a v1 record read with the v2 reader schema gets the added field's default", () => {
    const v1 = codecFor({ schemaType: "AVRO", schema: USER_V1 });
    const v1ReadAsV2 = codecFor({ schemaType: "AVRO", schema: USER_V1 }, { readerSchema: USER_V2 });
    assert.deepEqual(v1ReadAsV2.decode(v1.encode({ id: 1, name: "old" })), { ok: true, value: { id: 1, name: "old", email: null } });
  });

  it("Avro: a writer schema the reader schema cannot read is a reason for each record", () => {
    const other = JSON.stringify({ type: "record", name: "User", fields: [{ name: "id", type: "string" }] });
    const codec = codecFor({ schemaType: "AVRO", schema: USER_V1 }, { readerSchema: other });
    const decoded = codec.decode(codecFor({ schemaType: "AVRO", schema: USER_V1 }).encode({ id: 1, name: "x" }));
    assert.equal(decoded.ok, false);
    assert.match(decoded.ok ? "" : decoded.reason, /^the writer's Avro schema cannot be read with the reader schema: /);
  });

  it("Protobuf: the message indexes pick the (nested) type; encoding writes the indexes of the chosen type", () => {
    const proto = 'syntax = "proto3"; package shop; message Envelope { string source = 1; message Line { string sku = 1; int32 qty = 2; } } message Order { string id = 1; int64 cents = 2; }';
    const order = codecFor({ schemaType: "PROTOBUF", schema: proto }, { messageType: "shop.Order" });
    const line = codecFor({ schemaType: "PROTOBUF", schema: proto }, { messageType: "shop.Envelope.Line" });
    const o = order.encode({ id: "o1", cents: 250 });
    assert.deepEqual(o.subarray(0, 2), bytes(2, 2), "indexes [1]");
    assert.deepEqual(order.decode(o), { ok: true, value: { id: "o1", cents: 250 } });
    const l = line.encode({ sku: "a", qty: 3 });
    assert.deepEqual(l.subarray(0, 3), bytes(4, 0, 0), "indexes [0, 0]");
    // Any codec of the file decodes any of its messages: the frame says which.
    assert.deepEqual(order.decode(l), { ok: true, value: { sku: "a", qty: 3 } });
    assert.deepEqual(order.decode(bytes(2, 10)), { ok: false, reason: "no Protobuf message at indexes [5] in the schema" });
    const bad = order.decode(bytes(2, 2, 0x0a, 0x05, 0x61));
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? "" : bad.reason, /^undecodable PROTOBUF payload \(Order\): /);
    assert.throws(() => order.encode({ id: 5 }), /value does not fit the Protobuf message Order: id: string expected/);
    assert.throws(() => codecFor({ schemaType: "PROTOBUF", schema: proto }, { messageType: "shop.Nope" }), /has no message shop.Nope/);
  });

  it("Protobuf with generated types: records decode into @bufbuild/protobuf messages of the generated schema", () => {
    // What protoc-gen-es embeds in generated code: the file's descriptor, from which OrderSchema is taken.
    const file = create(FileDescriptorProtoSchema, {
      name: "shop.proto",
      package: "shop",
      syntax: "proto3",
      messageType: [
        { name: "Envelope", field: [{ name: "source", number: 1, type: 9, label: 1, jsonName: "source" }] },
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
    const proto = 'syntax = "proto3"; package shop; message Envelope { string source = 1; } message Order { string id = 1; int64 cents = 2; }';
    const typed = codecFor({ schemaType: "PROTOBUF", schema: proto }, { protobufMessage: OrderSchema });
    const body = new Uint8Array([2, 2, ...toBinary(OrderSchema, create(OrderSchema, { id: "o1", cents: 250n } as never))]);
    const decoded = typed.decode(body);
    assert.ok(decoded.ok);
    assert.equal((decoded.value as { $typeName: string }).$typeName, "shop.Order");
    assert.equal((decoded.value as { cents: bigint }).cents, 250n);
    assert.equal((decoded.value as { id: string }).id, "o1");
    // It writes the generated type's message indexes, and refuses records of another message of the file.
    assert.deepEqual(typed.encode(decoded.value), body);
    assert.deepEqual(typed.decode(new Uint8Array([0, 0x0a, 0x01, 0x61])), { ok: false, reason: "the record is a shop.Envelope, expected shop.Order" });
  });

  it("JSON Schema: valid documents decode; a violation, invalid UTF-8 and __proto__ are reasons", () => {
    const codec = codecFor({ schemaType: "JSON", schema: JSON.stringify({ type: "object", properties: { qty: { type: "integer", minimum: 1 } }, required: ["qty"] }) });
    const enc = new TextEncoder();
    assert.deepEqual(codec.decode(codec.encode({ qty: 2 })), { ok: true, value: { qty: 2 } });
    assert.deepEqual(codec.decode(enc.encode('{"qty":0}')), { ok: false, reason: "schema violation: /qty: must be >= 1" });
    assert.deepEqual(codec.decode(bytes(0xff)), { ok: false, reason: "invalid UTF-8" });
    assert.deepEqual(codec.decode(enc.encode('{"qty":1,"__proto__":{"x":1}}')), { ok: false, reason: 'forbidden key "__proto__"' });
    assert.throws(() => codec.encode({}), /value does not fit the JSON Schema: \(root\): must have required property 'qty'/);
  });

  it("JSON Schema draft 2020-12 documents use Ajv's 2020 dialect", () => {
    const schema = JSON.stringify({ $schema: "https://json-schema.org/draft/2020-12/schema", type: "array", prefixItems: [{ type: "string" }], items: false });
    const codec = codecFor({ schemaType: "JSON", schema });
    const enc = new TextEncoder();
    assert.deepEqual(codec.decode(enc.encode('["a"]')), { ok: true, value: ["a"] });
    assert.equal(codec.decode(enc.encode('["a", 1]')).ok, false);
  });
});
