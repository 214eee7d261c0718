/**
 * The checkpoint protocol inside one process: order of pre-commit, durable LMDB commit, sink commit and source
 * acknowledgement; the final checkpoint; recovery of state, positions and pending sink transactions; and the
 * errors for configurations that cannot be checkpointed. (Process crashes are in tests/crash/.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileSink, readCommitted } from "../../connectors/file/index.ts";
import { latestCheckpoint } from "../../lib/checkpoint/storage.ts";
import { type Element, generator, isGressError, Job, operate, type Positions, type Sink, type Source, sinkFn } from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";
import { sequencePerKey } from "../support/sequence.ts";

const tempDir = tempDirs("gress-cp-");
const lmdb = (path: string): LmdbStateBackend => new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024, durability: "process" });

interface Ev {
  readonly i: number;
  readonly key: string;
}
const events = (count: number, rate?: number) =>
  generator<Ev>({ name: "events", seed: 5, count, ...(rate === undefined ? {} : { ratePerSecond: rate }), make: (i, _t, r) => ({ i, key: `k${r.int(7)}` }) });

/** A keyed pipeline whose output carries per-key sequence numbers kept in ValueState. */
function countingJob(job: Job, source: Source<Ev>, sink: Sink<{ key: string; seq: number; i: number }>): void {
  job
    .source(source)
    .keyBy((e) => e.key)
    .process(sequencePerKey())
    .sinkTo(sink);
}

/** Per key, the sorted sequence numbers are 1..n. */
function assertSequences(out: readonly { key: string; seq: number }[]): void {
  const byKey = new Map<string, number[]>();
  for (const r of out) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r.seq]);
  for (const [k, seqs] of byKey) {
    seqs.sort((a, b) => a - b);
    assert.deepEqual(seqs, seqs.map((_, j) => j + 1), `key ${k}`);
  }
}

describe("checkpoint coordinator", () => {
  it("commits a sink only after the checkpoint is durable in LMDB, then acknowledges the sources", async () => {
    const dir = tempDir();
    const state = lmdb(dir);
    const log: string[] = [];
    const job = new Job({ name: "order", state, checkpoints: { intervalMs: 20, log: () => {} } });
    const gen = events(20_000, 40_000);
    const source: Source<Ev> = {
      name: gen.name,
      open: (ctx, from) => gen.open(ctx, from),
      pause: () => gen.pause(),
      resume: () => gen.resume(),
      positions: () => gen.positions(),
      close: () => gen.close(),
      async ack(p: Positions) {
        log.push(`ack:${JSON.stringify(p)}`);
      },
    };
    let pending = 0;
    const sink: Sink<{ key: string; seq: number; i: number }> = {
      name: "recording",
      write: () => {
        pending++;
      },
      async preCommit(id) {
        log.push(`preCommit:${id}`);
        const handle = { id, records: pending };
        pending = 0;
        return handle;
      },
      async commit(id, handle) {
        const durable = latestCheckpoint(state.meta);
        log.push(`commit:${id}`);
        assert.equal(durable?.id, id, "the checkpoint record is in LMDB before the sink commits");
        assert.deepEqual(durable?.sinks.recording, handle, "the handle was stored with the checkpoint");
      },
    };
    countingJob(job, source, sink);
    await job.run();
    const n = job.metrics.checkpointsCompleted;
    assert.ok(n >= 3, `several checkpoints completed (${n})`);
    for (let id = 1; id <= n; id++) {
      const pre = log.indexOf(`preCommit:${id}`);
      const commit = log.indexOf(`commit:${id}`);
      assert.ok(pre >= 0 && commit > pre, `checkpoint ${id}: pre-commit, then commit`);
      assert.ok(log[commit + 1]?.startsWith("ack:"), `checkpoint ${id}: the source is acknowledged after the sink commit`);
    }
    const last = latestCheckpoint(state.meta);
    assert.equal(last?.final, true, "the last checkpoint is the final one, taken when the input ended");
    assert.deepEqual(last?.positions, { events: { events: 20_000 } });
    await state.close();
  });

  it("a job cancelled mid-way (as in a crash) resumes from its last checkpoint: output is exactly-once", async () => {
    const dir = tempDir();
    const out = join(dir, "out");
    const first = new Job({ name: "resume", state: lmdb(join(dir, "state")), checkpoints: { intervalMs: 25, log: () => {} } });
    countingJob(first, events(30_000, 30_000), fileSink({ dir: out, name: "out" }));
    const running = first.run().catch(() => {});
    while (first.metrics.checkpointsCompleted < 3) await new Promise((r) => setTimeout(r, 10));
    first.cancel();
    await running;
    await new Promise((r) => setTimeout(r, 50));
    await first.state.close();
    const partial = readCommitted(out, "out").length;
    assert.ok(partial > 0 && partial < 30_000, `the first run committed part of the output (${partial})`);

    const logs: string[] = [];
    const second = new Job({ name: "resume", state: lmdb(join(dir, "state")), checkpoints: { intervalMs: 25, log: (m) => logs.push(m) } });
    assert.ok(second.checkpoints?.restored !== undefined, "the second run found a checkpoint");
    countingJob(second, events(30_000), fileSink({ dir: out, name: "out" }));
    await second.run();
    await second.state.close();
    const all = readCommitted<{ key: string; seq: number; i: number }>(out, "out");
    assert.equal(all.length, 30_000);
    assert.equal(new Set(all.map((r) => r.i)).size, 30_000, "every event exactly once");
    assertSequences(all);
    assert.ok(second.metrics.recoverySeconds > 0, "recovery time is reported in the metrics");
    assert.ok(logs.some((m) => /recovered checkpoint \d+ in [\d.]+ ms/.test(m)), `recovery is logged: ${logs.join(" | ")}`);
  });

  it("a checkpoint triggered while a record is on its way is taken at a record boundary: its positions match its barrier", async () => {
    const state = lmdb(tempDir());
    const job = new Job({ name: "cp-mid", state, checkpoints: { intervalMs: 1e9, retain: 5, log: () => {} } });
    let beforeBarrier = -1;
    let seen = 0;
    job
      .fromIterable([0, 1, 2, 3, 4, 5, 6, 7], { name: "nums" })
      .map((v) => {
        // From inside a user function, halfway through the input.
        if (v === 5) void job.checkpoints?.trigger();
        return v;
      })
      .transform(
        operate<Element<number>, Element<number>>((down) => ({
          next(e) {
            if (e.kind === "barrier" && beforeBarrier < 0) beforeBarrier = seen;
            if (e.kind === "record") seen++;
            down.next(e);
          },
        })),
      )
      .sinkTo(sinkFn("out", () => {}));
    await job.run();
    const first = state.meta.get(["checkpoint", 1]) as { positions: Record<string, Positions> } | undefined;
    assert.ok(first !== undefined && beforeBarrier >= 0, "checkpoint 1 was taken");
    assert.deepEqual(first.positions, { nums: { nums: beforeBarrier } }, "every record before the barrier, and only those, is before the position");
    assert.ok(beforeBarrier > 5, "the record that triggered it is before the barrier");
    await state.close();
  });

  it("keeps the records of the last `retain` checkpoints", async () => {
    const state = lmdb(tempDir());
    const job = new Job({ name: "retain", state, checkpoints: { intervalMs: 10, retain: 2, log: () => {} } });
    countingJob(job, events(20_000, 50_000), { name: "nothing", write: () => {} });
    await job.run();
    const kept = job.checkpoints?.checkpoints() ?? [];
    const n = job.metrics.checkpointsCompleted;
    assert.ok(n > 2);
    assert.deepEqual(kept.map((c) => c.id), [n - 1, n]);
    await state.close();
  });

  it("a checkpoint holds only the state changed since the previous one", async () => {
    const state = lmdb(tempDir());
    const job = new Job({ name: "incremental", state, checkpoints: { intervalMs: 1_000_000, log: () => {} } });
    const out: { key: string }[] = [];
    countingJob(job, events(5_000), { name: "collect", write: (r) => void out.push(r) });
    await job.run();
    const history = job.checkpoints?.history ?? [];
    assert.equal(history.length, 1, "only the final checkpoint (the interval never came)");
    // 7 keys: 7 counters plus the operator's watermark entry changed, however many events there were.
    const keys = new Set(out.map((r) => r.key)).size;
    assert.equal(keys, 7, "every key had events");
    assert.equal(history[0]?.changedEntries, keys + 1);
    await state.close();
  });

  it("a dirty set that reaches maxDirtyEntries triggers a checkpoint before the interval", async () => {
    const state = new LmdbStateBackend({ path: tempDir(), mapSize: 64 * 1024 * 1024, maxDirtyEntries: 2_000 });
    const job = new Job({ name: "dirty", state, checkpoints: { intervalMs: 1_000_000, log: () => {} } });
    job
      .source(events(20_000))
      .keyBy((e) => e.i)
      .process<number>({
        processElement(e, ctx) {
          ctx.state.value<number>("v").update(e.i);
        },
      })
      .sinkTo({ name: "nothing", write: () => {} });
    await job.run();
    assert.ok(job.metrics.checkpointsCompleted >= 5, `early checkpoints: ${job.metrics.checkpointsCompleted}`);
    // At the limit the sources pause until the checkpoint captured the dirty set: a checkpoint holds the limit's
    // worth of entries, not a source batch (8192 here) more. The final one may add the watermark entry.
    const changed = (job.checkpoints?.history ?? []).map((c) => c.changedEntries);
    assert.ok(changed.every((n) => n <= 2_000 + 1), `the dirty set stayed at the limit: ${changed.join(", ")}`);
    assert.ok(changed.slice(0, -1).every((n) => n >= 2_000), `each early checkpoint was taken at the limit: ${changed.join(", ")}`);
    await state.close();
  });

  it("a checkpoint that does not complete in time fails the job with a CheckpointError", async () => {
    const state = lmdb(tempDir());
    const job = new Job({ name: "stuck", state, checkpoints: { intervalMs: 10, timeoutMs: 100, log: () => {} } });
    countingJob(job, events(1_000_000, 10_000), { name: "stuck", write: () => {}, preCommit: () => new Promise(() => {}) });
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && /did not complete within 100 ms/.test((e as Error).message));
    await state.close();
  });

  it("checkpoints need the LMDB backend and replayable sources: ConfigErrors that say so", async () => {
    assert.throws(
      () => new Job({ name: "mem", checkpoints: { intervalMs: 100 } }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /durable state backend/.test((e as Error).message),
    );
    assert.throws(
      () => new Job({ name: "bad", state: lmdb(tempDir()), checkpoints: { intervalMs: -1 } }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /checkpoints\.intervalMs/.test((e as Error).message),
    );
    const state = lmdb(tempDir());
    const job = new Job({ name: "unreplayable", state, checkpoints: { intervalMs: 100 } });
    const source: Source<number> = { name: "socket", open: (ctx) => ctx.end(), pause() {}, resume() {}, close() {} };
    job.source(source).sinkTo({ name: "s", write: () => {} });
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_CONFIG") && /source "socket" cannot report positions/.test((e as Error).message));
    await state.close();
  });
});
