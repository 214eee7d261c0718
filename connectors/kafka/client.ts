/**
 * The small Kafka client interface the Kafka source and sink are written against. `kafkajs.ts` implements it
 * with kafkajs; another client (librdkafka bindings, a future kafkajs successor) can be plugged in by
 * implementing these few methods. Everything here is plain data: offsets are numbers (exact up to 2^53),
 * payloads are bytes.
 * @module
 */

/**
 * One consumed message.
 *
 * @example
 * ```ts
 * import type { KafkaMessage } from "gress/kafka";
 *
 * const text = (m: KafkaMessage): string => (m.value === null ? "(tombstone)" : new TextDecoder().decode(m.value));
 * ```
 */
export interface KafkaMessage {
  readonly offset: number;
  /** Broker or producer timestamp, epoch ms. */
  readonly timestamp: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
}

/**
 * The messages of one fetch from one partition.
 *
 * @example
 * ```ts
 * import type { KafkaBatch } from "gress/kafka";
 *
 * // One partition's messages of one fetch.
 * const describe = (b: KafkaBatch): string => `${b.topic}-${b.partition}: ${b.messages.length} messages from offset ${b.messages[0]?.offset}`;
 * ```
 */
export interface KafkaBatch {
  readonly topic: string;
  readonly partition: number;
  readonly messages: readonly KafkaMessage[];
  /**
   * The partition's end as this fetch saw it, for consumer lag: the last stable offset under read_committed
   * (@platformatic/kafka), else the high watermark (kafkajs keeps only the high watermark, which counts the
   * records of transactions still open). Left out by a client that does not tell.
   */
  readonly highWatermark?: number;
}

/**
 * What the batch handler reports back: the offset of the next message it still wants. Returning less than
 * the batch end makes the client fetch the rest again later (after a pause, say).
 *
 * @example
 * ```ts
 * import type { BatchHandler } from "gress/kafka";
 *
 * // Takes at most 100 messages of each batch: returning an earlier offset makes the client fetch the rest again.
 * const handler: BatchHandler = (batch) => {
 *   const taken = batch.messages.slice(0, 100);
 *   return (taken.at(-1)?.offset ?? (batch.messages[0]?.offset ?? 0) - 1) + 1;
 * };
 * ```
 */
export type BatchHandler = (batch: KafkaBatch) => Promise<number> | number;

/**
 * A topic-partition and an offset.
 *
 * @example
 * ```ts
 * import type { PartitionOffset } from "gress/kafka";
 *
 * // Kafka's convention: the committed offset is the next one to read.
 * const after = (topic: string, partition: number, lastRead: number): PartitionOffset => ({ topic, partition, offset: lastRead + 1 });
 * ```
 */
export interface PartitionOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

/**
 * Options of a consumer.
 *
 * @example
 * ```ts
 * import { type ConsumerOptions, kafkajsClient } from "gress/kafka";
 *
 * const options: ConsumerOptions = { groupId: "audit", topics: ["payments"], fromBeginning: false, readCommitted: true, sessionTimeoutMs: 30_000 };
 * const consumer = kafkajsClient({ brokers: ["localhost:9092"] }).consumer(options);
 * ```
 */
export interface ConsumerOptions {
  readonly groupId: string;
  readonly topics: readonly string[];
  /** Where a partition without a committed offset starts. */
  readonly fromBeginning: boolean;
  /** Only see committed transactional data (read_committed). Default true. */
  readonly readCommitted?: boolean;
  readonly sessionTimeoutMs?: number;
  readonly maxBytesPerPartition?: number;
  /**
   * Decides which member reads which partitions, instead of round robin. Both adapters announce it under
   * its `name` as the group protocol, so members on either client agree on it.
   */
  readonly assignor?: GroupAssignor;
  /**
   * Static membership (KIP-345): this member's `group.instance.id`, unique among the group's live members. A
   * member that joins again with the same id (a restart within the session timeout) takes its old place and its
   * old assignment without a rebalance; the member it replaces is fenced (FENCED_INSTANCE_ID) and its consumer
   * fails (see {@link KafkaConsumer.onFailure}) instead of taking the place back. A client without static
   * membership (kafkajs) refuses it with a ConfigError.
   */
  readonly groupInstanceId?: string;
}

/**
 * A topic and a partition of it.
 *
 * @example
 * ```ts
 * import type { TopicPartition } from "gress/kafka";
 *
 * const label = (tp: TopicPartition): string => `${tp.topic}-${tp.partition}`;
 * ```
 */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/**
 * A group member as the assignor sees it: its id, the topics it subscribes to, and the bytes its
 * assignor's `userData()` returned when it joined.
 *
 * @example
 * ```ts
 * import type { GroupMember } from "gress/kafka";
 *
 * // The member that says (in its userData) it holds the most local state goes first.
 * const byUserData = (members: readonly GroupMember[]): GroupMember[] => [...members].sort((a, b) => (b.userData?.length ?? 0) - (a.userData?.length ?? 0));
 * ```
 */
export interface GroupMember {
  readonly memberId: string;
  readonly topics: readonly string[];
  readonly userData: Uint8Array | null;
}

/**
 * A custom partition assignor. The group leader calls `assign` with every member and the partition count of
 * every subscribed topic; each member's `userData()` travels to the leader in its subscription.
 *
 * @example
 * ```ts
 * import { type GroupAssignor, kafkajsClient, type TopicPartition } from "gress/kafka";
 *
 * // Partition p of every topic goes to the same member (co-partitioned topics stay together).
 * const byPartition: GroupAssignor = {
 *   name: "by-partition",
 *   assign(members, partitions) {
 *     const ids = members.map((m) => m.memberId).sort();
 *     const out = new Map<string, TopicPartition[]>(ids.map((id) => [id, []]));
 *     for (const [topic, count] of partitions) for (let p = 0; p < count; p++) out.get(ids[p % ids.length]!)!.push({ topic, partition: p });
 *     return out;
 *   },
 * };
 * const consumer = kafkajsClient({ brokers: ["localhost:9092"] }).consumer({ groupId: "g", topics: ["a", "b"], fromBeginning: true, assignor: byPartition });
 * ```
 */
export interface GroupAssignor {
  /** The group protocol name (the same on every client). */
  readonly name: string;
  /** This member's subscription user data, asked for at each join. */
  userData?(): Uint8Array;
  /**
   * Called before this member joins its group again (a rebalance), and awaited: its JoinGroup goes out only
   * once the promise settles (a rejection is ignored). Under the eager protocol no other member has been given
   * this member's partitions yet, unless the group dropped it (session or rebalance timeout), so this is where
   * to commit what was processed, as Kafka Streams does in onPartitionsRevoked. Not called for the first join.
   * It must settle well within the session timeout: the group drops a member whose JoinGroup comes later.
   */
  beforeRejoin?(): Promise<void>;
  /** Member id → its partitions. Members left out get nothing. */
  assign(members: readonly GroupMember[], partitions: ReadonlyMap<string, number>): Map<string, TopicPartition[]>;
}

/**
 * A new assignment of this member: all its partitions, and what changed since its previous one.
 * `generation` is the group generation on @platformatic/kafka; kafkajs does not expose it, so there it counts
 * this consumer's joins (it grows with each assignment, but is not the broker's number).
 *
 * @example
 * ```ts
 * import type { Rebalance } from "gress/kafka";
 *
 * const describe = (r: Rebalance): string => `generation ${r.generation}: +${r.added.length} -${r.revoked.length}, ${r.assigned.length} in all`;
 * ```
 */
export interface Rebalance {
  readonly generation: number;
  readonly assigned: readonly TopicPartition[];
  readonly added: readonly TopicPartition[];
  readonly revoked: readonly TopicPartition[];
}

/**
 * What identifies a consumer's group membership to the transaction coordinator (KIP-447): offsets committed
 * in a transaction with an older generation are refused (ILLEGAL_GENERATION), on clients that send it.
 *
 * @example
 * ```ts
 * import type { GroupMetadata } from "gress/kafka";
 *
 * // Without a member: offsets committed for the group with no generation check (as kafkajs always does).
 * const unchecked: GroupMetadata = { groupId: "billing", generationId: -1, memberId: "" };
 * ```
 */
export interface GroupMetadata {
  readonly groupId: string;
  readonly generationId: number;
  readonly memberId: string;
  /** The group coordinator's broker id, when known. */
  readonly coordinatorId?: number;
}


/**
 * A group consumer.
 *
 * @example
 * ```ts
 * import { kafkajsClient } from "gress/kafka";
 *
 * // The consumer the Kafka source drives: a handler per fetched batch, offsets committed by you.
 * const client = kafkajsClient({ brokers: ["localhost:9092"] });
 * const consumer = client.consumer({ groupId: "inspect", topics: ["orders"], fromBeginning: true });
 * await consumer.start(async (batch) => {
 *   const next = (batch.messages.at(-1)?.offset ?? -1) + 1;
 *   await consumer.commit([{ topic: batch.topic, partition: batch.partition, offset: next }]);
 *   return next; // the next offset this handler wants
 * });
 * ```
 */
export interface KafkaConsumer {
  /** Connects, joins the group and starts fetching into `handler`. */
  start(handler: BatchHandler): Promise<void>;
  /** Sets the next offset to fetch of a partition (after start). */
  seek(target: PartitionOffset): void;
  pause(topics: readonly string[]): void;
  resume(topics: readonly string[]): void;
  /** Stops fetching these partitions (after start) until resumed; other partitions of their topics go on. */
  pausePartitions(partitions: readonly TopicPartition[]): void;
  resumePartitions(partitions: readonly TopicPartition[]): void;
  /** Commits offsets to the group (the next offset to read, Kafka's convention). */
  commit(offsets: readonly PartitionOffset[]): Promise<void>;
  /** Called when a fetch moved a partition's position without delivering messages (control records). */
  onPositionAdvanced(listener: (target: PartitionOffset) => void): void;
  /** Called with this member's partitions each time the group (re)assigns them. */
  onAssignment(listener: (assigned: readonly { readonly topic: string; readonly partition: number }[]) => void): void;
  /** Called at each assignment with the generation and what was added and revoked (see {@link Rebalance}). */
  onRebalance(listener: (rebalance: Rebalance) => void): void;
  /** This member's group metadata, for offsets committed in a transaction; undefined before it joined. */
  groupMetadata(): GroupMetadata | undefined;
  /**
   * Called once when the consumer fails for good and should be stopped: `"fenced"` when another member joined
   * with its `groupInstanceId` (FENCED_INSTANCE_ID) and it will not rejoin by itself; `"unreadable"` when it
   * fetched records it cannot read (a compression codec this runtime lacks, a corrupt record batch): fetching
   * them again would not help. Left out by a client that has neither failure (kafkajs).
   */
  onFailure?(listener: (error: Error, kind: "fenced" | "unreadable") => void): void;
  /**
   * Stops fetching and closes. It leaves the group (LeaveGroup: its partitions move at once) unless
   * `leaveGroup` is false, which a static member (`groupInstanceId`) uses to keep its place and assignment
   * for a restart within the session timeout; a dynamic member always leaves.
   */
  stop(options?: { readonly leaveGroup?: boolean }): Promise<void>;
}

/**
 * A message to produce.
 *
 * @example
 * ```ts
 * import { kafkajsClient, type ProducerRecord } from "gress/kafka";
 *
 * const producer = kafkajsClient({ brokers: ["localhost:9092"] }).transactionalProducer({ transactionalId: "loader" });
 * const records: ProducerRecord[] = [{ key: "k1", value: JSON.stringify({ n: 1 }) }, { key: null, value: "plain", partition: 0 }];
 * await producer.connect();
 * await producer.begin(false);
 * await producer.send("events", records);
 * await producer.commit();
 * await producer.disconnect();
 * ```
 */
export interface ProducerRecord {
  readonly key: Uint8Array | string | null;
  readonly value: Uint8Array | string | null;
  readonly partition?: number;
  readonly timestamp?: number;
}

/**
 * What identifies a pre-committed transaction, so that any process can finish it. JSON-serialisable.
 *
 * @example
 * ```ts
 * import { kafkajsClient, type TransactionHandle } from "gress/kafka";
 *
 * // A pre-committed transaction, recorded in a checkpoint; any process can finish it after a crash.
 * const handle: TransactionHandle = { transactionalId: "alerts-sink", producerId: "4001", producerEpoch: 3 };
 * const client = kafkajsClient({ brokers: ["localhost:9092"] });
 * console.log(await client.endTransaction(handle, true)); // "ended", or "already-ended"
 * ```
 */
export interface TransactionHandle {
  readonly transactionalId: string;
  /** 64-bit producer id, as decimal text. */
  readonly producerId: string;
  readonly producerEpoch: number;
}

/**
 * Where a produced batch landed: its partition and the offset of its first record.
 *
 * @example
 * ```ts
 * import type { ProducedBatch } from "gress/kafka";
 *
 * // Where a send landed, e.g. to remember a marker record of the transaction.
 * const firstOffsets = (batches: readonly ProducedBatch[]): Map<number, number> => new Map(batches.map((b) => [b.partition, b.baseOffset]));
 * ```
 */
export interface ProducedBatch {
  readonly partition: number;
  readonly baseOffset: number;
}

/**
 * A record written inside a transaction, looked up afterwards to learn whether that transaction committed.
 *
 * @example
 * ```ts
 * import { kafkajsClient, type TransactionMarkerRef } from "gress/kafka";
 *
 * // A record written in a transaction: reading it back with read_committed tells how the transaction ended.
 * const marker: TransactionMarkerRef = { topic: "out", partition: 0, offset: 1_234, producerId: "4001" };
 * console.log(await kafkajsClient({ brokers: ["localhost:9092"] }).markerOutcome(marker, 5_000));
 * ```
 */
export interface TransactionMarkerRef {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** The producer id of the transaction (decimal text), which wrote the record. */
  readonly producerId: string;
}

/**
 * What became of the transaction that wrote a marker: "committed" or "aborted", once the partition's last
 * stable offset has passed the marker; "open" while it is still undecided when the wait ends.
 *
 * @example
 * ```ts
 * import type { MarkerOutcome } from "gress/kafka";
 *
 * const decided = (o: MarkerOutcome): boolean => o !== "open";
 * ```
 */
export type MarkerOutcome = "committed" | "aborted" | "open";

/**
 * Options of a transactional producer.
 *
 * @example
 * ```ts
 * import { kafkajsClient, type TransactionalProducerOptions } from "gress/kafka";
 *
 * // The broker aborts a transaction left open for more than 2 minutes.
 * const options: TransactionalProducerOptions = { transactionalId: "alerts-sink", transactionTimeoutMs: 120_000 };
 * const producer = kafkajsClient({ brokers: ["localhost:9092"] }).transactionalProducer(options);
 * ```
 */
export interface TransactionalProducerOptions {
  readonly transactionalId: string;
  /** The broker aborts a transaction left open longer than this. Default 60 000. */
  readonly transactionTimeoutMs?: number;
}

/**
 * An idempotent, transactional producer with one open transaction at a time.
 *
 * @example
 * ```ts
 * import { type KafkaTransactionalProducer, kafkajsClient } from "gress/kafka";
 *
 * // Pre-commit as the Kafka sink does: send, keep the handle, and commit once the checkpoint is durable.
 * const producer: KafkaTransactionalProducer = kafkajsClient({ brokers: ["localhost:9092"] }).transactionalProducer({ transactionalId: "t1" });
 * await producer.connect();
 * await producer.begin(true);
 * const batches = await producer.send("out", [{ key: null, value: "hello" }]);
 * const handle = producer.handle(); // recorded in the checkpoint
 * await producer.commit();
 * ```
 */
export interface KafkaTransactionalProducer {
  /** Connects and initialises the producer id; this fences older producers with the same transactional id
   * and aborts any transaction they left open. */
  connect(): Promise<void>;
  /**
   * Starts a transaction. With `newEpoch`, first re-initialises the producer id, which bumps the epoch: then
   * the transaction's handle names it alone, and a late EndTxn for an earlier handle cannot end it.
   */
  begin(newEpoch: boolean): Promise<void>;
  /** True between begin() and commit()/abort(). */
  readonly inTransaction: boolean;
  /** Sends records inside the open transaction; resolves with where each partition's batch begins. */
  send(topic: string, records: readonly ProducerRecord[]): Promise<readonly ProducedBatch[]>;
  /** The current transaction's handle. */
  handle(): TransactionHandle;
  /**
   * Commits consumer offsets (the next offset to read) in the open transaction: they take effect when it
   * commits, and vanish if it aborts. With KIP-447 (@platformatic/kafka) the group generation in `group` is
   * checked, so a member that lost the partitions cannot commit them; kafkajs sends the group id only.
   */
  sendOffsets(group: GroupMetadata, offsets: readonly PartitionOffset[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
  disconnect(): Promise<void>;
}

/**
 * The result of finishing a transaction from its handle.
 *
 * @example
 * ```ts
 * import { type EndTransactionResult, kafkajsClient } from "gress/kafka";
 *
 * const client = kafkajsClient({ brokers: ["localhost:9092"] });
 * const result: EndTransactionResult = await client.endTransaction({ transactionalId: "t1", producerId: "4001", producerEpoch: 3 }, false);
 * if (result === "already-ended") console.log("nothing to abort: it was committed, aborted or fenced before");
 * ```
 */
export type EndTransactionResult = "ended" | "already-ended";

/**
 * A Kafka cluster connection.
 *
 * @example
 * ```ts
 * import { type KafkaClient, kafkajsClient } from "gress/kafka";
 *
 * // Either client implements it; the admin calls are handy in tests and tools.
 * const client: KafkaClient = kafkajsClient({ brokers: ["localhost:9092"] });
 * await client.createTopic("orders", 3, { config: { "retention.ms": "86400000" } });
 * console.log(await client.endOffsets("orders")); // partition → end offset, e.g. Map(3) { 0 => 0, 1 => 0, 2 => 0 }
 * await client.close();
 * ```
 */
export interface KafkaClient {
  consumer(options: ConsumerOptions): KafkaConsumer;
  transactionalProducer(options: TransactionalProducerOptions): KafkaTransactionalProducer;
  /**
   * Commits (or aborts) a transaction that a producer pre-committed, possibly in a process that has died,
   * by its handle. Idempotent: a transaction already ended (or fenced by a newer producer) is "already-ended".
   */
  endTransaction(handle: TransactionHandle, commit: boolean): Promise<EndTransactionResult>;
  /**
   * Reads the marker's partition with read_committed and tells whether the transaction that wrote the marker
   * committed or aborted. Waits up to `waitMs` for the transaction to be decided (another transaction still
   * open before the marker holds the last stable offset back too). Fails when the marker is no longer
   * retained.
   */
  markerOutcome(marker: TransactionMarkerRef, waitMs: number): Promise<MarkerOutcome>;
  /** Configuration values of a broker (any one of the cluster), by name; absent names are left out. */
  brokerConfig(names: readonly string[]): Promise<Map<string, string>>;
  /** Configuration values of a topic (DescribeConfigs), e.g. `cleanup.policy`. Fails if it does not exist. */
  topicConfig(topic: string): Promise<Map<string, string>>;
  /** The end offset (high watermark) of every partition of a topic. */
  endOffsets(topic: string): Promise<Map<number, number>>;
  /**
   * Creates a topic if it does not exist. Replication factor 1 unless given (-1: the broker's default);
   * `config` is topic configuration (e.g. retention.ms).
   */
  createTopic(topic: string, partitions: number, options?: { readonly replicationFactor?: number; readonly config?: Readonly<Record<string, string>> }): Promise<void>;
  /**
   * Deletes the records of each given partition before its `offset` (DeleteRecords): the partition's earliest
   * offset (low watermark) becomes `offset`. An offset at or below the low watermark deletes nothing; one past
   * the high watermark fails (OFFSET_OUT_OF_RANGE).
   */
  deleteRecords(topic: string, partitions: readonly { readonly partition: number; readonly offset: number }[]): Promise<void>;
  close(): Promise<void>;
}
