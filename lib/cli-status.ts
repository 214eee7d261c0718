/**
 * `gress status <job> --brokers B [--group G]`: a scale-out job as Kafka sees it (docs/SCALE-OUT.md, section 7),
 * read only from the brokers, so it works from any machine and whether or not a worker runs there.
 *
 * - **Members**: DescribeGroups of the job's group (`gress-<job>` unless `--group`): the group state, and per
 *   member its client id, host and the tasks of its assignment (task `0_p` = partition p of the input topics).
 * - **Lag**: per input partition (the topics the members subscribe to), the group's committed offset (a task
 *   commits its input offsets in its checkpoint transaction) against the partition's end offset.
 * - **Last checkpoint** per task: the newest checkpoint record in the task's changelog partition
 *   (`gress-<job>-0-changelog`, read_committed, the last {@link CHECKPOINT_WINDOW} records of each partition):
 *   its id and age. A task whose window holds no checkpoint record (none yet) shows "-".
 * - **Tasks**: the status topic `gress-<job>-status` (lib/scaleout/status.ts), read to its end: per task its worker
 *   (host, pid), state, event-time watermark (ISO time, and how far it trailed the worker's clock when reported),
 *   restore progress (changelog records restored of those to restore), records in/out and last checkpoint, and
 *   how old the record is. A record older than `--stale-after` seconds (default 10, the default session timeout)
 *   is marked STALE: its worker may be dead, and what it says is not current (until the task's next owner writes).
 *   Records that are not status records, and a status topic that is not compacted, give warnings, not a failure.
 * @module
 */
import process from "node:process";
import { AssignerProtocol, Kafka, logLevel } from "kafkajs";
import { z } from "zod";
import type { KafkaMessage } from "../connectors/kafka/client.ts";
import { resolveKafkaClient } from "../connectors/kafka/default-client.ts";
import { isUnknownTopicError } from "../connectors/kafka/errors.ts";
import type { KafkaClient } from "../connectors/kafka/client.ts";
import { type ChangelogCheckpoint, decodeChangelogRecord } from "./scaleout/changelog.ts";
import { mergeTaskStatus, statusTopic, type TaskStatusView } from "./scaleout/status.ts";
import { brokersSchema } from "./cli-options.ts";
import { validate } from "./config.ts";

/** One member of the job's group. */
export interface StatusMember {
  readonly memberId: string;
  readonly clientId: string;
  readonly host: string;
  /** Task ids, sorted by partition. */
  readonly tasks: readonly string[];
}

/** One input partition: the committed offset (undefined when none), the end offset, and the lag. */
export interface StatusPartition {
  readonly task: string;
  readonly topic: string;
  readonly partition: number;
  readonly committed: number | undefined;
  readonly end: number;
  readonly lag: number;
}

/** A task's last committed checkpoint, from its changelog partition. */
export interface StatusCheckpoint {
  readonly task: string;
  readonly id: number;
  /** When it was taken (epoch ms, the worker's clock). */
  readonly at: number;
}

/** What `gress status` reports. */
export interface JobStatus {
  readonly group: string;
  readonly state: string;
  readonly members: readonly StatusMember[];
  readonly partitions: readonly StatusPartition[];
  /** Per task with a checkpoint in its changelog's last records, sorted by partition. */
  readonly checkpoints: readonly StatusCheckpoint[];
  /** Per task with a record in the status topic, its latest (sorted by partition); empty without a job name. */
  readonly tasks: readonly TaskStatusView[];
  /** After how long (ms) a status record was taken as stale. */
  readonly staleAfterMs: number;
  /** What could not be read as expected (garbage records, a status topic that is not compacted). */
  readonly warnings: readonly string[];
}

/** Options of {@link readJobStatus}. */
export interface ReadStatusOptions {
  /** A status record older than this is stale. Default 10 000. */
  readonly staleAfterMs?: number;
  /** "Now" for the staleness (default Date.now() once the status topic has been read). */
  readonly now?: () => number;
}

/**
 * How many records from a changelog partition's end are read for its last checkpoint. A checkpoint transaction
 * ends with its checkpoint record, so the last committed record of the partition is one; the window leaves room
 * for a transaction still being written (read_committed stops before it, at the last stable offset).
 */
export const CHECKPOINT_WINDOW = 64;

/**
 * Reads every partition of `topic` from `from(partition, end)` to the end offset it had when the read began (or
 * for at most `waitMs`: read_committed stops before an open transaction), giving each record to `each`. Nothing
 * when the topic does not exist. Through a consumer of a throwaway group of its own that commits nothing (the
 * KafkaClient reads only through group consumers).
 */
async function readToEnd(
  client: KafkaClient,
  topic: string,
  options: { readonly from: (partition: number, end: number) => number; readonly readCommitted: boolean; readonly waitMs: number },
  each: (partition: number, m: KafkaMessage) => void,
): Promise<void> {
  const ends = await client.endOffsets(topic).catch((err: unknown) => {
    if (isUnknownTopicError(err)) return new Map<number, number>();
    throw err;
  });
  const pending = new Set([...ends].filter(([p, end]) => end > options.from(p, end)).map(([p]) => p));
  if (pending.size === 0) return;
  const reader = client.consumer({ groupId: `gress-status-${process.pid}-${Date.now()}`, topics: [topic], fromBeginning: true, readCommitted: options.readCommitted });
    let done!: () => void;
    const finished = new Promise<void>((r) => {
      done = r;
    });
    const reached = (partition: number, next: number): void => {
      if (next >= (ends.get(partition) ?? 0) && pending.delete(partition) && pending.size === 0) done();
    };
    reader.onPositionAdvanced((t) => reached(t.partition, t.offset));
    let sought = false;
    await reader.start(async (batch) => {
      const first = batch.messages[0] as KafkaMessage;
      if (!sought) return first.offset;
      const end = ends.get(batch.partition) ?? 0;
      for (const m of batch.messages) if (m.offset < end) each(batch.partition, m);
      const next = (batch.messages.at(-1) as KafkaMessage).offset + 1;
      reached(batch.partition, next);
      return next;
    });
    for (const [partition, end] of ends) reader.seek({ topic, partition, offset: options.from(partition, end) });
    sought = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([finished, new Promise<void>((r) => (timer = setTimeout(r, options.waitMs)))]);
    clearTimeout(timer);
    await reader.stop();
}

/**
 * The last checkpoint record of each partition of a job's changelog topic (empty when the topic does not exist).
 * Reads each partition from {@link CHECKPOINT_WINDOW} records before its end, read_committed, until its end or,
 * for a partition whose end is an open transaction's, for at most `waitMs`.
 */
export async function lastCheckpoints(brokers: readonly string[], topic: string, waitMs = 5000): Promise<Map<number, ChangelogCheckpoint>> {
  const client = resolveKafkaClient(brokers, "gress-status");
  const found = new Map<number, ChangelogCheckpoint>();
  try {
    await readToEnd(client, topic, { from: (_, end) => Math.max(0, end - CHECKPOINT_WINDOW), readCommitted: true, waitMs }, (partition, m) => {
      if (m.key === null) return;
      try {
        const d = decodeChangelogRecord({ offset: m.offset, key: m.key, value: m.value });
        if (d.kind === "checkpoint") found.set(partition, d.checkpoint);
      } catch {
        // Not a Gress changelog record: not a checkpoint either.
      }
    });
    return found;
  } finally {
    await client.close();
  }
}

/**
 * Each task's latest record in job `job`'s status topic (lib/scaleout/status.ts), read from its start to its end
 * (at most `waitMs`), with the staleness at `now()` taken after the read. Nothing when the topic does not
 * exist. Records that are not status records are left out with a warning each (at most 5 listed), and so is a
 * topic that is not compacted.
 */
export async function readTaskStatus(brokers: readonly string[], job: string, options: ReadStatusOptions & { readonly waitMs?: number } = {}): Promise<{ tasks: TaskStatusView[]; warnings: string[] }> {
  const topic = statusTopic(job);
  const client = resolveKafkaClient(brokers, "gress-status");
  try {
    const records: { offset: number; key: Uint8Array | null; value: Uint8Array | null }[] = [];
    await readToEnd(client, topic, { from: () => 0, readCommitted: false, waitMs: options.waitMs ?? 5000 }, (_, m) => void records.push({ offset: m.offset, key: m.key, value: m.value }));
    if (records.length === 0) return { tasks: [], warnings: [] };
    const merged = mergeTaskStatus(topic, records, (options.now ?? Date.now)(), options.staleAfterMs ?? 10_000);
    const warnings = merged.warnings.length > 5 ? [...merged.warnings.slice(0, 5), `${topic}: ${merged.warnings.length - 5} more records left out`] : [...merged.warnings];
    const policy = await client
      .topicConfig(topic)
      .then((c) => c.get("cleanup.policy"))
      .catch(() => undefined);
    if (policy !== undefined && !policy.split(",").includes("compact")) warnings.push(`${topic} has cleanup.policy=${policy}, not compact: every status record is kept (and read) until retention; set cleanup.policy=compact`);
    return { tasks: [...merged.tasks], warnings };
  } finally {
    await client.close();
  }
}

/**
 * Reads a scale-out job's group members, their tasks, the lag per input partition and (given the job's name) each
 * task's last checkpoint from the brokers.
 */
export async function readJobStatus(brokers: readonly string[], group: string, job?: string, options: ReadStatusOptions = {}): Promise<JobStatus> {
  const admin = new Kafka({ brokers: [...brokers], clientId: `gress-status`, logLevel: logLevel.NOTHING, retry: { retries: 2 } }).admin();
  await admin.connect();
  try {
    const described = (await admin.describeGroups([group])).groups[0];
    const topics = new Set<string>();
    const members: StatusMember[] = [];
    for (const m of described?.members ?? []) {
      const meta = m.memberMetadata.length > 0 ? AssignerProtocol.MemberMetadata.decode(m.memberMetadata) : null;
      for (const t of meta?.topics ?? []) topics.add(t);
      const assignment = m.memberAssignment.length > 0 ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment) : null;
      const partitions = new Set<number>();
      for (const [topic, ps] of Object.entries(assignment?.assignment ?? {})) {
        topics.add(topic);
        for (const p of ps) partitions.add(p);
      }
      members.push({ memberId: m.memberId, clientId: m.clientId, host: m.clientHost, tasks: [...partitions].sort((a, b) => a - b).map((p) => `0_${p}`) });
    }
    // With no member left, the committed offsets still say which topics the job reads.
    const committed = await admin.fetchOffsets({ groupId: group, ...(topics.size > 0 ? { topics: [...topics] } : {}) });
    const partitions: StatusPartition[] = [];
    for (const t of committed) {
      const ends = new Map((await admin.fetchTopicOffsets(t.topic)).map((e) => [e.partition, Number(e.high)] as const));
      for (const p of t.partitions) {
        const end = ends.get(p.partition) ?? 0;
        const at = Number(p.offset) >= 0 ? Number(p.offset) : undefined;
        partitions.push({ task: `0_${p.partition}`, topic: t.topic, partition: p.partition, committed: at, end, lag: Math.max(0, end - (at ?? 0)) });
      }
    }
    partitions.sort((a, b) => a.partition - b.partition || a.topic.localeCompare(b.topic));
    members.sort((a, b) => (a.tasks[0] ?? "").localeCompare(b.tasks[0] ?? "", undefined, { numeric: true }) || a.memberId.localeCompare(b.memberId));
    const checkpoints: StatusCheckpoint[] = [];
    const staleAfterMs = options.staleAfterMs ?? 10_000;
    let tasks: TaskStatusView[] = [];
    const warnings: string[] = [];
    if (job !== undefined) {
      for (const [p, cp] of await lastCheckpoints(brokers, `gress-${job}-0-changelog`)) checkpoints.push({ task: `0_${p}`, id: cp.id, at: cp.at });
      checkpoints.sort((a, b) => a.task.localeCompare(b.task, undefined, { numeric: true }));
      const s = await readTaskStatus(brokers, job, { ...options, staleAfterMs });
      tasks = s.tasks;
      warnings.push(...s.warnings);
    }
    return { group, state: described?.state ?? "Unknown", members, partitions, checkpoints, tasks, staleAfterMs, warnings };
  } finally {
    await admin.disconnect();
  }
}

/** The status as text: the group line, a line per member, a table of partitions with their lag and their task's last checkpoint. */
export function formatJobStatus(job: string, s: JobStatus, now: number = Date.now()): string {
  const lines = [`job "${job}": group ${s.group}, ${s.state}, ${s.members.length} member${s.members.length === 1 ? "" : "s"}`];
  for (const m of s.members) lines.push(`  member ${m.clientId} (${m.host}) ${m.memberId}: tasks ${m.tasks.length === 0 ? "none" : m.tasks.join(", ")}`);
  if (s.partitions.length === 0) {
    lines.push("  no committed input offsets (the job has not checkpointed yet, or the group does not exist)");
    lines.push(...formatTasks(s, now));
    return lines.join("\n");
  }
  const checkpoint = new Map(s.checkpoints.map((c) => [c.task, c]));
  const age = (at: number): string => `${Math.max(0, (now - at) / 1000).toFixed(1)} s ago`;
  const rows = [
    ["task", "topic", "partition", "committed", "end", "lag", "last checkpoint"],
    ...s.partitions.map((p) => {
      const c = checkpoint.get(p.task);
      return [p.task, p.topic, String(p.partition), p.committed === undefined ? "-" : String(p.committed), String(p.end), String(p.lag), c === undefined ? "-" : `${c.id} (${age(c.at)})`];
    }),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) lines.push(`  ${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}`.trimEnd());
  lines.push(`  total lag: ${s.partitions.reduce((n, p) => n + p.lag, 0)}`);
  lines.push(...formatTasks(s, now));
  return lines.join("\n");
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** A restore as "done: 120 records in 0.3 s" or "12/40 (30%)" (changelog offsets restored of those to restore). */
function formatRestore(r: NonNullable<TaskStatusView["record"]["restore"]>): string {
  if (r.done) return `done: ${r.applied} records in ${seconds(r.elapsedMs)}`;
  const total = Math.max(0, r.end - r.from);
  const at = Math.min(total, Math.max(0, r.offset - r.from));
  return `${at}/${total} (${total === 0 ? 100 : Math.floor((100 * at) / total)}%)`;
}

/** The task lines of the status topic, with the warnings. */
function formatTasks(s: JobStatus, now: number): string[] {
  const lines: string[] = [];
  if (s.tasks.length === 0) lines.push("  tasks: no status records (no worker has written one yet, or the job does not exist)");
  else {
    lines.push(`  tasks, as their workers last reported (stale: older than ${seconds(s.staleAfterMs)}, the worker may be dead):`);
    const rows = [
      ["task", "worker", "state", "watermark", "watermark lag", "restore", "in", "out", "checkpoint", "reported"],
      ...s.tasks.map(({ record: r, stale, ageMs }) => [
        r.task,
        `${r.worker.host}:${r.worker.pid}`,
        r.state,
        r.watermark === null ? "-" : new Date(r.watermark).toISOString(),
        // How far event time trailed the worker's clock when it reported.
        r.watermark === null ? "-" : seconds(r.at - r.watermark),
        r.restore === undefined ? "-" : formatRestore(r.restore),
        String(r.recordsIn),
        String(r.recordsOut),
        r.checkpoint === undefined ? "-" : `${r.checkpoint.id} (${seconds(Math.max(0, now - r.checkpoint.at))} ago)`,
        `${seconds(Math.max(0, ageMs))} ago${stale ? " STALE" : ""}`,
      ]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) lines.push(`    ${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}`.trimEnd());
  }
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  return lines;
}

/** `gress status <job>`: prints the status; returns the exit code. */
export async function status(job: string, flags: Record<string, string>): Promise<number> {
  const o = validate(z.object({ brokers: brokersSchema, group: z.string().min(1).optional(), "stale-after": z.coerce.number().positive().default(10) }), flags, "status");
  const group = o.group ?? `gress-${job}`;
  let s: JobStatus;
  try {
    s = await readJobStatus(o.brokers, group, job, { staleAfterMs: o["stale-after"] * 1000 });
  } catch (e) {
    // kafkajs's message alone ("Connection error: ...") does not say what was being read, or from where.
    throw new Error(`gress status: could not read group ${group} from ${o.brokers.join(",")}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  console.log(formatJobStatus(job, s));
  return 0;
}
