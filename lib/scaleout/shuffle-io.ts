/**
 * The runtime of a shuffle in a scale-out task (docs/SCALE-OUT.md, section 6): a `keyBy(f)` that is not
 * declared `copartitioned` becomes, in a task's Job,
 *
 *   upstream ─▶ keyBy writer ─▶ shuffle sink ══ repartition topic (partition = murmur2(key) % P) ══▶
 *   Kafka source (partition p of the topic, routed like the task's other inputs) ─▶ shuffle reader ─▶ keyed stream
 *
 * Task p runs both halves: its upstream part writes records for every partition, its downstream part reads
 * partition p. One task, one transaction, one checkpoint for both.
 *
 * - **Writer** ({@link shuffleWriter}): applies the key selector (dead letters as any keyBy), and turns each
 *   watermark into a mark that travels to the sink in order with the records.
 * - **Sink** ({@link ShuffleSink}): encodes records with their key (lib/scaleout/shuffle.ts) and sends them
 *   through the task's `send`, inside its open Kafka transaction. It sends the task's watermark to every
 *   partition when it advanced (at most every {@link WATERMARK_EVERY_MS} ms), at every checkpoint, and END once the
 *   upstream watermark reaches the end of input. Idleness (Flink's WatermarkStatus): when, at a checkpoint,
 *   the sink has had no record and no watermark for the input's `idleTimeoutMs` (its input's splits are all
 *   idle, so its watermark generator holds), it sends IDLE to every partition instead of its watermark; the
 *   next record or watermark first sends its watermark to every partition, which makes it active again. Its
 *   pre-commit waits for every send; what is written after a pre-commit is held until the task committed (or
 *   aborted) that checkpoint, as the task's Kafka sinks do, so a transaction never holds records of the next
 *   checkpoint.
 * - **Reader** ({@link shuffleReader}): the repartition topic is read with read_committed, so records and
 *   watermarks cross at the upstream task's commit. Records come out with their key; the watermark is the
 *   minimum over the upstream tasks not marked idle ({@link UpstreamWatermarks}; no idleness by timeout here:
 *   a task that stops reporting without IDLE is dead or moving, and its successor resumes it), kept in the
 *   operator's state table `upstream-watermarks`, so it survives a move of the task. The source's own
 *   watermarks are dropped: the merge decides.
 * - **Purge** ({@link RepartitionPurger}): task p is the only reader of partition p of its repartition topics,
 *   so once a checkpoint of the task has committed (its transaction carried the partition's offset to the
 *   group), the records before that offset are needed by nobody. The purger deletes them (DeleteRecords), as
 *   Kafka Streams does: after a commit, at most once per interval (default {@link REPARTITION_PURGE_INTERVAL_MS}),
 *   in the background, never beyond the committed offset. A failure is logged once and the purge is tried
 *   again after the next interval; it never fails the task. The topic itself keeps its records forever
 *   (retention.ms = -1, lib/scaleout/worker.ts): only this purge removes them, so a stopped task loses nothing.
 * @module
 */
import type { KafkaClient, PartitionOffset, ProducerRecord } from "../../connectors/kafka/client.ts";
import type { Clock } from "../clock.ts";
import { type Element, type Key, MAX_WATERMARK, MIN_WATERMARK, record, type StreamRecord, watermark } from "../element.ts";
import { ConfigError, SinkError } from "../errors.ts";
import { type ChainableOperator, operate } from "../operate.ts";
import type { OperatorContext } from "../operator-context.ts";
import { keyByElements } from "../operators/key-by.ts";
import type { Sink } from "../sink.ts";
import { encodeShuffleKey, encodeShuffleRecord, type ShuffleRecord, shufflePartition, UpstreamWatermarks, type UpstreamWatermarkState } from "./shuffle.ts";
import { TASK_SINK } from "./task-io.ts";

/** What a task gives its shuffles. */
export interface ShuffleRuntime {
  /** This (upstream) task's id, written with its watermarks. */
  readonly taskId: string;
  /** The partition count of every repartition topic (= the input topics'). */
  readonly partitions: number;
  /** The ids of every task that writes into a repartition topic. */
  readonly upstreamTasks: readonly string[];
  /** Sends into the task's open transaction. */
  send(topic: string, records: readonly ProducerRecord[]): Promise<void>;
}

/** A shuffle of a task's pipeline: the keyBy operator that starts it and its repartition topic. */
export interface ShufflePoint {
  readonly operator: string;
  readonly topic: string;
}

/** The least time between two watermark sends of an upstream task (besides the one at every checkpoint). */
export const WATERMARK_EVERY_MS = 200;

/** The value of the record that carries a watermark from the writer to the sink. */
const WATERMARK_MARK: unique symbol = Symbol("gress.shuffle.watermark");

/** Records sent per produce request at most. */
const BATCH = 500;

/**
 * The keyBy half of the upstream side: records get their key (a selector that throws or gives no valid key
 * dead-letters the record, as keyBy does), and each watermark is also sent on as a mark record, in order.
 */
export function shuffleWriter<T>(ctx: OperatorContext, selector: (value: T) => Key): ChainableOperator<Element<T>, Element<T>> {
  const keys = keyByElements(ctx, selector).keys;
  return operate<Element<T>, Element<T>>((downstream) => ({
    records: "consume",
    next(e) {
      if (e.kind === "record") {
        const key = keys.keyOf(e, downstream);
        if (key !== undefined) downstream.next(record(e.value, e.timestamp, key, e.split));
        return;
      }
      if (e.kind === "watermark") downstream.next(record(WATERMARK_MARK as unknown as T, e.timestamp));
      downstream.next(e);
    },
  }));
}

/** The sink of the upstream side (see the module comment). */
export class ShuffleSink<T> implements Sink<T> {
  readonly name: string;
  readonly #topic: string;
  readonly #runtime: () => ShuffleRuntime | undefined;
  readonly #clock: Clock;
  #rt: ShuffleRuntime | undefined;
  #buffer: ProducerRecord[] = [];
  readonly #pending = new Set<Promise<void>>();
  #error: unknown;
  /** Pre-committed: hold writes until the task has committed (or aborted) the checkpoint. */
  #sealed = false;
  #watermark = MIN_WATERMARK;
  #sentWatermark = MIN_WATERMARK;
  #sentAt = Number.NEGATIVE_INFINITY;
  #ended = false;
  readonly #idleTimeoutMs: () => number | undefined;
  /** IDLE sent and nothing from upstream since. */
  #idle = false;
  /** A record or watermark came since the last checkpoint (saves a clock read per record). */
  #seen = false;
  /** Processing time of the last checkpoint at which something had come from upstream (or of the open). */
  #activeAt = 0;

  /**
   * @param idleTimeoutMs the input's idle timeout (read at each checkpoint): undefined, the task never reports IDLE
   */
  constructor(name: string, topic: string, runtime: () => ShuffleRuntime | undefined, clock: Clock, idleTimeoutMs: () => number | undefined = () => undefined) {
    this.name = name;
    // Commits with the task's checkpoint (lib/scaleout/task-io.ts): its records are in the task's transaction.
    Object.defineProperty(this, TASK_SINK, { value: true });
    this.#topic = topic;
    this.#runtime = runtime;
    this.#clock = clock;
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  open(): void {
    const rt = this.#runtime();
    if (rt === undefined) throw new ConfigError(`shuffle sink "${this.name}" runs only in a scale-out task`, [{ path: ["keyBy"], code: "custom", message: "not in a task" }]);
    this.#rt = rt;
    this.#buffer = [];
    this.#pending.clear();
    this.#error = undefined;
    this.#sealed = false;
    this.#watermark = MIN_WATERMARK;
    this.#sentWatermark = MIN_WATERMARK;
    this.#sentAt = Number.NEGATIVE_INFINITY;
    this.#ended = false;
    this.#idle = false;
    this.#seen = false;
    this.#activeAt = this.#clock.now();
  }

  write(value: T, r: StreamRecord<T>): Promise<void> | undefined {
    const rt = this.#rt as ShuffleRuntime;
    this.#seen = true;
    // Back from idle: the watermark goes first, so that every downstream task counts this task again before
    // its records (the merge never goes back: what is behind it now is late, as after any idleness).
    if (this.#idle && !this.#ended) {
      this.#idle = false;
      const mark = (value as unknown) === WATERMARK_MARK;
      if (mark && r.timestamp !== MAX_WATERMARK && r.timestamp > this.#watermark) this.#watermark = r.timestamp;
      this.#sendWatermark(rt, this.#clock.now());
    }
    if ((value as unknown) === WATERMARK_MARK) {
      this.#onWatermark(rt, r.timestamp);
      return this.#buffer.length >= BATCH ? this.#flush() : undefined;
    }
    const key = r.key as Key;
    const keyBytes = encodeShuffleKey(key);
    // Throws a BadRecordError (the record goes to dead letters) for a value that would not cross intact.
    const bytes = encodeShuffleRecord({ kind: "record", key, value, timestamp: r.timestamp });
    this.#buffer.push({ key: keyBytes, value: bytes, partition: shufflePartition(keyBytes, rt.partitions) });
    return this.#buffer.length >= BATCH ? this.#flush() : undefined;
  }

  #onWatermark(rt: ShuffleRuntime, ts: number): void {
    if (this.#ended) return;
    if (ts === MAX_WATERMARK) {
      this.#ended = true;
      this.#toEvery(rt, { kind: "end", task: rt.taskId });
      return;
    }
    if (ts > this.#watermark) this.#watermark = ts;
    const now = this.#clock.now();
    if (this.#watermark > this.#sentWatermark && now - this.#sentAt >= WATERMARK_EVERY_MS) this.#sendWatermark(rt, now);
  }

  #sendWatermark(rt: ShuffleRuntime, now: number): void {
    this.#sentWatermark = this.#watermark;
    this.#sentAt = now;
    this.#toEvery(rt, { kind: "watermark", task: rt.taskId, watermark: this.#watermark });
  }

  /** Appends `r` for every partition: after the records buffered before it, so it follows them in each partition. */
  #toEvery(rt: ShuffleRuntime, r: ShuffleRecord): void {
    const value = encodeShuffleRecord(r);
    for (let p = 0; p < rt.partitions; p++) this.#buffer.push({ key: null, value, partition: p });
  }

  #flush(): Promise<void> | undefined {
    if (this.#sealed || this.#buffer.length === 0) return undefined;
    const records = this.#buffer;
    this.#buffer = [];
    const sent = (this.#rt as ShuffleRuntime).send(this.#topic, records);
    this.#pending.add(sent);
    sent.then(
      () => this.#pending.delete(sent),
      (err: unknown) => {
        this.#pending.delete(sent);
        this.#error ??= err;
      },
    );
    return sent;
  }

  async #drained(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    if (this.#error !== undefined) throw new SinkError(`shuffle to "${this.#topic}" failed: ${this.#error instanceof Error ? this.#error.message : String(this.#error)}`, { cause: this.#error });
  }

  async preCommit(): Promise<unknown> {
    const rt = this.#rt as ShuffleRuntime;
    // Still sealed: the previous checkpoint neither committed nor aborted here (it failed and the job went on).
    // Its transaction is still open, so what was held belongs in this one.
    this.#sealed = false;
    // Every checkpoint carries the task's watermark or IDLE, so a downstream task hears from every upstream one.
    const now = this.#clock.now();
    if (this.#seen) {
      this.#seen = false;
      this.#activeAt = now;
    }
    const idleTimeoutMs = this.#idleTimeoutMs();
    if (!this.#ended && !this.#idle && idleTimeoutMs !== undefined && now - this.#activeAt >= idleTimeoutMs) {
      this.#idle = true;
      this.#toEvery(rt, { kind: "idle", task: rt.taskId });
    }
    if (!this.#ended && !this.#idle && this.#watermark > MIN_WATERMARK) this.#sendWatermark(rt, now);
    this.#flush();
    await this.#drained();
    this.#sealed = true;
    return { task: rt.taskId };
  }

  async commit(): Promise<void> {
    this.#sealed = false;
    this.#flush();
  }

  async abort(): Promise<void> {
    this.#sealed = false;
    this.#flush();
  }

  async flush(): Promise<void> {
    this.#flush();
    await this.#drained();
  }
}

/**
 * The downstream side after the repartition topic's Kafka source: shuffled records with their key, and the
 * merged watermark of the upstream tasks (see the module comment).
 */
export function shuffleReader<T>(ctx: OperatorContext, runtime: () => ShuffleRuntime | undefined): ChainableOperator<Element<ShuffleRecord>, Element<T>> {
  return operate<Element<ShuffleRecord>, Element<T>>((downstream) => {
    const rt = runtime();
    if (rt === undefined) throw new ConfigError(`shuffle reader "${ctx.id}" runs only in a scale-out task`, [{ path: ["keyBy"], code: "custom", message: "not in a task" }]);
    const table = ctx.state.table<UpstreamWatermarkState>(ctx.id, "upstream-watermarks");
    const saved = table.get("merge", "");
    const now = (): number => ctx.clock.now();
    const merge = saved === undefined ? new UpstreamWatermarks(rt.upstreamTasks, undefined, now()) : UpstreamWatermarks.restore(saved, undefined, now());
    const advanced = (w: number | undefined): void => {
      table.put("merge", "", merge.snapshot());
      if (w !== undefined) downstream.next(watermark(w));
    };
    return {
      records: "consume",
      next(e) {
        if (e.kind === "record") {
          const r = e.value;
          if (r.kind === "record") downstream.next(record(r.value as T, r.timestamp, r.key));
          else if (r.kind === "watermark") advanced(merge.onWatermark(r.task, r.watermark, now()));
          else if (r.kind === "idle") advanced(merge.onIdle(r.task, now()));
          else advanced(merge.onEnd(r.task, now()));
          return;
        }
        // The repartition source's own watermarks (at the end of a bounded read) say nothing: the merge decides.
        if (e.kind === "watermark") return;
        downstream.next(e as Element<T>);
      },
    };
  });
}

/** How often a task deletes its consumed repartition records at most, by default (Kafka Streams' `repartition.purge.interval.ms`). */
export const REPARTITION_PURGE_INTERVAL_MS = 30_000;

/** What a {@link RepartitionPurger} works with. */
export interface RepartitionPurgerOptions {
  readonly taskId: string;
  /** The repartition topics the task reads. */
  readonly topics: readonly string[];
  /** The task's partition: the one it reads of each repartition topic. */
  readonly partition: number;
  /** The least time between two purges (the first comes one interval after the purger was made, as in Kafka Streams). */
  readonly intervalMs: number;
  readonly deleteRecords: KafkaClient["deleteRecords"];
  readonly log: (message: string) => void;
  readonly now?: () => number;
}

/**
 * Deletes a task's consumed repartition records (see the module comment). {@link committed} is called after
 * each committed checkpoint with the offsets it sent to the group; it never waits for the deletion.
 */
export class RepartitionPurger {
  readonly #o: RepartitionPurgerOptions;
  readonly #now: () => number;
  readonly #topics: ReadonlySet<string>;
  /** Per repartition topic, the offset the task's latest committed checkpoint sent (the next record to read). */
  readonly #committed = new Map<string, number>();
  /** Per repartition topic, the offset up to which a purge succeeded. */
  readonly #purged = new Map<string, number>();
  #last: number;
  #inFlight: Promise<void> | undefined;
  #failing = false;
  #closed = false;

  constructor(o: RepartitionPurgerOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#topics = new Set(o.topics);
    this.#last = this.#now();
  }

  /** The purge under way, if any (resolves when it settled; it never rejects). */
  get inFlight(): Promise<void> | undefined {
    return this.#inFlight;
  }

  /**
   * A checkpoint of the task committed these offsets (its transaction's sendOffsets). Starts a purge up to them
   * when the interval has passed since the last one and none is under way; returns at once.
   */
  committed(offsets: readonly PartitionOffset[]): void {
    if (this.#closed) return;
    for (const o of offsets) {
      if (o.partition === this.#o.partition && this.#topics.has(o.topic) && o.offset > (this.#committed.get(o.topic) ?? 0)) this.#committed.set(o.topic, o.offset);
    }
    const now = this.#now();
    if (this.#inFlight !== undefined || now - this.#last < this.#o.intervalMs) return;
    const due = [...this.#committed].filter(([topic, offset]) => offset > (this.#purged.get(topic) ?? 0));
    if (due.length === 0) return;
    this.#last = now;
    this.#inFlight = this.#purge(due).finally(() => {
      this.#inFlight = undefined;
    });
  }

  /**
   * No purge starts after this (the task stops), and one under way sends no further request (its failure goes
   * unlogged); wait for {@link inFlight} before the client closes.
   */
  close(): void {
    this.#closed = true;
  }

  async #purge(due: readonly [string, number][]): Promise<void> {
    const partition = this.#o.partition;
    try {
      for (const [topic, offset] of due) {
        if (this.#closed) return;
        await this.#o.deleteRecords(topic, [{ partition, offset }]);
        this.#purged.set(topic, offset);
      }
      if (this.#failing && !this.#closed) this.#o.log(`task ${this.#o.taskId}: deleting consumed repartition records works again`);
      this.#failing = false;
    } catch (err) {
      // Once per run of failures; the records stay until a later purge (after the next interval) succeeds.
      if (!this.#failing && !this.#closed) {
        this.#o.log(
          `task ${this.#o.taskId}: could not delete consumed repartition records (partition ${partition} of ${due.map(([t]) => t).join(", ")}), trying again in ${this.#o.intervalMs} ms: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      this.#failing = true;
    }
  }
}
