/**
 * The {@link KafkaClient} on `@platformatic/kafka` (pinned; maintained, pure TypeScript, KIP-447 offset commits
 * with group metadata, cooperative rebalancing). Select it with `client: platformaticKafkaClient({ brokers })` on
 * a Kafka source or sink. It is the default (`defaultKafkaClient()`) when it is installed; kafkajs otherwise.
 *
 * What this adapter does itself, and why:
 * - **Fetching.** The consumer joins the group through the library (membership, heartbeats, assignment) but runs
 *   its own fetch loop: Gress hands over one partition's batch at a time and re-fetches from whatever offset
 *   the batch handler returns, seeks, pauses, and sees control records move the position, none of which the
 *   library's per-message stream offers.
 * - **Reading the records.** The fetch loop sends Fetch v17 itself, through the library's connection to the
 *   partition leader and the library's request writer, and reads the record batches with Gress's own reader
 *   (record-batches.ts), which makes one message object per record where the library's makes several, at about
 *   a third of the cost per message. `readRecords: "library"` (or a broker without Fetch v17) goes through
 *   the library's `fetch()` and its reader instead.
 * - **read_committed.** The library drops an aborted transaction's records only when the abort marker is in
 *   the same response and the producer aborted once in it; Gress' sink aborts several transactions under one
 *   producer id. So records are filtered here the way the Java consumer does: a transactional batch is skipped
 *   while its producer has an aborted transaction that started at or before it and whose abort marker has not
 *   been passed yet.
 * - **Producer ids.** The library's first InitProducerId sends producer id 0 and epoch 0, which the broker
 *   fences whenever the transactional id already has another producer id (every restart); this adapter asks
 *   for -1/-1, "a new incarnation", as the Java client does.
 * - **Ending a dead process's transaction.** `endTransaction` sends EndTxn for a handle to the transaction
 *   coordinator through the library's client base (`kGetApi`, `kGetConnection`, exported for client subclasses).
 * - **Partitioning.** Keys go to partitions with the Java client's murmur2 mapping (the library's
 *   `compatibilityPartitioner`), as kafkajs does, so both clients put a key in the same partition.
 * - **Static membership's fencing.** The consumer's group API lookup (`kGetApi`) is wrapped on the instance: on
 *   FENCED_INSTANCE_ID the member stops rejoining and sends no LeaveGroup (see watchFencing below).
 * - **A checkpoint before each rejoin.** The group assignor's `beforeRejoin` hook (scale-out tasks checkpoint
 *   what they did up to a rebalance) runs from the group protocol's metadata callback (`protocolsMetadata`),
 *   which the library awaits before every JoinGroup.
 *
 * Loading: `@platformatic/kafka` is an optional peer dependency of Gress (its engines ask for a newer Node.js
 * than Gress does), so `gress/kafka` does not import it. `platformaticKafkaClient()` loads it with a dynamic
 * `import()` on the first asynchronous call (a consumer's `start`, a producer's `connect`, `endTransaction`, ...),
 * once per process; when it is not installed that call rejects with a {@link ConfigError} that says which
 * version to install. Only its types are imported statically (erased).
 *
 * Runtimes: the library declares Node ≥ 22; on Node 20 the only missing piece it uses is `Promise.withResolvers`
 * (ES2024), which is installed, when absent, by that lazy load, right before the library is imported (never
 * by merely importing `gress/kafka`). Node 20 has no zstd in `node:zlib`, so zstd-compressed topics need
 * Node ≥ 22 with this client: on Node 20 the consumer reports such records as unreadable (`onFailure`, and a
 * Kafka source fails its job) instead of fetching them again for ever. Bun and Deno run it as is.
 * @module
 */
import { Buffer } from "node:buffer";
import type { Admin, API, CallbackWithPromise, ClusterMetadata, Consumer, GroupAssignment, GroupPartitionsAssigner, Producer, Reader, RecordsBatch } from "@platformatic/kafka";
import { ConfigError } from "../../lib/errors.ts";
import { optionalPeer } from "../../lib/optional-peer.ts";
import { assignmentChange } from "./assignment.ts";
import { CommittedFilter, type Decompress, readRecordBatches } from "./record-batches.ts";
import { sendInParts } from "./request-size.ts";
import type {
  BatchHandler,
  ConsumerOptions,
  EndTransactionResult,
  GroupAssignor,
  GroupMetadata,
  KafkaClient,
  KafkaConsumer,
  KafkaMessage,
  KafkaTransactionalProducer,
  MarkerOutcome,
  PartitionOffset,
  ProducedBatch,
  ProducerRecord,
  Rebalance,
  TransactionalProducerOptions,
  TransactionHandle,
  TransactionMarkerRef,
} from "./client.ts";

const LIBRARY = "@platformatic/kafka";
/** The version of the library this adapter is tested with: package.json's devDependencies (check-exports.mjs). */
const LIBRARY_VERSION = "2.12.1";
/** The version of @platformatic/kafka this adapter is tested with (for install hints). */
export const PLATFORMATIC_KAFKA_VERSION: string = LIBRARY_VERSION;
type Library = typeof import("@platformatic/kafka");
let loaded: Library | undefined;

/** Imports the library once; every asynchronous entry point of the client awaits it before using `lib()`. */
const loadPeer: () => Promise<Library> = optionalPeer({
  library: LIBRARY,
  version: LIBRARY_VERSION,
  api: "platformaticKafkaClient",
  load: () => {
    installPromiseWithResolvers();
    return import("@platformatic/kafka");
  },
});
async function load(): Promise<Library> {
  loaded = await loadPeer();
  return loaded;
}

/** The library, once {@link load} has resolved. */
function lib(): Library {
  if (loaded === undefined) throw new Error(`${LIBRARY} is used before it was loaded`);
  return loaded;
}

/**
 * ES2024; Node 20 lacks it and the library calls it for every promise-returning method. Installed only by
 * {@link load}, so that importing gress/kafka without using this client leaves `Promise` alone.
 */
function installPromiseWithResolvers(): void {
  if (typeof (Promise as { withResolvers?: unknown }).withResolvers === "function") return;
  Object.defineProperty(Promise, "withResolvers", {
    configurable: true,
    writable: true,
    value: function withResolvers<T>(this: PromiseConstructor) {
      let resolve!: (v: T | PromiseLike<T>) => void;
      let reject!: (e: unknown) => void;
      const promise = new this<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

type Transaction = Awaited<ReturnType<Producer["beginTransaction"]>>;
type FetchTopics = Parameters<Consumer["fetch"]>[0]["topics"];

/**
 * One partition of a fetch response: the fields the adapter reads, and the records either as the bytes the
 * broker sent (Fetch v17 read by {@link parseFetch}, decoded by readRecordBatches) or as the library read
 * them (its own fetch(), on brokers without v17).
 */
interface FetchedPartition {
  readonly partitionIndex: number;
  readonly errorCode: number;
  readonly highWatermark: bigint;
  readonly lastStableOffset: bigint;
  readonly abortedTransactions: readonly { readonly producerId: bigint; readonly firstOffset: bigint }[] | null;
  readonly records: Buffer | readonly RecordsBatch[] | null | undefined;
}
interface Fetched {
  readonly responses: readonly { readonly topicId: string; readonly partitions: readonly FetchedPartition[] }[];
}

/**
 * Reads a Fetch v17 response as the library's parser does, except for the records: each partition's record
 * bytes are kept as one Buffer for readRecordBatches (see record-batches.ts for why). Partition errors throw
 * the library's ResponseError with the response, as its parser does, so that callers find them the same way.
 */
function parseFetch(_correlationId: number, apiKey: number, apiVersion: number, reader: Reader): Fetched {
  const errors: [string, [number, null]][] = [];
  reader.readInt32(); // throttle_time_ms
  const errorCode = reader.readInt16();
  if (errorCode !== 0) errors.push(["", [errorCode, null]]);
  reader.readInt32(); // session_id
  const responses = reader.readArray((r, i) => ({
    topicId: r.readUUID(),
    partitions: r.readArray((r, j): FetchedPartition => {
      const partitionIndex = r.readInt32();
      const errorCode = r.readInt16();
      const highWatermark = r.readInt64();
      const lastStableOffset = r.readInt64();
      r.readInt64(); // log_start_offset
      const abortedTransactions = r.readNullableArray((r) => ({ producerId: r.readInt64(), firstOffset: r.readInt64() }));
      r.readInt32(); // preferred_read_replica
      if (errorCode !== 0) errors.push([`/responses/${i}/partitions/${j}`, [errorCode, null]]);
      // COMPACT_RECORDS: length + 1, 0 for null.
      const size = r.readUnsignedVarInt() - 1;
      let records: Buffer | null = null;
      if (size > 0) {
        records = r.buffer.slice(r.position, r.position + size);
        r.skip(size);
      }
      // The tagged fields after the records (diverging epoch, current leader, snapshot id) are not used.
      return { partitionIndex, errorCode, highWatermark, lastStableOffset, abortedTransactions, records };
    }),
  }));
  const response: Fetched = { responses };
  if (errors.length > 0) throw new (lib().ResponseError)(apiKey, apiVersion, Object.fromEntries(errors), response);
  return response;
}

/** Fetch v17 with {@link parseFetch}; made once the library is loaded. */
let fetchV17: API<Parameters<typeof import("@platformatic/kafka").fetchV17.createRequest>, Fetched> | undefined;

/** Decompresses a compressed batch's records with the library's codecs. */
const decompress: Decompress = (codec, compressed) => {
  const algorithm = lib().compressionsAlgorithmsByBitmask[codec];
  if (algorithm === undefined) throw new Error(`kafka: record batch compressed with unknown codec ${codec}`);
  return algorithm.decompressSync(compressed);
};

/**
 * Options of {@link platformaticKafkaClient}.
 *
 * @example
 * ```ts
 * import { type PlatformaticKafkaClientOptions, platformaticKafkaClient } from "gress/kafka";
 *
 * const options: PlatformaticKafkaClientOptions = { brokers: ["kafka-1:9092", "kafka-2:9092"], clientId: "billing" };
 * const client = platformaticKafkaClient(options);
 * ```
 */
export interface PlatformaticKafkaClientOptions {
  readonly brokers: readonly string[];
  readonly clientId?: string;
  /**
   * Who reads the record batches a consumer fetches: `"gress"` (the default) reads them with Gress's own
   * reader, about three times cheaper per message; `"library"` fetches through the library's `fetch()` and reads
   * them with its reader, which Gress also falls back to when the broker does not offer Fetch v17.
   */
  readonly readRecords?: "gress" | "library";
}

/** Protocol errors that mean "this transaction was already finished or superseded". */
const ALREADY_ENDED = ["INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED", "INVALID_TXN_STATE", "INVALID_PRODUCER_ID_MAPPING"];
/** Errors after which EndTxn is sent again (to a coordinator looked up again). */
const RETRIABLE = ["CONCURRENT_TRANSACTIONS", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR"];
/** The protocol's error code OFFSET_OUT_OF_RANGE. */
const OFFSET_OUT_OF_RANGE = 1;
/** Fetched records that this runtime cannot read: fetching them again would not help. */
class UnreadableRecords extends Error {}

/** How long the broker holds a fetch that has nothing new, ms. */
const FETCH_MAX_WAIT_MS = 100;
/** The most one fetch response may hold, as the library's default (each partition: maxBytesPerPartition). */
const FETCH_MAX_BYTES = 50 * 1024 * 1024;
/** Bit 3 of a batch's attributes: the broker's append time replaces the producer's timestamps. */
const LOG_APPEND_TIME = 1 << 3;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hasError = (e: unknown, ids: readonly string[]): boolean => ids.some((id) => lib().findErrorBy(e as Error, "apiId", id) !== null);
const toBuffer = (v: Uint8Array | string | null): Buffer | undefined =>
  v === null ? undefined : typeof v === "string" ? Buffer.from(v) : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);

/** Sends one bounded part of a transactional `send` (connectors/kafka/request-size.ts cuts them). */
async function sendPart(t: Transaction, topic: string, records: readonly ProducerRecord[]): Promise<readonly ProducedBatch[]> {
  const result = await t.send({
    messages: records.map((r) => {
      const m: { topic: string; key?: Buffer; value?: Buffer; partition?: number; timestamp?: bigint } = { topic };
      const k = toBuffer(r.key);
      const v = toBuffer(r.value);
      if (k !== undefined) m.key = k;
      if (v !== undefined) m.value = v;
      if (r.partition !== undefined) m.partition = r.partition;
      if (r.timestamp !== undefined) m.timestamp = BigInt(r.timestamp);
      return m;
    }),
  });
  return (result.offsets ?? []).map((x) => ({ partition: x.partition, baseOffset: Number(x.offset) }));
}

/** Runs a library method that takes a Node-style callback. */
function call<T>(fn: (cb: CallbackWithPromise<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn(((e: Error | null, v: T) => (e ? reject(e) : resolve(v))) as CallbackWithPromise<T>));
}

/** The library's client base, seen through the symbols it exports for client subclasses. */
interface ClientBase {
  bootstrapConnection(cb: CallbackWithPromise<unknown>): void;
  connection(broker: unknown, cb: CallbackWithPromise<unknown>): void;
  api(name: string, cb: CallbackWithPromise<Api>): void;
  metadata(o: { topics: string[] }, cb: CallbackWithPromise<{ brokers: Map<number, unknown> }>): void;
}
type Api = (connection: unknown, ...args: unknown[]) => void;

function clientBase(client: Consumer): ClientBase {
  const { kGetApi, kGetBootstrapConnection, kGetConnection, kMetadata } = lib();
  const c = client as unknown as Record<symbol, (...args: unknown[]) => void>;
  const method =
    (k: symbol) =>
    (...args: unknown[]): void =>
      (c[k] as (...args: unknown[]) => void).apply(client, args);
  return { bootstrapConnection: method(kGetBootstrapConnection), connection: method(kGetConnection), api: method(kGetApi), metadata: method(kMetadata) };
}

/**
 * A {@link KafkaClient} backed by `@platformatic/kafka`.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { kafkaSink, kafkaSource, platformaticKafkaClient } from "gress/kafka";
 *
 * // The @platformatic/kafka client instead of the default kafkajs one, for a source and a sink.
 * const client = platformaticKafkaClient({ brokers: ["localhost:9092"], clientId: "orders-job" });
 * const job = new Job({ name: "orders" });
 * job
 *   .source(kafkaSource({ name: "orders", client, topics: ["orders"], groupId: "orders-job" }))
 *   .sinkTo(kafkaSink({ name: "orders-copy", client, topic: "orders-copy" }));
 * ```
 */
export function platformaticKafkaClient(options: PlatformaticKafkaClientOptions): KafkaClient {
  if (options.readRecords !== undefined && options.readRecords !== "gress" && options.readRecords !== "library") {
    throw new ConfigError(`platformaticKafkaClient: readRecords must be "gress" or "library", got ${JSON.stringify(options.readRecords)}`, [
      { path: ["readRecords"], code: "invalid_value", message: 'must be "gress" or "library"' },
    ]);
  }
  const base = { clientId: options.clientId ?? "gress", bootstrapBrokers: [...options.brokers] };
  const ownReader = options.readRecords !== "library";
  let admin: Admin | undefined;
  /** A consumer that never joins a group: list offsets, read a marker's partition, send EndTxn. */
  let utility: Consumer | undefined;
  const getAdmin = async (): Promise<Admin> => {
    const { Admin } = await load();
    return (admin ??= new Admin({ ...base }));
  };
  const getUtility = async (): Promise<Consumer> => {
    const { Consumer } = await load();
    return (utility ??= new Consumer({ ...base, groupId: `${base.clientId}-utility`, autocommit: false }));
  };

  return {
    consumer: (o) => groupConsumer(base, o, ownReader),
    transactionalProducer: (o) => transactionalProducer(base, o),
    async endTransaction(handle: TransactionHandle, commit: boolean): Promise<EndTransactionResult> {
      const c = clientBase(await getUtility());
      const { FindCoordinatorKeyTypes } = lib();
      for (let attempt = 0; ; attempt++) {
        try {
          const bootstrap = await call<unknown>((cb) => c.bootstrapConnection(cb));
          const findCoordinator = await call<Api>((cb) => c.api("FindCoordinator", cb));
          const found = await call<{ coordinators: { key: string; nodeId: number }[]; nodeId?: number }>((cb) =>
            findCoordinator(bootstrap, FindCoordinatorKeyTypes.TRANSACTION, [handle.transactionalId], cb),
          );
          const nodeId = found.coordinators?.[0]?.nodeId ?? found.nodeId;
          const metadata = await call<{ brokers: Map<number, unknown> }>((cb) => c.metadata({ topics: [] }, cb));
          const broker = nodeId === undefined ? undefined : metadata.brokers.get(nodeId);
          if (broker === undefined) throw new Error(`no transaction coordinator found for ${handle.transactionalId}`);
          const connection = await call<unknown>((cb) => c.connection(broker, cb));
          const endTxn = await call<Api>((cb) => c.api("EndTxn", cb));
          await call<unknown>((cb) => endTxn(connection, handle.transactionalId, BigInt(handle.producerId), handle.producerEpoch, commit, cb));
          return "ended";
        } catch (e) {
          if (hasError(e, ALREADY_ENDED)) return "already-ended";
          if (hasError(e, RETRIABLE) && attempt < 50) {
            await sleep(Math.min(1000, 50 * 2 ** Math.min(attempt, 5)));
            continue;
          }
          throw e;
        }
      }
    },
    async markerOutcome(marker: TransactionMarkerRef, waitMs: number): Promise<MarkerOutcome> {
      const where = `${marker.topic}-${marker.partition}@${marker.offset}`;
      const utility = await getUtility();
      const { Consumer, FetchIsolationLevels, ListOffsetTimestamps } = lib();
      const deadline = Date.now() + waitMs;
      // The last stable offset passes the marker once its transaction (and any open one before it) is decided.
      for (;;) {
        const lso = (
          await utility.listOffsets({
            topics: [marker.topic],
            partitions: { [marker.topic]: [marker.partition] },
            timestamp: ListOffsetTimestamps.LATEST,
            isolationLevel: FetchIsolationLevels.READ_COMMITTED,
          })
        ).get(marker.topic)?.[marker.partition];
        if (lso === undefined) throw new Error(`kafka: no partition ${marker.topic}-${marker.partition}`);
        if (lso > BigInt(marker.offset)) break;
        if (Date.now() >= deadline) return "open";
        await sleep(Math.min(100, Math.max(1, deadline - Date.now())));
      }
      // One read_committed fetch at the marker, by a consumer of its own: the shared one's fetch session would
      // leave an unchanged partition out of the response.
      const reader = new Consumer({ ...base, groupId: `${base.clientId}-marker`, autocommit: false });
      try {
        const metadata = await reader.metadata({ topics: [marker.topic] });
        const topic = metadata.topics.get(marker.topic);
        const leader = topic?.partitions[marker.partition]?.leader;
        if (topic === undefined || leader === undefined) throw new Error(`kafka: no partition ${marker.topic}-${marker.partition}`);
        const response = await reader
          .fetch({
            node: leader,
            maxWaitTime: 0,
            isolationLevel: FetchIsolationLevels.READ_COMMITTED,
            topics: [
              {
                topicId: topic.id,
                partitions: [{ partition: marker.partition, fetchOffset: BigInt(marker.offset), partitionMaxBytes: 1024, currentLeaderEpoch: -1, lastFetchedEpoch: -1 }],
              },
            ],
          })
          .catch((e: unknown) => {
            if (hasError(e, ["OFFSET_OUT_OF_RANGE"])) throw new Error(`kafka: marker ${where} is no longer retained`, { cause: e });
            throw e;
          });
        const p = response.responses[0]?.partitions[0];
        if (p === undefined) throw new Error(`kafka: no fetch response for marker ${where}`);
        // The broker lists every aborted transaction overlapping the fetched range; one of the marker's producer
        // that started at or before the marker is the marker's own transaction.
        const pid = BigInt(marker.producerId);
        return (p.abortedTransactions ?? []).some((a) => a.producerId === pid && a.firstOffset <= BigInt(marker.offset)) ? "aborted" : "committed";
      } finally {
        await reader.close();
      }
    },
    async brokerConfig(names: readonly string[]): Promise<Map<string, string>> {
      const a = await getAdmin();
      const { ConfigResourceTypes } = lib();
      const metadata = await a.metadata({ topics: [] });
      const nodeId = [...metadata.brokers.keys()][0];
      if (nodeId === undefined) throw new Error("kafka: the cluster has no brokers");
      const described = await a.describeConfigs({
        resources: [{ resourceType: ConfigResourceTypes.BROKER, resourceName: String(nodeId), configurationKeys: [...names] }],
      });
      const out = new Map<string, string>();
      for (const r of described) for (const c of r.configs) if (typeof c.value === "string" && names.includes(c.name)) out.set(c.name, c.value);
      return out;
    },
    async topicConfig(topic: string): Promise<Map<string, string>> {
      const a = await getAdmin();
      const { ConfigResourceTypes } = lib();
      const described = await a.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic }] });
      const out = new Map<string, string>();
      for (const r of described) for (const c of r.configs) if (typeof c.value === "string") out.set(c.name, c.value);
      return out;
    },
    async endOffsets(topic) {
      const utility = await getUtility();
      const { FetchIsolationLevels, ListOffsetTimestamps } = lib();
      const offsets = await utility.listOffsets({ topics: [topic], timestamp: ListOffsetTimestamps.LATEST, isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED });
      const out = new Map<number, number>();
      for (const [partition, o] of (offsets.get(topic) ?? []).entries()) out.set(partition, Number(o));
      return out;
    },
    async createTopic(topic, partitions, options) {
      const a = await getAdmin();
      try {
        await a.createTopics({
          topics: [topic],
          partitions,
          replicas: options?.replicationFactor ?? 1,
          configs: Object.entries(options?.config ?? {}).map(([name, value]) => ({ name, value })),
        });
      } catch (e) {
        if (!hasError(e, ["TOPIC_ALREADY_EXISTS"])) throw e;
        return;
      }
      // As kafkajs' waitForLeaders: the topic is usable once every partition has a leader.
      for (let i = 0; i < 100; i++) {
        const t = (await a.metadata({ topics: [topic], forceUpdate: true })).topics.get(topic);
        if (t !== undefined && t.partitionsCount === partitions && t.partitions.every((p) => p.leader >= 0)) return;
        await sleep(100);
      }
      throw new Error(`kafka: topic ${topic} has no leaders after 10 s`);
    },
    async deleteRecords(topic, partitions) {
      if (partitions.length === 0) return;
      const a = await getAdmin();
      await a.deleteRecords({ topics: [{ name: topic, partitions: partitions.map((p) => ({ partition: p.partition, offset: BigInt(p.offset) })) }] });
    },
    async close() {
      const a = admin;
      const u = utility;
      admin = undefined;
      utility = undefined;
      await Promise.all([a?.close(), u?.close()]);
    },
  };
}

interface Base {
  readonly clientId: string;
  readonly bootstrapBrokers: string[];
}

/** One assigned partition and the offset of the next record to fetch (undefined until looked up). */
interface Assigned {
  readonly topic: string;
  readonly partition: number;
  offset: number | undefined;
}

function groupConsumer(base: Base, o: ConsumerOptions, ownReader: boolean): KafkaConsumer {
  if (o.groupInstanceId !== undefined) checkGroupInstanceId(o.groupInstanceId);
  const sessionTimeout = o.sessionTimeoutMs ?? 10_000;
  const readCommitted = o.readCommitted !== false;
  const maxBytesPerPartition = o.maxBytesPerPartition ?? 1024 * 1024;
  /** Made by start(), once the library is loaded. */
  let consumer: Consumer | undefined;
  /** Set at the first assignment: later joins are rejoins (the assignor's beforeRejoin runs before them). */
  let joined = false;
  /** Static membership: set once another member took this one's group instance id (FENCED_INSTANCE_ID). */
  let fenced: Error | undefined;
  /** Static membership: stop() was asked to keep this member's place (no LeaveGroup). */
  let keepPlace = false;
  const failures: ((e: Error, kind: "fenced" | "unreadable") => void)[] = [];
  const c = (): Consumer =>
    (consumer ??= watchFencing(
      new (lib().Consumer)({
    ...base,
    groupId: o.groupId,
    ...(o.groupInstanceId === undefined ? {} : { groupInstanceId: o.groupInstanceId }),
    autocommit: false,
    sessionTimeout,
    heartbeatInterval: Math.max(500, Math.floor(sessionTimeout / 5)),
    rebalanceTimeout: Math.max(sessionTimeout, 10_000),
    maxWaitTime: FETCH_MAX_WAIT_MS,
    isolationLevel: readCommitted ? lib().FetchIsolationLevels.READ_COMMITTED : lib().FetchIsolationLevels.READ_UNCOMMITTED,
    // Round robin under both names, the library's and kafkajs': members of both clients can share a group
    // (the broker picks a protocol all members offer), e.g. while a deployment moves from one to the other.
    // A custom assignor goes by its own name on both clients.
    ...(o.assignor === undefined
      ? {
          protocols: [
            { name: "roundrobin", version: 1 },
            { name: "RoundRobinAssigner", version: 1 },
          ],
        }
      : assignorOptions(o.assignor, () => joined)),
      }),
      () => fenced,
      () => keepPlace,
      (e) => {
        if (fenced !== undefined) return;
        fenced = new Error(
          `kafka: another member of group "${o.groupId}" joined with this member's group instance id "${o.groupInstanceId}" (FENCED_INSTANCE_ID): each live member needs its own; this one no longer rejoins`,
          { cause: e },
        );
        // Its rejoin is refused from now on (watchFencing), and the library reports that as an "error" event.
        consumer?.on("error", () => undefined);
        for (const l of failures) l(fenced, "fenced");
      },
    ));
  const key = (topic: string, partition: number): string => `${topic}\u0000${partition}`;
  /** This member's partitions, with their fetch positions. */
  let assigned = new Map<string, Assigned>();
  /** Seeks given for partitions not (yet) assigned; applied when they are. */
  const pendingSeeks = new Map<string, number>();
  const paused = new Set<string>();
  /** Partitions paused one by one (key()), on top of whole topics. */
  const pausedPartitions = new Set<string>();
  const isPaused = (topic: string, partition: number): boolean => paused.has(topic) || pausedPartitions.has(key(topic, partition));
  const advanced: ((t: PartitionOffset) => void)[] = [];
  const assignments: ((a: readonly { readonly topic: string; readonly partition: number }[]) => void)[] = [];
  const rebalances: ((r: Rebalance) => void)[] = [];
  let running = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  /** Fetches so far: the partition a fetch names first (see fetchOnce). */
  let rotation = 0;
  /** The positions of newly assigned partitions being looked up; fetching waits for it. */
  let positioning: Promise<void> = Promise.resolve();

  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const onJoin = (groups: readonly GroupAssignment[]): void => {
    joined = true;
    const next = new Map<string, Assigned>();
    const fresh: Assigned[] = [];
    for (const g of groups) {
      for (const partition of g.partitions) {
        const k = key(g.topic, partition);
        const had = assigned.get(k);
        const a: Assigned = had ?? { topic: g.topic, partition, offset: pendingSeeks.get(k) };
        pendingSeeks.delete(k);
        next.set(k, a);
        if (a.offset === undefined) fresh.push(a);
      }
    }
    const before = [...assigned.values()].map((a) => ({ topic: a.topic, partition: a.partition }));
    assigned = next;
    if (fresh.length > 0) positioning = positioning.then(() => position(fresh)).catch(() => undefined);
    const list = [...next.values()].map((a) => ({ topic: a.topic, partition: a.partition }));
    const rebalance: Rebalance = { generation: c().generationId, assigned: list, ...assignmentChange(before, list) };
    for (const l of assignments) l(list);
    for (const l of rebalances) l(rebalance);
    poke();
  };

  /** Starts partitions without a position at the group's committed offset, else earliest or latest. */
  const position = async (fresh: readonly Assigned[]): Promise<void> => {
    const byTopic = new Map<string, number[]>();
    for (const a of fresh) byTopic.set(a.topic, [...(byTopic.get(a.topic) ?? []), a.partition]);
    const committed = await c().listCommittedOffsets({ topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
    const missing = fresh.filter((a) => a.offset === undefined && (committed.get(a.topic)?.[a.partition] ?? -1n) < 0n);
    for (const a of fresh) {
      const offset = committed.get(a.topic)?.[a.partition] ?? -1n;
      if (a.offset === undefined && offset >= 0n) a.offset = Number(offset);
    }
    if (missing.length > 0) {
      const topics = [...new Set(missing.map((a) => a.topic))];
      const start = await c().listOffsets({
        topics,
        timestamp: o.fromBeginning ? lib().ListOffsetTimestamps.EARLIEST : lib().ListOffsetTimestamps.LATEST,
        isolationLevel: readCommitted ? lib().FetchIsolationLevels.READ_COMMITTED : lib().FetchIsolationLevels.READ_UNCOMMITTED,
      });
      for (const a of missing) if (a.offset === undefined) a.offset = Number(start.get(a.topic)?.[a.partition] ?? 0n);
    }
  };

  /** Resets partitions whose position fell out of the log (retention) as a new consumer would. */
  const resetOutOfRange = async (e: unknown): Promise<boolean> => {
    const response = (lib().findErrorBy(e as Error, "apiId", "OFFSET_OUT_OF_RANGE") as { response?: Fetched } | null)?.response ?? (e as { response?: Fetched }).response;
    if (!hasError(e, ["OFFSET_OUT_OF_RANGE"]) || response === undefined) return false;
    const metadata = await c().metadata({ topics: [...o.topics] });
    const names = new Map([...metadata.topics].map(([name, t]) => [t.id, name]));
    const reset: Assigned[] = [];
    for (const t of response.responses) {
      for (const p of t.partitions) {
        const a = assigned.get(key(names.get(t.topicId) ?? "", p.partitionIndex));
        if (a !== undefined && p.errorCode === OFFSET_OUT_OF_RANGE) {
          a.offset = undefined;
          reset.push(a);
        }
      }
    }
    // Not the group's committed offset: it is what pointed outside the log.
    const start = await c().listOffsets({ topics: [...new Set(reset.map((a) => a.topic))], timestamp: o.fromBeginning ? lib().ListOffsetTimestamps.EARLIEST : lib().ListOffsetTimestamps.LATEST });
    for (const a of reset) a.offset = Number(start.get(a.topic)?.[a.partition] ?? 0n);
    return reset.length > 0;
  };

  /**
   * One fetch from `node`: Fetch v17 through the library's connection to it, read by parseFetch (no fetch
   * session: every request names its partitions and offsets, which the adapter tracks itself); the library's
   * own fetch() when the broker does not speak v17.
   */
  const fetchFrom = async (metadata: ClusterMetadata, node: number, topics: FetchTopics): Promise<Fetched> => {
    const client = clientBase(c());
    const api = await call<Api & { readonly version: number }>((cb) => client.api("Fetch", cb as CallbackWithPromise<Api>));
    if (!ownReader || api.version !== 17) return (await c().fetch({ node, topics })) as Fetched;
    const broker = metadata.brokers.get(node);
    if (broker === undefined) throw new Error(`kafka: no broker with node id ${node} in the metadata`);
    const connection = await call<unknown>((cb) => client.connection(broker, cb));
    const L = lib();
    fetchV17 ??= L.createAPI(1, 17, L.fetchV17.createRequest, parseFetch);
    const fetch = fetchV17 as unknown as Api;
    const isolation = readCommitted ? L.FetchIsolationLevels.READ_COMMITTED : L.FetchIsolationLevels.READ_UNCOMMITTED;
    // Session id 0 and epoch -1: a full fetch that opens no fetch session on the broker.
    return call<Fetched>((cb) => fetch(connection, FETCH_MAX_WAIT_MS, 1, FETCH_MAX_BYTES, isolation, 0, -1, topics, [], "", cb));
  };

  /** Hands one partition's fetched batches to the handler and moves its position. */
  const deliver = async (handler: BatchHandler, a: Assigned, requested: number, p: FetchedPartition): Promise<void> => {
    const records = p.records;
    if (records === undefined || records === null) return;
    let messages: KafkaMessage[];
    let end: number;
    if (Buffer.isBuffer(records)) {
      try {
        ({ messages, end } = readRecordBatches(records, p.abortedTransactions ?? [], requested, readCommitted, decompress));
      } catch (e) {
        throw new UnreadableRecords(`kafka: the records of ${a.topic}-${a.partition} fetched from offset ${requested} cannot be read: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      if (end < 0) return;
    } else {
      if (records.length === 0) return;
      messages = messagesOf(records, p.abortedTransactions ?? [], requested, readCommitted);
      const last = records[records.length - 1] as RecordsBatch;
      end = Number(last.firstOffset) + last.lastOffsetDelta + 1;
    }
    // Never back: a response whose batches all end before the requested offset moves nothing.
    let next = Math.max(end, requested);
    if (messages.length > 0) {
      // Lag counts to where this consumer can read: the last stable offset under read_committed.
      const highWatermark = Number(readCommitted ? p.lastStableOffset : p.highWatermark);
      const wanted = await handler({ topic: a.topic, partition: a.partition, messages, highWatermark });
      // Everything delivered was taken: the position passes the control records after it too.
      if (wanted <= (messages[messages.length - 1] as KafkaMessage).offset) next = wanted;
    }
    // A seek or a rebalance while the handler ran decides the position instead.
    if (a.offset !== requested || assigned.get(key(a.topic, a.partition)) !== a) return;
    a.offset = next;
    if (next === end) for (const l of advanced) l({ topic: a.topic, partition: a.partition, offset: end });
  };

  const fetchOnce = async (handler: BatchHandler): Promise<void> => {
    await positioning;
    // A lookup that failed (broker away during a rebalance) is tried again here, with the loop's back-off.
    const unpositioned = [...assigned.values()].filter((a) => a.offset === undefined);
    if (unpositioned.length > 0) await position(unpositioned);
    const wanted = [...assigned.values()].filter((a) => a.offset !== undefined && !isPaused(a.topic, a.partition));
    if (wanted.length === 0) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
      return;
    }
    const metadata = await c().metadata({ topics: [...o.topics] });
    // Stopped meanwhile (a bounded job ends right after its last batch): no fetch, which the broker would hold
    // for maxWaitTime when nothing new has come, and the stop would wait that long.
    if (!running) return;
    const byNode = new Map<number, { topicId: string; partitions: { partition: number; fetchOffset: bigint; partitionMaxBytes: number; currentLeaderEpoch: number; lastFetchedEpoch: number }[] }[]>();
    const requested = new Map<string, number>();
    // The broker fills a fetch response in the order the request names the partitions, up to its byte limit:
    // each fetch starts at another partition, so that none waits for ever behind others that always have data
    // (the broker rotates a fetch session's partitions; a fetch without a session names them anew each time).
    const first = rotation++ % wanted.length;
    for (const a of first === 0 ? wanted : [...wanted.slice(first), ...wanted.slice(0, first)]) {
      const t = metadata.topics.get(a.topic);
      const leader = t?.partitions[a.partition]?.leader;
      if (t === undefined || leader === undefined) continue;
      const offset = a.offset as number;
      requested.set(key(a.topic, a.partition), offset);
      const topics = byNode.get(leader) ?? [];
      byNode.set(leader, topics);
      let entry = topics.find((x) => x.topicId === t.id);
      if (entry === undefined) topics.push((entry = { topicId: t.id, partitions: [] }));
      entry.partitions.push({ partition: a.partition, fetchOffset: BigInt(offset), partitionMaxBytes: maxBytesPerPartition, currentLeaderEpoch: -1, lastFetchedEpoch: -1 });
    }
    const names = new Map([...metadata.topics].map(([name, t]) => [t.id, name]));
    const responses = await Promise.all([...byNode].map(([node, topics]) => fetchFrom(metadata, node, topics)));
    for (const response of responses) {
      for (const t of response.responses) {
        const topic = names.get(t.topicId);
        if (topic === undefined) continue;
        for (const p of t.partitions) {
          const k = key(topic, p.partitionIndex);
          const a = assigned.get(k);
          const offset = requested.get(k);
          // Paused, sought or revoked since the request: drop the data; the position still says where to go on.
          if (!running || a === undefined || offset === undefined || a.offset !== offset || isPaused(topic, p.partitionIndex)) continue;
          await deliver(handler, a, offset, p);
        }
      }
    }
  };

  const run = async (handler: BatchHandler): Promise<void> => {
    let attempts = 0;
    while (running) {
      try {
        await fetchOnce(handler);
        attempts = 0;
      } catch (e) {
        if (!running) return;
        // Records this runtime cannot read would be fetched again and again: fail for good, naming them. The
        // library's own reader (readRecords: "library") reports a codec it lacks the same way.
        const unreadable =
          e instanceof UnreadableRecords
            ? e
            : lib().findErrorBy(e as Error, "code", lib().UnsupportedCompressionError.code) !== null
              ? new UnreadableRecords(`kafka: fetched records cannot be read: ${e instanceof Error ? e.message : String(e)}`, { cause: e })
              : undefined;
        if (unreadable !== undefined) {
          running = false;
          for (const l of failures) l(unreadable, "unreadable");
          return;
        }
        if (await resetOutOfRange(e).catch(() => false)) continue;
        // Leaders move, brokers restart: back off and fetch again from the same positions, as kafkajs restarts.
        c().clearMetadata();
        await sleep(Math.min(5000, 100 * 2 ** Math.min(attempts++, 6)));
      }
    }
  };

  return {
    async start(handler) {
      await load();
      for (const t of o.topics) c().topics.track(t);
      c().on("consumer:group:join", (payload) => onJoin(payload.assignments ?? []));
      await c().joinGroup({});
      await positioning;
      running = true;
      loop = run(handler);
    },
    seek(t) {
      const a = assigned.get(key(t.topic, t.partition));
      if (a === undefined) pendingSeeks.set(key(t.topic, t.partition), t.offset);
      else a.offset = t.offset;
      poke();
    },
    pause(topics) {
      for (const t of topics) paused.add(t);
    },
    resume(topics) {
      for (const t of topics) paused.delete(t);
      poke();
    },
    pausePartitions(partitions) {
      for (const tp of partitions) pausedPartitions.add(key(tp.topic, tp.partition));
    },
    resumePartitions(partitions) {
      for (const tp of partitions) pausedPartitions.delete(key(tp.topic, tp.partition));
      poke();
    },
    async commit(offsets) {
      await load();
      // OffsetCommit sent here, not with the library's commit(): when that one fails with a rebalance error it
      // joins the group again by itself, beside the heartbeat's own rejoin, and retries under the new
      // generation. Members committing after each batch then set off one extra generation after another, about
      // a second apart (measured: 5 generations in 6 s with an unchanged assignment, docs/SCALE-OUT.md F3),
      // and may commit partitions that have just moved to another member. A failed commit fails here; the
      // heartbeat rejoins.
      const member = c();
      const coordinator = member.coordinatorId;
      if (member.memberId === null || coordinator === null || coordinator === undefined) throw new Error(`kafka: consumer of group "${o.groupId}" has not joined it yet`);
      const topics = new Map<string, { partitionIndex: number; committedOffset: bigint; committedLeaderEpoch: number; committedMetadata: null }[]>();
      for (const x of offsets) {
        const list = topics.get(x.topic) ?? [];
        list.push({ partitionIndex: x.partition, committedOffset: BigInt(x.offset), committedLeaderEpoch: -1, committedMetadata: null });
        topics.set(x.topic, list);
      }
      const b = clientBase(member);
      const metadata = await call<{ brokers: Map<number, unknown> }>((cb) => b.metadata({ topics: [] }, cb));
      const broker = metadata.brokers.get(coordinator);
      if (broker === undefined) throw new Error(`kafka: group coordinator ${coordinator} of "${o.groupId}" is not in the metadata`);
      const connection = await call<unknown>((cb) => b.connection(broker, cb));
      const offsetCommit = await call<Api>((cb) => b.api("OffsetCommit", cb));
      const request = [...topics].map(([name, partitions]) => ({ name, partitions }));
      await call<unknown>((cb) => offsetCommit(connection, o.groupId, member.generationId, member.memberId, o.groupInstanceId ?? null, request, cb));
    },
    onPositionAdvanced(listener) {
      advanced.push(listener);
    },
    onAssignment(listener) {
      assignments.push(listener);
    },
    onRebalance(listener) {
      rebalances.push(listener);
    },
    onFailure(listener) {
      failures.push(listener);
      if (fenced !== undefined) listener(fenced, "fenced");
    },
    groupMetadata(): GroupMetadata | undefined {
      const m = consumer;
      if (m === undefined || m.memberId === null || m.memberId === undefined) return undefined;
      const coordinatorId = m.coordinatorId;
      return { groupId: o.groupId, generationId: m.generationId, memberId: m.memberId, ...(typeof coordinatorId === "number" ? { coordinatorId } : {}) };
    },
    async stop(options) {
      running = false;
      poke();
      await loop;
      // A static member that keeps its place sends no LeaveGroup (watchFencing answers it without sending): the
      // group keeps its assignment until the session timeout, for this instance id's next incarnation.
      if (options?.leaveGroup === false) keepPlace = true;
      // Closing during a rebalance (another member just left) sometimes never calls back in the library, with
      // no socket or timer left to keep the process alive, or fails with "Connection closed". Leaving the group
      // is a courtesy (the broker drops a silent member after the session timeout), so neither may hang or fail
      // the stop.
      // A rejoin under way then fails once its connection closes, and the library reports that as an "error"
      // event: with no listener it would be an uncaught exception after the stop.
      consumer?.on("error", () => undefined);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([consumer?.close(true).catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, sessionTimeout)))]);
      clearTimeout(timer);
    },
  };
}

/** The library's own check of `groupInstanceId` (`^\S+$`), as a ConfigError naming the option. */
function checkGroupInstanceId(id: string): void {
  if (/^\S+$/.test(id)) return;
  throw new ConfigError(`kafka consumer: groupInstanceId ${JSON.stringify(id)} must be non-empty and without whitespace`, [
    { path: ["groupInstanceId"], code: "invalid_string", message: "non-empty, no whitespace" },
  ]);
}

/** The group APIs whose FENCED_INSTANCE_ID means another member took this one's group instance id. */
const GROUP_APIS = new Set(["JoinGroup", "SyncGroup", "Heartbeat", "OffsetCommit", "LeaveGroup"]);

/**
 * Static membership's fencing, which the library does not stop at: on FENCED_INSTANCE_ID it drops its member id
 * and joins again with the same instance id, which fences the other member, which does the same, and so on. The
 * consumer's group requests are watched here (its API lookup, `kGetApi`, wrapped on the instance): the first
 * FENCED_INSTANCE_ID is reported to `onFenced`, and every JoinGroup after it fails at once without being sent
 * (a plain error, which the library does not retry), so the member stays out. It also answers the LeaveGroup
 * of a close that keeps the member's place, without sending it.
 */
function watchFencing(consumer: Consumer, fenced: () => Error | undefined, keepPlace: () => boolean, onFenced: (e: Error) => void): Consumer {
  if (consumer.groupInstanceId === null || consumer.groupInstanceId === undefined) return consumer;
  const { kGetApi } = lib();
  const target = consumer as unknown as Record<symbol, (name: string, cb: CallbackWithPromise<Api>) => void>;
  const getApi = target[kGetApi] as (name: string, cb: CallbackWithPromise<Api>) => void;
  target[kGetApi] = function (this: unknown, name: string, cb: CallbackWithPromise<Api>): void {
    if (!GROUP_APIS.has(name)) {
      getApi.call(this, name, cb);
      return;
    }
    getApi.call(this, name, ((error: Error | null, api: Api) => {
      if (error) {
        cb(error, api);
        return;
      }
      const watched: Api = (connection, ...args) => {
        const done = args.at(-1);
        if (typeof done !== "function") {
          api(connection, ...args);
          return;
        }
        // Closing without leaving (stop({ leaveGroup: false })): the library's close goes on as after a LeaveGroup
        // (heartbeats cancelled, member id dropped), but the broker keeps the static member until its session ends.
        if (name === "LeaveGroup" && keepPlace()) {
          (done as (e: null) => void)(null);
          return;
        }
        const refused = fenced();
        if (refused !== undefined && name === "JoinGroup") {
          (done as (e: Error) => void)(new Error(refused.message));
          return;
        }
        api(connection, ...args.slice(0, -1), (e: Error | null, v: unknown) => {
          if (e && hasError(e, ["FENCED_INSTANCE_ID"])) onFenced(e);
          (done as (e: Error | null, v: unknown) => void)(e, v);
        });
      };
      cb(null, watched);
    }) as CallbackWithPromise<Api>);
  };
  return consumer;
}

/**
 * A Gress {@link GroupAssignor} as the library's group options: the protocol under the assignor's name (as on
 * kafkajs), the member's user data in its subscription, and the leader's assignment through it.
 *
 * The library asks for `protocolsMetadata` right before every JoinGroup (rejoins after REBALANCE_IN_PROGRESS,
 * ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID included) and waits for a returned promise: that is where the
 * assignor's `beforeRejoin` runs, once this member had an assignment (`rejoining()`).
 */
function assignorOptions(
  a: GroupAssignor,
  rejoining: () => boolean,
): {
  protocols: { name: string; version: number }[];
  protocolsMetadata: () => Promise<Buffer>;
  partitionAssigner: GroupPartitionsAssigner;
} {
  return {
    protocols: [{ name: a.name, version: 0 }],
    protocolsMetadata: async () => {
      // A failed hook must not keep the member out of its group: the join goes on.
      if (a.beforeRejoin !== undefined && rejoining()) await a.beforeRejoin().catch(() => undefined);
      const u = a.userData?.();
      return u === undefined ? Buffer.alloc(0) : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
    },
    partitionAssigner: (_current, members, topics, metadata) => {
      const partitions = new Map<string, number>();
      for (const topic of topics) partitions.set(topic, metadata.topics.get(topic)?.partitionsCount ?? 0);
      const list = [...members.values()].map((m) => ({
        memberId: m.memberId,
        topics: m.topics ?? [],
        userData: m.metadata === undefined || m.metadata === null || m.metadata.length === 0 ? null : new Uint8Array(typeof m.metadata === "string" ? Buffer.from(m.metadata) : m.metadata),
      }));
      const out = a.assign(list, partitions);
      return [...members.keys()].map((memberId) => {
        const byTopic = new Map<string, GroupAssignment>();
        for (const tp of out.get(memberId) ?? []) {
          const g = byTopic.get(tp.topic) ?? { topic: tp.topic, partitions: [] };
          g.partitions.push(tp.partition);
          byTopic.set(tp.topic, g);
        }
        return { memberId, assignments: byTopic };
      });
    },
  };
}

/**
 * The messages of a partition's batches from `from` on, as the library read them (its own fetch(), used with
 * `readRecords: "library"` and when the library would not use Fetch v17). With read_committed, skips control batches and the batches of aborted
 * transactions ({@link CommittedFilter}).
 */
function messagesOf(
  batches: readonly RecordsBatch[],
  aborted: readonly { producerId: bigint; firstOffset: bigint }[],
  from: number,
  readCommitted: boolean,
): KafkaMessage[] {
  const filter = new CommittedFilter(aborted, readCommitted);
  // Sized once for every record (the filtered ones are cut off at the end) rather than grown push by push.
  let size = 0;
  for (const batch of batches) size += batch.records.length;
  const out = new Array<KafkaMessage>(size);
  let n = 0;
  for (const batch of batches) {
    const first = Number(batch.firstOffset);
    if (filter.skips(batch.attributes, batch.producerId, batch.firstOffset + BigInt(batch.lastOffsetDelta), () => batch.records[0]?.key?.readInt16BE(2))) continue;
    const appendTime = (batch.attributes & LOG_APPEND_TIME) !== 0;
    const firstTimestamp = Number(batch.firstTimestamp);
    const maxTimestamp = Number(batch.maxTimestamp);
    // Timestamp deltas are bigints, and Number(bigint) is a runtime call that cost as much as the rest of this
    // loop: records of one batch mostly share a delta (produced in the same millisecond), so it is converted
    // only when it changes.
    let delta = 0n;
    let timestamp = firstTimestamp;
    const records = batch.records;
    for (let i = 0; i < records.length; i++) {
      const r = records[i] as (typeof records)[number];
      const offset = first + r.offsetDelta;
      if (offset < from) continue;
      if (!appendTime && r.timestampDelta !== delta) {
        delta = r.timestampDelta;
        timestamp = firstTimestamp + Number(delta);
      }
      out[n++] = { offset, timestamp: appendTime ? maxTimestamp : timestamp, key: r.key, value: r.value };
    }
  }
  out.length = n;
  return out;
}

function transactionalProducer(base: Base, o: TransactionalProducerOptions): KafkaTransactionalProducer {
  /** Made by the first connect() or begin(), once the library is loaded. */
  let made: Producer | undefined;
  const producer = async (): Promise<Producer> => {
    const { Producer, compatibilityPartitioner } = await load();
    return (made ??= new Producer({
      ...base,
      idempotent: true,
      transactionalId: o.transactionalId,
      // The library sends its request timeout as the transaction timeout in InitProducerId.
      timeout: o.transactionTimeoutMs ?? 60_000,
      partitioner: compatibilityPartitioner,
    }));
  };
  let tx: Transaction | undefined;
  /** Records were sent in `tx`, so the broker has a transaction to end. */
  let sent = false;
  const current = (): Transaction => {
    if (tx === undefined) throw new Error(`kafka producer ${o.transactionalId}: no open transaction`);
    return tx;
  };
  const finish = async (commit: boolean): Promise<void> => {
    const t = current();
    if (!sent) {
      // Nothing reached the broker: it has no transaction, and EndTxn would fail with INVALID_TXN_STATE.
      await t.cancel();
    } else if (commit) {
      await t.commit();
    } else {
      await t.abort();
    }
    tx = undefined;
    sent = false;
  };
  return {
    async connect() {
      // InitProducerId as a new incarnation (-1/-1): fences older producers of this transactional id and aborts
      // what they left open. The library needs a transaction object to do it; nothing is sent in it.
      const t = await (await producer()).beginTransaction({ producerId: -1n, producerEpoch: -1 });
      await t.cancel();
    },
    async begin(newEpoch) {
      const p = await producer();
      const t = await p.beginTransaction();
      tx = t;
      sent = false;
      if (newEpoch) {
        // Bump the epoch of this producer id (KIP-360): a late EndTxn for an earlier handle is then fenced.
        await p.initIdempotentProducer({ producerId: p.producerId as bigint, producerEpoch: p.producerEpoch as number });
      }
    },
    get inTransaction() {
      return tx !== undefined;
    },
    send(topic, records): Promise<readonly ProducedBatch[]> {
      const t = current();
      sent = true;
      return sendInParts(records, (part) => sendPart(t, topic, part));
    },
    handle() {
      const producerId = made?.producerId;
      const producerEpoch = made?.producerEpoch;
      if (producerId === undefined || producerEpoch === undefined) throw new Error(`kafka producer ${o.transactionalId} is not connected`);
      return { transactionalId: o.transactionalId, producerId: String(producerId), producerEpoch };
    },
    async sendOffsets(group, offsets) {
      if (offsets.length === 0) return;
      const t = current();
      if (group.coordinatorId === undefined) throw new Error(`kafka producer ${o.transactionalId}: sendOffsets needs the group coordinator of "${group.groupId}" (the consumer's groupMetadata())`);
      // KIP-447 through the library's consumer-offset path: a message-shaped offset carrying the group
      // metadata, so the broker checks the generation (ILLEGAL_GENERATION for a member that lost the group).
      await t.addConsumer({ groupId: group.groupId } as unknown as Consumer);
      sent = true;
      const consumer = { groupId: group.groupId, generationId: group.generationId, memberId: group.memberId, coordinatorId: group.coordinatorId };
      for (const x of offsets) {
        // addOffset commits the message's offset + 1.
        const message = { topic: x.topic, partition: x.partition, offset: BigInt(x.offset - 1), metadata: { consumer } };
        await t.addOffset(message as unknown as Parameters<Transaction["addOffset"]>[0]);
      }
    },
    commit: () => finish(true),
    abort: () => finish(false),
    async disconnect() {
      tx = undefined;
      await made?.close(true);
    },
  };
}
