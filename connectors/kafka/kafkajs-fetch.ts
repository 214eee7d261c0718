/**
 * Gress's own decoding of the Fetch responses of its kafkajs consumers (connectors/kafka/kafkajs.ts installs it).
 *
 * Why: kafkajs 2.2.4 decodes every fetched record into an object with its offset and timestamp as decimal
 * strings (by way of a BigInt each), a Buffer copy per key and value, and a header object; its consumer then
 * parses each offset back into a BigInt to compare it with the fetch position. On small messages that is about
 * 700 ns per record on our 2-core machine, more than half of a whole hand-written consume-and-process loop, and
 * Gress then had to turn the strings into numbers again. The record reader that the @platformatic/kafka
 * adapter uses (./record-batches.ts) walks the bytes once and makes one {@link KafkaMessage} per record, with
 * the key and value as views of the fetched bytes.
 *
 * How: kafkajs builds a Fetch request from its version table (`broker.lookupRequest`) and decodes the answer
 * with the decoder that table gives. For a broker of one of Gress's consumer clients (its root logger is
 * registered with {@link decodeFetchesFor}), the wrapped `Broker.prototype.fetch` hands kafkajs a Fetch v11
 * entry whose decoder is {@link decodeFetchV11}; everything else (the request, the error handling of `parse`,
 * the retries, the consumer's batches and offsets) stays kafkajs'. Other versions (a broker older than 2.3)
 * and a record set in the old message format (v0/v1) keep kafkajs' decoder.
 *
 * What kafkajs' consumer gets: partitions in the shape of its own decoder, with each message a Gress
 * {@link KafkaMessage} (offset and timestamp as numbers; kafkajs' consumer reads offsets with `Long.fromValue`,
 * which takes numbers). Records of aborted transactions are left out here, with the Java client's rule (see
 * ./kafkajs-aborted.ts), and the aborted list handed on is empty. So that kafkajs still moves its fetch position
 * past control batches and aborted records at the end of a fetch, as it does with its own control records, one
 * placeholder marked `isControlRecord` stands for them: kafkajs counts it for the position and never hands it
 * out. A fetch whose records all lie before the position asked for keeps one such placeholder too (below the
 * position, so filtered out), as kafkajs' decoder would keep those records: its batch is then "empty because of
 * compaction", not empty.
 * @module
 */
import type { Buffer } from "node:buffer";
import type { KafkaMessage } from "./client.ts";
import { readRecordBatches } from "./record-batches.ts";

/** A kafkajs compression codec (kafkajs' `CompressionCodecs` holds factories of these by codec number). */
export interface KafkajsCodec {
  decompress(compressed: Buffer): Promise<Buffer>;
}

/** A message as {@link decodeFetchV11} hands it to kafkajs: a Gress message, or the placeholder of skipped records. */
export type DecodedMessage = KafkaMessage & { readonly isControlRecord?: true };

/** One partition of a decoded Fetch response, in the shape of kafkajs' own decoder. */
export interface DecodedPartition {
  readonly partition: number;
  readonly errorCode: number;
  readonly highWatermark: string;
  readonly lastStableOffset: string;
  readonly lastStartOffset: string;
  readonly abortedTransactions: readonly never[];
  readonly preferredReadReplica: number;
  readonly messages: DecodedMessage[];
}

/** A decoded Fetch response, in the shape of kafkajs' v11 decoder. */
export interface DecodedFetch {
  readonly throttleTime: 0;
  readonly clientSideThrottleTime: number;
  readonly errorCode: number;
  readonly sessionId: number;
  readonly responses: { readonly topicName: string; readonly partitions: DecodedPartition[] }[];
}

/** Thrown inside {@link decodeFetchV11} for a record set that is not in the v2 format: kafkajs' decoder takes over. */
class NotRecordBatches extends Error {}

const MAGIC = 16;
const BATCH_LENGTH = 8;
const ATTRIBUTES = 21;
const RECORDS = 61;
const LENGTH_PREFIX = 12;
const COMPRESSION = 0b111;

/** Reads the fields of a Fetch response body in order. */
class Reader {
  at = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  int16(): number {
    const v = this.buf.readInt16BE(this.at);
    this.at += 2;
    return v;
  }
  int32(): number {
    const v = this.buf.readInt32BE(this.at);
    this.at += 4;
    return v;
  }
  int64(): bigint {
    const v = this.buf.readBigInt64BE(this.at);
    this.at += 8;
    return v;
  }
  string(): string {
    const n = this.int16();
    if (n < 0) return "";
    const s = this.buf.toString("utf8", this.at, this.at + n);
    this.at += n;
    return s;
  }
  bytes(): Buffer | null {
    const n = this.int32();
    if (n < 0) return null;
    if (this.at + n > this.buf.length) throw new Error(`kafka: a fetch response is cut short (a record set of ${n} bytes at byte ${this.at} of ${this.buf.length})`);
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
}

/**
 * Decompresses the compressed batches of one partition's record bytes with kafkajs' codecs (they are
 * asynchronous, the record reader is not), keyed by where their records start in the response's memory.
 */
async function decompressBatches(bytes: Buffer, codec: (n: number) => KafkajsCodec | undefined): Promise<Map<number, Buffer> | undefined> {
  let out: Map<number, Buffer> | undefined;
  let at = 0;
  while (bytes.length - at >= LENGTH_PREFIX) {
    const size = LENGTH_PREFIX + bytes.readInt32BE(at + BATCH_LENGTH);
    if (bytes.length - at < size || size < RECORDS) break; // the reader reports a short batch, and leaves a partial one
    if (bytes.readInt8(at + MAGIC) !== 2) throw new NotRecordBatches();
    const n = bytes.readInt16BE(at + ATTRIBUTES) & COMPRESSION;
    if (n !== 0 && size > RECORDS) {
      const c = codec(n);
      if (c === undefined) throw new Error(`kafka: a record batch is compressed with codec ${n}, which kafkajs has no codec for (register one in kafkajs' CompressionCodecs)`);
      const records = bytes.subarray(at + RECORDS, at + size);
      (out ??= new Map()).set(records.byteOffset, await c.decompress(records));
    }
    at += size;
  }
  return out;
}

/**
 * Decodes a Fetch v11 response body with Gress's record reader (see the module comment).
 * @param raw the response body, as kafkajs hands it to a decoder
 * @param from the offset each partition was fetched from, by topic and partition
 * @param readCommitted whether the fetch was read_committed (records of aborted transactions are left out)
 * @param codec kafkajs' codec for a compression codec number
 * @returns the decoded response, or undefined when a record set is not in the v2 format (kafkajs decodes it)
 */
export async function decodeFetchV11(
  raw: Buffer,
  from: ReadonlyMap<string, ReadonlyMap<number, number>>,
  readCommitted: boolean,
  codec: (n: number) => KafkajsCodec | undefined,
): Promise<DecodedFetch | undefined> {
  const r = new Reader(raw);
  const clientSideThrottleTime = r.int32();
  const errorCode = r.int16();
  const sessionId = r.int32();
  const topics = Math.max(0, r.int32());
  const responses: DecodedFetch["responses"] = [];
  try {
    for (let t = 0; t < topics; t++) {
      const topicName = r.string();
      const count = Math.max(0, r.int32());
      const partitions: DecodedPartition[] = [];
      for (let p = 0; p < count; p++) {
        const partition = r.int32();
        const partitionError = r.int16();
        const highWatermark = r.int64();
        const lastStableOffset = r.int64();
        const lastStartOffset = r.int64();
        const abortedCount = r.int32();
        const aborted: { producerId: bigint; firstOffset: bigint }[] = [];
        for (let a = 0; a < abortedCount; a++) aborted.push({ producerId: r.int64(), firstOffset: r.int64() });
        const preferredReadReplica = r.int32();
        const bytes = r.bytes();
        const position = from.get(topicName)?.get(partition) ?? 0;
        let messages: DecodedMessage[] = [];
        if (bytes !== null && bytes.length > 0) {
          const decompressed = await decompressBatches(bytes, codec);
          const read = readRecordBatches(bytes, aborted, position, readCommitted, (n, compressed) => {
            const d = decompressed?.get(compressed.byteOffset);
            if (d === undefined) throw new Error(`kafka: a batch compressed with codec ${n} was not decompressed`);
            return d;
          });
          messages = read.messages;
          const last = read.end - 1;
          // kafkajs must move past control batches and aborted records at the end, and must see a fetch of
          // records all before the position as such (see the module comment).
          if (read.end >= 0 && (messages.length === 0 || (messages[messages.length - 1] as KafkaMessage).offset < last)) {
            messages.push({ offset: last, timestamp: 0, key: null, value: null, isControlRecord: true });
          }
        }
        partitions.push({
          partition,
          errorCode: partitionError,
          highWatermark: highWatermark.toString(),
          lastStableOffset: lastStableOffset.toString(),
          lastStartOffset: lastStartOffset.toString(),
          abortedTransactions: [],
          preferredReadReplica,
          messages,
        });
      }
      responses.push({ topicName, partitions });
    }
  } catch (e) {
    if (e instanceof NotRecordBatches) return undefined;
    throw e;
  }
  return { throttleTime: 0, clientSideThrottleTime, errorCode, sessionId, responses };
}

/** A Fetch request as kafkajs' version table builds it. */
interface FetchEntry {
  readonly request: { readonly apiVersion?: number };
  readonly response: { decode(raw: Buffer): Promise<unknown>; parse(decoded: unknown): Promise<unknown> };
}

/** What the wrapper reads of a Broker and of a fetch call. */
interface BrokerLike {
  rootLogger?: unknown;
  lookupRequest: (apiKey: number, definitions: unknown) => (args: unknown) => FetchEntry;
}
interface FetchRequest {
  readonly isolationLevel?: number;
  readonly topics?: readonly { readonly topic: string; readonly partitions: readonly { readonly partition: number; readonly fetchOffset: string | number }[] }[];
}

/**
 * Root loggers of the kafkajs instances whose brokers decode fetches with {@link decodeFetchV11}. One set per
 * process, like the wrapper: this module may be loaded twice (from the package and from a path), and the
 * wrapper that the first load installed must see what the second registers.
 */
const decoding: WeakSet<object> = ((globalThis as Record<symbol, unknown>)[Symbol.for("gress.kafkajs.fetchDecoding")] ??= new WeakSet<object>()) as WeakSet<object>;
const INSTALLED: unique symbol = Symbol.for("gress.kafkajs.fetchDecoder");

/** The brokers of the kafkajs instance with this root logger (`kafka.logger()`) decode fetches with Gress's reader. */
export function decodeFetchesFor(rootLogger: object): void {
  decoding.add(rootLogger);
}

/** `messages` as Gress messages if they came from {@link decodeFetchV11}; undefined if from kafkajs' decoder (or none). */
export function decodedByGress(messages: readonly unknown[]): readonly KafkaMessage[] | undefined {
  return messages.length > 0 && typeof (messages[0] as { offset?: unknown }).offset === "number" ? (messages as readonly KafkaMessage[]) : undefined;
}

/**
 * Wraps `Broker.prototype.fetch` (once per process) so that the brokers of registered kafkajs instances decode
 * Fetch v11 responses with {@link decodeFetchV11}.
 * @param codec kafkajs' codec for a compression codec number
 */
export function installFetchDecoder(broker: { prototype: object }, codec: (n: number) => KafkajsCodec | undefined): void {
  const proto = broker.prototype as { fetch?: (this: BrokerLike, request: FetchRequest) => Promise<unknown>; [INSTALLED]?: true };
  const original = proto.fetch;
  if (proto[INSTALLED] === true) return;
  if (typeof original !== "function") throw new Error("kafkajs: Broker.prototype.fetch not found (Gress needs kafkajs 2.2.4)");
  Object.defineProperty(proto, INSTALLED, { value: true });
  proto.fetch = function (this: BrokerLike, request: FetchRequest): Promise<unknown> {
    if (this.rootLogger === undefined || this.rootLogger === null || !decoding.has(this.rootLogger as object)) return original.call(this, request);
    const from = new Map<string, Map<number, number>>();
    for (const t of request?.topics ?? []) {
      const partitions = new Map<number, number>();
      for (const p of t.partitions) partitions.set(p.partition, Number(p.fetchOffset));
      from.set(t.topic, partitions);
    }
    const readCommitted = request?.isolationLevel !== 0;
    const lookup = this.lookupRequest;
    // kafkajs' fetch looks the request up and builds it synchronously, before its first await: the lookup is
    // swapped for that call only.
    this.lookupRequest = (apiKey, definitions) => {
      const build = lookup.call(this, apiKey, definitions);
      return (args) => {
        const entry = build(args);
        if (entry.request.apiVersion !== 11) return entry;
        const own = entry.response;
        return {
          ...entry,
          response: {
            decode: async (raw: Buffer) => (await decodeFetchV11(raw, from, readCommitted, codec)) ?? (await own.decode(raw)),
            parse: (decoded: unknown) => own.parse(decoded),
          },
        };
      };
    };
    try {
      return original.call(this, request);
    } finally {
      this.lookupRequest = lookup;
    }
  };
}
