/**
 * State benchmarks (`npm run bench -- state`):
 *  1. LMDB state get/put latency, p50 and p99, for cached and cold keys;
 *  2. the keyed-tumbling-count workload on LMDB with a checkpoint every second, against the memory backend in
 *     the same run (the ratio);
 *  3. checkpoint duration as the dirty state grows;
 *  4. recovery time for a job with large state (GRESS_BENCH_STATE_MB, default 1024 MB): from creating the
 *     job on the existing state directory until records flow again.
 * @module
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compare, fmt, median } from "./harness.ts";
import { boundedOutOfOrderness, generator, Job, MemoryStateBackend, type StateBackend, tumbling } from "../lib/index.ts";
import { LmdbStateBackend } from "../lib/state/lmdb.ts";

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "gress-bench-state-"));
  dirs.push(d);
  return d;
};

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
const us = (ms: number): string => `${(ms * 1000).toFixed(2)} µs`;

async function commitAll(b: LmdbStateBackend): Promise<number> {
  const t0 = performance.now();
  await b.commit(b.capture(), () => {});
  await b.flushed();
  return performance.now() - t0;
}

/** 1. get/put latency. Each operation is timed on its own. */
async function latency(): Promise<void> {
  const b = new LmdbStateBackend({ path: tempDir(), cacheEntries: 10_000 });
  const t = b.table<{ count: number; sum: number }>("bench", "acc");
  const keys = 200_000;
  for (let i = 0; i < keys; i++) t.put(i, 0, { count: i, sum: i * 2 });
  await commitAll(b);
  const n = 100_000;
  const times = new Float64Array(n);
  const measure = (label: string, op: (i: number) => void): void => {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      op(i);
      times[i] = performance.now() - t0;
    }
    times.sort();
    console.log(`lmdb ${label.padEnd(40)} p50 ${us(percentile(times, 0.5)).padStart(10)}   p99 ${us(percentile(times, 0.99)).padStart(10)}`);
  };
  const hot = (i: number): number => i % 5_000;
  for (let i = 0; i < 5_000; i++) t.get(i, 0);
  measure("get, cached key (5k hot keys)", (i) => t.get(hot(i), 0));
  b.dropCache();
  // Cold: every read misses the cache and goes to LMDB (memory map + msgpack decode).
  measure("get, cold key (cache miss, from LMDB)", (i) => t.get(keys - 1 - ((i * 7919) % keys), 0));
  measure("put, existing key (into the dirty set)", (i) => t.put(hot(i), 0, { count: i, sum: i }));
  measure("put, new key (existence check on LMDB)", (i) => t.put(keys + i, 0, { count: i, sum: i }));
  await b.close();
}

/** 2. Keyed tumbling count, LMDB + checkpoint every second vs memory. */
async function workload(): Promise<void> {
  const events = 3_000_000;
  const keys = 1_000;
  // Every run (either backend) must read all events and emit the same window results as the first run.
  let expectedResults: number | undefined;
  const runJob = async (state: StateBackend, checkpoints: boolean): Promise<number> => {
    const job = new Job({ name: "bench", state, ...(checkpoints ? { checkpoints: { intervalMs: 1000, log: () => {} } } : {}) });
    let results = 0;
    job
      .source(generator({ name: "events", seed: 1, count: events, eventsPerSecond: 10_000, make: (_i, _t, r) => r.int(keys) }))
      .withTimestamps(boundedOutOfOrderness(0))
      .keyBy((k) => k)
      .window(tumbling(1000))
      .count()
      .sinkTo({ name: "count", write: () => void results++ });
    await job.run();
    await state.close();
    const read = job.metrics.source("events").emitted;
    if (read !== events) throw new Error(`the job read ${read} of ${events} events; the measurement would be invalid`);
    expectedResults ??= results;
    if (results !== expectedResults) throw new Error(`${results} window results, another run gave ${expectedResults}`);
    return read;
  };
  await compare(
    "keyed tumbling count (LMDB, cp 1s)",
    async () => {
      return runJob(new LmdbStateBackend({ path: tempDir(), durability: "fsync" }), true);
    },
    () => runJob(new MemoryStateBackend(), false),
    3,
  );
}

/** 3. Checkpoint duration as the dirty set grows. */
async function checkpointDuration(): Promise<void> {
  const b = new LmdbStateBackend({ path: tempDir(), durability: "fsync", maxDirtyEntries: 10_000_000 });
  const t = b.table<{ count: number; sum: number }>("bench", "acc");
  for (const dirty of [1_000, 10_000, 100_000, 1_000_000]) {
    const rounds: number[] = [];
    for (let r = 0; r < 3; r++) {
      for (let i = 0; i < dirty; i++) t.put(i, r, { count: i, sum: r });
      rounds.push(await commitAll(b));
    }
    const ms = median(rounds);
    console.log(`checkpoint of ${fmt(dirty).padStart(9)} dirty entries: ${ms.toFixed(1).padStart(8)} ms   (${fmt((dirty / ms) * 1000)} entries/s, median of 3)`);
  }
  await b.close();
  // The same with an undo log (retain > 1): each changed entry's previous value is read and written too.
  // Both runs overwrite the 100,000 keys written before, so that there is something to undo.
  for (const undo of [false, true]) {
    const u = new LmdbStateBackend({ path: tempDir(), durability: "fsync", maxDirtyEntries: 10_000_000 });
    const ut = u.table<{ count: number; sum: number }>("bench", "acc");
    const rounds: number[] = [];
    for (let r = 0; r < 4; r++) {
      for (let i = 0; i < 100_000; i++) ut.put(i, 0, { count: i, sum: r });
      const t0 = performance.now();
      await u.commit(u.capture(), () => {}, undefined, undo ? { id: r + 1, keepFrom: r } : undefined);
      await u.flushed();
      if (r > 0) rounds.push(performance.now() - t0);
    }
    console.log(`checkpoint of   100,000 overwritten entries, ${undo ? "with undo log (retain > 1)" : "no undo log (retain 1)    "}: ${median(rounds).toFixed(1).padStart(8)} ms (median of 3)`);
    await u.close();
  }
}

/** 4. Recovery of a job with large state. */
async function recovery(): Promise<void> {
  const targetMb = Number(process.env.GRESS_BENCH_STATE_MB ?? 1024);
  const dir = tempDir();
  const stateDir = join(dir, "state");
  const keyCount = Math.ceil((targetMb * 1024 * 1024) / 256);
  const payload = "x".repeat(200);
  // Build the state through a checkpointed job: a process function stores one ~200-byte value per key.
  const built = performance.now();
  {
    const state = new LmdbStateBackend({ path: stateDir, durability: "process", maxDirtyEntries: 500_000, cacheEntries: 1_000 });
    const job = new Job({ name: "big", state, checkpoints: { intervalMs: 60_000, log: () => {} } });
    job
      .source(generator({ name: "events", count: keyCount, make: (i) => i }))
      .keyBy((i) => i)
      .process<number>({
        processElement(i, ctx) {
          ctx.state.value<string>("v").update(`${i}:${payload}`);
        },
      })
      .sinkTo({ name: "discard", write: () => {} });
    await job.run();
    await state.close();
  }
  const size = statSync(join(stateDir, "data.mdb")).size;
  console.log(`large state: ${fmt(keyCount)} keys, data.mdb ${(size / 1024 / 1024).toFixed(0)} MB, built in ${((performance.now() - built) / 1000).toFixed(1)} s`);
  const times: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    const state = new LmdbStateBackend({ path: stateDir, durability: "process", cacheEntries: 10_000 });
    const job = new Job({ name: "big", state, checkpoints: { intervalMs: 60_000, log: () => {} } });
    let first = 0;
    let value: string | undefined;
    job
      // Each round resumes where the previous one stopped and processes 10 more events.
      .source(generator({ name: "events", count: keyCount + 10 * (r + 1), make: (i) => i % keyCount }))
      .keyBy((i) => i)
      .process<number>({
        processElement(_i, ctx) {
          if (first === 0) {
            first = performance.now();
            value = ctx.state.value<string>("v").value();
          }
        },
      })
      .sinkTo({ name: "discard", write: () => {} });
    await job.run();
    await state.close();
    times.push(first - t0);
    if (value !== `${10 * r}:${payload}`) throw new Error(`recovered state is wrong: ${value}`);
    console.log(`recovery round ${r + 1}: ${(first - t0).toFixed(1)} ms until the first record was processed (metric recoverySeconds ${job.metrics.recoverySeconds.toFixed(4)})`);
  }
  console.log(`recovery of ${(size / 1024 / 1024).toFixed(0)} MB of state: median ${median(times).toFixed(1)} ms (target < 1 s)`);
}

/** Runs every state benchmark. */
export async function run(): Promise<void> {
  try {
    console.log("### get/put latency");
    await latency();
    console.log("### keyed tumbling count: LMDB with a checkpoint every second vs memory (baseline)");
    await workload();
    console.log("### checkpoint duration vs dirty state");
    await checkpointDuration();
    console.log("### recovery time with large state");
    await recovery();
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
