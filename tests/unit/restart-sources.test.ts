/**
 * The file source opened again by a restart (lib/job.ts `restart`): a job whose sink fails once mid-run
 * restarts, the same FileSource object is closed and opened again, and it reads on from the restored
 * checkpoint's byte offset (exactly-once output through the file sink), or from the start of the file without
 * checkpoints (at-least-once: what the failed attempt wrote is written again). No descriptor of the input
 * file stays open. Before the fix, the reopened source kept its "closed" flag and read nothing: the restarted
 * job never ended (here: the run is cancelled after a bound and the test fails).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileSink, fileSource, readCommitted } from "../../connectors/file/index.ts";
import { Job, type Sink, sinkFn } from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";
import { openFilesUnder } from "../support/resources.ts";

const tempDir = tempDirs("gress-restart-sources-");


/** Runs the job; a run that does not settle within `ms` is cancelled and fails the test (a restarted source that reads nothing). */
async function runWithin(job: Job, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      job.cancel();
      reject(new Error(`job "${job.name}" did not end within ${ms} ms (restarts: ${job.metrics.restarts})`));
    }, ms);
  });
  try {
    await Promise.race([job.run(), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** An NDJSON input of `total` lines `{"i":n}`. */
function input(dir: string, total: number): string {
  const path = join(dir, "in.ndjson");
  let text = "";
  for (let i = 0; i < total; i++) text += `{"i":${i}}\n`;
  writeFileSync(path, text);
  return path;
}

/**
 * Wraps `inner` so that its first run fails once `failAfter()` holds; that run also yields to the event loop
 * every 500 writes, so that checkpoints complete while it reads. Counts the writes per run.
 */
function failOnce<T>(inner: Sink<T>, failAfter: () => boolean): { sink: Sink<T>; writes: number[] } {
  const writes: number[] = [];
  const sink: Sink<T> = {
    name: inner.name,
    open(ctx) {
      writes.push(0);
      return inner.open?.(ctx);
    },
    write(v, r) {
      const run = writes.length;
      writes[run - 1] = (writes[run - 1] ?? 0) + 1;
      if (run === 1 && failAfter()) throw new Error("connection lost");
      const done = inner.write(v, r);
      if (run === 1 && (writes[0] ?? 0) % 500 === 0) return Promise.resolve(done).then(() => new Promise((resolve) => setTimeout(resolve, 1)));
      return done;
    },
    ...(inner.preCommit !== undefined ? { preCommit: (id: number) => inner.preCommit!(id) } : {}),
    ...(inner.commit !== undefined ? { commit: (id: number, h: unknown) => inner.commit!(id, h) } : {}),
    ...(inner.abort !== undefined ? { abort: (id: number, h: unknown) => inner.abort!(id, h) } : {}),
    flush: () => inner.flush?.(),
    close: () => inner.close?.(),
  };
  return { sink, writes };
}

describe("a restart opens the file source again", () => {
  it("with checkpoints: it reads on from the restored byte offset; the committed output has every line once", async () => {
    const dir = tempDir();
    const total = 60_000;
    const path = input(dir, total);
    const state = new LmdbStateBackend({ path: join(dir, "state"), mapSize: 64 * 1024 * 1024, durability: "process" });
    const log: string[] = [];
    const job = new Job({
      name: "file-restart",
      state,
      checkpoints: { intervalMs: 10, timeoutMs: 5_000, log: () => {} },
      restart: { strategy: "fixed-delay", attempts: 2, delayMs: 10, log: (m) => log.push(m) },
    });
    const out = join(dir, "out");
    const { sink, writes } = failOnce(fileSink<{ i: number }>({ dir: out, name: "out" }), () => job.metrics.checkpointsCompleted >= 2);
    const source = fileSource<{ i: number }>({ path, batch: 200, chunkBytes: 4096 });
    job.source(source).sinkTo(sink);
    try {
      await runWithin(job, 30_000);
    } finally {
      await state.close();
    }
    assert.equal(job.metrics.restarts, 1, log.join(" | "));
    assert.match(log[0] ?? "", /after ERR_SINK: sink "out" failed to write: connection lost/);
    assert.equal(writes.length, 2, "the sink was opened again");
    assert.ok((writes[0] ?? 0) < total, `the first run failed mid-run (${writes[0]} writes)`);
    assert.ok((writes[1] ?? 0) < total, `the restarted run read on from the checkpoint, not from byte 0 (${writes[1]} writes)`);
    const values = readCommitted<{ i: number }>(out, "out").map((r) => r.i);
    assert.equal(values.length, total, "every line committed");
    assert.equal(new Set(values).size, total, "each exactly once");
    assert.deepEqual(openFilesUnder(dir).filter((f) => f.endsWith("in.ndjson")), [], "the input file is closed");
  });

  it("without checkpoints: it reads the file again from the start (at-least-once: the failed run's lines twice)", async () => {
    const dir = tempDir();
    const total = 20_000;
    const path = input(dir, total);
    const log: string[] = [];
    const job = new Job({ name: "file-restart-nocp", restart: { strategy: "fixed-delay", attempts: 2, delayMs: 10, log: (m) => log.push(m) } });
    const seen: number[] = [];
    const { sink, writes } = failOnce(
      sinkFn<{ i: number }>("out", (v) => void seen.push(v.i)),
      (): boolean => (writes[0] ?? 0) > 5_000,
    );
    job.source(fileSource<{ i: number }>({ path, batch: 200, chunkBytes: 4096 })).sinkTo(sink);
    await runWithin(job, 30_000);
    assert.equal(job.metrics.restarts, 1, log.join(" | "));
    const failedRun = (writes[0] ?? 0) - 1; // the write that threw took nothing
    assert.equal(failedRun, 5_000);
    assert.equal(writes[1], total, "the restarted run read the whole file");
    assert.equal(seen.length, failedRun + total);
    const counts = new Map<number, number>();
    for (const i of seen) counts.set(i, (counts.get(i) ?? 0) + 1);
    for (let i = 0; i < total; i++) assert.equal(counts.get(i), i < failedRun ? 2 : 1, `line ${i}`);
    assert.deepEqual(openFilesUnder(dir).filter((f) => f.endsWith("in.ndjson")), [], "the input file is closed");
  });
});
