/**
 * Exactly-once under SIGKILL: a checkpointed job (LMDB state, generator source, transactional file sink) is
 * killed at every failpoint of the checkpoint protocol and at random moments, restarted until it completes,
 * and its committed output is compared with a failure-free reference run of the same seeded input.
 *
 * Child processes behave the same on Node, Bun and Deno (spawn, SIGKILL, exit signal), so this runs on all
 * three; each child runs on the runtime that runs the test.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { assertSameOutput, type CrashOutcome, type JobConfig, killDelays, runToCompletion, sequenceOf } from "./harness.ts";

const KEYED: JobConfig = { kind: "keyed-seq", count: 60_000, keys: 40, seed: 11, intervalMs: 80, ratePerSecond: 60_000 };
const WINDOW: JobConfig = { kind: "window", count: 60_000, keys: 8, seed: 23, intervalMs: 80, ratePerSecond: 60_000 };
const PATTERN: JobConfig = { kind: "pattern", count: 40_000, keys: 20, seed: 31, intervalMs: 80, ratePerSecond: 40_000 };

let killed = 0;
after(() => console.log(`crash kills: ${killed} SIGKILLs at failpoints and random moments (exactly-once.test.ts)`));

const FAILPOINTS: [title: string, plan: string[], kills: number][] = [
  ["between two checkpoints", ["between-checkpoints:3"], 1],
  ["during the snapshot (inside the LMDB transaction)", ["checkpoint-snapshot:3"], 1],
  ["after the LMDB commit, before flushed", ["after-commit:3"], 1],
  ["after flushed, before the sink commit", ["after-flush:3"], 1],
  ["after the sink commit, before the source ack", ["after-sink-commit:3"], 1],
  ["during recovery (after a crash after flushed)", ["after-flush:2", "recovery"], 2],
];

const TITLES: Record<JobConfig["kind"], string> = {
  "keyed-seq": "keyed state with per-key sequence numbers",
  window: "tumbling window count and sum",
  pattern: "CEP matches and timeouts (A → B → C within 400 ms)",
  broadcast: "keyed state with broadcast state (broadcast-exactly-once.test.ts)",
  dynamic: "dynamic CEP rules changed while running (dynamic-rules-exactly-once.test.ts)",
};

for (const config of [KEYED, WINDOW, PATTERN]) {
  describe(`exactly-once after SIGKILL: ${TITLES[config.kind]}`, () => {
    let reference: CrashOutcome;
    before(async () => {
      reference = await runToCompletion(config);
    });

    it("the failure-free reference run completes in one run and accounts for its input", () => {
      assert.equal(reference.runs, 1);
      assert.equal(reference.kills, 0);
      if (config.kind === "keyed-seq") assert.equal(reference.lines.length, config.count);
      else if (config.kind === "window") assert.equal(reference.records.reduce((n, r) => n + (r.count as number), 0), config.count);
      else {
        const kinds = new Set(reference.records.map((r) => r.kind));
        assert.ok(kinds.has("match") && kinds.has("timeout"), "the pattern job produced both matches and timeouts");
        assert.ok(reference.records.length > 500, `enough pattern results to compare (${reference.records.length})`);
      }
    });

    for (const [title, failpoints, kills] of FAILPOINTS) {
      it(`killed ${title}: same output as the reference`, async () => {
        const outcome = await runToCompletion(config, { failpoints });
        killed += outcome.kills;
        assert.equal(outcome.kills, kills, `the failpoint killed the job ${kills} time(s)`);
        assertSameOutput(outcome, reference, sequenceOf(config.kind));
      });
    }

    it("killed repeatedly at random moments: same output as the reference", async () => {
      // Seeded "random" delays of 0-400 ms after records start to flow (the input takes about a second), so
      // kills land during processing, checkpoints and commits alike, and each run makes only some progress.
      const outcome = await runToCompletion(config, { killAfterMs: killDelays(config.seed, 8, 400) });
      killed += outcome.kills;
      assert.ok(outcome.kills >= 3, `at least 3 random kills happened (got ${outcome.kills})`);
      assertSameOutput(outcome, reference, sequenceOf(config.kind));
    });
  });
}
