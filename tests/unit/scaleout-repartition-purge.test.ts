/**
 * The repartition purge of a scale-out task (RepartitionPurger, lib/scaleout/shuffle-io.ts), on a recording
 * `deleteRecords` and a hand-moved clock: it deletes only the task's own partition of its repartition topics,
 * up to the committed offsets and never further, at most once per interval (the first one interval after it
 * was made), never two at once, logs a run of failures once and tries again after the next interval, and
 * starts nothing once closed. The deletion itself on the real broker: tests/integration/kafka-delete-records
 * and scaleout-repartition-purge.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RepartitionPurger } from "../../lib/scaleout/shuffle-io.ts";

type Call = { topic: string; partitions: { partition: number; offset: number }[] };

/** `fail` makes a request fail; `hold` (awaited after the request is recorded) keeps one under way. */
function setup(fail: () => Error | undefined = () => undefined, hold: (topic: string) => Promise<void> | undefined = () => undefined): { purger: RepartitionPurger; calls: Call[]; logs: string[]; clock: { t: number } } {
  const calls: Call[] = [];
  const logs: string[] = [];
  const clock = { t: 1_000 };
  const purger = new RepartitionPurger({
    taskId: "0_1",
    topics: ["r1", "r2"],
    partition: 1,
    intervalMs: 100,
    now: () => clock.t,
    log: (m) => void logs.push(m),
    deleteRecords: async (topic, partitions) => {
      calls.push({ topic, partitions: partitions.map((p) => ({ ...p })) });
      await hold(topic);
      const err = fail();
      if (err !== undefined) throw err;
    },
  });
  return { purger, calls, logs, clock };
}

const settle = async (p: RepartitionPurger): Promise<void> => {
  await p.inFlight;
};

describe("RepartitionPurger", () => {
  it("deletes its own partition of its repartition topics up to the committed offsets, once the interval has passed", async () => {
    const { purger, calls, clock } = setup();
    const committed = [
      { topic: "r1", partition: 1, offset: 40 },
      { topic: "r1", partition: 0, offset: 90 }, // another task's partition
      { topic: "input", partition: 1, offset: 70 }, // not a repartition topic
      { topic: "r2", partition: 1, offset: 0 }, // nothing consumed
    ];
    purger.committed(committed);
    assert.equal(purger.inFlight, undefined, "not before one interval");
    clock.t += 100;
    purger.committed(committed);
    await settle(purger);
    assert.deepEqual(calls, [{ topic: "r1", partitions: [{ partition: 1, offset: 40 }] }]);
  });

  it("at most once per interval, never two at once, and only what grew since the last purge", async () => {
    const { purger, calls, clock } = setup();
    clock.t += 100;
    purger.committed([{ topic: "r1", partition: 1, offset: 10 }]);
    // Under way: a commit now starts nothing, even after the interval.
    clock.t += 500;
    purger.committed([{ topic: "r1", partition: 1, offset: 20 }]);
    await settle(purger);
    assert.equal(calls.length, 1);
    purger.committed([{ topic: "r1", partition: 1, offset: 30 }]);
    await settle(purger);
    assert.equal(calls.length, 2, "the interval since the first purge has passed");
    assert.deepEqual(calls[1], { topic: "r1", partitions: [{ partition: 1, offset: 30 }] });
    clock.t += 50;
    purger.committed([{ topic: "r2", partition: 1, offset: 5 }]);
    assert.equal(purger.inFlight, undefined, "within the interval");
    clock.t += 50;
    // A lower offset (never sent by a later checkpoint, but) is no reason to delete less or again.
    purger.committed([{ topic: "r1", partition: 1, offset: 25 }]);
    await settle(purger);
    assert.deepEqual(calls[2], { topic: "r2", partitions: [{ partition: 1, offset: 5 }] }, "r1 is purged to 30 already");
    assert.equal(calls.length, 3);
    clock.t += 100;
    purger.committed([]);
    assert.equal(purger.inFlight, undefined, "nothing new to delete");
  });

  it("logs a run of failures once, tries again after the next interval, and says when it works again", async () => {
    let failing = true;
    const { purger, calls, logs, clock } = setup(() => (failing ? new Error("broker away") : undefined));
    for (let i = 1; i <= 3; i++) {
      clock.t += 100;
      purger.committed([{ topic: "r1", partition: 1, offset: 10 * i }]);
      await settle(purger);
    }
    assert.equal(calls.length, 3);
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0] as string, /task 0_1: could not delete consumed repartition records \(partition 1 of r1\).*broker away/);
    failing = false;
    clock.t += 100;
    purger.committed([]);
    await settle(purger);
    assert.deepEqual(calls.at(-1), { topic: "r1", partitions: [{ partition: 1, offset: 30 }] });
    assert.equal(logs.length, 2);
    assert.match(logs[1] as string, /works again/);
  });

  it("a purge under way when it is closed sends no further request", async () => {
    let release!: () => void;
    const { purger, calls, clock } = setup(undefined, (topic) => (topic === "r1" ? new Promise<void>((r) => (release = r)) : undefined));
    const topics = (): string[] => calls.map((c) => c.topic);
    clock.t += 1_000;
    purger.committed([
      { topic: "r1", partition: 1, offset: 10 },
      { topic: "r2", partition: 1, offset: 20 },
    ]);
    assert.deepEqual(topics(), ["r1"], "the first topic's request is out");
    purger.close();
    release();
    await settle(purger);
    assert.deepEqual(topics(), ["r1"], "none for the second topic after close");
  });

  it("starts nothing once closed", async () => {
    const { purger, calls, clock } = setup();
    purger.close();
    clock.t += 1_000;
    purger.committed([{ topic: "r1", partition: 1, offset: 10 }]);
    await settle(purger);
    assert.equal(calls.length, 0);
  });
});
