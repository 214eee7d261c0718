/**
 * Exactly-once results of mapAsync under SIGKILL: a checkpointed job whose async calls (0–6 ms, up to 64 in
 * flight) are in flight at every checkpoint is killed at failpoints of the checkpoint protocol and at random
 * moments, restarted until it completes, and its committed output is compared with a failure-free run.
 * The inputs in flight at a barrier are in the checkpoint and called again on recovery: without that, results
 * would be lost (gaps in the per-key numbering, a smaller digest).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { assertSameOutput, type CrashOutcome, type CrashPlan, duplicates, runFixtureToCompletion } from "./harness.ts";

const FIXTURE = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "fixtures", "async-job.ts");

interface Config {
  readonly mode: "per-key" | "unordered";
  readonly count: number;
  readonly keys: number;
  readonly seed: number;
  readonly intervalMs: number;
  readonly ratePerSecond: number;
}

/** Runs the job until it completes: the first runs armed as planned, the rest left to finish. */
const runToCompletion = (config: Config, plan: CrashPlan = {}): Promise<CrashOutcome> => runFixtureToCompletion(FIXTURE, config, plan, 20);

let killed = 0;
after(() => console.log(`crash kills: ${killed} SIGKILLs of async-I/O jobs (async-exactly-once.test.ts)`));

const CONFIGS: Config[] = [
  { mode: "per-key", count: 5_000, keys: 16, seed: 41, intervalMs: 40, ratePerSecond: 20_000 },
  { mode: "unordered", count: 5_000, keys: 16, seed: 43, intervalMs: 40, ratePerSecond: 20_000 },
];

const PLANS: [title: string, plan: CrashPlan][] = [
  ["between two checkpoints", { failpoints: ["between-checkpoints:3"] }],
  ["inside the LMDB transaction of a checkpoint", { failpoints: ["checkpoint-snapshot:3"] }],
  ["at a random moment", { killAfterMs: [120] }],
];

for (const config of CONFIGS) {
  describe(`mapAsync (${config.mode}) is exactly-once after SIGKILL`, () => {
    let reference: CrashOutcome;
    before(async () => {
      reference = await runToCompletion(config);
    });

    it("the failure-free run has one result per input", () => {
      assert.equal(reference.kills, 0);
      assert.equal(reference.lines.length, config.count);
      assert.equal(duplicates(reference.lines), 0);
    });

    for (const [title, plan] of PLANS) {
      it(`killed ${title}: the same output`, async () => {
        const outcome = await runToCompletion(config, plan);
        killed += outcome.kills;
        assert.ok(outcome.kills >= 1, "the job was killed");
        assertSameOutput(outcome, reference, config.mode === "per-key" ? "seq" : undefined);
      });
    }
  });
}
