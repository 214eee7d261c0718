/**
 * Retained checkpoints: with `retain: N`, the last N checkpoints stay restorable. The state is kept once, at
 * the latest checkpoint; each checkpoint's undo log (what its commit replaced) takes it back to an older one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { generator, isGressError, Job, type Sink } from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { type Sequenced, sequencePerKey } from "../support/sequence.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-retain-");
const lmdb = (path: string): LmdbStateBackend => new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024, durability: "process" });

type Out = Sequenced;

/** Counts events per key in keyed state and emits `{ key, seq, i }` for each. */
function countingJob(job: Job, out: Out[]): void {
  const sink: Sink<Out> = { name: "collect", write: (v) => void out.push(v) };
  job
    .source(generator({ name: "events", seed: 4, count: 3_000, ratePerSecond: 20_000, make: (i, _t, r) => ({ i, key: `k${r.int(4)}` }) }))
    .keyBy((e) => e.key)
    .process(sequencePerKey())
    .sinkTo(sink);
}

const commit = async (b: LmdbStateBackend, id: number, keepFrom: number): Promise<void> => {
  await b.commit(b.capture(), () => {}, undefined, { id, keepFrom });
  await b.flushed();
};

describe("retained checkpoints", () => {
  it("the LMDB backend rolls back through undo logs: changed, deleted, new keys and new tables", async () => {
    const dir = tempDir();
    const b = lmdb(dir);
    const t = b.table<number>("op", "t");
    t.put("a", "", 1);
    t.put("b", "", 2);
    await commit(b, 1, 1);
    t.put("a", "", 10);
    t.delete("b", "");
    t.put("c", "", 3);
    b.table<string>("op", "new").put("x", 7, "seven");
    await commit(b, 2, 1);
    t.put("a", "", 100);
    await commit(b, 3, 1);
    await b.close();

    const again = lmdb(dir);
    assert.ok(again.hasUndo(2) && again.hasUndo(3));
    again.rollback([2, 3], () => again.meta.put("marker", "rolled back"));
    const t2 = again.table<number>("op", "t");
    assert.deepEqual([t2.get("a", ""), t2.get("b", ""), t2.get("c", ""), t2.size], [1, 2, undefined, 2]);
    assert.equal(again.table<string>("op", "new").get("x", 7), undefined);
    assert.equal(again.table<string>("op", "new").size, 0);
    assert.equal(again.meta.get("marker"), "rolled back");
    assert.equal(again.hasUndo(2), false, "the undo logs applied are gone");
    await again.close();

    // The roll-back is durable, and a roll-back is refused once tables are in use.
    const third = lmdb(dir);
    assert.equal(third.table<number>("op", "t").get("a", ""), 1);
    assert.throws(() => third.rollback([1], () => {}), (e: unknown) => isGressError(e, "ERR_STATE"));
    await third.close();
  });

  it("undo logs older than keepFrom are dropped in the same commit", async () => {
    const b = lmdb(tempDir());
    const t = b.table<number>("op", "t");
    for (let id = 1; id <= 4; id++) {
      t.put("a", "", id);
      await commit(b, id, id - 1);
    }
    assert.deepEqual([1, 2, 3, 4].map((id) => b.hasUndo(id)), [false, false, true, true]);
    await b.close();
  });

  it("a job restored from an older retained checkpoint continues from that checkpoint's state and positions", async () => {
    const stateDir = tempDir();
    const firstOut: Out[] = [];
    const first = new Job({ name: "retain", state: lmdb(stateDir), checkpoints: { intervalMs: 20, retain: 3, log: () => {} } });
    countingJob(first, firstOut);
    await first.run();
    const kept = first.checkpoints!.checkpoints().map((r) => r.id);
    await first.state.close();
    assert.equal(kept.length, 3, `three checkpoints kept: ${kept.join(", ")}`);
    const target = kept[0]!;

    const secondOut: Out[] = [];
    const logs: string[] = [];
    const second = new Job({ name: "retain", state: lmdb(stateDir), checkpoints: { intervalMs: 20, retain: 3, restoreCheckpoint: target, log: (m) => logs.push(m) } });
    const restored = second.checkpoints!.restored!;
    assert.equal(restored.id, target);
    assert.match(logs.join("\n"), new RegExp(`rolled back to checkpoint ${target}`));
    countingJob(second, secondOut);
    await second.run();
    const from = restored.positions.events!.events as number;
    assert.ok(from > 0 && from < 3_000, `restored position ${from}`);
    // Same records, same per-key sequence numbers: the keyed state is exactly that of the older checkpoint.
    assert.deepEqual(secondOut, firstOut.filter((o) => o.i >= from));
    // New checkpoints do not reuse the ids of the discarded ones.
    const after = second.checkpoints!.checkpoints().map((r) => r.id);
    assert.ok(after.every((id) => id === target || id > kept[2]!), `ids after the roll-back: ${after.join(", ")}`);
    await second.state.close();
  });

  it("asking for a checkpoint that is not retained, or not restorable, fails with a clear error", async () => {
    const stateDir = tempDir();
    const job = new Job({ name: "retain1", state: lmdb(stateDir), checkpoints: { intervalMs: 20, log: () => {} } });
    countingJob(job, []);
    await job.run();
    const latest = job.checkpoints!.checkpoints().at(-1)!.id;
    await job.state.close();
    // With the default retain of 1 only the latest is kept.
    const state = lmdb(stateDir);
    assert.throws(
      () => new Job({ name: "retain1", state, checkpoints: { intervalMs: 20, restoreCheckpoint: latest - 1, log: () => {} } }),
      (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && new RegExp(`no checkpoint ${latest - 1} to restore; it keeps ${latest}$`).test((e as Error).message),
    );
    assert.throws(
      () => new Job({ name: "retain1", state, checkpoints: { intervalMs: 20, restoreCheckpoint: latest, fromSavepoint: "/nowhere" } }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /fromSavepoint or restoreCheckpoint/.test((e as Error).message),
    );
    await state.close();
  });
});
