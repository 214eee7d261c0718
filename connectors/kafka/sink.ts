/**
 * The Kafka sink: an idempotent, transactional producer with one transaction per checkpoint.
 *
 * - `write` adds a record to the current batch; batches are sent inside the open transaction, and the write's
 *   promise resolves once its batch is acknowledged by the brokers (so pressure flows back to the job).
 *   One produce request is out at a time; the writes made meanwhile gather into the next batch (up to
 *   `batchSize`), so on a slow link the requests grow instead of queueing one tiny request per event-loop turn.
 * - `preCommit(id)` seals the open transaction and returns its handle `{ transactionalId, producerId,
 *   producerEpoch, records, marker }` — the checkpoint stores it (undefined when nothing was written).
 *   Records written after it are held until the sealed transaction is committed (a producer has one open
 *   transaction at a time).
 * - `commit(id, handle)` commits: directly when this producer sealed it, else (recovery in a new process) by
 *   sending EndTxn for the handle to the transaction coordinator. Idempotent. Every transaction starts under
 *   a new producer epoch, so a handle names exactly one transaction: a repeated EndTxn for an old handle is
 *   fenced ("already-ended") instead of ending whatever transaction is open now.
 * - The transactional id is static per job and sink (`transactionalId`, default `gress-<job name>-<sink
 *   name>`, so that two jobs with a sink of the same name do not fence each other), since kafkajs lacks
 *   KIP-447. `open()` initialises the producer id, which fences the previous incarnation and aborts the
 *   transaction it left open — so leftovers never block read_committed readers for long. Recovery commits
 *   the checkpointed transaction *before* `open()`, so that one survives.
 *
 * Committed or aborted? The broker aborts a transaction that stays open longer than `transactionTimeoutMs`
 * (for instance while the job is down between a checkpoint and its commit), and bumps the producer epoch.
 * A later EndTxn for the handle then fails with a fenced epoch exactly as it does for a transaction that was
 * committed already, and Kafka keeps no history of a transactional id's past transactions. So every
 * non-empty transaction also writes one marker record (job, sink, checkpoint, transactional id, producer id
 * and epoch, record count) to partition 0 of the marker topic (`markerTopic`, default `__gress-txn-markers`,
 * created at open with one partition, 7 days' retention and the broker's replication factor), and the
 * handle records the marker's offset. When recovery finds the epoch gone, it reads the marker partition
 * with read_committed at that offset once the last stable offset has passed it: a visible marker means the
 * transaction committed; a marker filtered out as aborted means the broker aborted it, and `commit`
 * reports `{ aborted: true, lost }` so that the checkpoint coordinator rolls back to the previous checkpoint
 * and produces the output again (see lib/checkpoint/coordinator.ts). The sink declares `preCommitExpires`,
 * so it is committed before non-expiring sinks of the same checkpoint.
 *
 * `transactionTimeoutMs` must exceed the checkpoint interval (a ConfigError at open otherwise) and may not
 * exceed the broker's `transaction.max.timeout.ms` (read with DescribeConfigs at open; a ConfigError too).
 *
 * Without checkpoints (`semantic: "at-least-once"`, or a bounded job without checkpoints), each batch is
 * committed on its own, or what is open is committed by `flush()` at the end of the input.
 *
 * In a scale-out task (lib/scaleout/task-io.ts: the job is a task's) an exactly-once sink has no producer of
 * its own: it sends into the task's open transaction, which the task commits with its checkpoint (output,
 * changelog, checkpoint record and input offsets together). `preCommit` then only waits for the sends and
 * holds later writes until the checkpoint's `commit`; there is no marker and nothing to commit by handle.
 * @module
 */
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { ConfigError, SinkError } from "../../lib/errors.ts";
import { type CommitAborted, encodeRecord, type Sink, type SinkContext } from "../../lib/sink.ts";
import type { RecordSerializer } from "../registry/serde.ts";
import { TASK_SINK, type TaskKafkaIo, taskIoOf } from "../../lib/scaleout/task-io.ts";
import type { KafkaClient, KafkaTransactionalProducer, ProducerRecord, TransactionHandle } from "./client.ts";
import { isKafkaClientOption, type KafkaClientName, resolveKafkaClient } from "./default-client.ts";

/**
 * Options of {@link kafkaSink}.
 *
 * @example
 * ```ts
 * import { type Job, lmdbState } from "gress";
 * import { type KafkaSinkOptions, kafkaSink } from "gress/kafka";
 *
 * type Alert = { card: string; score: number };
 * // One Kafka transaction per checkpoint: consumers reading read_committed see each alert exactly once.
 * const options: KafkaSinkOptions<Alert> = {
 *   name: "alerts",
 *   brokers: ["localhost:9092"],
 *   topic: "alerts",
 *   key: (a) => a.card,
 *   transactionalId: "fraud-alerts",
 * };
 * export default (job: Job) => job.fromIterable<Alert>([{ card: "c1", score: 0.9 }]).sinkTo(kafkaSink(options));
 * ```
 */
export interface KafkaSinkOptions<T> {
  /** Sink name, unique in the job. */
  readonly name: string;
  /** Broker addresses, e.g. ["127.0.0.1:9092"]; or give `client`. */
  readonly brokers?: readonly string[];
  /**
   * A client to use, or which built-in client to make from `brokers`: "platformatic" (@platformatic/kafka, the
   * default) or "kafkajs".
   */
  readonly client?: KafkaClient | KafkaClientName;
  readonly topic: string;
  /** Message value. Default: JSON text of the value. A {@link RecordSerializer} (`registrySerializer` of gress/registry) is opened with the sink. */
  readonly serialize?: ((value: T) => Uint8Array | string | null) | RecordSerializer<T>;
  /** Message key (decides the partition). Default: none. */
  readonly key?: (value: T) => Uint8Array | string | null;
  /** Static transactional id; one per job and sink. Default `gress-<job name>-<sink name>`. */
  readonly transactionalId?: string;
  /** "exactly-once" (default): one transaction per checkpoint. "at-least-once": commit every batch. */
  readonly semantic?: "exactly-once" | "at-least-once";
  /** Most records per produce request. Default 2000. */
  readonly batchSize?: number;
  /**
   * The broker aborts a transaction open longer than this. A transaction lives for one checkpoint interval
   * plus the checkpoint's duration, and, if the job dies between a checkpoint and its commit, until the
   * job is back: keep it above the interval plus the longest outage you expect. Checked at open: more than
   * the checkpoint interval, at most the broker's `transaction.max.timeout.ms`. Default 60 000.
   */
  readonly transactionTimeoutMs?: number;
  /** Topic of the transaction markers (see the module comment). Default `__gress-txn-markers`. */
  readonly markerTopic?: string;
}

/**
 * The handle a Kafka sink stores in a checkpoint. `empty` when the checkpoint had no records.
 *
 * @example
 * ```ts
 * import type { KafkaSinkHandle } from "gress/kafka";
 *
 * // What the Kafka sink's pre-commit returns and a checkpoint records: the open transaction (empty: nothing written).
 * const needsCommit = (h: KafkaSinkHandle): boolean => !h.empty;
 * ```
 */
export interface KafkaSinkHandle extends TransactionHandle {
  readonly empty: boolean;
  /** Records the transaction holds. */
  readonly records?: number;
  /** Where the transaction's marker record is (absent in empty transactions and in handles of older Gress). */
  readonly marker?: { readonly topic: string; readonly partition: number; readonly offset: number };
}

/** Default topic of transaction markers. */
export const DEFAULT_MARKER_TOPIC = "__gress-txn-markers";
const MARKER_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** How long recovery waits for the marker's transaction to be decided (other open transactions before it
 * hold the last stable offset back for at most the broker's default transaction.max.timeout.ms). */
const MARKER_WAIT_MS = 16 * 60 * 1000;

const optionsSchema = z.strictObject({
  name: z.string().min(1),
  brokers: z.array(z.string().min(1)).min(1).optional(),
  client: z.custom<KafkaClient | KafkaClientName>(isKafkaClientOption, 'a KafkaClient, "platformatic" or "kafkajs"').optional(),
  topic: z.string().min(1),
  serialize: z.union([z.function(), z.custom<RecordSerializer<unknown>>((s) => typeof (s as RecordSerializer<unknown>)?.serialize === "function" && typeof (s as RecordSerializer<unknown>).open === "function", "a function or a RecordSerializer")]).optional(),
  key: z.function().optional(),
  transactionalId: z.string().min(1).optional(),
  semantic: z.enum(["exactly-once", "at-least-once"]).optional(),
  batchSize: z.number().int().positive().optional(),
  transactionTimeoutMs: z.number().int().positive().optional(),
  markerTopic: z.string().min(1).optional(),
});

interface Pending {
  readonly records: ProducerRecord[];
  readonly done: Promise<void>;
  resolve(): void;
  reject(e: unknown): void;
}

/** The handle of a sink in a scale-out task: its records went out with the task's transaction. */
interface TaskSinkHandle {
  readonly task: string;
  readonly records: number;
}

function isTaskHandle(h: unknown): h is TaskSinkHandle {
  return typeof h === "object" && h !== null && typeof (h as TaskSinkHandle).task === "string";
}

/** The task's transaction as this sink's producer: sends go into it; the task begins and commits it. */
function taskProducer(io: TaskKafkaIo): KafkaTransactionalProducer {
  const notHere = (what: string): Promise<never> => Promise.reject(new Error(`kafka sink of task ${io.taskId}: ${what} belongs to the task`));
  return {
    connect: async () => {},
    begin: async () => {},
    inTransaction: true,
    async send(topic, records) {
      await io.send(topic, records);
      return [];
    },
    handle: () => ({ transactionalId: `task ${io.taskId}`, producerId: "-1", producerEpoch: -1 }),
    sendOffsets: () => notHere("committing offsets"),
    commit: async () => {},
    abort: async () => {},
    disconnect: async () => {},
  };
}

function isHandle(h: unknown): h is KafkaSinkHandle {
  const x = h as KafkaSinkHandle;
  return typeof x === "object" && x !== null && typeof x.transactionalId === "string" && typeof x.producerId === "string" && typeof x.producerEpoch === "number";
}

/**
 * A transactional Kafka sink.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { kafkaSink } from "gress/kafka";
 *
 * type Surge = { zone: string; factor: number };
 * const surges = fromIterable<Surge>([{ zone: "z1", factor: 1.5 }]);
 * surges.sinkTo(kafkaSink({ name: "surge-out", brokers: ["127.0.0.1:9092"], topic: "surge", key: (s) => s.zone }));
 * await surges.job.run();
 * ```
 * @param options topic, serialisation, transactional id
 * @returns a sink with two-phase commit
 */
export function kafkaSink<T>(options: KafkaSinkOptions<T>): Sink<T> {
  const o = validate(optionsSchema, options, "kafkaSink");
  const name = o.name;
  /** Known at open (the default includes the job's name); recovery uses the id in the handle. */
  let transactionalId = o.transactionalId ?? `gress-${name}`;
  let jobName = "";
  const markerTopic = o.markerTopic ?? DEFAULT_MARKER_TOPIC;
  const transactionTimeoutMs = o.transactionTimeoutMs ?? 60_000;
  const batchSize = o.batchSize ?? 2000;
  const atLeastOnce = o.semantic === "at-least-once";
  const serializer = typeof options.serialize === "object" ? options.serialize : undefined;
  const serialize = serializer !== undefined ? (v: T) => serializer.serialize(v) : ((options.serialize as ((value: T) => Uint8Array | string | null) | undefined) ?? ((v: T) => JSON.stringify(v) ?? null));
  const keyOf = options.key;
  const ownClient = options.client === undefined || typeof options.client === "string";
  let client: KafkaClient | undefined = typeof options.client === "string" ? undefined : options.client;
  let producer: KafkaTransactionalProducer | undefined;
  /** Serialises every use of the producer. */
  let chain: Promise<void> = Promise.resolve();
  let batch: Pending | undefined;
  let scheduled = false;
  /** Batches handed to the producer and not yet acknowledged. While there are any, writes gather in `batch`. */
  let sending = 0;
  /** The sealed (pre-committed) transaction and the gate that holds new sends until it is finished. */
  let sealed: { id: number; handle: KafkaSinkHandle; release: () => void } | undefined;
  let gate: Promise<void> = Promise.resolve();
  let sentInTxn = 0;
  let closed = false;
  /** The producer epoch has had a transaction already. */
  let usedEpoch = false;
  /** Set at open when the job is a scale-out task (see the module comment). */
  let task: TaskKafkaIo | undefined;

  const getClient = (): KafkaClient => {
    if (client === undefined) {
      if (o.brokers === undefined) throw new SinkError(`kafka sink "${name}": give brokers or a client`);
      client = resolveKafkaClient(o.brokers, `gress-${name}`, o.client);
    }
    return client;
  };
  const run = (op: () => Promise<void>): Promise<void> => {
    const p = chain.then(op);
    chain = p.catch(() => undefined);
    return p;
  };
  const sendBatch = (b: Pending): void => {
    sending++;
    void run(async () => {
      await gate;
      const p = producer;
      if (p === undefined || closed) throw new SinkError(`kafka sink "${name}" is not open`);
      if (!p.inTransaction) {
        // Each checkpoint's transaction gets its own epoch (see begin): recovery may send EndTxn for the
        // handle of an earlier, already committed checkpoint, and that must not end this one.
        await p.begin(!atLeastOnce && usedEpoch);
        usedEpoch = true;
      }
      await p.send(o.topic, b.records);
      sentInTxn += b.records.length;
      if (atLeastOnce) {
        await p.commit();
        sentInTxn = 0;
      }
    }).then(
      () => {
        sent();
        b.resolve();
      },
      (err: unknown) => {
        sent();
        // The job fails on this error: disconnect now rather than at close() (without aborting: a sealed
        // transaction may still be committed by recovery).
        const p = producer;
        producer = undefined;
        void p?.disconnect().catch(() => undefined);
        b.reject(err);
      },
    );
  };
  /** A batch was acknowledged (or failed): send what gathered meanwhile as the next request. */
  const sent = (): void => {
    // A late answer for a run before a restart (open() zeroed the count) must not go negative.
    if (sending > 0) sending--;
    if (sending === 0 && batch !== undefined) flushBatch();
  };
  const flushBatch = (): void => {
    scheduled = false;
    const b = batch;
    batch = undefined;
    if (b !== undefined) sendBatch(b);
  };
  /**
   * The end of an event-loop turn: send the batch now unless a request is still on its way. Then the writes
   * keep gathering until its answer comes (as Kafka's producer accumulates while its in-flight requests are
   * out), so a slow round trip makes the batches bigger, not the queue of small ones longer.
   */
  const lingerDone = (): void => {
    scheduled = false;
    if (sending === 0) flushBatch();
  };

  /** Commits or aborts a pre-committed transaction: our own sealed one directly, else by its handle. */
  const finish = async (checkpointId: number, handle: KafkaSinkHandle, commit: boolean): Promise<CommitAborted | undefined> => {
    if (handle.empty) return undefined;
    const s = sealed;
    const p = producer;
    if (s !== undefined && s.id === checkpointId && p !== undefined) {
      await (commit ? p.commit() : p.abort());
      sealed = undefined;
      s.release();
      return undefined;
    }
    // Recovery: the transaction belongs to an earlier incarnation of this sink.
    const c = getClient();
    const ended = await c.endTransaction(handle, commit);
    // A handle from a Gress without markers cannot be told apart: taken as committed, as it was then.
    if (!commit || ended === "ended" || handle.marker === undefined) return undefined;
    // The epoch is gone: committed before (by the crashed job or an earlier recovery), or aborted by the broker.
    const outcome = await c.markerOutcome({ ...handle.marker, producerId: handle.producerId }, MARKER_WAIT_MS);
    if (outcome === "committed") return undefined;
    const txn = `transaction "${handle.transactionalId}" (producer ${handle.producerId}, epoch ${handle.producerEpoch})`;
    if (outcome === "open") {
      throw new SinkError(`kafka sink "${name}": cannot tell whether ${txn} of checkpoint ${checkpointId} committed: its marker in ${handle.marker.topic}-${handle.marker.partition} at offset ${handle.marker.offset} is still undecided after ${MARKER_WAIT_MS / 60_000} min`);
    }
    return { aborted: true, lost: `${handle.records ?? "an unknown number of"} records for topic "${o.topic}" in ${txn}, aborted by the broker` };
  };

  /** Checks the transaction timeout against the job and the broker, and creates the marker topic. */
  const prepare = async (c: KafkaClient, ctx: SinkContext | undefined): Promise<void> => {
    const interval = ctx?.checkpointIntervalMs;
    if (!atLeastOnce && interval !== undefined && transactionTimeoutMs <= interval) {
      throw new ConfigError(
        `kafka sink "${name}": transactionTimeoutMs (${transactionTimeoutMs}) must exceed the checkpoint interval (${interval} ms): each transaction stays open for at least one interval`,
        [{ path: ["kafkaSink", "transactionTimeoutMs"], code: "too_small", message: `must be more than ${interval}` }],
      );
    }
    // Unreadable broker configuration (no DescribeConfigs permission) is left to InitProducerId, which
    // refuses a timeout above the maximum too (mapped to a ConfigError in open).
    const max = Number((await c.brokerConfig(["transaction.max.timeout.ms"]).catch(() => new Map<string, string>())).get("transaction.max.timeout.ms"));
    if (Number.isFinite(max) && transactionTimeoutMs > max) throw timeoutTooLarge(max);
    if (!atLeastOnce) await c.createTopic(markerTopic, 1, { replicationFactor: -1, config: { "retention.ms": String(MARKER_RETENTION_MS), "cleanup.policy": "delete" } });
  };
  const timeoutTooLarge = (max: number | undefined): ConfigError =>
    new ConfigError(
      `kafka sink "${name}": transactionTimeoutMs (${transactionTimeoutMs}) is larger than the broker's transaction.max.timeout.ms${max === undefined ? "" : ` (${max})`}; lower it or raise the broker's maximum`,
      [{ path: ["kafkaSink", "transactionTimeoutMs"], code: "too_big", message: `must be at most the broker's transaction.max.timeout.ms${max === undefined ? "" : ` (${max})`}` }],
    );

  // In a scale-out task the sink writes into the task's transaction, committed with the task's checkpoint.
  const sink: Sink<T> & { readonly [TASK_SINK]: true } = {
    name,
    [TASK_SINK]: true,
    preCommitExpires: !atLeastOnce,
    async open(ctx?: SinkContext) {
      if (ctx !== undefined) {
        jobName = ctx.jobName;
        if (o.transactionalId === undefined) transactionalId = `gress-${jobName}-${name}`;
      }
      // Opened again after close() (the job restarted after a failure, or runs again): start clean.
      closed = false;
      sealed = undefined;
      gate = Promise.resolve();
      sentInTxn = 0;
      usedEpoch = false;
      batch = undefined;
      scheduled = false;
      sending = 0;
      // A registry serializer checks its schema's compatibility and registers it: an incompatible one fails the start.
      await serializer?.open();
      task = atLeastOnce ? undefined : taskIoOf(ctx?.jobName);
      if (task !== undefined) {
        producer = taskProducer(task);
        return;
      }
      const c = getClient();
      await prepare(c, ctx);
      producer = c.transactionalProducer({ transactionalId, transactionTimeoutMs });
      try {
        await producer.connect();
      } catch (err) {
        if ((err as { type?: unknown })?.type === "INVALID_TRANSACTION_TIMEOUT") throw timeoutTooLarge(undefined);
        throw err;
      }
    },
    // write reads the record's fields before it returns and keeps no record object.
    keepsRecords: false,
    write(value) {
      // Before the batch is touched: a value that cannot be serialised (or keyed) throws a BadRecordError and goes to dead letters.
      const message: ProducerRecord = { key: keyOf ? encodeRecord("key", keyOf, value) : null, value: encodeRecord("serialize", serialize, value) };
      if (batch === undefined) {
        let resolve!: () => void;
        let reject!: (e: unknown) => void;
        const done = new Promise<void>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        batch = { records: [], done, resolve, reject };
      }
      const b = batch;
      b.records.push(message);
      if (b.records.length >= batchSize) flushBatch();
      else if (!scheduled) {
        // Everything written in this turn of the event loop goes into one produce request.
        scheduled = true;
        queueMicrotask(lingerDone);
      }
      return b.done;
    },
    preCommit(checkpointId) {
      flushBatch();
      const t = task;
      if (t !== undefined) {
        // Sent means in the task's transaction; hold what follows until the task has committed it.
        return run(async () => {
          await gate;
          let release!: () => void;
          gate = new Promise<void>((r) => (release = r));
          sealed = { id: checkpointId, handle: { task: t.taskId, records: sentInTxn } as unknown as KafkaSinkHandle, release };
          sentInTxn = 0;
        }).then(() => (sealed?.id === checkpointId ? sealed.handle : undefined));
      }
      return run(async () => {
        await gate;
        const p = producer;
        if (p === undefined) throw new SinkError(`kafka sink "${name}" is not open`);
        const empty = !p.inTransaction || sentInTxn === 0;
        if (empty) return;
        const txn = p.handle();
        // The marker, in the same transaction: recovery reads it to tell committed from aborted.
        const value = JSON.stringify({ job: jobName, sink: name, checkpoint: checkpointId, ...txn, records: sentInTxn });
        const [at] = await p.send(markerTopic, [{ key: txn.transactionalId, value, partition: 0 }]);
        if (at === undefined) throw new SinkError(`kafka sink "${name}": the marker of checkpoint ${checkpointId} was not acknowledged`);
        const handle: KafkaSinkHandle = { ...txn, empty, records: sentInTxn, marker: { topic: markerTopic, partition: at.partition, offset: at.baseOffset } };
        let release!: () => void;
        gate = new Promise<void>((r) => (release = r));
        sealed = { id: checkpointId, handle, release };
        sentInTxn = 0;
        // Nothing written: no handle, so the checkpoint records nothing to commit for this sink.
      }).then(() => (sealed?.id === checkpointId ? sealed.handle : undefined));
    },
    async commit(checkpointId, handle) {
      if (isTaskHandle(handle)) {
        // The task committed its transaction already (or, on recovery, long ago): release the held writes.
        const s = sealed;
        if (s !== undefined && s.id === checkpointId) {
          sealed = undefined;
          s.release();
        }
        return undefined;
      }
      if (!isHandle(handle)) throw new SinkError(`kafka sink "${name}": checkpoint ${checkpointId} has no valid transaction handle`);
      return finish(checkpointId, handle, true);
    },
    async abort(checkpointId, handle) {
      if (isTaskHandle(handle)) return;
      if (isHandle(handle)) await finish(checkpointId, handle, false);
    },
    async flush() {
      flushBatch();
      // The end of a bounded input without checkpoints: commit what is open. With checkpoints the final
      // checkpoint has committed everything already and nothing is open here.
      await run(async () => {
        await gate;
        const p = producer;
        if (p?.inTransaction === true && sentInTxn > 0) {
          await p.commit();
          sentInTxn = 0;
        }
      });
    },
    async close() {
      // Held writes (after a pre-commit that was never committed) fail instead of waiting forever.
      closed = true;
      sealed?.release();
      await chain;
      const p = producer;
      producer = undefined;
      // An open, unsealed transaction is abandoned work; abort it so read_committed readers move on.
      if (p?.inTransaction === true && sealed === undefined) await p.abort().catch(() => undefined);
      await p?.disconnect();
      if (ownClient) {
        const c = client;
        client = undefined;
        await c?.close();
      }
    },
  };
  return sink;
}
