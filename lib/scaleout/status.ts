/**
 * The status topic of a scale-out job (docs/SCALE-OUT.md, sections 7 and 12): how each task is doing, as its
 * worker last said, for `gress status` (lib/cli-status.ts) to read from the brokers alone.
 *
 * - **Topic.** `gress-<job>-status`, compacted (one partition, small segments so that compaction keeps it short),
 *   created by each worker at start if missing. Key: the task id. Value: JSON, a {@link TaskStatusRecord}. Written
 *   without a transaction: it is a report, not output, and must not wait for a checkpoint.
 * - **Writers.** Each worker runs one {@link StatusPublisher}: every `intervalMs` (default 1 000), soon after a
 *   task started (its restore ended), and before the worker rejoins its group (its tasks paused and checkpointed:
 *   what a task that moves had done when it was handed over), one record per task it runs; when the worker stops,
 *   a last record per task with state "stopped". A revoked or migrated task gets no "stopped" record: its new
 *   owner's records replace its old ones. A worker killed without warning writes nothing more, so its records
 *   age: a reader marks a record older than its `staleAfterMs` as stale (the worker may be dead) until the
 *   task's new owner writes.
 * - **Readers.** {@link mergeTaskStatus} folds the topic's records, in offset order, into the latest per task; a
 *   record that is not a status record (garbage, another version) is left out with a warning naming its offset,
 *   never an exception. A tombstone (null value) forgets the task.
 * - **Failures.** Publishing is best effort: a failed send or topic creation is logged (once, then again when it
 *   recovers; both are tried again at the next interval) and never fails the worker; a status topic that is not
 *   compacted is used anyway, with a warning.
 *   A worker's stop waits at most 2 s for its last records, and its status producer does not outlive the stop.
 * What a record says of a task: its state (starting: fencing; restoring; running; stopped), its restore (offsets
 * from/at/end of its changelog partition, records applied), its event-time watermark (the lowest watermark of its
 * operators that have one) and per input partition the source's watermark, records in (its input sources) and
 * out (its sinks; repartition topics not counted), its last checkpoint (id, and when this worker saw it complete:
 * within one publish interval).
 * @module
 */
import { hostname } from "node:os";
import process from "node:process";
import { Kafka, logLevel, Partitioners, type Producer } from "kafkajs";
import { z } from "zod";
import type { KafkaClient } from "../../connectors/kafka/client.ts";
import type { RestoreProgress } from "./changelog.ts";
import type { Job } from "../job.ts";
import { settledWithin } from "./wait.ts";

/** The status topic of job `job`. */
export function statusTopic(job: string): string {
  return `gress-${job}-status`;
}

/** The status topic's configuration: compacted, with segments small enough that old records go soon. */
export const STATUS_TOPIC_CONFIG: Readonly<Record<string, string>> = {
  "cleanup.policy": "compact",
  "segment.bytes": String(1024 * 1024),
  "segment.ms": "60000",
  "min.cleanable.dirty.ratio": "0.1",
  "min.compaction.lag.ms": "0",
  "delete.retention.ms": "60000",
};

/** A task's state as its worker reports it. */
export type TaskState = "starting" | "restoring" | "running" | "stopped";

/** One status record: what worker `worker` said of task `task` at `at`. */
export interface TaskStatusRecord {
  readonly v: 1;
  readonly task: string;
  /** The worker: its host name, process id and (once it joined) its group member id. */
  readonly worker: { readonly host: string; readonly pid: number; readonly member?: string | undefined };
  readonly state: TaskState;
  /** Its latest restore from the changelog (absent before it began). */
  readonly restore?: {
    /** The changelog offset it read from, the next one to apply, and the end it reads to. */
    readonly from: number;
    readonly offset: number;
    readonly end: number;
    /** Records applied so far. */
    readonly applied: number;
    readonly done: boolean;
    readonly elapsedMs: number;
  } | undefined;
  /** The task's event-time watermark (epoch ms): the lowest of its operators' watermarks; null before any. */
  readonly watermark: number | null;
  /** The source watermark of each input partition (split name → epoch ms), where the source generates them. */
  readonly splits?: Readonly<Record<string, number>> | undefined;
  readonly recordsIn: number;
  readonly recordsOut: number;
  /** The task's last completed checkpoint: its id, and when (epoch ms) the worker saw it complete. */
  readonly checkpoint?: { readonly id: number; readonly at: number } | undefined;
  /** When the worker wrote the record (epoch ms, the worker's clock). */
  readonly at: number;
}

const finite = z.number().finite();
const count = z.number().int().nonnegative();
const recordSchema: z.ZodType<TaskStatusRecord, unknown> = z.object({
  v: z.literal(1),
  task: z.string().min(1),
  worker: z.object({ host: z.string(), pid: count, member: z.string().optional() }),
  state: z.enum(["starting", "restoring", "running", "stopped"]),
  restore: z.object({ from: count, offset: count, end: count, applied: count, done: z.boolean(), elapsedMs: finite }).optional(),
  watermark: finite.nullable(),
  splits: z.record(z.string(), finite).optional(),
  recordsIn: count,
  recordsOut: count,
  checkpoint: z.object({ id: count, at: finite }).optional(),
  at: finite,
});

/** A status record as the value of its Kafka record (UTF-8 JSON). */
export function encodeTaskStatus(r: TaskStatusRecord): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r));
}

/** What one record of the status topic is. */
export type DecodedStatus = { readonly kind: "status"; readonly record: TaskStatusRecord } | { readonly kind: "tombstone"; readonly task: string } | { readonly kind: "invalid"; readonly reason: string };

/**
 * Decodes one record of the status topic. Never throws: a record that is not a status record of this version,
 * or whose key is not its task, is "invalid" with the reason.
 */
export function decodeTaskStatus(key: Uint8Array | null, value: Uint8Array | null): DecodedStatus {
  const k = key === null ? undefined : new TextDecoder().decode(key);
  if (value === null) return k === undefined || k === "" ? { kind: "invalid", reason: "a tombstone without a key" } : { kind: "tombstone", task: k };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(value));
  } catch (e) {
    return { kind: "invalid", reason: `not UTF-8 JSON (${e instanceof Error ? e.message : String(e)})` };
  }
  const parsed = recordSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { kind: "invalid", reason: `not a status record: ${issue === undefined ? "invalid" : `${issue.path.join(".") || "value"}: ${issue.message}`}` };
  }
  if (k !== parsed.data.task) return { kind: "invalid", reason: `its key ${JSON.stringify(k ?? null)} is not its task "${parsed.data.task}"` };
  return { kind: "status", record: parsed.data };
}

/** A task's latest status record, as a reader sees it at `now`. */
export interface TaskStatusView {
  readonly record: TaskStatusRecord;
  /** now − record.at (ms); negative when the writer's clock is ahead. */
  readonly ageMs: number;
  /** The record is older than the reader's limit and the task was not stopped: its worker may be dead. */
  readonly stale: boolean;
}

/** The result of {@link mergeTaskStatus}: per task its latest record (sorted by partition), and what was left out. */
export interface MergedStatus {
  readonly tasks: readonly TaskStatusView[];
  readonly warnings: readonly string[];
}

/**
 * Folds the status topic's records (in offset order) into the latest per task: a later record replaces an earlier
 * one, as compaction does; a tombstone forgets the task; invalid records are left out, each with a warning that
 * names the topic and offset. A record older than `staleAfterMs` at `now` is stale, unless it says "stopped".
 */
export function mergeTaskStatus(
  topic: string,
  records: Iterable<{ readonly offset: number; readonly key: Uint8Array | null; readonly value: Uint8Array | null }>,
  now: number,
  staleAfterMs: number,
): MergedStatus {
  const latest = new Map<string, TaskStatusRecord>();
  const warnings: string[] = [];
  for (const m of records) {
    const d = decodeTaskStatus(m.key, m.value);
    if (d.kind === "status") latest.set(d.record.task, d.record);
    else if (d.kind === "tombstone") latest.delete(d.task);
    else warnings.push(`${topic} offset ${m.offset}: record left out, ${d.reason}`);
  }
  const tasks = [...latest.values()]
    .sort((a, b) => a.task.localeCompare(b.task, undefined, { numeric: true }))
    .map((record) => ({ record, ageMs: now - record.at, stale: record.state !== "stopped" && now - record.at > staleAfterMs }));
  return { tasks, warnings };
}

/** What a task shows the publisher (lib/scaleout/task.ts, `Task.statusView`). */
export interface TaskStatusSource {
  readonly id: string;
  readonly statusView: {
    readonly state: TaskState;
    readonly restore: { readonly progress: RestoreProgress; readonly end: number } | undefined;
    readonly job: StatusJobView | undefined;
  };
}

/** What the status reads of a task's job (a `TaskJob`, lib/scaleout/task.ts; named structurally, as task.ts imports this module). */
export type StatusJobView = Pick<Job, "metrics" | "sources" | "checkpoints"> & { readonly shuffles: readonly { readonly operator: string }[] };

/** The worker a record names. */
export interface StatusWorker {
  readonly host: string;
  readonly pid: number;
  readonly member?: string | undefined;
}

/**
 * The status record of a task now. `seen` remembers, per task, the last checkpoint id and when it was first seen
 * complete (the Job's checkpoint statistics have no time).
 */
export function taskStatus(task: TaskStatusSource, worker: StatusWorker, now: number, seen: Map<string, { id: number; at: number }>): TaskStatusRecord {
  const { state, restore, job } = task.statusView;
  let watermark: number | null = null;
  const splits: Record<string, number> = {};
  let recordsIn = 0;
  let recordsOut = 0;
  let checkpoint: { id: number; at: number } | undefined;
  if (job !== undefined) {
    const m = job.metrics;
    for (const o of m.operators()) {
      if (Number.isFinite(o.watermark) && (watermark === null || o.watermark < watermark)) watermark = o.watermark;
      for (const [split, g] of o.splits) {
        const w = g.current();
        if (Number.isFinite(w)) splits[split] = w;
      }
    }
    // Repartition topics are the task's own plumbing: neither its input nor its output.
    const shuffles = new Set(job.shuffles.map((s) => `${s.operator}-repartition`));
    for (const s of job.sources) if (!shuffles.has(s.name)) recordsIn += m.source(s.name).emitted;
    for (const s of m.sinks()) if (!shuffles.has(s.sink)) recordsOut += s.written;
    const last = job.checkpoints?.history.at(-1);
    if (last !== undefined) {
      const before = seen.get(task.id);
      checkpoint = before?.id === last.id ? before : { id: last.id, at: now };
      seen.set(task.id, checkpoint);
    }
  }
  const p = restore?.progress;
  return {
    v: 1,
    task: task.id,
    worker: worker.member === undefined ? { host: worker.host, pid: worker.pid } : { host: worker.host, pid: worker.pid, member: worker.member },
    state,
    ...(p === undefined || restore === undefined ? {} : { restore: { from: p.from, offset: p.offset, end: restore.end, applied: p.applied, done: p.done, elapsedMs: Math.round(p.elapsedMs) } }),
    watermark,
    ...(Object.keys(splits).length === 0 ? {} : { splits }),
    recordsIn,
    recordsOut,
    ...(checkpoint === undefined ? {} : { checkpoint }),
    at: now,
  };
}

/** Where a publisher's records go. */
export interface StatusSender {
  send(topic: string, records: readonly { key: string; value: Uint8Array }[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * How long {@link kafkajsStatusSender}'s close waits for a connect under way (StatusPublisher.stop has waited for
 * the sends already); a connect that completes later disconnects itself.
 */
const CLOSE_CONNECT_WAIT_MS = 500;

/**
 * A plain (not transactional, not idempotent) kafkajs producer for the status topic, connected at the first
 * send. Closed, it refuses sends and connects no more: a connect still under way at close (the broker slow or
 * away) disconnects as soon as it completes, so no producer outlives the worker that closed it.
 */
export function kafkajsStatusSender(brokers: readonly string[], clientId: string): StatusSender {
  let connecting: Promise<Producer> | undefined;
  let closed = false;
  const connected = (): Promise<Producer> => {
    if (closed) return Promise.reject(new Error(`status sender ${clientId} is closed`));
    connecting ??= (async () => {
      const p = new Kafka({ brokers: [...brokers], clientId, logLevel: logLevel.NOTHING, retry: { retries: 2 } }).producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
      await p.connect();
      if (closed) {
        // Closed while this connected (close() waits only briefly for a connect): undo it, send nothing.
        await p.disconnect().catch(() => undefined);
        throw new Error(`status sender ${clientId} is closed`);
      }
      return p;
    })().catch((e: unknown) => {
      if (!closed) connecting = undefined;
      throw e;
    });
    return connecting;
  };
  return {
    async send(topic, records) {
      await (await connected()).send({ topic, acks: 1, messages: records.map((r) => ({ key: r.key, value: Buffer.from(r.value) })) });
    },
    async close() {
      if (closed) return;
      closed = true;
      const c = connecting;
      if (c === undefined) return;
      // A connect under way disconnects itself when it completes (above); one done already is disconnected here.
      if (!(await settledWithin(c, CLOSE_CONNECT_WAIT_MS))) return;
      await c.then(
        (p) => p.disconnect().catch(() => undefined),
        () => undefined,
      );
    },
  };
}

/** Options of {@link StatusPublisher}. */
export interface StatusPublisherOptions {
  readonly job: string;
  /** For creating and checking the topic. */
  readonly client: KafkaClient;
  /** Undefined: nothing is published (a worker given a KafkaClient has no brokers for a plain producer); {@link StatusPublisher.current} still works. */
  readonly sender: StatusSender | undefined;
  /** The tasks the worker runs now. */
  readonly tasks: () => Iterable<TaskStatusSource>;
  /** The worker's group member id, once it has one. */
  readonly member: () => string | undefined;
  readonly log: (message: string) => void;
  /** Default 1 000. */
  readonly intervalMs?: number;
  /** Default Date.now. */
  readonly now?: () => number;
}

/** How long a stopping publisher waits for its last records to be sent. */
const STOP_WAIT_MS = 2000;

/** A worker's status writer (see the module header). Never throws: failures are logged. */
export class StatusPublisher {
  readonly #o: StatusPublisherOptions;
  readonly #topic: string;
  readonly #host = hostname();
  readonly #seen = new Map<string, { id: number; at: number }>();
  /** The last record of each task this worker reported, for its "stopped" record. */
  readonly #last = new Map<string, TaskStatusRecord>();
  #ready: Promise<boolean> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #soon: ReturnType<typeof setTimeout> | undefined;
  #sending: Promise<void> = Promise.resolve();
  #failing = false;
  /** The last creation or check of the topic failed (logged once until it works). */
  #topicFailing = false;
  #stopped = false;

  constructor(o: StatusPublisherOptions) {
    this.#o = o;
    this.#topic = statusTopic(o.job);
  }

  /** Creates (or checks) the topic, then publishes every interval. */
  start(): void {
    if (this.#o.sender === undefined) return;
    this.#ready ??= this.#prepare();
    this.#timer = setInterval(() => this.publish(), this.#o.intervalMs ?? 1000);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  async #prepare(): Promise<boolean> {
    try {
      await this.#o.client.createTopic(this.#topic, 1, { replicationFactor: -1, config: STATUS_TOPIC_CONFIG });
      const policy = (await this.#o.client.topicConfig(this.#topic)).get("cleanup.policy") ?? "";
      if (!policy.split(",").includes("compact")) {
        this.#o.log(`status topic ${this.#topic} has cleanup.policy=${policy || "(unknown)"}, not compact: it keeps every status record until retention, and gress status reads them all (set cleanup.policy=compact)`);
      }
      if (this.#topicFailing) this.#o.log(`status topic ${this.#topic}: created or checked, publishing`);
      this.#topicFailing = false;
      return true;
    } catch (e) {
      if (!this.#topicFailing) {
        this.#o.log(`status topic ${this.#topic} could not be created or checked, no task status is published until it can (gress status shows none), trying again every interval: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.#topicFailing = true;
      return false;
    }
  }

  /** Publishes soon (a task started or its restore ended), once for several calls close together. */
  publishSoon(): void {
    if (this.#soon !== undefined || this.#stopped) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.publish();
    }, 50);
  }

  /** Each running task's status record now (what the next publish sends; for /metrics). */
  current(): TaskStatusRecord[] {
    const now = (this.#o.now ?? Date.now)();
    const worker = { host: this.#host, pid: process.pid, member: this.#o.member() };
    return [...this.#o.tasks()].map((t) => taskStatus(t, worker, now, this.#seen));
  }

  /** Publishes one record per task now (after the one under way). */
  publish(): void {
    if (this.#stopped || this.#o.sender === undefined) return;
    this.#enqueue(this.current());
  }

  /**
   * Publishes one record per task now and waits, at most `withinMs`, until it was sent (or failed: logged as
   * any). True when it went out in time. Before the worker rejoins its group, while its tasks are paused: a task
   * it gives up is then reported as it was handed over (what it read, its watermark, its last checkpoint), and
   * that record precedes its next owner's in the topic. Without it, progress made since the last interval's
   * record was never reported, as a revoked task gets no record of its own (see the module header).
   */
  async publishAndWait(withinMs: number): Promise<boolean> {
    if (this.#stopped || this.#o.sender === undefined) return false;
    this.#enqueue(this.current());
    return settledWithin(this.#sending, withinMs);
  }

  #enqueue(records: readonly TaskStatusRecord[]): void {
    for (const r of records) this.#last.set(r.task, r);
    if (records.length === 0) return;
    this.#sending = this.#sending.then(async () => {
      if (!(await (this.#ready ?? Promise.resolve(false)))) {
        // The topic could not be created or checked (the brokers away at start): again for the next records.
        if (!this.#stopped && this.#ready !== undefined) this.#ready = this.#prepare();
        return;
      }
      try {
        await this.#o.sender?.send(
          this.#topic,
          records.map((r) => ({ key: r.task, value: encodeTaskStatus(r) })),
        );
        if (this.#failing) this.#o.log(`status topic ${this.#topic}: publishing again`);
        this.#failing = false;
      } catch (e) {
        if (!this.#failing) this.#o.log(`status topic ${this.#topic}: publishing failed, retrying every interval: ${e instanceof Error ? e.message : String(e)}`);
        this.#failing = true;
      }
    });
  }

  /** Stops publishing: a last "stopped" record for each of `tasks` (the worker stopped them), then closes the sender. */
  async stop(tasks: readonly string[]): Promise<void> {
    if (this.#stopped) return;
    clearInterval(this.#timer);
    clearTimeout(this.#soon);
    const now = (this.#o.now ?? Date.now)();
    const stopped = tasks.flatMap((id) => {
      const last = this.#last.get(id);
      return last === undefined ? [] : [{ ...last, state: "stopped" as const, at: now }];
    });
    if (this.#o.sender !== undefined) this.#enqueue(stopped);
    this.#stopped = true;
    // Bounded: a worker's stop must not wait on a report (kafkajs retries a send for up to its request timeout).
    const sent = await settledWithin(this.#sending, STOP_WAIT_MS);
    if (!sent) this.#o.log(`status topic ${this.#topic}: the last status records were not sent within ${STOP_WAIT_MS} ms; stopping without them`);
    await this.#o.sender?.close();
  }
}

const label = (v: string): string => v.replace(/["\\\n]/g, "_");

/**
 * The tasks' status as Prometheus gauges (each line labelled with `extraLabels`, e.g. `job="x",worker="0"`, and
 * the task): `gress_task_state` (1 for the task's state), `gress_task_watermark_ms` (absent before a watermark),
 * `gress_task_split_watermark_ms` (per input partition), `gress_task_records_in`/`_out`,
 * `gress_task_restore_offset` / `gress_task_restore_end_offset` (of its changelog partition) and
 * `gress_task_last_checkpoint_id`.
 */
export function statusMetrics(records: readonly TaskStatusRecord[], extraLabels = ""): string[] {
  const lines = [
    "# HELP gress_task_state 1 for the state a task is in (starting, restoring, running).",
    "# TYPE gress_task_state gauge",
    "# HELP gress_task_watermark_ms The task's event-time watermark: the lowest of its operators' (epoch ms).",
    "# TYPE gress_task_watermark_ms gauge",
    "# HELP gress_task_split_watermark_ms The source watermark of one input partition of the task (epoch ms).",
    "# TYPE gress_task_split_watermark_ms gauge",
    "# HELP gress_task_records_in Records the task's input sources emitted since it started here.",
    "# TYPE gress_task_records_in gauge",
    "# HELP gress_task_records_out Records the task's sinks wrote since it started here.",
    "# TYPE gress_task_records_out gauge",
    "# HELP gress_task_restore_offset The next changelog offset the task's restore applies (its end once done).",
    "# TYPE gress_task_restore_offset gauge",
    "# HELP gress_task_restore_end_offset The changelog end offset the task's restore reads to.",
    "# TYPE gress_task_restore_end_offset gauge",
    "# HELP gress_task_last_checkpoint_id The task's last completed checkpoint.",
    "# TYPE gress_task_last_checkpoint_id gauge",
  ];
  for (const r of records) {
    const l = `${extraLabels === "" ? "" : `${extraLabels},`}task="${label(r.task)}"`;
    lines.push(`gress_task_state{${l},state="${r.state}"} 1`);
    if (r.watermark !== null) lines.push(`gress_task_watermark_ms{${l}} ${r.watermark}`);
    for (const [split, w] of Object.entries(r.splits ?? {})) lines.push(`gress_task_split_watermark_ms{${l},split="${label(split)}"} ${w}`);
    lines.push(`gress_task_records_in{${l}} ${r.recordsIn}`, `gress_task_records_out{${l}} ${r.recordsOut}`);
    if (r.restore !== undefined) lines.push(`gress_task_restore_offset{${l}} ${r.restore.offset}`, `gress_task_restore_end_offset{${l}} ${r.restore.end}`);
    if (r.checkpoint !== undefined) lines.push(`gress_task_last_checkpoint_id{${l}} ${r.checkpoint.id}`);
  }
  return lines;
}
