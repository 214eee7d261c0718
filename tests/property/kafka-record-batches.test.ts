/**
 * Gress's reader of Kafka record batches (connectors/kafka/record-batches.ts) against a model: random
 * partitions of plain and transactional batches (with commit and abort markers), gzip-compressed or not, with
 * gaps in the offsets (as compaction leaves), negative and large timestamp deltas, log-append time, null and
 * empty keys and values, headers, a fetch that starts at a later batch (also inside a transaction, with the
 * aborted transactions the broker would list for that range) or in the middle of a batch, and one that ends in
 * a partial batch. Each partition is written by an encoder in this file and read back; the messages and the
 * end offset must be the model's, under read_committed and read_uncommitted. The encoder is checked against
 * @platformatic/kafka's own reader of the same bytes (every batch's offsets, producer id and kind, every
 * marker's type, every record), so a misreading of the format shared by the encoder and the reader under test
 * would also have to be shared by the library's.
 *
 * The kafkajs adapter's Fetch decoder (connectors/kafka/kafkajs-fetch.ts) is checked against kafkajs' own: the
 * same random partitions in a Fetch v11 response body, decoded by each, then made into kafkajs' consumer
 * batches; the records kafkajs would hand out and the offset it would move to must be the same.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, it } from "node:test";
import { gunzipSync, gzipSync } from "node:zlib";
import { Reader, readRecordsBatches } from "@platformatic/kafka";
import fc from "fast-check";
import kafkajsPackage from "kafkajs";
import BatchModule from "kafkajs/src/consumer/batch.js";
import fetchV11Module from "kafkajs/src/protocol/requests/fetch/v11/response.js";
import { hideAbortedRecords, type FetchedRecords } from "../../connectors/kafka/kafkajs-aborted.ts";
import { type DecodedFetch, decodeFetchV11, type KafkajsCodec } from "../../connectors/kafka/kafkajs-fetch.ts";
import { readRecordBatches } from "../../connectors/kafka/record-batches.ts";

interface Rec {
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly timestampDelta: number;
  /** Offsets skipped before this record (compaction). */
  readonly gap: number;
  readonly headers: readonly (readonly [Uint8Array, Uint8Array | null])[];
}
type Step =
  | { readonly kind: "plain"; readonly records: readonly Rec[]; readonly gzip: boolean; readonly appendTime: boolean; readonly gap: number }
  | { readonly kind: "txn"; readonly producer: number; readonly records: readonly Rec[]; readonly gzip: boolean; readonly appendTime: boolean; readonly gap: number }
  | { readonly kind: "end"; readonly producer: number; readonly commit: boolean };

/** A zigzag varint, for values up to 2^53. */
function varint(n: number): number[] {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (z >= 128) {
    out.push((z % 128) | 0x80);
    z = Math.floor(z / 128);
  }
  out.push(z);
  return out;
}
const sized = (b: Uint8Array | null): number[] => (b === null ? varint(-1) : [...varint(b.length), ...b]);

function encodeRecord(r: { key: Uint8Array | null; value: Uint8Array | null; timestampDelta: number; headers: Rec["headers"] }, offsetDelta: number): number[] {
  const body = [0, ...varint(r.timestampDelta), ...varint(offsetDelta), ...sized(r.key), ...sized(r.value), ...varint(r.headers.length)];
  for (const [k, v] of r.headers) body.push(...sized(k), ...sized(v));
  return [...varint(body.length), ...body];
}

/** A v2 record batch. */
function encodeBatch(b: { firstOffset: number; attributes: number; lastOffsetDelta: number; firstTimestamp: number; maxTimestamp: number; producerId: number; count: number; records: Buffer }): Buffer {
  const head = Buffer.alloc(61);
  head.writeBigInt64BE(BigInt(b.firstOffset), 0);
  head.writeInt32BE(61 - 12 + b.records.length, 8);
  head.writeInt32BE(0, 12); // partition leader epoch
  head.writeInt8(2, 16); // magic
  head.writeUInt32BE(0, 17); // crc: neither reader checks it
  head.writeInt16BE(b.attributes, 21);
  head.writeInt32BE(b.lastOffsetDelta, 23);
  head.writeBigInt64BE(BigInt(b.firstTimestamp), 27);
  head.writeBigInt64BE(BigInt(b.maxTimestamp), 35);
  head.writeBigInt64BE(BigInt(b.producerId), 43);
  head.writeInt16BE(0, 51);
  head.writeInt32BE(0, 53);
  head.writeInt32BE(b.count, 57);
  return Buffer.concat([head, b.records]);
}

const TRANSACTIONAL = 1 << 4;
const CONTROL = 1 << 5;
const LOG_APPEND_TIME = 1 << 3;
const FIRST_TIMESTAMP = 1_700_000_000_000;

interface Expected {
  readonly offset: number;
  readonly timestamp: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
}

/** Writes the steps from `firstOffset` on; returns the bytes, every data record and the aborted transactions. */
function encode(steps: readonly Step[], firstOffset: number) {
  const parts: Buffer[] = [];
  /** Per batch: its first and last offset, producer id and whether it is a control batch. */
  const heads: { readonly first: number; readonly last: number; readonly producerId: number; readonly control: boolean }[] = [];
  const records: { readonly offset: number; readonly timestamp: number; readonly key: Uint8Array | null; readonly value: Uint8Array | null; readonly producer: number | undefined; readonly txn: number | undefined }[] = [];
  /** Aborted transactions: producer, first offset, and the offset of the abort marker (none: still open). */
  const aborted: { producerId: bigint; firstOffset: bigint; marker: number }[] = [];
  /** Per producer: the open transaction's number and its first offset. */
  const open = new Map<number, { readonly txn: number; readonly first: number }>();
  const outcome = new Map<number, boolean>(); // txn -> committed
  let txns = 0;
  let offset = firstOffset;
  for (const s of steps) {
    if (s.kind === "end") {
      const t = open.get(s.producer);
      if (t === undefined) continue;
      open.delete(s.producer);
      outcome.set(t.txn, s.commit);
      if (!s.commit) aborted.push({ producerId: BigInt(s.producer), firstOffset: BigInt(t.first), marker: offset });
      const key = Buffer.alloc(4);
      key.writeInt16BE(0, 0);
      key.writeInt16BE(s.commit ? 1 : 0, 2);
      const rec = Buffer.from(encodeRecord({ key, value: Buffer.from([0, 0, 0, 0, 0, 0]), timestampDelta: 0, headers: [] }, 0));
      parts.push(encodeBatch({ firstOffset: offset, attributes: TRANSACTIONAL | CONTROL, lastOffsetDelta: 0, firstTimestamp: FIRST_TIMESTAMP, maxTimestamp: FIRST_TIMESTAMP, producerId: s.producer, count: 1, records: rec }));
      heads.push({ first: offset, last: offset, producerId: s.producer, control: true });
      offset += 1;
      continue;
    }
    offset += s.gap;
    let producer: number | undefined;
    let txn: number | undefined;
    if (s.kind === "txn") {
      producer = s.producer;
      let t = open.get(s.producer);
      if (t === undefined) open.set(s.producer, (t = { txn: txns++, first: offset }));
      txn = t.txn;
    }
    let delta = 0;
    const bytes: number[] = [];
    const deltas: number[] = [];
    for (const r of s.records) {
      delta += r.gap;
      deltas.push(delta);
      bytes.push(...encodeRecord(r, delta));
      delta++;
    }
    const lastOffsetDelta = deltas[deltas.length - 1] as number;
    const maxTimestamp = FIRST_TIMESTAMP + Math.max(...s.records.map((r) => r.timestampDelta)) + 7;
    s.records.forEach((r, i) => {
      records.push({ offset: offset + (deltas[i] as number), timestamp: s.appendTime ? maxTimestamp : FIRST_TIMESTAMP + r.timestampDelta, key: r.key, value: r.value, producer, txn });
    });
    const raw = Buffer.from(bytes);
    const attributes = (s.gzip ? 1 : 0) | (s.appendTime ? LOG_APPEND_TIME : 0) | (s.kind === "txn" ? TRANSACTIONAL : 0);
    parts.push(encodeBatch({ firstOffset: offset, attributes, lastOffsetDelta, firstTimestamp: FIRST_TIMESTAMP, maxTimestamp, producerId: producer ?? -1, count: s.records.length, records: s.gzip ? gzipSync(raw) : raw }));
    heads.push({ first: offset, last: offset + lastOffsetDelta, producerId: producer ?? -1, control: false });
    offset += lastOffsetDelta + 1;
  }
  // Still open at the end: aborted (a read_committed fetch would not get past them otherwise).
  for (const [producer, t] of open) {
    outcome.set(t.txn, false);
    aborted.push({ producerId: BigInt(producer), firstOffset: BigInt(t.first), marker: Number.POSITIVE_INFINITY });
  }
  return { bytes: Buffer.concat(parts), parts, heads, records, aborted, outcome, end: offset };
}

const bytesArb = fc.oneof(fc.constant(null), fc.uint8Array({ maxLength: 40 }));
const recArb: fc.Arbitrary<Rec> = fc.record({
  key: bytesArb,
  value: bytesArb,
  timestampDelta: fc.oneof(fc.integer({ min: -5_000, max: 5_000 }), fc.integer({ min: 0, max: 2 ** 40 })),
  gap: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }) }),
  headers: fc.array(fc.tuple(fc.uint8Array({ maxLength: 8 }), bytesArb), { maxLength: 2 }),
});
const dataArb = { records: fc.array(recArb, { minLength: 1, maxLength: 12 }), gzip: fc.boolean(), appendTime: fc.boolean(), gap: fc.integer({ min: 0, max: 3 }) };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("plain" as const), ...dataArb }),
  fc.record({ kind: fc.constant("txn" as const), producer: fc.integer({ min: 1, max: 3 }), ...dataArb }),
  fc.record({ kind: fc.constant("end" as const), producer: fc.integer({ min: 1, max: 3 }), commit: fc.boolean() }),
);

const gunzip = (codec: number, compressed: Buffer): Buffer => {
  assert.equal(codec, 1, "only gzip batches are written");
  return gunzipSync(compressed);
};
/**
 * What a fetch of the written partition gets: it starts at a batch (maybe not the first: in the middle of a
 * transaction), maybe in the middle of it, and may end in a part of one more batch. With it, as the broker
 * sends them, the aborted transactions that overlap the fetched range (whose abort marker is in it).
 */
function fetched(w: ReturnType<typeof encode>, fromPick: number, partialPick: number | undefined, skipPick: number) {
  const k = skipPick % w.parts.length;
  const start = (w.heads[k] as { first: number }).first;
  const from = start + (fromPick % (w.end - start + 1));
  let bytes = Buffer.concat(w.parts.slice(k));
  const last = w.parts[w.parts.length - 1];
  if (partialPick !== undefined && last !== undefined && last.length > 1) bytes = Buffer.concat([bytes, last.subarray(0, 1 + (partialPick % (last.length - 1)))]);
  const aborted = w.aborted.filter((a) => a.marker >= start).map(({ producerId, firstOffset }) => ({ producerId, firstOffset }));
  return { from, bytes, aborted };
}
/** The arbitraries of a fetch: where it starts, whether the partition is read committed, its partial end, its first batch. */
const fetchArbs = [fc.nat(), fc.boolean(), fc.option(fc.nat(), { nil: undefined }), fc.nat()] as const;

const plain = (m: Expected) => ({ offset: m.offset, timestamp: m.timestamp, key: m.key === null ? null : [...m.key], value: m.value === null ? null : [...m.value] });

describe("Kafka record batches: Gress's reader against a model", () => {
  it("reads what was written: offsets, timestamps, keys, values; control and aborted batches left out under read_committed", () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        ...fetchArbs,
        (steps, firstOffset, fromPick, readCommitted, partialPick, skipPick) => {
          const w = encode(steps, firstOffset);
          if (w.parts.length === 0) {
            // Only markers of transactions that never began: nothing was written.
            assert.deepEqual(readRecordBatches(Buffer.alloc(0), [], firstOffset, readCommitted, gunzip), { messages: [], end: -1 });
            return;
          }
          const { from, bytes, aborted } = fetched(w, fromPick, partialPick, skipPick);
          const got = readRecordBatches(bytes, aborted, from, readCommitted, gunzip);
          const want = w.records.filter((r) => r.offset >= from && (!readCommitted || r.txn === undefined || w.outcome.get(r.txn) === true));
          assert.deepEqual(got.messages.map(plain), want.map(plain));
          assert.equal(got.end, w.end);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("the encoder agrees with @platformatic/kafka's own reader of the same bytes", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 2 ** 40 }), (steps, firstOffset) => {
        const w = encode(steps, firstOffset);
        const batches = readRecordsBatches(Reader.from(w.bytes));
        assert.deepEqual(
          batches.map((b) => ({ first: Number(b.firstOffset), last: Number(b.firstOffset) + b.lastOffsetDelta, producerId: Number(b.producerId), control: (b.attributes & CONTROL) !== 0 })),
          w.heads,
        );
        const theirs: Expected[] = [];
        for (const b of batches) {
          if ((b.attributes & CONTROL) !== 0) {
            // A marker: its first record's key is version 0 and type 0 (abort) or 1 (commit).
            assert.equal(b.records.length, 1);
            assert.ok([0, 1].includes(b.records[0]?.key?.readInt16BE(2) ?? -1));
            continue;
          }
          const appendTime = (b.attributes & LOG_APPEND_TIME) !== 0;
          for (const r of b.records) {
            theirs.push({ offset: Number(b.firstOffset) + r.offsetDelta, timestamp: appendTime ? Number(b.maxTimestamp) : Number(b.firstTimestamp + r.timestampDelta), key: r.key ?? null, value: r.value ?? null });
          }
        }
        assert.deepEqual(theirs.map(plain), w.records.map(plain));
      }),
      { numRuns: 200 },
    );
  });

  it("refuses bytes that are not a v2 batch, or a record that runs past its batch, with an error naming the offset", () => {
    const w = encode([{ kind: "plain", records: [{ key: null, value: Buffer.from("abc"), timestampDelta: 0, gap: 0, headers: [] }], gzip: false, appendTime: false, gap: 0 }], 42);
    const v1 = Buffer.from(w.bytes);
    v1.writeInt8(1, 16);
    assert.throws(() => readRecordBatches(v1, [], 0, false, gunzip), /record batch at offset 42 has format v1/);
    const cut = Buffer.from(w.bytes);
    cut.writeInt8(40, 61); // the first record's length (zigzag 20) now runs past the batch
    assert.throws(() => readRecordBatches(cut, [], 0, false, gunzip), /record 0 of the batch at offset 42 runs past its batch/);
  });
});

/** kafkajs' consumer batch (its own class), and its own Fetch v11 decoder. */
interface KafkajsBatch {
  readonly messages: readonly { readonly offset: string | number; readonly timestamp: string | number; readonly key: Uint8Array | null; readonly value: Uint8Array | null }[];
  lastOffset(): string | number;
  isEmpty(): boolean;
  isEmptyIncludingFiltered(): boolean;
  isEmptyDueToFiltering(): boolean;
  isEmptyControlRecord(): boolean;
}
const Batch = BatchModule as new (topic: string, fetchedOffset: string, partition: unknown) => KafkajsBatch;
const kafkajsDecodeV11 = (fetchV11Module as { decode(raw: Buffer): Promise<{ responses: { partitions: FetchedRecords[] }[] }> }).decode;
const codecs = (n: number): KafkajsCodec | undefined => (kafkajsPackage as unknown as { CompressionCodecs: Record<number, (() => KafkajsCodec) | undefined> }).CompressionCodecs[n]?.();

/** A Fetch v11 response body with one topic and one partition holding `records`. */
function fetchV11(topic: string, records: Buffer, aborted: readonly { producerId: bigint; firstOffset: bigint }[], highWatermark: number): Buffer {
  const name = Buffer.from(topic);
  const head = Buffer.alloc(4 + 2 + 4 + 4 + 2 + name.length + 4 + 4 + 2 + 8 + 8 + 8 + 4);
  let at = 0;
  at = head.writeInt32BE(0, at); // throttle time
  at = head.writeInt16BE(0, at); // error code
  at = head.writeInt32BE(0, at); // session id
  at = head.writeInt32BE(1, at); // topics
  at = head.writeInt16BE(name.length, at);
  at += name.copy(head, at);
  at = head.writeInt32BE(1, at); // partitions
  at = head.writeInt32BE(0, at); // partition
  at = head.writeInt16BE(0, at); // error code
  at = head.writeBigInt64BE(BigInt(highWatermark), at);
  at = head.writeBigInt64BE(BigInt(highWatermark), at); // last stable offset
  at = head.writeBigInt64BE(0n, at); // log start offset
  head.writeInt32BE(aborted.length, at);
  const list = Buffer.alloc(16 * aborted.length);
  aborted.forEach((a, i) => {
    list.writeBigInt64BE(a.producerId, 16 * i);
    list.writeBigInt64BE(a.firstOffset, 16 * i + 8);
  });
  const tail = Buffer.alloc(8);
  tail.writeInt32BE(-1, 0); // preferred read replica
  tail.writeInt32BE(records.length, 4);
  return Buffer.concat([head, list, tail, records]);
}

/** What kafkajs' consumer makes of a batch: the records it hands out and the offset it moves to. */
const outcome = (b: KafkajsBatch) => ({
  messages: b.messages.map((m) => plain({ offset: Number(m.offset), timestamp: Number(m.timestamp), key: m.key, value: m.value })),
  lastOffset: Number(b.lastOffset()),
  isEmpty: b.isEmpty(),
  isEmptyIncludingFiltered: b.isEmptyIncludingFiltered(),
  isEmptyDueToFiltering: b.isEmptyDueToFiltering(),
  isEmptyControlRecord: b.isEmptyControlRecord(),
});

describe("kafkajs Fetch v11: Gress's decoder against kafkajs' own", () => {
  it("kafkajs' consumer hands out the same records and moves to the same offset from either decoding", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(stepArb, { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        ...fetchArbs,
        async (steps, firstOffset, fromPick, readCommitted, partialPick, skipPick) => {
          const w = encode(steps, firstOffset);
          if (w.parts.length === 0) return;
          const f = fetched(w, fromPick, partialPick, skipPick);
          const from = f.from;
          // A read_uncommitted fetch gets no aborted list from the broker.
          const raw = fetchV11("t", f.bytes, readCommitted ? f.aborted : [], w.end);

          const theirs = await kafkajsDecodeV11(raw);
          const theirPartition = theirs.responses[0]?.partitions[0] as FetchedRecords;
          if (readCommitted) hideAbortedRecords(theirPartition); // as every kafkajs fetch is corrected (kafkajs-aborted.ts)
          const ours = (await decodeFetchV11(raw, new Map([["t", new Map([[0, from]])]]), readCommitted, codecs)) as DecodedFetch;
          assert.ok(ours !== undefined, "v2 batches are decoded by Gress");
          const ourPartition = ours.responses[0]?.partitions[0];
          assert.equal(ourPartition?.highWatermark, String(w.end));
          assert.deepEqual(outcome(new Batch("t", String(from), ourPartition)), outcome(new Batch("t", String(from), theirPartition)));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("leaves a record set in the old message format to kafkajs' decoder", async () => {
    const w = encode([{ kind: "plain", records: [{ key: null, value: Buffer.from("abc"), timestampDelta: 0, gap: 0, headers: [] }], gzip: false, appendTime: false, gap: 0 }], 42);
    const v1 = Buffer.from(w.bytes);
    v1.writeInt8(1, 16);
    assert.equal(await decodeFetchV11(fetchV11("t", v1, [], 43), new Map(), true, codecs), undefined);
    const v2 = await decodeFetchV11(fetchV11("t", w.bytes, [], 43), new Map(), true, codecs);
    assert.deepEqual(v2?.responses[0]?.partitions[0]?.messages.map((m) => [m.offset, String(m.value)]), [[42, "abc"]]);
  });
});
