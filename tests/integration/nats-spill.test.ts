// Spill to disk (issue 14): a core NATS subject cannot be paused, so while a stalled sink holds the job the
// source buffers in memory, then in spill files, within fixed bounds. A publisher in a child process sends
// GRESS_SPILL_RATE messages/s (default 100 000) for GRESS_SPILL_STALL_S seconds (default 10; the issue's
// figure is 60: `GRESS_SPILL_STALL_S=60`), while the sink holds every write; then the sink recovers. Checked:
// the job's RSS stays under GRESS_SPILL_MAX_RSS_MB (default 512) throughout, and every message is written to
// the sink exactly once, or counted as dropped (refused by the full buffer), nothing else.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { natsCoreSource } from "../../connectors/nats/index.ts";
import { Job } from "../../lib/job.ts";
import type { Sink } from "../../lib/sink.ts";

const NATS_URL: string = process.env.GRESS_NATS_URL ?? "";
if (NATS_URL === "") throw new Error('GRESS_NATS_URL is not set: run `scripts/services up` and `eval "$(scripts/services env)"`');

const positive = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const v = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return v;
};
const STALL_S = positive("GRESS_SPILL_STALL_S", 10);
const RATE = positive("GRESS_SPILL_RATE", 100_000);
const MAX_RSS_MB = positive("GRESS_SPILL_MAX_RSS_MB", 512);
const PUBLISHER = fileURLToPath(new URL("./nats-spill-publisher.mjs", import.meta.url));
const run = Math.random().toString(36).slice(2, 8);
const MB = 1024 * 1024;

interface Outcome {
  count: number;
  delivered: number;
  duplicates: number;
  seen: Uint8Array;
  dropped: number;
  spilled: number;
  maxRssMb: number;
  maxDiskMb: number;
  maxMemoryRecords: number;
  publishSeconds: number;
  drainSeconds: number;
  filesLeft: string[];
  /** Prometheus samples while stalled (after publishing), and after the drain. */
  stalledMetrics: Record<string, number | undefined>;
  drainedMetrics: Record<string, number | undefined>;
}

const SERIES = ["gress_source_buffered_records{where=\"memory\"", "gress_source_buffered_records{where=\"disk\"", "gress_source_spill_bytes{", "gress_source_spilled_total{", "gress_source_dropped_total{"];
/** The job's samples of the spill series for source `name` (the exposition orders labels as declared, job last). */
async function spillMetrics(job: Job, name: string): Promise<Record<string, number | undefined>> {
  const text = await job.metrics.text();
  const out: Record<string, number | undefined> = {};
  for (const series of SERIES) {
    const [metric, labels = ""] = series.split("{");
    const prefix = `${metric}{source="${name}"${labels === "" ? "" : `,${labels}`}`;
    const line = text.split("\n").find((l) => l.startsWith(prefix));
    out[series] = line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return out;
}

/** Runs the scenario: `count` messages at RATE into a job whose sink holds every write until they are all published. */
async function stallAndRecover(tag: string, count: number, spill: { maxSpillBytes: number }): Promise<Outcome> {
  const subject = `spill.${tag}.${run}`;
  const dir = mkdtempSync(join(tmpdir(), "gress-nats-spill-"));
  const seen = new Uint8Array(count);
  let delivered = 0;
  let duplicates = 0;
  let stalled = true;
  const held: (() => void)[] = [];
  const sink: Sink<{ i: number }> = {
    name: "stallable",
    write(v) {
      if ((seen[v.i] as number) > 0) duplicates++;
      seen[v.i] = 1;
      delivered++;
      // Stalled: the write does not finish until the sink recovers; the job's in-flight bound presses the sources.
      if (stalled) return new Promise<void>((resolve) => held.push(resolve));
    },
  };
  const job = new Job({ name: `nats-spill-${tag}` });
  const src = natsCoreSource<{ i: number }>({ name: `spill-${tag}`, servers: NATS_URL, subject, maxBuffered: 10_000, spill: { dir, ...spill } });
  job.source(src).sinkTo(sink, { maxInFlight: 1000 });
  const done = job.run();
  let failure: unknown;
  done.catch((e: unknown) => {
    failure = e;
  });
  let maxRss = 0;
  let maxDisk = 0;
  let maxMemoryRecords = 0;
  const sample = (): void => {
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
    maxDisk = Math.max(maxDisk, src.buffered.diskBytes);
    maxMemoryRecords = Math.max(maxMemoryRecords, src.buffered.memory);
  };
  const sampler = setInterval(sample, 50);
  try {
    // The subscription is made when the source opens; give it time before publishing (core NATS keeps nothing).
    await new Promise((r) => setTimeout(r, 500));
    const published = await new Promise<{ published: number; seconds: number }>((resolve, reject) => {
      const child = spawn(process.execPath, [PUBLISHER, NATS_URL, subject, String(count), String(RATE)], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.on("error", reject);
      child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as { published: number; seconds: number }) : reject(new Error(`publisher exited with ${code}`))));
    });
    assert.equal(published.published, count);
    // Everything the server sent has reached the source (or the wait times out, naming what is missing).
    const deadline = Date.now() + 30_000;
    while (src.counts.received < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(src.counts.received, count, "the source received every published message (NATS dropped none)");
    const stalledMetrics = await spillMetrics(job, src.name);
    const recoverAt = Date.now();
    stalled = false;
    for (const r of held.splice(0)) r();
    const drainDeadline = Date.now() + 120_000 + STALL_S * 4000;
    while (delivered + src.counts.dropped + src.counts.deadLetters < count) {
      if (failure !== undefined) throw failure;
      if (Date.now() > drainDeadline) throw new Error(`not drained: delivered ${delivered}, dropped ${src.counts.dropped}, buffered ${JSON.stringify(src.buffered)} of ${count}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const drainSeconds = (Date.now() - recoverAt) / 1000;
    sample();
    // Anything more would be a duplicate: give it a moment to show.
    await new Promise((r) => setTimeout(r, 200));
    const filesLeft = readdirSync(dir).filter((f) => f.endsWith(".spill"));
    const drainedMetrics = await spillMetrics(job, src.name);
    return {
      count,
      delivered,
      duplicates,
      seen,
      dropped: src.counts.dropped,
      spilled: src.counts.spilled,
      maxRssMb: maxRss / MB,
      maxDiskMb: maxDisk / MB,
      maxMemoryRecords,
      publishSeconds: published.seconds,
      drainSeconds,
      filesLeft,
      stalledMetrics,
      drainedMetrics,
    };
  } finally {
    clearInterval(sampler);
    stalled = false;
    for (const r of held.splice(0)) r();
    job.cancel();
    await done.catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

const report = (o: Outcome): string =>
  `${o.count} messages at ${RATE}/s asked, ${Math.round(o.count / o.publishSeconds)}/s achieved (${o.publishSeconds.toFixed(1)} s): delivered ${o.delivered}, dropped ${o.dropped}, spilled ${o.spilled}, duplicates ${o.duplicates}; max RSS ${o.maxRssMb.toFixed(0)} MB, max on disk ${o.maxDiskMb.toFixed(0)} MB, max in memory ${o.maxMemoryRecords} records; drained in ${o.drainSeconds.toFixed(1)} s after the sink recovered`;

describe("core NATS source: spill to disk while the sink is stalled (real nats-server)", () => {
  it(`${STALL_S} s stalled at ${RATE} messages/s: RSS bounded, every message written once, none dropped`, { timeout: 300_000 + STALL_S * 6000 }, async () => {
    const count = Math.round(STALL_S * RATE);
    const o = await stallAndRecover("long", count, { maxSpillBytes: 2 * 1024 * MB });
    console.log(`spill: ${report(o)}`);
    assert.equal(o.duplicates, 0);
    assert.equal(o.dropped, 0, "the disk bound (2 GiB) holds the whole stall");
    assert.equal(o.delivered, count);
    assert.equal(o.seen.indexOf(0), -1, "every id was written");
    assert.ok(o.spilled >= count - 20_000, `most of the stall went to disk (spilled ${o.spilled})`);
    assert.ok(o.maxMemoryRecords <= 10_000, `in memory at most maxBuffered (${o.maxMemoryRecords})`);
    assert.ok(o.maxRssMb < MAX_RSS_MB, `RSS ${o.maxRssMb.toFixed(0)} MB must stay under ${MAX_RSS_MB} MB`);
    assert.deepEqual(o.filesLeft, [], "the spill files are deleted once read");
    // The metrics say the same: while stalled most of it waited on disk; drained, nothing waits.
    assert.ok((o.stalledMetrics['gress_source_buffered_records{where="disk"'] ?? 0) > count / 2, JSON.stringify(o.stalledMetrics));
    assert.ok((o.stalledMetrics["gress_source_spill_bytes{"] ?? 0) > 0);
    assert.deepEqual(o.drainedMetrics, {
      'gress_source_buffered_records{where="memory"': 0,
      'gress_source_buffered_records{where="disk"': 0,
      "gress_source_spill_bytes{": 0,
      "gress_source_spilled_total{": o.spilled,
      "gress_source_dropped_total{": 0,
    });
  });

  it("beyond the disk bound the newest messages are dropped and counted; the rest are written once, in order", { timeout: 120_000 }, async () => {
    const count = Math.round(Math.min(RATE, 100_000));
    const o = await stallAndRecover("full", count, { maxSpillBytes: 256 * 1024 });
    console.log(`spill (bound 256 KiB): ${report(o)}`);
    assert.ok(o.dropped > 0, "the bound was reached");
    assert.ok(o.maxDiskMb <= 0.25);
    assert.equal(o.delivered + o.dropped, count, "every message written or counted as dropped");
    assert.equal(o.duplicates, 0);
    // Drop-newest: what was written is exactly the oldest messages, 0 .. delivered - 1.
    assert.equal(o.seen.subarray(0, o.delivered).indexOf(0), -1);
    assert.equal(o.seen.subarray(o.delivered).indexOf(1), -1);
    assert.equal(o.drainedMetrics["gress_source_dropped_total{"], o.dropped, "the drops are a metric");
  });
});
