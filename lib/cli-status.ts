/**
 * `gress status <job> --brokers B [--group G]`: a scale-out job as Kafka sees it (docs/SCALE-OUT.md, section 7),
 * read only from the brokers, so it works from any machine and whether or not a worker runs there.
 *
 * - **Members**: DescribeGroups of the job's group (`gress-<job>` unless `--group`): the group state, and per
 *   member its client id, host and the tasks of its assignment (task `0_p` = partition p of the input topics).
 * - **Lag**: per input partition (the topics the members subscribe to), the group's committed offset (a task
 *   commits its input offsets in its checkpoint transaction) against the partition's end offset.
 * Not shown yet: per-task watermark, last checkpoint and restore progress (they need the status topic of the
 * design, which the workers do not write yet).
 * @module
 */
import { AssignerProtocol, Kafka, logLevel } from "kafkajs";
import { z } from "zod";
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

/** What `gress status` reports. */
export interface JobStatus {
  readonly group: string;
  readonly state: string;
  readonly members: readonly StatusMember[];
  readonly partitions: readonly StatusPartition[];
}

/** Reads a scale-out job's group members, their tasks and the lag per input partition from the brokers. */
export async function readJobStatus(brokers: readonly string[], group: string): Promise<JobStatus> {
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
    return { group, state: described?.state ?? "Unknown", members, partitions };
  } finally {
    await admin.disconnect();
  }
}

/** The status as text: the group line, a line per member, a table of partitions with their lag. */
export function formatJobStatus(job: string, s: JobStatus): string {
  const lines = [`job "${job}": group ${s.group}, ${s.state}, ${s.members.length} member${s.members.length === 1 ? "" : "s"}`];
  for (const m of s.members) lines.push(`  member ${m.clientId} (${m.host}) ${m.memberId}: tasks ${m.tasks.length === 0 ? "none" : m.tasks.join(", ")}`);
  if (s.partitions.length === 0) {
    lines.push("  no committed input offsets (the job has not checkpointed yet, or the group does not exist)");
    return lines.join("\n");
  }
  const rows = [["task", "topic", "partition", "committed", "end", "lag"], ...s.partitions.map((p) => [p.task, p.topic, String(p.partition), p.committed === undefined ? "-" : String(p.committed), String(p.end), String(p.lag)])];
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
    s = await readJobStatus(o.brokers, group);
  } catch (e) {
    // kafkajs's message alone ("Connection error: ...") does not say what was being read, or from where.
    throw new Error(`gress status: could not read group ${group} from ${o.brokers.join(",")}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  console.log(formatJobStatus(job, s));
  return 0;
}
