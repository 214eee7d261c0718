/**
 * gress_end_to_end_latency_seconds: sampled at the source, observed by each sink when its write is done and,
 * for two-phase-commit sinks, when the checkpoint that covers the write completed.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { bucketQuantile, Job, LATENCY_BUCKETS, lmdbState } from "../../lib/index.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The histogram's lines of one sink and stage: `le` → cumulative count, plus _count. */
function series(text: string, sink: string, stage: string): { buckets: Map<string, number>; count: number | undefined } {
  const buckets = new Map<string, number>();
  let count: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.includes(`sink="${sink}"`) || !line.includes(`stage="${stage}"`)) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (line.startsWith("gress_end_to_end_latency_seconds_bucket{") && le !== undefined) buckets.set(le, value);
    if (line.startsWith("gress_end_to_end_latency_seconds_count{")) count = value;
  }
  return { buckets, count };
}

describe("end-to-end latency histogram", () => {
  it("a synchronous sink observes sampled records, in buckets from 1 ms to 60 s; there is no committed series", async () => {
    const job = new Job({ name: "lat-sync" });
    job
      .fromIterable(Array.from({ length: 50_000 }, (_, i) => i))
      .map((x) => x + 1)
      .sinkTo({ name: "out", write() {} });
    const started = performance.now();
    await job.run();
    const elapsedMs = performance.now() - started;
    const samples = job.metrics.latency.seq;
    assert.ok(samples >= 1, "at least one sample");
    // At most one sample per millisecond, and never one per record.
    assert.ok(samples <= Math.ceil(elapsedMs) + 1, `${samples} samples in ${elapsedMs.toFixed(0)} ms`);
    const text = await job.metrics.text();
    const written = series(text, "out", "written");
    assert.deepEqual([...written.buckets.keys()], [...LATENCY_BUCKETS.map(String), "+Inf"]);
    assert.equal(written.count, samples);
    assert.equal(written.buckets.get("+Inf"), samples);
    const cumulative = [...written.buckets.values()];
    assert.deepEqual(
      cumulative,
      [...cumulative].sort((a, b) => a - b),
      "cumulative buckets",
    );
    assert.equal(series(text, "out", "committed").count, undefined);
  });

  it("an asynchronous write is observed when its promise resolves", async () => {
    const job = new Job({ name: "lat-async" });
    job.fromIterable([1, 2, 3]).sinkTo({ name: "slow", write: () => sleep(30) });
    await job.run();
    const h = job.metrics.sink("slow").latency("written");
    assert.ok(h.count >= 1);
    // Every observation took at least the 30 ms of the write: nothing in the buckets up to 25 ms.
    assert.equal(h.counts.slice(0, LATENCY_BUCKETS.indexOf(0.025) + 1).reduce((a, b) => a + b, 0), 0, JSON.stringify(h.counts));
    assert.ok(h.sum >= 0.029 * h.count, `sum ${h.sum}`);
  });

  it("a two-phase-commit sink also observes each sample when its checkpoint completes, later than the write", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gress-latency-"));
    try {
      const job = new Job({ name: "lat-2pc", state: lmdbState({ path: join(dir, "state") }), checkpoints: { intervalMs: 20, log: () => {} } });
      let written = 0;
      job
        .fromIterable(Array.from({ length: 20_000 }, (_, i) => i))
        .sinkTo({
          name: "tx",
          write: async () => {
            if (++written % 2_000 === 0) await sleep(5);
          },
          preCommit: async (id) => id,
          commit: async () => {
            await sleep(10);
          },
        });
      await job.run();
      const w = job.metrics.sink("tx").latency("written");
      const c = job.metrics.sink("tx").latency("committed");
      assert.ok(w.count >= 1);
      // Every sample written is committed (the input ends with a final checkpoint), each after its 10 ms commit.
      assert.equal(c.count, w.count);
      assert.ok(c.sum >= w.sum + 0.01 * c.count, `committed ${c.sum} s, written ${w.sum} s over ${c.count} samples`);
      assert.equal(series(await job.metrics.text(), "tx", "committed").count, c.count);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("bucketQuantile estimates as PromQL's histogram_quantile does", () => {
    // 10 in (0, 1], 10 in (1, 2]: linear within a bucket, the first from 0.
    assert.equal(bucketQuantile(0.5, [1, 2], [10, 10, 0]), 1);
    assert.equal(bucketQuantile(0.75, [1, 2], [10, 10, 0]), 1.5);
    assert.equal(bucketQuantile(0.25, [1, 2], [10, 10, 0]), 0.5);
    // Ranks in the +Inf bucket give the highest finite bound.
    assert.equal(bucketQuantile(0.99, [1, 2], [1, 0, 9]), 2);
    assert.ok(Number.isNaN(bucketQuantile(0.5, [1, 2], [0, 0, 0])));
  });
});
