/**
 * Many random kill points: small checkpointed jobs (keyed sequence numbers, tumbling windows, CEP) are killed
 * with SIGKILL at seeded random moments, again and again, each run restarted from its last checkpoint, and
 * every round's committed output is compared with the failure-free reference run.
 *
 * The plan is drawn from one seed (GRESS_CRASH_SEED, default below) and printed, so a failure reproduces with
 * `GRESS_CRASH_SEED=<seed> GRESS_CRASH_KILLS=<n>`. The number of kills defaults per runtime to what a child
 * start costs there (Node with tsx starts slowest); GRESS_CRASH_KILLS asks for more (e.g. 1000).
 */
import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { assertSameOutput, type CrashOutcome, type JobConfig, runToCompletion, sequenceOf } from "./harness.ts";

const runtime = "Bun" in globalThis ? "bun" : "Deno" in globalThis ? "deno" : "node";
const DEFAULT_KILLS: Record<string, number> = { node: 15, bun: 45, deno: 30 };
const SEED = Number(process.env.GRESS_CRASH_SEED ?? 20_261_204);
const TARGET = Number(process.env.GRESS_CRASH_KILLS ?? DEFAULT_KILLS[runtime]);

// Small inputs: a run takes a few hundred ms once records flow, so a kill at 0–300 ms lands anywhere in it.
const CONFIGS: JobConfig[] = [
  { kind: "keyed-seq", count: 6000, keys: 12, seed: 5, intervalMs: 40, ratePerSecond: 20_000 },
  { kind: "window", count: 6000, keys: 5, seed: 7, intervalMs: 40, ratePerSecond: 20_000 },
  { kind: "pattern", count: 5000, keys: 8, seed: 9, intervalMs: 40, ratePerSecond: 20_000 },
];

/** A seeded generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe(`exactly-once after many random SIGKILLs (seed ${SEED}, ${TARGET} kills on ${runtime})`, () => {
  const references = new Map<string, CrashOutcome>();
  let kills = 0;
  let rounds = 0;
  before(async () => {
    for (const c of CONFIGS) references.set(c.kind, await runToCompletion(c));
  });
  after(() => {
    console.log(`crash kills: ${kills} random SIGKILLs in ${rounds} rounds, every round equal to its reference (seed ${SEED}, ${runtime})`);
  });

  it("every round, killed at seeded random moments, commits the same output as its reference", { timeout: 3_600_000 }, async () => {
    const random = rng(SEED);
    while (kills < TARGET) {
      const config = CONFIGS[rounds % CONFIGS.length]!;
      // 5–12 kills per round, each 0–300 ms after records start to flow in its run.
      const planned = 5 + Math.floor(random() * 8);
      const delays = Array.from({ length: planned }, () => Math.floor(random() * 300));
      rounds++;
      const where = `round ${rounds} (${config.kind}, kills after ${delays.join(", ")} ms; seed ${SEED})`;
      const outcome = await runToCompletion(config, { killAfterMs: delays }, planned + 5);
      kills += outcome.kills;
      assertSameOutput(outcome, references.get(config.kind)!, sequenceOf(config.kind), where);
    }
    assert.ok(kills >= TARGET, `${kills} kills happened`);
  });
});
