/**
 * Laws of the scale-out task assignor, over random groups: whole tasks, each exactly once; balanced counts;
 * sticky (members keep what they run as far as balance allows, a join moves tasks only to the new members, an
 * unchanged group moves nothing); a moving task goes to the newest local copy; the same output for any member
 * order.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type AssignorMember, type AssignorTask, assignTasks, encodeSubscription, type Subscription, type TaskAssignment, tasksFor } from "../../lib/scaleout/assignor.ts";

interface Group {
  readonly tasks: AssignorTask[];
  readonly members: { readonly id: string; readonly local: Record<string, number>; readonly owned: string[] }[];
}

/** Up to 3 sub-topologies of 1–3 co-partitioned topics with 1–12 partitions; 1–7 members with random local copies and claims. */
const groupArb: fc.Arbitrary<Group> = fc
  .record({
    subs: fc.array(fc.record({ topics: fc.integer({ min: 1, max: 3 }), partitions: fc.integer({ min: 1, max: 12 }) }), { minLength: 1, maxLength: 3 }),
    members: fc.integer({ min: 1, max: 7 }),
    seed: fc.array(fc.tuple(fc.nat(), fc.nat(200), fc.boolean()), { maxLength: 60 }),
  })
  .map(({ subs, members, seed }) => {
    const counts = new Map<string, number>();
    const defs = subs.map((s, i) => {
      const topics = Array.from({ length: s.topics }, (_, j) => `t${i}-${j}`);
      for (const t of topics) counts.set(t, s.partitions);
      return { id: i, topics };
    });
    const tasks = tasksFor(defs, counts);
    const ms = Array.from({ length: members }, (_, i) => ({ id: `member-${String.fromCharCode(97 + ((i * 7) % 26))}${i}`, local: {} as Record<string, number>, owned: [] as string[] }));
    for (const [k, offset, owns] of seed) {
      const m = ms[k % ms.length]!;
      const t = tasks[(k >> 3) % tasks.length]!.id;
      m.local[t] = offset;
      if (owns && !m.owned.includes(t)) m.owned.push(t);
    }
    return { tasks, members: ms };
  });

const toMembers = (g: Group): AssignorMember[] =>
  g.members.map((m) => ({ memberId: m.id, userData: encodeSubscription({ v: 1, topology: "fp", tasks: m.local, owned: m.owned } satisfies Subscription) }));

const assign = (g: Group): TaskAssignment => assignTasks({ topology: "fp", members: toMembers(g), tasks: g.tasks });

function checkWholeAndBalanced(g: Group, out: TaskAssignment): void {
  const seen = new Map<string, string>();
  for (const [m, ids] of out.tasks) {
    for (const id of ids) {
      assert.equal(seen.get(id), undefined, `task ${id} given twice`);
      seen.set(id, m);
    }
    const expected = ids.flatMap((id) => g.tasks.find((t) => t.id === id)!.partitions.map((p) => `${p.topic}/${p.partition}`));
    assert.deepEqual(
      out.partitions.get(m)!.map((p) => `${p.topic}/${p.partition}`),
      expected,
      `member ${m} has exactly the partitions of its tasks`,
    );
  }
  assert.equal(seen.size, g.tasks.length, "every task is assigned");
  assert.deepEqual([...out.tasks.keys()].sort(), g.members.map((m) => m.id).sort(), "every member is in the output");
  const counts = [...out.tasks.values()].map((x) => x.length);
  assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `balanced: ${counts}`);
}

describe("task assignor laws", () => {
  it("law: whole tasks, each to exactly one member, with task counts that differ by at most one", () => {
    fc.assert(
      fc.property(groupArb, (g) => checkWholeAndBalanced(g, assign(g))),
      { numRuns: 300 },
    );
  });

  it("law: deterministic: any member order gives the same assignment", () => {
    fc.assert(
      fc.property(
        groupArb.chain((g) => fc.tuple(fc.constant(g), fc.shuffledSubarray(g.members, { minLength: g.members.length }))),
        ([g, shuffled]) => {
          assert.deepEqual(assign({ ...g, members: shuffled }), assign(g));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("law: sticky: each member keeps at least min(the tasks only it runs, ⌊tasks/members⌋) of the tasks it runs", () => {
    fc.assert(
      fc.property(groupArb, (g) => {
        const out = assign(g);
        const claims = new Map<string, number>();
        for (const m of g.members) for (const t of m.owned) claims.set(t, (claims.get(t) ?? 0) + 1);
        const base = Math.floor(g.tasks.length / g.members.length);
        for (const m of g.members) {
          const alone = m.owned.filter((t) => claims.get(t) === 1);
          const kept = m.owned.filter((t) => out.tasks.get(m.id)!.includes(t));
          assert.ok(kept.length >= Math.min(alone.length, base), `${m.id} kept ${kept.length} of ${alone.length} (base ${base})`);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("law: after an assignment, the same group moves nothing, and joining members take tasks only from the others", () => {
    fc.assert(
      fc.property(groupArb, fc.integer({ min: 1, max: 3 }), (g, joining) => {
        const first = assign(g);
        const settled: Group = { ...g, members: g.members.map((m) => ({ ...m, owned: first.tasks.get(m.id)! })) };
        assert.deepEqual(assign(settled).tasks, first.tasks, "unchanged group: no task moves");
        const grown: Group = { ...settled, members: [...settled.members, ...Array.from({ length: joining }, (_, i) => ({ id: `new-${i}`, local: {}, owned: [] }))] };
        const after = assign(grown);
        checkWholeAndBalanced(grown, after);
        for (const m of settled.members) {
          for (const t of after.tasks.get(m.id)!) assert.ok(first.tasks.get(m.id)!.includes(t), `${t} moved from another old member to ${m.id}`);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("law: when no member runs a task and none holds the newest copy of more than ⌊tasks/members⌋ tasks, each task goes to its newest copy", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 1000 })), { maxLength: 40 }),
        (members, partitions, copies) => {
          const tasks = tasksFor([{ id: 0, topics: ["in"] }], new Map([["in", partitions]]));
          const ms = Array.from({ length: members }, (_, i) => ({ id: `m${i}`, local: {} as Record<string, number>, owned: [] as string[] }));
          for (const [mi, ti, offset] of copies) ms[mi % members]!.local[tasks[ti % partitions]!.id] = offset;
          // The newest holder of each task, and how many tasks each is newest for.
          const newest = new Map<string, string>();
          for (const t of tasks) {
            const offsets = ms.map((m) => m.local[t.id] ?? -1);
            const top = Math.max(...offsets);
            // Two equally new copies: either member is right, and the choice may take the room of a third task.
            fc.pre(top < 0 || offsets.filter((o) => o === top).length === 1);
            if (top >= 0) newest.set(t.id, ms[offsets.indexOf(top)]!.id);
          }
          const load = new Map<string, number>();
          for (const m of newest.values()) load.set(m, (load.get(m) ?? 0) + 1);
          fc.pre([...load.values()].every((n) => n <= Math.floor(partitions / members)));
          const out = assign({ tasks, members: ms });
          for (const [t, m] of newest) assert.ok(out.tasks.get(m)!.includes(t), `${t} should go to ${m}, its newest copy`);
        },
      ),
      { numRuns: 300 },
    );
  });
});
