/**
 * The task assignor of a scale-out job: which worker (group member) runs which task (docs/SCALE-OUT.md,
 * section 3). Pure and deterministic: the group leader runs it on what the members sent in their
 * subscriptions, and any leader computes the same assignment from the same input.
 *
 * Contract (for the worker runtime):
 * - **Subscription user data** ({@link encodeSubscription} / {@link decodeSubscription}): msgpack
 *   `{ v: 1, topology, tasks: { [taskId]: changelogOffset }, owned?: [taskId] }`: the member's topology
 *   fingerprint, the local state copies it holds (task → the changelog offset of the copy), and the tasks it
 *   runs now (the leader has no memory of earlier assignments: a new leader knows them only from here).
 * - **Tasks** ({@link tasksFor}): task `s_p` is partition p of every input topic of sub-topology s; all of them
 *   must have the same partition count (a ConfigError naming the topics and counts otherwise).
 * - **{@link assignTasks}** gives each member whole tasks (every topic-partition of a task to one member), task
 *   counts that differ by at most one between members, and:
 *   1. *sticky*: a member keeps the tasks it runs, as far as balance allows (members that run more get the
 *      "+1" places first); a task claimed by two members (a zombie) stays with the one whose copy is newer;
 *   2. *local state*: a task that moves goes to the member, among those with room, whose local copy of it has
 *      the highest changelog offset (the shortest restore);
 *   3. *deterministic*: the same input in any member order gives the same output.
 *   A member with another topology fingerprint, or without Gress user data, is a ConfigError naming it.
 *   In the Kafka client's `GroupAssignor.assign(members, partitions)`: build the tasks with
 *   {@link tasksFor}, then return `assignTasks({ topology, members, tasks }).partitions`.
 * @module
 */
import { Packr, Unpackr } from "msgpackr";
import { ConfigError } from "../errors.ts";
import { checkCopartitioned } from "./config-checks.ts";

/** A topic and a partition of it (the same shape as the Kafka client's `TopicPartition`). */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/** What a member says about itself when it joins (its subscription user data). */
export interface Subscription {
  readonly v: 1;
  /** The member's topology fingerprint. */
  readonly topology: string;
  /** Task id → the changelog offset of the member's local copy of that task's state. */
  readonly tasks: Readonly<Record<string, number>>;
  /** The tasks the member runs now (its part of the previous assignment). */
  readonly owned?: readonly string[];
}

/** A group member as the leader sees it (the shape of the Kafka client's `GroupMember`). */
export interface AssignorMember {
  readonly memberId: string;
  readonly userData: Uint8Array | null;
}

/** A task: its id (`s_p`) and the topic-partitions it reads. */
export interface AssignorTask {
  readonly id: string;
  readonly partitions: readonly TopicPartition[];
}

/** A sub-topology as the assignor needs it: its id and the co-partitioned topics it reads. */
export interface SubTopologyInputs {
  readonly id: number;
  readonly topics: readonly string[];
}

/** Input of {@link assignTasks}. */
export interface AssignInput {
  /** The leader's own topology fingerprint: every member must have the same. */
  readonly topology: string;
  readonly members: readonly AssignorMember[];
  readonly tasks: readonly AssignorTask[];
}

/** The outcome of {@link assignTasks}: per member (every member, possibly with nothing), its tasks and partitions. */
export interface TaskAssignment {
  /** Member id → its task ids, in task order. */
  readonly tasks: Map<string, string[]>;
  /** Member id → every topic-partition of its tasks, in task order. */
  readonly partitions: Map<string, TopicPartition[]>;
}

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/** The subscription user data of a member. */
export function encodeSubscription(s: Subscription): Uint8Array {
  return packr.pack(s);
}

/**
 * Reads a member's subscription user data; a ConfigError naming the member for bytes that are not a Gress
 * subscription of a version this release knows.
 */
export function decodeSubscription(memberId: string, userData: Uint8Array | null): Subscription {
  const refuse = (why: string, cause?: unknown): ConfigError =>
    new ConfigError(`group member ${memberId} ${why}; every member of a scale-out group must run a Gress worker of a compatible release`, [{ path: ["members", memberId], code: "bad_subscription", message: why }], {
      cause,
    });
  if (userData === null || userData.length === 0) throw refuse("sent no Gress subscription data (another application in the same group?)");
  let s: unknown;
  try {
    s = unpackr.unpack(userData);
  } catch (err) {
    throw refuse("sent subscription data that is not msgpack", err);
  }
  if (s === null || typeof s !== "object") throw refuse("sent subscription data that is not an object");
  const o = s as Record<string, unknown>;
  if (o.v !== 1) throw refuse(`sent subscription data of version ${JSON.stringify(o.v)} (this release reads version 1)`);
  if (typeof o.topology !== "string") throw refuse("sent subscription data without a topology fingerprint");
  const tasks = o.tasks;
  if (tasks === null || typeof tasks !== "object" || Object.values(tasks).some((x) => typeof x !== "number")) throw refuse("sent subscription data whose tasks are not task → offset");
  if (o.owned !== undefined && (!Array.isArray(o.owned) || o.owned.some((x) => typeof x !== "string"))) throw refuse("sent subscription data whose owned tasks are not task ids");
  return o as unknown as Subscription;
}

/** The id of task p of sub-topology s: `s_p`, as Kafka Streams names them. */
export function taskId(subTopology: number, partition: number): string {
  return `${subTopology}_${partition}`;
}

/**
 * The tasks of a topology: for each sub-topology, one task per partition of its (co-partitioned) input topics.
 * `partitionCounts` is topic → partition count, from the metadata. A ConfigError when a sub-topology's topics
 * have different partition counts, or a topic is unknown.
 */
export function tasksFor(subTopologies: readonly SubTopologyInputs[], partitionCounts: ReadonlyMap<string, number>): AssignorTask[] {
  const tasks: AssignorTask[] = [];
  for (const s of subTopologies) {
    const count = checkCopartitioned(s.topics, partitionCounts);
    const topics = [...s.topics].sort();
    for (let p = 0; p < count; p++) tasks.push({ id: taskId(s.id, p), partitions: topics.map((topic) => ({ topic, partition: p })) });
  }
  return tasks;
}

/** Task order: by sub-topology, then partition, numerically for `s_p` ids; other ids after, as text. */
function compareTasks(a: string, b: string): number {
  const pa = /^(\d+)_(\d+)$/.exec(a);
  const pb = /^(\d+)_(\d+)$/.exec(b);
  if (pa !== null && pb !== null) return Number(pa[1]) - Number(pb[1]) || Number(pa[2]) - Number(pb[2]);
  if (pa !== null) return -1;
  if (pb !== null) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

interface MemberState {
  readonly id: string;
  readonly sub: Subscription;
  quota: number;
  readonly assigned: string[];
}

/** Assigns whole tasks to members; see the module comment for the laws. */
export function assignTasks(input: AssignInput): TaskAssignment {
  const members: MemberState[] = [...input.members]
    .sort((a, b) => compareText(a.memberId, b.memberId))
    .map((m) => ({ id: m.memberId, sub: decodeSubscription(m.memberId, m.userData), quota: 0, assigned: [] }));
  const others = members.filter((m) => m.sub.topology !== input.topology);
  if (others.length > 0) {
    const list = others.map((m) => `${m.id} has ${m.sub.topology}`).join(", ");
    throw new ConfigError(
      `scale-out group members run different topologies: this worker's topology fingerprint is ${input.topology}, but ${list}; a job name (or --group) was reused for a different pipeline, or workers of two versions of it were started: stop the old workers, or give the new pipeline another job name`,
      others.map((m) => ({ path: ["members", m.id], code: "topology_mismatch", message: `fingerprint ${m.sub.topology} ≠ ${input.topology}` })),
    );
  }
  const tasks = [...input.tasks].sort((a, b) => compareTasks(a.id, b.id));
  const byId = new Map(tasks.map((t) => [t.id, t]));
  if (byId.size !== tasks.length) {
    const twice = tasks.find((t, i) => tasks.findIndex((u) => u.id === t.id) !== i)!.id;
    throw new ConfigError(`task ${twice} is listed twice: each task id names one partition set`, [{ path: ["tasks", twice], code: "duplicate_task", message: "listed twice" }]);
  }
  const owners = new Map<string, string>();
  for (const t of tasks) {
    for (const p of t.partitions) {
      const tp = `${p.topic}-${p.partition}`;
      const other = owners.get(tp);
      if (other !== undefined) throw new ConfigError(`partition ${tp} belongs to tasks ${other} and ${t.id}: a partition is read by one task`, [{ path: ["tasks", t.id], code: "shared_partition", message: tp }]);
      owners.set(tp, t.id);
    }
  }
  const offset = (m: MemberState, task: string): number => m.sub.tasks[task] ?? -1;

  // Previous owners: a task claimed by several members goes to the newest local copy, then the lowest id.
  const owner = new Map<string, MemberState>();
  for (const m of members) {
    for (const t of m.sub.owned ?? []) {
      if (!byId.has(t)) continue;
      const other = owner.get(t);
      if (other === undefined || offset(m, t) > offset(other, t)) owner.set(t, m);
    }
  }
  const owned = new Map<MemberState, string[]>(members.map((m) => [m, []]));
  for (const t of tasks) {
    const m = owner.get(t.id);
    if (m !== undefined) owned.get(m)!.push(t.id);
  }

  // Quotas: ⌊n/m⌋ each, and the n mod m "+1" places to the members that run the most tasks now (sticky).
  const n = tasks.length;
  const base = members.length === 0 ? 0 : Math.floor(n / members.length);
  const extra = members.length === 0 ? 0 : n % members.length;
  const byOwned = [...members].sort((a, b) => owned.get(b)!.length - owned.get(a)!.length || compareText(a.id, b.id));
  for (const [i, m] of byOwned.entries()) m.quota = base + (i < extra ? 1 : 0);

  // Keep what each member runs, up to its quota (the newest local copies first when it must give some up).
  const placed = new Set<string>();
  for (const m of members) {
    const mine = [...owned.get(m)!].sort((a, b) => offset(m, b) - offset(m, a) || compareTasks(a, b));
    for (const t of mine.slice(0, m.quota)) {
      m.assigned.push(t);
      placed.add(t);
    }
  }
  // The rest: first by local copies, newest first (each (task, holder) pair in descending offset, when the task
  // is still unplaced and the holder has room), so a task goes to its newest copy unless that member is full;
  // then the tasks nobody with room holds, in task order, each to the member with the most room left.
  const order = new Map(tasks.map((t, i) => [t.id, i]));
  const pairs: [offset: number, task: string, member: MemberState][] = [];
  for (const m of members) {
    for (const [t, o] of Object.entries(m.sub.tasks)) if (byId.has(t) && !placed.has(t)) pairs.push([o, t, m]);
  }
  pairs.sort((a, b) => b[0] - a[0] || order.get(a[1])! - order.get(b[1])! || compareText(a[2].id, b[2].id));
  for (const [, t, m] of pairs) {
    if (placed.has(t) || m.assigned.length >= m.quota) continue;
    m.assigned.push(t);
    placed.add(t);
  }
  for (const t of tasks) {
    if (placed.has(t.id)) continue;
    let best: MemberState | undefined;
    for (const m of members) {
      const room = m.quota - m.assigned.length;
      if (room > 0 && (best === undefined || room > best.quota - best.assigned.length)) best = m;
    }
    if (best === undefined) break; // no members
    best.assigned.push(t.id);
    placed.add(t.id);
  }

  const out: TaskAssignment = { tasks: new Map(), partitions: new Map() };
  for (const m of members) {
    const ids = m.assigned.sort((a, b) => order.get(a)! - order.get(b)!);
    out.tasks.set(m.id, ids);
    out.partitions.set(
      m.id,
      ids.flatMap((id) => byId.get(id)!.partitions),
    );
  }
  return out;
}
