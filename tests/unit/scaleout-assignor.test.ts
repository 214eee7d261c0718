/**
 * The scale-out task assignor (lib/scaleout/assignor.ts): subscription user data, tasks from co-partitioned
 * topics, whole-task, balanced, sticky, local-state-aware assignment, and the errors.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isGressError } from "../../lib/index.ts";
import { type AssignorMember, assignTasks, decodeSubscription, encodeSubscription, type Subscription, taskId, tasksFor } from "../../lib/scaleout/assignor.ts";

const member = (memberId: string, s: Partial<Subscription> = {}): AssignorMember => ({ memberId, userData: encodeSubscription({ v: 1, topology: "fp", tasks: {}, ...s }) });
const counts = (m: ReadonlyMap<string, readonly unknown[]>): number[] => [...m.values()].map((x) => x.length);
const errorOf = (f: () => unknown): Error & { code?: string } => {
  try {
    f();
  } catch (e) {
    return e as Error & { code?: string };
  }
  assert.fail("expected an error");
};

describe("subscription user data", () => {
  it("round-trips, and names the member when it is not Gress data or of another version", () => {
    const s: Subscription = { v: 1, topology: "abc", tasks: { "0_1": 42, "1_0": 0 }, owned: ["0_1"] };
    assert.deepEqual(decodeSubscription("m", encodeSubscription(s)), s);
    const none = errorOf(() => decodeSubscription("worker-7", null));
    assert.ok(isGressError(none, "ERR_CONFIG") && /worker-7 sent no Gress subscription data/.test(none.message), none.message);
    const v2 = errorOf(() => decodeSubscription("worker-8", encodeSubscription({ ...s, v: 2 as 1 })));
    assert.ok(isGressError(v2, "ERR_CONFIG") && /worker-8 .*version 2/.test(v2.message), v2.message);
    const junk = errorOf(() => decodeSubscription("worker-9", new Uint8Array([0x92, 0x01])));
    assert.ok(isGressError(junk, "ERR_CONFIG") && /worker-9 .*not msgpack/.test(junk.message), junk.message);
  });
});

describe("tasks of a topology", () => {
  it("task s_p is partition p of every co-partitioned topic of sub-topology s", () => {
    const tasks = tasksFor(
      [
        { id: 0, topics: ["payments", "orders"] },
        { id: 1, topics: ["gress-job-keyBy-3-repartition"] },
      ],
      new Map([
        ["orders", 2],
        ["payments", 2],
        ["gress-job-keyBy-3-repartition", 3],
      ]),
    );
    assert.deepEqual(tasks, [
      { id: "0_0", partitions: [{ topic: "orders", partition: 0 }, { topic: "payments", partition: 0 }] },
      { id: "0_1", partitions: [{ topic: "orders", partition: 1 }, { topic: "payments", partition: 1 }] },
      { id: "1_0", partitions: [{ topic: "gress-job-keyBy-3-repartition", partition: 0 }] },
      { id: "1_1", partitions: [{ topic: "gress-job-keyBy-3-repartition", partition: 1 }] },
      { id: "1_2", partitions: [{ topic: "gress-job-keyBy-3-repartition", partition: 2 }] },
    ]);
    assert.equal(taskId(3, 11), "3_11");
  });

  it("co-partitioned topics with different partition counts are a ConfigError naming the topics and counts", () => {
    const e = errorOf(() => tasksFor([{ id: 0, topics: ["orders", "payments"] }], new Map([["orders", 12], ["payments", 8]])));
    assert.ok(isGressError(e, "ERR_CONFIG"), e.message);
    assert.match(e.message, /"orders" has 12 partitions, "payments" has 8 partitions/);
  });
});

describe("assignTasks", () => {
  const tasks = tasksFor([{ id: 0, topics: ["a", "b"] }], new Map([["a", 6], ["b", 6]]));

  it("gives whole tasks, balanced, to every member; members beyond the task count get nothing", () => {
    const out = assignTasks({ topology: "fp", members: [member("m1"), member("m2"), member("m3"), member("m4")], tasks });
    assert.deepEqual(counts(out.tasks).sort(), [1, 1, 2, 2]);
    for (const [m, ids] of out.tasks) {
      assert.deepEqual(
        out.partitions.get(m),
        ids.flatMap((id) => tasks.find((t) => t.id === id)!.partitions),
      );
    }
    const many = assignTasks({ topology: "fp", members: Array.from({ length: 8 }, (_, i) => member(`m${i}`)), tasks });
    assert.deepEqual(counts(many.tasks).sort(), [0, 0, 1, 1, 1, 1, 1, 1]);
  });

  it("is sticky: a joining member takes tasks only from the others' surplus; a leaving member's tasks are spread", () => {
    const two = assignTasks({ topology: "fp", members: [member("m1"), member("m2")], tasks });
    const owned = (id: string): string[] => two.tasks.get(id)!;
    const three = assignTasks({ topology: "fp", members: [member("m1", { owned: owned("m1") }), member("m2", { owned: owned("m2") }), member("m3")], tasks });
    for (const id of ["m1", "m2"]) for (const t of three.tasks.get(id)!) assert.ok(owned(id).includes(t), `${t} moved to ${id}`);
    assert.deepEqual(counts(three.tasks), [2, 2, 2]);
    const back = assignTasks({ topology: "fp", members: [member("m1", { owned: three.tasks.get("m1")! }), member("m3", { owned: three.tasks.get("m3")! })], tasks });
    for (const id of ["m1", "m3"]) for (const t of three.tasks.get(id)!) assert.ok(back.tasks.get(id)!.includes(t), `${id} lost ${t}`);
    // The same group again: nothing moves.
    const again = assignTasks({ topology: "fp", members: [member("m1", { owned: back.tasks.get("m1")! }), member("m3", { owned: back.tasks.get("m3")! })], tasks });
    assert.deepEqual(again.tasks, back.tasks);
  });

  it("a task that moves goes to the member with the newest local copy of it", () => {
    // m1 ran everything and leaves; m3 holds a newer copy of 0_4 than m2, m2 one of 0_1.
    const out = assignTasks({
      topology: "fp",
      members: [member("m2", { tasks: { "0_4": 10, "0_1": 7 } }), member("m3", { tasks: { "0_4": 90 } })],
      tasks,
    });
    assert.ok(out.tasks.get("m3")!.includes("0_4"));
    assert.ok(out.tasks.get("m2")!.includes("0_1"));
  });

  it("a task claimed by two members stays with the newer copy", () => {
    const out = assignTasks({
      topology: "fp",
      members: [member("m1", { owned: ["0_0"], tasks: { "0_0": 5 } }), member("m2", { owned: ["0_0"], tasks: { "0_0": 9 } })],
      tasks: tasks.slice(0, 2),
    });
    assert.deepEqual(out.tasks.get("m2"), ["0_0"]);
    assert.deepEqual(out.tasks.get("m1"), ["0_1"]);
  });

  it("a task listed twice, or a partition in two tasks, is a ConfigError naming it", () => {
    const twice = errorOf(() => assignTasks({ topology: "fp", members: [member("m1")], tasks: [tasks[0]!, tasks[1]!, tasks[0]!] }));
    assert.ok(isGressError(twice, "ERR_CONFIG") && /task 0_0 is listed twice/.test(twice.message), twice.message);
    const shared = errorOf(() => assignTasks({ topology: "fp", members: [member("m1")], tasks: [tasks[0]!, { id: "1_0", partitions: [{ topic: "b", partition: 0 }] }] }));
    assert.ok(isGressError(shared, "ERR_CONFIG") && /partition b-0 belongs to tasks 0_0 and 1_0/.test(shared.message), shared.message);
  });

  it("a member of another topology is a ConfigError naming both fingerprints", () => {
    const e = errorOf(() => assignTasks({ topology: "fp", members: [member("m1"), member("m2", { topology: "fp-other" })], tasks }));
    assert.ok(isGressError(e, "ERR_CONFIG"), e.message);
    assert.match(e.message, /fingerprint is fp, but m2 has fp-other/);
  });
});
