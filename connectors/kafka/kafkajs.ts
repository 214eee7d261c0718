/**
 * The {@link KafkaClient} on kafkajs 2.2.4 (pinned: the transactional producer below uses its internal
 * modules, which no longer change).
 *
 * Why internals: a pre-committed transaction must be committable by a *later* process after a crash
 * (Flink's "resume transaction"). kafkajs neither exposes the producer id and epoch of a transaction nor
 * lets anyone but the producer send EndTxn, and it lacks KIP-447. So the transactional producer is put
 * together from kafkajs' own parts (cluster, EOS manager, message producer), which exposes the id and epoch
 * for the handle, and `endTransaction` sends EndTxn for a handle to the transaction coordinator directly.
 *
 * For the scale-out rejoin checkpoint (a group assignor's `beforeRejoin`), ./kafkajs-rejoin.ts wraps
 * kafkajs' `Broker.prototype.joinGroup` once per process: a consumer that registered a hook runs it before its
 * JoinGroup goes out; every other consumer's JoinGroup is unchanged.
 * @module
 */
import { Buffer } from "node:buffer";
import kafkajsPackage, { AssignerProtocol, type Consumer, Kafka, type KafkaMessage as KafkajsMessage, logLevel, type Message, type PartitionAssigner } from "kafkajs";
// kafkajs internals: CommonJS modules deep inside the package (it has no "exports" map), imported as ES modules
// (their default export is module.exports), so that this file loads from npm on every runtime and from a URL
// (JSR) under Deno, where deno.json maps each path. Typed `unknown` by ./kafkajs-internals.d.ts.
import eosManagerModule from "kafkajs/src/producer/eosManager/index.js";
import messageProducerModule from "kafkajs/src/producer/messageProducer.js";
import retryModule from "kafkajs/src/retry/index.js";
import partitionersModule from "kafkajs/src/producer/partitioners/index.js";
import emitterModule from "kafkajs/src/instrumentation/emitter.js";
import filterAbortedModule from "kafkajs/src/consumer/filterAbortedMessages.js";
import brokerModule from "kafkajs/src/broker/index.js";
import requestQueueModule from "kafkajs/src/network/requestQueue/index.js";
import { ConfigError } from "../../lib/errors.ts";
import { assignmentChange } from "./assignment.ts";
import { correctAbortedFiltering } from "./kafkajs-aborted.ts";
import { decodedByGress, decodeFetchesFor, installFetchDecoder, type KafkajsCodec } from "./kafkajs-fetch.ts";
import { stopIdleQueueChecks } from "./kafkajs-request-queue.ts";
import { beforeJoinWith, installRejoinHook } from "./kafkajs-rejoin.ts";
import { sendInParts } from "./request-size.ts";
import type {
  BatchHandler,
  ConsumerOptions,
  EndTransactionResult,
  KafkaClient,
  KafkaConsumer,
  KafkaMessage,
  KafkaTransactionalProducer,
  MarkerOutcome,
  PartitionOffset,
  ProducedBatch,
  ProducerRecord,
  TransactionalProducerOptions,
  TransactionHandle,
  TransactionMarkerRef,
  GroupAssignor,
  GroupMetadata,
  Rebalance,
  TopicPartition,
} from "./client.ts";

// kafkajs internals (CommonJS). Typed loosely here and nowhere else.
interface EosManager {
  initProducerId(): Promise<void>;
  beginTransaction(): void;
  commit(): Promise<void>;
  abort(): Promise<void>;
  isInTransaction(): boolean;
  getProducerId(): string;
  getProducerEpoch(): number;
  sendOffsets(o: { consumerGroupId: string; topics: { topic: string; partitions: { partition: number; offset: string }[] }[] }): Promise<void>;
}
interface FetchedMessage {
  readonly offset: string;
  readonly isControlRecord?: boolean;
  readonly batchContext: { readonly producerId: string; readonly inTransaction: boolean };
}
interface FetchedPartition {
  readonly partition: number;
  readonly lastStableOffset: string;
  readonly abortedTransactions: readonly { producerId: string; firstOffset: string }[];
  readonly messages: readonly FetchedMessage[];
}
interface Broker {
  endTxn(request: { transactionalId: string; producerId: string; producerEpoch: number; transactionResult: boolean }): Promise<unknown>;
  fetch(request: {
    isolationLevel: number;
    maxWaitTime: number;
    minBytes: number;
    maxBytes: number;
    topics: { topic: string; partitions: { partition: number; fetchOffset: string; maxBytes: number }[] }[];
  }): Promise<{ responses: { topicName: string; partitions: FetchedPartition[] }[] }>;
}
interface Cluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  refreshMetadataIfNecessary(): Promise<void>;
  findGroupCoordinator(request: { groupId: string; coordinatorType: number }): Promise<Broker>;
  addTargetTopic(topic: string): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(request: { nodeId: string }): Promise<Broker>;
  retry: unknown;
}
type CreateCluster = (o: { allowAutoTopicCreation?: boolean; instrumentationEmitter?: unknown; maxInFlightRequests?: number | null }) => Cluster;
type SendBatch = (r: { acks: number; topicMessages: { topic: string; messages: Message[] }[] }) => Promise<{ partition: number; baseOffset: string }[]>;

const createEosManager = eosManagerModule as (o: Record<string, unknown>) => EosManager;
const createMessageProducer = messageProducerModule as (o: Record<string, unknown>) => { sendBatch: SendBatch };
const createRetry = retryModule as (o: unknown) => unknown;
const { DefaultPartitioner } = partitionersModule as { DefaultPartitioner: () => unknown };
const InstrumentationEmitter = emitterModule as new () => unknown;
// kafkajs' own read_committed filter: drops the records of aborted transactions from a fetched record set.
const filterAbortedMessages = filterAbortedModule as (o: {
  messages: readonly FetchedMessage[];
  abortedTransactions: readonly { producerId: string; firstOffset: string }[];
}) => FetchedMessage[];
// kafkajs' filter hands out records of aborted transactions when their list is not in first-offset order:
// every fetch (consumers' and markerOutcome's) is corrected before kafkajs filters (./kafkajs-aborted.ts).
correctAbortedFiltering(brokerModule as { prototype: object });
// kafkajs has no callback before it rejoins its group: an assignor's beforeRejoin runs inside the JoinGroup call (./kafkajs-rejoin.ts).
installRejoinHook(brokerModule as { prototype: object });
// kafkajs' request queues poll themselves every millisecond while idle, with a negative delay (./kafkajs-request-queue.ts).
stopIdleQueueChecks(requestQueueModule as { prototype: object });
// Gress's consumers decode their fetches with Gress's record reader, not kafkajs' (./kafkajs-fetch.ts). Installed
// after the aborted-records correction, so that it wraps it; the correction then finds nothing left to do.
installFetchDecoder(brokerModule as { prototype: object }, (n) => (kafkajsPackage as unknown as { CompressionCodecs: Record<number, (() => KafkajsCodec) | undefined> }).CompressionCodecs[n]?.());
const TRANSACTION_COORDINATOR = 1;
const READ_COMMITTED = 1;
const BROKER_RESOURCE = 4;
const TOPIC_RESOURCE = 2;
/** Most messages handed to the batch handler at once (see eachBatch). */
const CHUNK = 500;

/** Protocol errors that mean "this transaction was already finished or superseded". */
const ALREADY_ENDED = new Set(["INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED", "INVALID_TXN_STATE", "INVALID_PRODUCER_ID_MAPPING"]);
const RETRIABLE = new Set(["CONCURRENT_TRANSACTIONS", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR"]);

/**
 * Options of {@link kafkajsClient}.
 *
 * @example
 * ```ts
 * import { type KafkajsClientOptions, kafkajsClient } from "gress/kafka";
 *
 * const options: KafkajsClientOptions = { brokers: ["kafka-1:9092", "kafka-2:9092"], clientId: "billing", logLevel: "error" };
 * const client = kafkajsClient(options);
 * ```
 */
export interface KafkajsClientOptions {
  readonly brokers: readonly string[];
  readonly clientId?: string;
  /** kafkajs log level. Default "nothing": failures reach Gress as errors, retried protocol errors are noise. */
  readonly logLevel?: "nothing" | "error" | "warn" | "info" | "debug";
}

const levels = { nothing: logLevel.NOTHING, error: logLevel.ERROR, warn: logLevel.WARN, info: logLevel.INFO, debug: logLevel.DEBUG };

function toBuffer(v: Uint8Array | string | null): Buffer | string | null {
  if (v === null || typeof v === "string" || Buffer.isBuffer(v)) return v;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function toMessage(r: ProducerRecord): Message {
  const m: Message = { key: toBuffer(r.key), value: toBuffer(r.value) };
  if (r.partition !== undefined) m.partition = r.partition;
  if (r.timestamp !== undefined) m.timestamp = String(r.timestamp);
  return m;
}

function errorType(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && typeof (e as { type?: unknown }).type === "string" ? (e as { type: string }).type : undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A {@link KafkaClient} backed by kafkajs.
 *
 * @example
 * ```ts
 * import { kafkaSource, kafkajsClient } from "gress/kafka";
 *
 * // One client shared by several sources and sinks (the default creates one per connector).
 * const client = kafkajsClient({ brokers: ["localhost:9092"], clientId: "my-app", logLevel: "warn" });
 * const orders = kafkaSource({ name: "orders", client, topics: ["orders"], groupId: "shop" });
 * ```
 */
export function kafkajsClient(options: KafkajsClientOptions): KafkaClient {
  const config = { brokers: [...options.brokers], clientId: options.clientId ?? "gress", logLevel: levels[options.logLevel ?? "nothing"] };
  const kafka = new Kafka(config);
  const createClusterSymbol = Object.getOwnPropertySymbols(kafka).find((s) => s.description === "private:Kafka:createCluster");
  if (createClusterSymbol === undefined) throw new Error("kafkajs internals changed: no createCluster (Gress needs kafkajs 2.2.4)");
  const createCluster = (kafka as unknown as Record<symbol, CreateCluster>)[createClusterSymbol] as CreateCluster;
  const rootLogger = (kafka as unknown as { logger(): { namespace(n: string): unknown } }).logger();
  let admin: ReturnType<Kafka["admin"]> | undefined;
  const adminReady = async (): Promise<ReturnType<Kafka["admin"]>> => {
    if (admin === undefined) {
      admin = kafka.admin();
      await admin.connect();
    }
    return admin;
  };

  // Consumers come from a kafkajs instance of their own, whose brokers decode fetches with Gress's reader
  // (./kafkajs-fetch.ts); the transactional producer's marker lookups read kafkajs' records, from `kafka`.
  let consumerKafka: Kafka | undefined;
  const consumers = (): Kafka => {
    if (consumerKafka === undefined) {
      consumerKafka = new Kafka(config);
      decodeFetchesFor((consumerKafka as unknown as { logger(): object }).logger());
    }
    return consumerKafka;
  };

  return {
    consumer: (o) => consumer(consumers(), o),
    transactionalProducer: (o) => transactionalProducer(createCluster, rootLogger, o),
    async endTransaction(handle: TransactionHandle, commit: boolean): Promise<EndTransactionResult> {
      const cluster = createCluster({ instrumentationEmitter: new InstrumentationEmitter() });
      await cluster.connect();
      try {
        for (let attempt = 0; ; attempt++) {
          try {
            await cluster.refreshMetadataIfNecessary();
            const broker = await cluster.findGroupCoordinator({ groupId: handle.transactionalId, coordinatorType: TRANSACTION_COORDINATOR });
            await broker.endTxn({ ...handle, transactionResult: commit });
            return "ended";
          } catch (e) {
            const type = errorType(e);
            if (type !== undefined && ALREADY_ENDED.has(type)) return "already-ended";
            if (type !== undefined && RETRIABLE.has(type) && attempt < 50) {
              await sleep(Math.min(1000, 50 * 2 ** Math.min(attempt, 5)));
              continue;
            }
            throw e;
          }
        }
      } finally {
        await cluster.disconnect();
      }
    },
    async markerOutcome(marker: TransactionMarkerRef, waitMs: number): Promise<MarkerOutcome> {
      const cluster = createCluster({ instrumentationEmitter: new InstrumentationEmitter() });
      await cluster.connect();
      const deadline = Date.now() + waitMs;
      try {
        await cluster.addTargetTopic(marker.topic);
        for (;;) {
          const leaders = cluster.findLeaderForPartitions(marker.topic, [marker.partition]);
          const nodeId = Object.keys(leaders)[0];
          if (nodeId === undefined) throw new Error(`no leader for ${marker.topic}-${marker.partition}`);
          const broker = await cluster.findBroker({ nodeId });
          const { responses } = await broker.fetch({
            isolationLevel: READ_COMMITTED,
            maxWaitTime: 0,
            minBytes: 1,
            maxBytes: 1 << 20,
            topics: [{ topic: marker.topic, partitions: [{ partition: marker.partition, fetchOffset: String(marker.offset), maxBytes: 1 << 20 }] }],
          });
          const p = responses[0]?.partitions.find((x) => x.partition === marker.partition);
          if (p === undefined) throw new Error(`no fetch response for ${marker.topic}-${marker.partition}`);
          // Up to the last stable offset every transaction is decided; the marker's too once it lies below.
          if (Number(p.lastStableOffset) > marker.offset) {
            const visible = filterAbortedMessages({ messages: p.messages, abortedTransactions: p.abortedTransactions });
            const found = visible.some((m) => Number(m.offset) === marker.offset && m.isControlRecord !== true && String(m.batchContext.producerId) === marker.producerId);
            return found ? "committed" : "aborted";
          }
          if (Date.now() >= deadline) return "open";
          await sleep(Math.min(500, Math.max(10, deadline - Date.now())));
        }
      } finally {
        await cluster.disconnect();
      }
    },
    async brokerConfig(names) {
      const a = await adminReady();
      const { brokers } = await a.describeCluster();
      const nodeId = brokers[0]?.nodeId;
      if (nodeId === undefined) throw new Error("the cluster reports no brokers");
      const res = await a.describeConfigs({
        resources: [{ type: BROKER_RESOURCE, name: String(nodeId), configNames: [...names] }],
        includeSynonyms: false,
      });
      const out = new Map<string, string>();
      for (const e of res.resources[0]?.configEntries ?? []) if (e.configValue !== null && e.configValue !== undefined) out.set(e.configName, e.configValue);
      return out;
    },
    async topicConfig(topic) {
      const a = await adminReady();
      const res = await a.describeConfigs({ resources: [{ type: TOPIC_RESOURCE, name: topic }], includeSynonyms: false });
      const out = new Map<string, string>();
      for (const e of res.resources[0]?.configEntries ?? []) if (e.configValue !== null && e.configValue !== undefined) out.set(e.configName, e.configValue);
      return out;
    },
    async endOffsets(topic) {
      const a = await adminReady();
      const offsets = await a.fetchTopicOffsets(topic);
      return new Map(offsets.map((o) => [o.partition, Number(o.high)]));
    },
    async createTopic(topic, partitions, topicOptions) {
      const a = await adminReady();
      const configEntries = Object.entries(topicOptions?.config ?? {}).map(([name, value]) => ({ name, value }));
      const replicationFactor = topicOptions?.replicationFactor ?? 1;
      await a.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor, configEntries }], waitForLeaders: true });
    },
    async deleteRecords(topic, partitions) {
      if (partitions.length === 0) return;
      const a = await adminReady();
      // Also loads the topic's metadata, without which deleteTopicRecords fails (TopicMetadataNotLoaded); an
      // offset at or below the low watermark is left out, as there is nothing to delete (kafkajs would warn).
      const low = new Map((await a.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.low)]));
      const due = partitions.filter((p) => p.offset > (low.get(p.partition) ?? -1));
      if (due.length === 0) return;
      await a.deleteTopicRecords({ topic, partitions: due.map((p) => ({ partition: p.partition, offset: String(p.offset) })) });
    },
    async close() {
      await admin?.disconnect();
      admin = undefined;
    },
  };
}

function consumer(kafka: Kafka, o: ConsumerOptions): KafkaConsumer {
  // kafkajs 2.2.4 has no static membership: joining as a dynamic member would pretend to keep a place it does not.
  if (o.groupInstanceId !== undefined) {
    throw new ConfigError(`kafka consumer of group "${o.groupId}": groupInstanceId (static membership, KIP-345) is not supported by kafkajs; use the @platformatic/kafka client, or leave the instance id out`, [
      { path: ["groupInstanceId"], code: "not_supported", message: "kafkajs has no static membership" },
    ]);
  }
  const heartbeatInterval = Math.max(500, Math.floor((o.sessionTimeoutMs ?? 10_000) / 5));
  // Chunks only for group members that share the input (a custom assignor: scale-out workers); a single-process
  // source is its group's only member and keeps one call per batch.
  const chunkSize = o.assignor === undefined ? Number.POSITIVE_INFINITY : CHUNK;
  const c: Consumer = kafka.consumer({
    groupId: o.groupId,
    readUncommitted: o.readCommitted === false,
    sessionTimeout: o.sessionTimeoutMs ?? 10_000,
    heartbeatInterval,
    rebalanceTimeout: Math.max(o.sessionTimeoutMs ?? 10_000, 10_000),
    maxBytesPerPartition: o.maxBytesPerPartition ?? 1024 * 1024,
    maxWaitTimeInMs: 100,
    allowAutoTopicCreation: false,
    ...(o.assignor === undefined ? {} : { partitionAssigners: [kafkajsAssigner(o.assignor, () => joins > 0, () => (memberId = undefined))] }),
  });
  const advanced: ((t: PartitionOffset) => void)[] = [];
  /** The group is rebalancing (a heartbeat said so) until the next assignment. */
  let rebalancing = false;
  /** Partitions whose last batch was handed over only in part (see eachBatch): their batch end was not reached. */
  const cutShort = new Set<string>();
  c.on(c.events.END_BATCH_PROCESS, (e) => {
    const p = e.payload as { topic: string; partition: number; lastOffset: string };
    if (cutShort.delete(`${p.topic}\u0000${p.partition}`)) return;
    const target = { topic: p.topic, partition: p.partition, offset: Number(p.lastOffset) + 1 };
    for (const l of advanced) l(target);
  });
  const assignments: ((assigned: { topic: string; partition: number }[]) => void)[] = [];
  const rebalances: ((r: Rebalance) => void)[] = [];
  let current: TopicPartition[] = [];
  let joins = 0;
  let memberId: string | undefined;
  c.on(c.events.GROUP_JOIN, (e) => {
    const payload = e.payload as { memberAssignment: Record<string, number[]>; memberId: string };
    const assigned = Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) => partitions.map((partition) => ({ topic, partition })));
    memberId = payload.memberId;
    rebalancing = false;
    const change = assignmentChange(current, assigned);
    current = assigned;
    // kafkajs keeps the group generation to itself: count this member's joins instead.
    const rebalance: Rebalance = { generation: ++joins, assigned, ...change };
    for (const l of assignments) l(assigned);
    for (const l of rebalances) l(rebalance);
  });
  const byTopic = (tps: readonly TopicPartition[]): { topic: string; partitions: number[] }[] => {
    const m = new Map<string, number[]>();
    for (const tp of tps) m.set(tp.topic, [...(m.get(tp.topic) ?? []), tp.partition]);
    return [...m].map(([topic, partitions]) => ({ topic, partitions }));
  };
  return {
    async start(handler: BatchHandler) {
      await c.connect();
      await c.subscribe({ topics: [...o.topics], fromBeginning: o.fromBeginning });
      await c.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch: async ({ batch, resolveOffset, isStale, isRunning, heartbeat }) => {
          if (!isRunning() || isStale()) return;
          const messages = decodedByGress(batch.messages) ?? convert(batch.messages);
          const highWatermark = Number(batch.highWatermark);
          // kafkajs heartbeats, and rejoins a rebalance, only between batches: a handler that takes long (a
          // rate-limited source) would keep this member out of a rebalance until the group drops it while it
          // still works. So: keep beating while the handler runs, hand the batch over in chunks, and stop
          // after the chunk under way once a heartbeat says the group is rebalancing (the rest is fetched again).
          const beat = setInterval(
            () =>
              void heartbeat().catch((e: unknown) => {
                if (errorType(e) === "REBALANCE_IN_PROGRESS") rebalancing = true;
              }),
            heartbeatInterval,
          );
          let next = messages[0]?.offset ?? 0;
          try {
            for (let i = 0; i < messages.length; i += chunkSize) {
              if (i > 0 && (rebalancing || !isRunning() || isStale())) {
                cutShort.add(`${batch.topic}\u0000${batch.partition}`);
                break;
              }
              const chunk = chunkSize >= messages.length ? messages : messages.slice(i, i + chunkSize);
              next = await handler({ topic: batch.topic, partition: batch.partition, messages: chunk, highWatermark });
              // The handler stopped early (paused): the rest is fetched again.
              if (next <= (chunk[chunk.length - 1] as KafkaMessage).offset) break;
            }
          } finally {
            clearInterval(beat);
          }
          // Resolve up to what the handler consumed; kafkajs fetches the rest again.
          if (next > 0 && !isStale()) resolveOffset(String(next - 1));
        },
      });
    },
    // kafkajs restarts its consumer group after a crash (a rebalance error, say); in between these throw.
    // The source applies its pause state and positions again at the next assignment, so they may be skipped.
    seek(t) {
      whileRunning(() => c.seek({ topic: t.topic, partition: t.partition, offset: String(t.offset) }));
    },
    pause(topics) {
      whileRunning(() => c.pause(topics.map((topic) => ({ topic }))));
    },
    resume(topics) {
      whileRunning(() => c.resume(topics.map((topic) => ({ topic }))));
    },
    pausePartitions(partitions) {
      if (partitions.length > 0) whileRunning(() => c.pause(byTopic(partitions)));
    },
    resumePartitions(partitions) {
      if (partitions.length > 0) whileRunning(() => c.resume(byTopic(partitions)));
    },
    async commit(offsets) {
      await c.commitOffsets(offsets.map((x) => ({ topic: x.topic, partition: x.partition, offset: String(x.offset) })));
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
    groupMetadata(): GroupMetadata | undefined {
      return memberId === undefined ? undefined : { groupId: o.groupId, generationId: joins, memberId };
    },
    async stop() {
      await c.disconnect();
    },
  };
}

/**
 * A Gress {@link GroupAssignor} as a kafkajs partition assigner (same protocol name as on platformatic). Once
 * the member had an assignment (`rejoining()`), the assignor's `beforeRejoin` runs before each JoinGroup that
 * carries the subscription built here (./kafkajs-rejoin.ts). A rejoin without a member id (kafkajs dropped it on
 * UNKNOWN_MEMBER_ID: the group dropped this member) calls `dropped()` first, so that `groupMetadata()` says so.
 */
function kafkajsAssigner(a: GroupAssignor, rejoining: () => boolean, dropped: () => void): PartitionAssigner {
  return ({ cluster }) => ({
    name: a.name,
    version: 0,
    async assign({ members, topics }) {
      const partitions = new Map<string, number>();
      for (const topic of topics) partitions.set(topic, cluster.findTopicPartitionMetadata(topic).length);
      const decoded = members.map((m) => {
        const meta = AssignerProtocol.MemberMetadata.decode(m.memberMetadata);
        return { memberId: m.memberId, topics: meta?.topics ?? [], userData: meta?.userData && meta.userData.length > 0 ? new Uint8Array(meta.userData) : null };
      });
      const out = a.assign(decoded, partitions);
      return members.map(({ memberId }) => {
        const assignment: Record<string, number[]> = {};
        for (const tp of out.get(memberId) ?? []) (assignment[tp.topic] ??= []).push(tp.partition);
        return { memberId, memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment, userData: Buffer.alloc(0) }) };
      });
    },
    protocol({ topics }) {
      const userData = a.userData?.();
      const metadata = AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: userData === undefined ? Buffer.alloc(0) : Buffer.from(userData) });
      const hook = a.beforeRejoin;
      if (hook !== undefined && rejoining())
        beforeJoinWith(metadata, (member) => {
          if (member === "") dropped();
          return hook.call(a);
        });
      return { name: a.name, metadata };
    },
  });
}

/** Runs `f` unless kafkajs says its consumer group is not running (between a crash and its restart). */
function whileRunning(f: () => void): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof Error && /consumer group was not initialized/i.test(e.message))) throw e;
  }
}

/** kafkajs' messages as Gress' (offsets and timestamps as numbers). */
function convert(messages: readonly KafkajsMessage[]): KafkaMessage[] {
  const out = new Array<KafkaMessage>(messages.length);
  // Messages produced in the same millisecond share a timestamp: its text is parsed once for them.
  let text = "";
  let timestamp = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as KafkajsMessage;
    if (m.timestamp !== text) {
      text = m.timestamp;
      timestamp = decimal(text);
    }
    out[i] = { offset: decimal(m.offset), timestamp, key: m.key ?? null, value: m.value ?? null };
  }
  return out;
}

/** Number(text) for kafkajs' decimal offsets and timestamps, without the generic string-to-number conversion. */
function decimal(text: string): number {
  const n = text.length;
  if (n === 0 || n > 15) return Number(text);
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return Number(text);
    v = v * 10 + d;
  }
  return v;
}

function transactionalProducer(createCluster: CreateCluster, rootLogger: { namespace(n: string): unknown }, o: TransactionalProducerOptions): KafkaTransactionalProducer {
  const cluster = createCluster({ allowAutoTopicCreation: true, maxInFlightRequests: 1, instrumentationEmitter: new InstrumentationEmitter() });
  const logger = rootLogger.namespace("Producer");
  let connected = false;
  const eos = createEosManager({
    logger,
    cluster,
    transactionTimeout: o.transactionTimeoutMs ?? 60_000,
    transactional: true,
    transactionalId: o.transactionalId,
  });
  const { sendBatch } = createMessageProducer({
    logger,
    cluster,
    partitioner: DefaultPartitioner(),
    eosManager: eos,
    idempotent: true,
    retrier: createRetry({ ...(cluster.retry as object), retries: Number.MAX_SAFE_INTEGER }),
    getConnectionStatus: () => (connected ? "connected" : "disconnected"),
  });
  return {
    async connect() {
      await cluster.connect();
      connected = true;
      // InitProducerId: bumps the epoch, fencing older producers, and aborts what they left open.
      await eos.initProducerId();
    },
    async begin(newEpoch) {
      if (newEpoch) await eos.initProducerId();
      eos.beginTransaction();
    },
    get inTransaction() {
      return eos.isInTransaction();
    },
    send(topic, records): Promise<readonly ProducedBatch[]> {
      return sendInParts(records, async (part) => {
        const sent = await sendBatch({ acks: -1, topicMessages: [{ topic, messages: part.map(toMessage) }] });
        return sent.map((r) => ({ partition: r.partition, baseOffset: Number(r.baseOffset) }));
      });
    },
    handle() {
      return { transactionalId: o.transactionalId, producerId: String(eos.getProducerId()), producerEpoch: eos.getProducerEpoch() };
    },
    async sendOffsets(group, offsets) {
      if (offsets.length === 0) return;
      const topics = new Map<string, { partition: number; offset: string }[]>();
      for (const x of offsets) topics.set(x.topic, [...(topics.get(x.topic) ?? []), { partition: x.partition, offset: String(x.offset) }]);
      // kafkajs has no KIP-447: the group id only, fencing is by transactional id.
      await eos.sendOffsets({ consumerGroupId: group.groupId, topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) });
    },
    commit: () => eos.commit(),
    abort: () => eos.abort(),
    async disconnect() {
      connected = false;
      await cluster.disconnect();
    },
  };
}
