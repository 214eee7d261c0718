/**
 * Retained checkpoints: with `retain: N`, the last N checkpoints stay restorable. The state is kept once, at
 * the latest checkpoint; each checkpoint's undo log (what its commit replaced) takes it back to an older one.
 * The backend's side of it (undo logs, roll-back) is tested in state-lmdb.test.ts.
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

describe("retained checkpoints", () => {
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
