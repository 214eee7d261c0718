/**
 * Exactly-once results of mapAsync under SIGKILL: a checkpointed job whose async calls (0–6 ms, up to 64 in
 * flight) are in flight at every checkpoint is killed at failpoints of the checkpoint protocol and at random
 * moments, restarted until it completes, and its committed output is compared with a failure-free run.
 * The inputs in flight at a barrier are in the checkpoint and called again on recovery: without that, results
 * would be lost (gaps in the per-key numbering, a smaller digest).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { readCommitted } from "../../connectors/file/index.ts";
import { brokenSequences, childCommand, duplicates, setDigest } from "./harness.ts";

const FIXTURE = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "fixtures", "async-job.ts");

interface Config {
  readonly mode: "per-key" | "unordered";
  readonly count: number;
  readonly keys: number;
  readonly seed: number;
  readonly intervalMs: number;
  readonly ratePerSecond: number;
}

interface Outcome {
  readonly runs: number;
  readonly kills: number;
  readonly lines: string[];
  readonly records: Record<string, unknown>[];
}

/** One child run, armed with a failpoint or killed after a delay from the first record. */
function runChild(args: string, failpoint: string | undefined, killAfterMs: number | undefined): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const [cmd, argv] = childCommand(FIXTURE);
  const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: "1" };
  delete env.GRESS_FAILPOINT;
  if (failpoint !== undefined) env.GRESS_FAILPOINT = failpoint;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...argv, args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    child.stdout.on("data", (d: Uint8Array) => {
      stdout += String(d);
      if (killAfterMs !== undefined && timer === undefined && stdout.includes("running")) timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    });
    child.stderr.on("data", (d: Uint8Array) => (stderr += String(d)));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs the job until it completes: the first runs armed as planned, the rest left to finish. */
async function runToCompletion(config: Config, plan: { failpoints?: readonly string[]; killAfterMs?: readonly number[] } = {}): Promise<Outcome> {
  const dir = mkdtempSync(join(tmpdir(), "gress-crash-async-"));
  const args = JSON.stringify({ ...config, stateDir: join(dir, "state"), outDir: join(dir, "out") });
  let kills = 0;
  try {
    for (let run = 0; run < 20; run++) {
      const r = await runChild(args, plan.failpoints?.[run], plan.killAfterMs?.[run]);
      if (r.signal === "SIGKILL") {
        kills++;
        continue;
      }
      if (r.code !== 0 || !r.stdout.includes("done")) throw new Error(`run ${run + 1} ended with code ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr.slice(-3000)}`);
      const records = readCommitted<Record<string, unknown>>(join(dir, "out"), "out");
      return { runs: run + 1, kills, lines: records.map((x) => JSON.stringify(x)), records };
    }
    throw new Error("the job did not complete in 20 runs");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let killed = 0;
after(() => console.log(`crash kills: ${killed} SIGKILLs of async-I/O jobs (async-exactly-once.test.ts)`));

const CONFIGS: Config[] = [
  { mode: "per-key", count: 5_000, keys: 16, seed: 41, intervalMs: 40, ratePerSecond: 20_000 },
  { mode: "unordered", count: 5_000, keys: 16, seed: 43, intervalMs: 40, ratePerSecond: 20_000 },
];

const PLANS: [title: string, plan: { failpoints?: string[]; killAfterMs?: number[] }][] = [
  ["between two checkpoints", { failpoints: ["between-checkpoints:3"] }],
  ["inside the LMDB transaction of a checkpoint", { failpoints: ["checkpoint-snapshot:3"] }],
  ["at a random moment", { killAfterMs: [120] }],
];

for (const config of CONFIGS) {
  describe(`mapAsync (${config.mode}) is exactly-once after SIGKILL`, () => {
    let reference: Outcome;
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
        assert.equal(outcome.lines.length, reference.lines.length, "same number of output records");
        assert.equal(duplicates(outcome.lines), 0, "no duplicate output records");
        assert.deepEqual(setDigest(outcome.lines), setDigest(reference.lines), "same set digest");
        if (config.mode === "per-key") assert.deepEqual(brokenSequences(outcome.records, (r) => r.seq as number, 1, 1), [], "per-key numbers step by 1");
      });
    }
  });
}
