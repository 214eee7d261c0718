/**
 * One scale-out task (docs/SCALE-OUT.md, sections 2, 4 and 5): the job's pipeline narrowed to partition p of
 * its input topics, with an LMDB environment of its own at `<state>/<job>/<task>/`, a transactional producer
 * of its own (`gress-<job>-<task>`) and its own checkpoints.
 *
 * Start, in this order:
 *  1. **Fence.** The producer's transactional InitProducerId bumps the epoch of `gress-<job>-<task>`: a previous
 *     owner (a zombie) can no longer commit, and a transaction it left open is aborted (F5).
 *  2. **Restore.** The changelog partition p is read with read_committed from the local copy's offset (or 0)
 *     up to its end, into the LMDB environment (lib/scaleout/changelog.ts); the changelog's last checkpoint
 *     record becomes the environment's checkpoint record, so that the Job recovers from it as always
 *     (positions for the sources, sink handles).
 *  3. **Build.** The pipeline function runs on a {@link TaskJob}: Kafka sources are bound to the task (they read
 *     only its partitions, from batches the worker routes), Kafka sinks write into the task's transaction.
 *  4. **Run.** Each checkpoint commits through {@link TaskCommitter} (lib/scaleout/task-checkpoint.ts): one
 *     Kafka transaction, then LMDB as a cache.
 *
 * {@link Task.checkpoint} takes one checkpoint at once without stopping (the worker's checkpoint before its group
 * rebalances, docs/SCALE-OUT.md section 3).
 *
 * Stop (the task was revoked, or the worker stops): the sources stop at once, the job is cancelled and the open
 * transaction aborted. With `final` (the worker stops) a last checkpoint comes first; otherwise the new owner
 * processes the records since the last one again, which keeps exactly-once since none of their effects was
 * committed.
 * A commit refused because another producer fenced this one, or because the group moved on (KIP-447), ends
 * the task as "migrated" ({@link isMigrationError}), not as a failure of the job.
 * @module
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import type { BatchHandler, KafkaClient, KafkaConsumer, KafkaMessage, KafkaTransactionalProducer, PartitionOffset, ProducerRecord, Rebalance } from "../../connectors/kafka/client.ts";
import { recordCheckpoint } from "../checkpoint/storage.ts";
import { Job, type JobOptions, type SourceOptions } from "../job.ts";
import type { OperatorContext } from "../operator-context.ts";
import type { Source } from "../source.ts";
import { LmdbStateBackend } from "../state/lmdb.ts";
import { declareTime, KeyedStream, type Stream, timeOf } from "../stream.ts";
import { kafkaSource } from "../../connectors/kafka/source.ts";
import type { Key } from "../element.ts";
import { SHUFFLE } from "../operators/key-by.ts";
import { taskId as taskIdOf } from "./assignor.ts";
import { beginRestore, type ChangelogEntry, type ChangelogRestore, type RestoreResult } from "./changelog.ts";
import type { TopologyFingerprint } from "./fingerprint.ts";
import { repartitionTopic, type ShuffleRecord, shuffleDecoder } from "./shuffle.ts";
import { RepartitionPurger, type ShufflePoint, type ShuffleRuntime, ShuffleSink, shuffleReader, shuffleWriter } from "./shuffle-io.ts";
import type { TaskStatusSource } from "./status.ts";
import { TaskCommitter } from "./task-checkpoint.ts";
import { bindTaskSource, registerTaskIo, type TaskKafkaIo } from "./task-io.ts";
import { settledWithin } from "./wait.ts";

/** A pipeline module's default export: builds the pipeline on the job it is given (a returned promise is awaited). */
export type BuildPipeline = (job: Job) => unknown;

/** What a task needs from its worker. */
export interface TaskOptions {
  /** The scale-out job's name. */
  readonly job: string;
  readonly taskId: string;
  readonly partition: number;
  /** The partition count of the input topics (and of the repartition topics): the number of tasks. */
  readonly partitions: number;
  /** The input and repartition topics (partition `partition` of each is this task's). */
  readonly topics: readonly string[];
  /** The worker's state directory; the task's environment is `<state>/<job>/<task>/`. */
  readonly stateDir: string;
  readonly client: KafkaClient;
  /** The worker's group consumer. */
  readonly consumer: KafkaConsumer;
  readonly groupId: string;
  readonly changelogTopic: string;
  readonly topology: TopologyFingerprint;
  readonly intervalMs: number;
  readonly checkpointTimeoutMs?: number;
  readonly transactionTimeoutMs: number;
  readonly mapSize?: number;
  /** The least time between two deletions of the task's consumed repartition records (RepartitionPurger). */
  readonly repartitionPurgeIntervalMs: number;
  readonly build: BuildPipeline;
  readonly log: (message: string) => void;
}

/** The name of a task's Job: unique per task in a process (sinks find their task by it), a valid job name. */
export function taskJobName(job: string, taskId: string): string {
  return `${job}.task-${taskId}`;
}

/** What a task's Job needs to build shuffles: the scale-out job's name, the worker's client, and (in a task that runs) the runtime. */
export interface TaskShuffleContext {
  readonly job: string;
  readonly client: KafkaClient;
  /** Undefined in the worker's probe build, which never runs. */
  readonly runtime: ShuffleRuntime | undefined;
}

/**
 * A Job in task mode: every source it is given is bound to the task (Kafka sources read the task's partitions);
 * it records the operators it allocates, in order, for the topology fingerprint. Its `keyBy`s (unless declared
 * `copartitioned`) go through repartition topics (lib/scaleout/shuffle-io.ts); it records them as shuffles.
 */
export class TaskJob extends Job {
  readonly #io: TaskKafkaIo | undefined;
  readonly #shuffle: TaskShuffleContext | undefined;
  readonly #operators: { id: string; kind: string; uid?: string }[] = [];
  readonly #sources: { source: Source<unknown>; topics: readonly string[] | undefined }[] = [];
  readonly #shuffles: ShufflePoint[] = [];
  /** The `idleTimeoutMs` of each input source's watermark strategy (repartition reads not included). */
  readonly #inputIdleTimeouts: (number | undefined)[] = [];
  #addingShuffleRead = false;

  constructor(options: JobOptions, io: TaskKafkaIo | undefined, shuffle?: TaskShuffleContext) {
    super(options);
    this.#io = io;
    this.#shuffle = shuffle;
    // Stream.keyBy looks for this (lib/operators/key-by.ts); a plain Job has none.
    Object.defineProperty(this, SHUFFLE, { value: <T, K extends Key>(stream: Stream<T>, selector: (value: T) => K) => this.#keyByShuffled(stream, selector) });
  }

  /** The shuffles built so far, in order (the n-th writes `gress-<job>-<n>-repartition`). */
  get shuffles(): readonly ShufflePoint[] {
    return this.#shuffles;
  }

  /**
   * keyBy in a task (Stream.keyBy calls it through SHUFFLE): the upstream part writes the records, keyed, into the repartition topic (in the task's
   * transaction); the keyed stream is partition p of that topic, read back with read_committed.
   */
  #keyByShuffled<T, K extends Key>(stream: Stream<T>, selector: (value: T) => K): KeyedStream<T, K> {
    const sc = this.#shuffle;
    // A probe that only looks at the sources (gress run's parent): a local keyBy is as good.
    if (sc === undefined) return stream.keyBy(selector, { copartitioned: true });
    const n = this.#shuffles.length + 1;
    const topic = repartitionTopic(sc.job, n);
    const ctx = this.operator("keyBy");
    this.#shuffles.push({ operator: ctx.id, topic });
    const runtime = (): ShuffleRuntime | undefined => sc.runtime;
    stream.transform(shuffleWriter(ctx, selector)).sinkTo(new ShuffleSink<T>(`${ctx.id}-repartition`, topic, runtime, this.clock, () => this.#inputIdleTimeoutMs()));
    let source: Stream<ShuffleRecord>;
    this.#addingShuffleRead = true; // not an input: its idleness is the merge's
    try {
      source = this.source(
        kafkaSource<ShuffleRecord>({ name: `${ctx.id}-repartition`, client: sc.client, topics: [topic], groupId: `gress-${sc.job}`, decode: shuffleDecoder(topic), readCommitted: true, startFrom: "earliest" }),
      );
    } finally {
      this.#addingShuffleRead = false;
    }
    const read = source.transform(shuffleReader<T>(this.operator("shuffleRead"), runtime));
    return declareTime(new KeyedStream<T, K>(this, read.elements), timeOf(stream));
  }

  override operator(kind: string, uid?: string): OperatorContext {
    const ctx = super.operator(kind, uid);
    this.#operators.push(uid === undefined ? { id: ctx.id, kind } : { id: ctx.id, kind, uid });
    return ctx;
  }

  override source<T>(source: Source<T>, options: SourceOptions<T> = {}): Stream<T> {
    this.#sources.push({ source: source as Source<unknown>, topics: undefined });
    if (!this.#addingShuffleRead) this.#inputIdleTimeouts.push(options.watermarks?.idleTimeoutMs);
    if (this.#io !== undefined) bindTaskSource(source, this.#io);
    return super.source(source, options);
  }

  /**
   * After how long without input the task reports IDLE to its shuffles' downstream tasks: the longest
   * `idleTimeoutMs` of its input sources' watermark strategies (the `watermarks` source option), so that IDLE
   * means every split idle; undefined (never IDLE) when an input source has none.
   */
  #inputIdleTimeoutMs(): number | undefined {
    if (this.#inputIdleTimeouts.length === 0) return undefined;
    let longest = 0;
    for (const t of this.#inputIdleTimeouts) {
      if (t === undefined) return undefined;
      if (t > longest) longest = t;
    }
    return longest;
  }

  /** The operators allocated so far, in construction order. */
  get operators(): readonly { readonly id: string; readonly kind: string; readonly uid?: string }[] {
    return this.#operators;
  }

  /** The sources given so far. */
  get givenSources(): readonly Source<unknown>[] {
    return this.#sources.map((s) => s.source);
  }
}

/** Kafka protocol errors that say another producer or group generation took over this task. */
const MIGRATED = ["INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID", "INVALID_PRODUCER_ID_MAPPING", "REBALANCE_IN_PROGRESS"];

/**
 * True when `error` (or one of its causes) says that the task's transaction was fenced by a newer owner or
 * refused for an older group generation: the task moved, and this incarnation is a zombie.
 */
export function isMigrationError(error: unknown): boolean {
  return hasKafkaError(error, MIGRATED);
}

/** Of the migration errors, those the group coordinator gives for a commit under an older group generation. */
const GROUP_GENERATION = ["ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS", "UNKNOWN_MEMBER_ID"];

/**
 * True when `error` says that the task's offsets were refused for an older group generation (KIP-447), not that
 * another producer fenced the task: the group moved on, which may or may not have moved the task.
 */
export function isGroupGenerationError(error: unknown): boolean {
  return hasKafkaError(error, GROUP_GENERATION);
}

/** True when `error` or one of its causes carries one of the Kafka error `codes` (type, apiId, code or message). */
function hasKafkaError(error: unknown, codes: readonly string[]): boolean {
  const seen = new Set<unknown>();
  const visit = (e: unknown): boolean => {
    if (e === null || typeof e !== "object" || seen.has(e)) return false;
    seen.add(e);
    const x = e as { type?: unknown; apiId?: unknown; code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    for (const v of [x.type, x.apiId, x.code]) if (typeof v === "string" && codes.includes(v)) return true;
    if (typeof x.message === "string" && codes.some((m) => (x.message as string).includes(m))) return true;
    if (visit(x.cause)) return true;
    return Array.isArray(x.errors) && x.errors.some(visit);
  };
  return visit(error);
}

/** How long a stopping task waits for its final checkpoint before it stops without it. */
const FINAL_CHECKPOINT_WAIT_MS = 5000;

/**
 * The consumer a task's Kafka source sees: batches of the task's partitions, routed by the worker; seeks and
 * pauses go to the worker's consumer for those partitions only; offsets are not committed here (they go with
 * the task's transaction).
 */
export class RoutedConsumer implements KafkaConsumer {
  readonly #worker: KafkaConsumer;
  readonly #partitions: readonly { readonly topic: string; readonly partition: number }[];
  #handler: BatchHandler | undefined;
  readonly #assignment: ((assigned: readonly { readonly topic: string; readonly partition: number }[]) => void)[] = [];
  readonly #advanced: ((t: PartitionOffset) => void)[] = [];
  /** The topics the source paused (backpressure, a rate limit): a rebalance must not resume them. */
  readonly #pausedTopics = new Set<string>();

  constructor(worker: KafkaConsumer, partitions: readonly { readonly topic: string; readonly partition: number }[]) {
    this.#worker = worker;
    this.#partitions = partitions;
  }

  /** The source's batch handler, once it started. */
  get handler(): BatchHandler | undefined {
    return this.#handler;
  }

  /**
   * The worker's group assigned the task again (a rebalance that kept it): the source seeks to its own
   * positions, and the partitions read again unless the source paused them. The worker pauses every partition
   * a rebalance adds until its task is ready; a partition revoked and given back before the worker applied the
   * revocation comes back as "added" while its task never stopped, and without this it stayed paused for good
   * (the task's input stalled).
   */
  reassigned(): void {
    for (const l of this.#assignment) l(this.#partitions);
    if (this.#handler === undefined) return;
    const running = this.#partitions.filter((tp) => !this.#pausedTopics.has(tp.topic));
    if (running.length > 0) this.#worker.resumePartitions(running);
  }

  /** A fetch moved a partition's position past control records. */
  advanced(target: PartitionOffset): void {
    for (const l of this.#advanced) l(target);
  }

  async start(handler: BatchHandler): Promise<void> {
    this.#handler = handler;
    for (const l of this.#assignment) l(this.#partitions);
    this.#worker.resumePartitions(this.#partitions);
  }
  seek(target: PartitionOffset): void {
    this.#worker.seek(target);
  }
  #of(topics: readonly string[]): { topic: string; partition: number }[] {
    return this.#partitions.filter((tp) => topics.includes(tp.topic));
  }
  pause(topics: readonly string[]): void {
    for (const t of topics) this.#pausedTopics.add(t);
    this.#worker.pausePartitions(this.#of(topics));
  }
  resume(topics: readonly string[]): void {
    for (const t of topics) this.#pausedTopics.delete(t);
    if (this.#handler !== undefined) this.#worker.resumePartitions(this.#of(topics));
  }
  pausePartitions(partitions: readonly { topic: string; partition: number }[]): void {
    this.#worker.pausePartitions(partitions);
  }
  resumePartitions(partitions: readonly { topic: string; partition: number }[]): void {
    if (this.#handler !== undefined) this.#worker.resumePartitions(partitions);
  }
  async commit(): Promise<void> {}
  onPositionAdvanced(listener: (target: PartitionOffset) => void): void {
    this.#advanced.push(listener);
  }
  onAssignment(listener: (assigned: readonly { readonly topic: string; readonly partition: number }[]) => void): void {
    this.#assignment.push(listener);
  }
  onRebalance(_listener: (rebalance: Rebalance) => void): void {}
  groupMetadata(): ReturnType<KafkaConsumer["groupMetadata"]> {
    return this.#worker.groupMetadata();
  }
  async stop(): Promise<void> {
    this.#handler = undefined;
    this.#worker.pausePartitions(this.#partitions);
  }
}

/** A running task. */
export class Task {
  readonly id: string;
  readonly #o: TaskOptions;
  readonly #partitions: { topic: string; partition: number }[];
  /** One routed consumer per Kafka source of the task (the user's inputs, each repartition topic), by topic. */
  readonly #routed = new Map<string, RoutedConsumer>();
  #producer: KafkaTransactionalProducer | undefined;
  #backend: LmdbStateBackend | undefined;
  #job: TaskJob | undefined;
  #unregister: (() => void) | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;
  /** Deletes the consumed records of the repartition partitions the task reads (none without shuffles). */
  #purger: RepartitionPurger | undefined;
  /** Serialises the uses of the producer (sink sends and the checkpoint's transaction). */
  #chain: Promise<unknown> = Promise.resolve();
  /** What the restore did (for logs and tests). */
  restored: RestoreResult | undefined;
  /** The group generation the task's latest checkpoint commit sent its offsets under (undefined before one). */
  commitGeneration: number | undefined;
  /** The restore under way or done, and the changelog end it reads to (for the status topic). */
  #restoring: { readonly restore: ChangelogRestore; readonly end: number } | undefined;

  constructor(o: TaskOptions) {
    this.#o = o;
    this.id = o.taskId;
    this.#partitions = o.topics.map((topic) => ({ topic, partition: o.partition }));
  }

  /** What the status topic reports (lib/scaleout/status.ts): the task's state, its restore and its Job. */
  get statusView(): TaskStatusSource["statusView"] {
    const r = this.#restoring;
    const state = this.#stopping ? "stopped" : this.#running !== undefined ? "running" : r === undefined ? "starting" : "restoring";
    return { state, restore: r === undefined ? undefined : { progress: r.restore.progress, end: r.end }, job: this.#job };
  }

  /** The routed consumer that reads `topic` in this task (undefined before its source started). */
  routedFor(topic: string): RoutedConsumer | undefined {
    return this.#routed.get(topic);
  }

  /** True while the task's pipeline runs: started, and not stopping. */
  get running(): boolean {
    return this.#running !== undefined && !this.#stopping;
  }

  /**
   * Takes one checkpoint now, in the task's transaction, and keeps running. Resolves with its id, or undefined
   * when the task does not run (still starting, or stopping). A failure ends the task as a failed periodic
   * checkpoint does (the job fails: a fenced or refused commit makes the task "migrated"), and rejects.
   */
  async checkpoint(): Promise<number | undefined> {
    const job = this.#job;
    const running = this.#running;
    const coordinator = job?.checkpoints;
    if (!this.running || job === undefined || running === undefined || coordinator === undefined) return undefined;
    const taken = coordinator.trigger(false);
    taken.catch(() => undefined);
    // A job that ended meanwhile (a sink fenced by the task's new owner, say) leaves the checkpoint waiting for
    // its sinks until the checkpoint timeout: do not wait for that.
    const ended = running.then(() => {
      throw new Error(`task ${this.id} ended before its checkpoint completed`);
    });
    ended.catch(() => undefined);
    try {
      await Promise.race([taken, ended]);
    } catch (err) {
      if (!this.#stopping) job.fail(err);
      throw err;
    }
    return coordinator.history.at(-1)?.id;
  }

  /** The group assigned the task again: every source seeks to its own positions. */
  reassigned(): void {
    for (const r of new Set(this.#routed.values())) r.reassigned();
  }

  /** The topic-partitions this task reads. */
  get partitions(): readonly { readonly topic: string; readonly partition: number }[] {
    return this.#partitions;
  }

  #exclusive<R>(op: () => Promise<R>): Promise<R> {
    const p = this.#chain.then(op);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  /**
   * Fences, restores and starts the task; resolves once its pipeline runs. `ended` is called once when the
   * job ends (undefined after a stop, or the error it failed with).
   */
  async start(ended: (error: unknown) => void): Promise<void> {
    const o = this.#o;
    const began = performance.now();
    const producer = o.client.transactionalProducer({ transactionalId: `gress-${o.job}-${o.taskId}`, transactionTimeoutMs: o.transactionTimeoutMs });
    this.#producer = producer;
    await producer.connect();
    if (this.#stopping) return;
    const dir = join(o.stateDir, o.job, o.taskId);
    mkdirSync(dir, { recursive: true });
    const backend = new LmdbStateBackend({ path: dir, ...(o.mapSize === undefined ? {} : { mapSize: o.mapSize }) });
    this.#backend = backend;
    const restored = await this.#restore(backend);
    this.restored = restored;
    if (this.#stopping) return;
    const cp = restored.checkpoint;
    if (cp !== undefined) {
      // The Job recovers from its own checkpoint record: the changelog's last one, whatever LMDB held.
      backend.applyChanges([], () =>
        recordCheckpoint(backend.meta, { id: cp.id, job: taskJobName(o.job, o.taskId), at: cp.at, positions: cp.positions, sinks: cp.sinks, final: cp.final, changedEntries: 0 }, 1),
      );
    }
    // The worker's consumer may have fetched this task's partitions past the checkpoint (an earlier incarnation
    // of the task on this worker read on): put each back where the checkpoint says, or at the start where it
    // says nothing (nothing of it was committed), as on a worker that never ran the task. The sources seek to
    // the same positions when they open; a partition the checkpoint does not name gets no seek from them, and
    // its records up to the fetch position would be skipped.
    const at = new Map<string, number>();
    for (const byPartition of Object.values(cp?.positions ?? {})) {
      for (const [split, offset] of Object.entries(byPartition)) if (typeof offset === "number") at.set(split, offset);
    }
    for (const tp of this.#partitions) o.consumer.seek({ ...tp, offset: at.get(`${tp.topic}-${tp.partition}`) ?? 0 });
    const io: TaskKafkaIo = {
      taskId: o.taskId,
      client: this.#routedClient(),
      send: (topic: string, records: readonly ProducerRecord[]) => this.#exclusive(async () => void (await producer.send(topic, records))),
    };
    const runtime: ShuffleRuntime = {
      taskId: o.taskId,
      partitions: o.partitions,
      upstreamTasks: Array.from({ length: o.partitions }, (_, q) => taskIdOf(0, q)),
      send: io.send,
    };
    const name = taskJobName(o.job, o.taskId);
    this.#unregister = registerTaskIo(name, io);
    const job = new TaskJob(
      {
        name,
        state: backend,
        checkpoints: { intervalMs: o.intervalMs, retain: 1, log: (m) => o.log(`task ${o.taskId}: ${m}`), ...(o.checkpointTimeoutMs === undefined ? {} : { timeoutMs: o.checkpointTimeoutMs }) },
      },
      io,
      { job: o.job, client: o.client, runtime },
    );
    this.#job = job;
    await o.build(job);
    const shuffled = job.shuffles.map((s) => s.topic);
    const purger =
      shuffled.length === 0
        ? undefined
        : new RepartitionPurger({ taskId: o.taskId, topics: shuffled, partition: o.partition, intervalMs: o.repartitionPurgeIntervalMs, deleteRecords: (t, p) => o.client.deleteRecords(t, p), log: o.log });
    this.#purger = purger;
    const committer = new TaskCommitter({
      taskId: o.taskId,
      partition: o.partition,
      changelogTopic: o.changelogTopic,
      groupId: o.groupId,
      producer,
      // The committer asks only for the group metadata; remember the generation its offsets go under.
      consumer: {
        groupMetadata: () => {
          const g = o.consumer.groupMetadata();
          this.commitGeneration = g?.generationId;
          return g;
        },
      } as Pick<KafkaConsumer, "groupMetadata"> as KafkaConsumer,
      backend,
      topology: o.topology,
      exclusive: (op) => this.#exclusive(op),
      ...(purger === undefined ? {} : { committed: (offsets: readonly PartitionOffset[]) => purger.committed(offsets) }),
    });
    job.checkpoints?.commitThrough(committer);
    await producer.begin(false);
    o.log(
      `task ${o.taskId} started in ${(performance.now() - began).toFixed(0)} ms: restored ${restored.applied} changelog records from offset ${restored.from}` +
        (cp === undefined ? ", no checkpoint yet" : `, checkpoint ${cp.id}`) +
        (restored.discarded === "age" ? " (its local copy was older than the changelog's delete.retention.ms, so it was restored in full)" : ""),
    );
    this.#running = job.run().then(
      () => ended(undefined),
      (err: unknown) => ended(this.#stopping ? undefined : err),
    );
  }

  /** Reads the task's changelog partition (read_committed) from the local copy's offset to its end into LMDB. */
  async #restore(backend: LmdbStateBackend): Promise<RestoreResult> {
    const o = this.#o;
    // Compaction drops a tombstone once delete.retention.ms has passed: a local copy older than that may
    // miss deletes made since (a fired window would come back), so it is discarded and restored in full.
    const maxLocalAgeMs = deleteRetentionMs(await o.client.topicConfig(o.changelogTopic));
    const restore = beginRestore(backend, { fingerprint: o.topology.fingerprint, topology: o.topology.description, maxLocalAgeMs });
    // After the fence no transaction of this task is open, so the end offset is stable.
    const end = (await o.client.endOffsets(o.changelogTopic)).get(o.partition) ?? 0;
    this.#restoring = { restore, end };
    if (restore.from >= end) return restore.finish(end);
    // A consumer of a group of its own, for this restore only (the KafkaClient reads through group consumers).
    const reader = o.client.consumer({ groupId: `gress-${o.job}-restore-${o.taskId}-${process.pid}-${Date.now()}`, topics: [o.changelogTopic], fromBeginning: true, readCommitted: true });
    let position = restore.from;
    let done!: () => void;
    let failed!: (e: unknown) => void;
    const finished = new Promise<void>((res, rej) => {
      done = res;
      failed = rej;
    });
    const check = (): void => {
      if (position >= end) done();
    };
    reader.onPositionAdvanced((t) => {
      if (t.partition === o.partition && t.offset > position) {
        position = t.offset;
        check();
      }
    });
    let sought = false;
    await reader.start(async (batch) => {
      const first = batch.messages[0] as KafkaMessage;
      if (batch.partition !== o.partition) {
        reader.pausePartitions([{ topic: batch.topic, partition: batch.partition }]);
        return first.offset;
      }
      if (!sought) return first.offset;
      try {
        const entries: ChangelogEntry[] = batch.messages.filter((m) => m.offset >= position && m.offset < end).map((m) => ({ offset: m.offset, key: m.key ?? new Uint8Array(), value: m.value }));
        restore.apply(entries);
      } catch (err) {
        failed(err);
        return first.offset;
      }
      const next = (batch.messages.at(-1) as KafkaMessage).offset + 1;
      if (next > position) position = next;
      check();
      return next;
    });
    reader.seek({ topic: o.changelogTopic, partition: o.partition, offset: restore.from });
    sought = true;
    try {
      await finished;
    } finally {
      await reader.stop();
    }
    return restore.finish(end);
  }

  /** The client the task's Kafka sources use: the worker's, with a routed consumer and the task's partitions only. */
  #routedClient(): KafkaClient {
    const c = this.#o.client;
    const partition = this.#o.partition;
    return {
      consumer: (options) => {
        const topics = options.topics.filter((t) => this.#o.topics.includes(t));
        const routed = new RoutedConsumer(this.#o.consumer, topics.map((topic) => ({ topic, partition })));
        for (const t of topics) this.#routed.set(t, routed);
        return routed;
      },
      transactionalProducer: (x) => c.transactionalProducer(x),
      endTransaction: (h, commit) => c.endTransaction(h, commit),
      markerOutcome: (m, w) => c.markerOutcome(m, w),
      brokerConfig: (n) => c.brokerConfig(n),
      topicConfig: (t) => c.topicConfig(t),
      endOffsets: async (topic) => {
        const all = await c.endOffsets(topic);
        return new Map([...all].filter(([p]) => p === partition));
      },
      createTopic: (t, p, x) => c.createTopic(t, p, x),
      deleteRecords: (t, p) => c.deleteRecords(t, p),
      close: async () => {},
    };
  }

  /**
   * Stops the task: no more batches, the job cancelled, the open transaction aborted. Idempotent. With
   * `final`, the job first stops gracefully (Job.stop: its sources stop reading and a last checkpoint commits
   * what it processed, in the task's transaction), so the next owner resumes from there instead of replaying
   * up to one interval. That last checkpoint may fail, e.g. fenced by a new owner that started already: the
   * task then stops as without it (the new owner resumes from the checkpoint before, which is as correct).
   */
  async stop(final = false): Promise<void> {
    if (this.#stopping) return this.#running;
    this.#stopping = true;
    const job = this.#job;
    if (final && job !== undefined) {
      const began = performance.now();
      const last = job.checkpoints?.history.at(-1)?.id;
      // Bounded: the worker applies its next assignment only after its revoked tasks stopped, and a checkpoint
      // that a new owner's fence cut off can take long to fail (seen once in CI: the worker stalled).
      const settled = await settledWithin(job.stop(), FINAL_CHECKPOINT_WAIT_MS);
      const now = job.checkpoints?.history.at(-1)?.id;
      this.#o.log(
        now !== undefined && now !== last
          ? `task ${this.#o.taskId}: final checkpoint ${now} committed in ${(performance.now() - began).toFixed(0)} ms`
          : settled
            ? `task ${this.#o.taskId}: no final checkpoint (the next owner resumes from the last one)`
            : `task ${this.#o.taskId}: no final checkpoint within ${FINAL_CHECKPOINT_WAIT_MS} ms, stopping without it (the next owner resumes from the last one)`,
      );
    }
    this.#purger?.close();
    // A purge under way uses the worker's client, which the worker closes once its tasks stopped.
    const purging = this.#purger?.inFlight;
    if (purging !== undefined) await settledWithin(purging, PURGE_WAIT_MS);
    for (const r of new Set(this.#routed.values())) await r.stop();
    job?.cancel();
    await this.#running?.catch(() => undefined);
    const p = this.#producer;
    if (p?.inTransaction === true) await p.abort().catch(() => undefined);
    await p?.disconnect().catch(() => undefined);
    this.#unregister?.();
    await this.#backend?.close().catch(() => undefined);
  }
}

/** How long a stopping task waits for its repartition purge under way (one DeleteRecords request). */
const PURGE_WAIT_MS = 5_000;

/** Kafka's default `delete.retention.ms` (24 h), for a broker that does not report it. */
const DEFAULT_DELETE_RETENTION_MS = 86_400_000;

/** The changelog topic's `delete.retention.ms` (DescribeConfigs reports defaults too); Kafka's default if absent or unreadable. */
export function deleteRetentionMs(config: ReadonlyMap<string, string>): number {
  const v = Number(config.get("delete.retention.ms"));
  return Number.isFinite(v) && v >= 0 ? v : DEFAULT_DELETE_RETENTION_MS;
}
