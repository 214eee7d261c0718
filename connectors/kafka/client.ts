/**
 * The small Kafka client interface the Kafka source and sink are written against. `kafkajs.ts` implements it
 * with kafkajs; another client (librdkafka bindings, a future kafkajs successor) can be plugged in by
 * implementing these few methods. Everything here is plain data: offsets are numbers (exact up to 2^53),
 * payloads are bytes.
 * @module
 */

/** One consumed message. */
export interface KafkaMessage {
  readonly offset: number;
  /** Broker or producer timestamp, epoch ms. */
  readonly timestamp: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
}

/** The messages of one fetch from one partition. */
export interface KafkaBatch {
  readonly topic: string;
  readonly partition: number;
  readonly messages: readonly KafkaMessage[];
}

/**
 * What the batch handler reports back: the offset of the next message it still wants. Returning less than
 * the batch end makes the client fetch the rest again later (after a pause, say).
 */
export type BatchHandler = (batch: KafkaBatch) => Promise<number> | number;

/** A topic-partition and an offset. */
export interface PartitionOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

/** Options of a consumer. */
export interface ConsumerOptions {
  readonly groupId: string;
  readonly topics: readonly string[];
  /** Where a partition without a committed offset starts. */
  readonly fromBeginning: boolean;
  /** Only see committed transactional data (read_committed). Default true. */
  readonly readCommitted?: boolean;
  readonly sessionTimeoutMs?: number;
  readonly maxBytesPerPartition?: number;
}

/** A group consumer. */
export interface KafkaConsumer {
  /** Connects, joins the group and starts fetching into `handler`. */
  start(handler: BatchHandler): Promise<void>;
  /** Sets the next offset to fetch of a partition (after start). */
  seek(target: PartitionOffset): void;
  pause(topics: readonly string[]): void;
  resume(topics: readonly string[]): void;
  /** Commits offsets to the group (the next offset to read, Kafka's convention). */
  commit(offsets: readonly PartitionOffset[]): Promise<void>;
  /** Called when a fetch moved a partition's position without delivering messages (control records). */
  onPositionAdvanced(listener: (target: PartitionOffset) => void): void;
  /** Called with this member's partitions each time the group (re)assigns them. */
  onAssignment(listener: (assigned: readonly { readonly topic: string; readonly partition: number }[]) => void): void;
  stop(): Promise<void>;
}

/** A message to produce. */
export interface ProducerRecord {
  readonly key: Uint8Array | string | null;
  readonly value: Uint8Array | string | null;
  readonly partition?: number;
  readonly timestamp?: number;
}

/** What identifies a pre-committed transaction, so that any process can finish it. JSON-serialisable. */
export interface TransactionHandle {
  readonly transactionalId: string;
  /** 64-bit producer id, as decimal text. */
  readonly producerId: string;
  readonly producerEpoch: number;
}

/** Where a produced batch landed: its partition and the offset of its first record. */
export interface ProducedBatch {
  readonly partition: number;
  readonly baseOffset: number;
}

/** A record written inside a transaction, looked up afterwards to learn whether that transaction committed. */
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
 */
export type MarkerOutcome = "committed" | "aborted" | "open";

/** Options of a transactional producer. */
export interface TransactionalProducerOptions {
  readonly transactionalId: string;
  /** The broker aborts a transaction left open longer than this. Default 60 000. */
  readonly transactionTimeoutMs?: number;
}

/** An idempotent, transactional producer with one open transaction at a time. */
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
  commit(): Promise<void>;
  abort(): Promise<void>;
  disconnect(): Promise<void>;
}

/** The result of finishing a transaction from its handle. */
export type EndTransactionResult = "ended" | "already-ended";

/** A Kafka cluster connection. */
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
  /** The end offset (high watermark) of every partition of a topic. */
  endOffsets(topic: string): Promise<Map<number, number>>;
  /**
   * Creates a topic if it does not exist. Replication factor 1 unless given (-1: the broker's default);
   * `config` is topic configuration (e.g. retention.ms).
   */
  createTopic(topic: string, partitions: number, options?: { readonly replicationFactor?: number; readonly config?: Readonly<Record<string, string>> }): Promise<void>;
  close(): Promise<void>;
}
