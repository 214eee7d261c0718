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
 * Not shown yet: per-task watermark and restore progress (they need the status topic of the design, which the
 * workers do not write yet).
 * @module
 */
import process from "node:process";
import { AssignerProtocol, Kafka, logLevel } from "kafkajs";
import { z } from "zod";
import type { KafkaMessage } from "../connectors/kafka/client.ts";
import { resolveKafkaClient } from "../connectors/kafka/default-client.ts";
import { isUnknownTopicError } from "../connectors/kafka/errors.ts";
import { type ChangelogCheckpoint, decodeChangelogRecord } from "./scaleout/changelog.ts";
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
}

/**
 * How many records from a changelog partition's end are read for its last checkpoint. A checkpoint transaction
 * ends with its checkpoint record, so the last committed record of the partition is one; the window leaves room
 * for a transaction still being written (read_committed stops before it, at the last stable offset).
 */
export const CHECKPOINT_WINDOW = 64;

/**
 * The last checkpoint record of each partition of a job's changelog topic (empty when the topic does not exist).
 * Reads each partition from {@link CHECKPOINT_WINDOW} records before its end, read_committed, until its end or,
 * for a partition whose end is an open transaction's, for at most `waitMs`.
 */
export async function lastCheckpoints(brokers: readonly string[], topic: string, waitMs = 5000): Promise<Map<number, ChangelogCheckpoint>> {
  const client = resolveKafkaClient(brokers, "gress-status");
  const found = new Map<number, ChangelogCheckpoint>();
  try {
    const ends = await client.endOffsets(topic).catch((err: unknown) => {
      if (isUnknownTopicError(err)) return new Map<number, number>();
      throw err;
    });
    const pending = new Set([...ends].filter(([, end]) => end > 0).map(([p]) => p));
    if (pending.size === 0) return found;
    const reader = client.consumer({ groupId: `gress-status-${process.pid}-${Date.now()}`, topics: [topic], fromBeginning: true, readCommitted: true });
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
      for (const m of batch.messages) {
        if (m.key === null) continue;
        try {
          const d = decodeChangelogRecord({ offset: m.offset, key: m.key, value: m.value });
          if (d.kind === "checkpoint") found.set(batch.partition, d.checkpoint);
        } catch {
          // Not a Gress changelog record: not a checkpoint either.
        }
      }
      const next = (batch.messages.at(-1) as KafkaMessage).offset + 1;
      reached(batch.partition, next);
      return next;
    });
    for (const [partition, end] of ends) reader.seek({ topic, partition, offset: Math.max(0, end - CHECKPOINT_WINDOW) });
    sought = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([finished, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
    await reader.stop();
    return found;
  } finally {
    await client.close();
  }
}

/**
 * Reads a scale-out job's group members, their tasks, the lag per input partition and (given the job's name) each
 * task's last checkpoint from the brokers.
 */
export async function readJobStatus(brokers: readonly string[], group: string, job?: string): Promise<JobStatus> {
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
    if (job !== undefined) {
      for (const [p, cp] of await lastCheckpoints(brokers, `gress-${job}-0-changelog`)) checkpoints.push({ task: `0_${p}`, id: cp.id, at: cp.at });
      checkpoints.sort((a, b) => a.task.localeCompare(b.task, undefined, { numeric: true }));
    }
    return { group, state: described?.state ?? "Unknown", members, partitions, checkpoints };
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
  return lines.join("\n");
}

/** `gress status <job>`: prints the status; returns the exit code. */
export async function status(job: string, flags: Record<string, string>): Promise<number> {
  const o = validate(z.object({ brokers: brokersSchema, group: z.string().min(1).optional() }), flags, "status");
  const group = o.group ?? `gress-${job}`;
  let s: JobStatus;
  try {
    s = await readJobStatus(o.brokers, group, job);
  } catch (e) {
    // kafkajs's message alone ("Connection error: ...") does not say what was being read, or from where.
    throw new Error(`gress status: could not read group ${group} from ${o.brokers.join(",")}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  console.log(formatJobStatus(job, s));
  return 0;
}
