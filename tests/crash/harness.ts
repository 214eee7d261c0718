/**
 * Crash-test harness: runs a fixture job (tests/crash/fixtures/job.ts unless told otherwise) in a child process
 * of the current runtime (Node with tsx, Bun, or Deno), kills it with SIGKILL — at a named failpoint
 * (GRESS_FAILPOINT) or after a random delay — restarts it until it reports "done", and digests the committed
 * output. A fixture takes its JSON config in argv[2], prints "running" when records flow and "done" at the end,
 * and commits its output with the file sink under the config's outDir as "out" (see fixtures/common.ts).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { readCommitted } from "../../connectors/file/index.ts";

const FIXTURE = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "fixtures", "job.ts");

/** The command that runs a TypeScript file on the runtime running the tests. */
export function childCommand(file: string): [string, string[]] {
  if ("Bun" in globalThis) return [process.execPath, ["run", file]];
  if ("Deno" in globalThis) return [process.execPath, ["run", "-A", "--unstable-sloppy-imports", file]];
  return [process.execPath, ["--import", "tsx", file]];
}

export interface JobConfig {
  readonly kind: "keyed-seq" | "window" | "pattern" | "broadcast" | "dynamic";
  readonly count: number;
  readonly keys: number;
  readonly seed: number;
  readonly intervalMs: number;
  readonly ratePerSecond?: number;
}

/** One child run: how it ended. */
interface RunResult {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(fixture: string, args: string, failpoint: string | undefined, killAfterMs: number | undefined): Promise<RunResult> {
  const [cmd, argv] = childCommand(fixture);
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
      // Random kills are timed from the moment records flow, so that they land in processing, not start-up.
      if (killAfterMs !== undefined && timer === undefined && stdout.includes("running")) {
        timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
      }
    });
    child.stderr.on("data", (d: Uint8Array) => (stderr += String(d)));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** How to crash the job: failpoints for the first runs, or random kill delays. */
export interface CrashPlan {
  /** GRESS_FAILPOINT value per run; runs past the list are not armed. */
  readonly failpoints?: readonly string[];
  /** Kill this many ms after records start to flow, per run (random kills); runs past the list run to the end. */
  readonly killAfterMs?: readonly number[];
}

/** Outcome of running a job to completion through crashes. */
export interface CrashOutcome {
  readonly runs: number;
  readonly kills: number;
  /** Wall time of the last (completing) run, in ms. */
  readonly lastRunMs: number;
  readonly lines: string[];
  readonly records: Record<string, unknown>[];
}

/** Runs the fixture job (fixtures/job.ts) until it completes, crashing it as planned. */
export function runToCompletion(config: JobConfig, plan: CrashPlan = {}, maxRuns = 40): Promise<CrashOutcome> {
  return runFixtureToCompletion(FIXTURE, config, plan, maxRuns);
}

/** Runs the given fixture file with `config` until it completes, crashing it as planned. */
export async function runFixtureToCompletion(fixture: string, config: object, plan: CrashPlan = {}, maxRuns = 40): Promise<CrashOutcome> {
  const dir = mkdtempSync(join(tmpdir(), "gress-crash-"));
  const args = JSON.stringify({ ...config, stateDir: join(dir, "state"), outDir: join(dir, "out") });
  let kills = 0;
  try {
    for (let run = 0; run < maxRuns; run++) {
      const started = performance.now();
      const r = await runChild(fixture, args, plan.failpoints?.[run], plan.killAfterMs?.[run]);
      if (r.signal === "SIGKILL") {
        kills++;
        continue;
      }
      if (r.code !== 0 || !r.stdout.includes("done")) {
        throw new Error(`run ${run + 1} ended with code ${r.code} signal ${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr.slice(-3000)}`);
      }
      const records = readCommitted<Record<string, unknown>>(join(dir, "out"), "out");
      return { runs: run + 1, kills, lastRunMs: performance.now() - started, lines: records.map((x) => JSON.stringify(x)), records };
    }
    throw new Error(`the job did not complete in ${maxRuns} runs`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `count` kill delays (ms after records start to flow) in [minMs, maxMs), drawn from `seed` by a linear
 * congruential generator: the same plan in every run and on every runtime.
 */
export function killDelays(seed: number, count: number, maxMs: number, minMs = 0): number[] {
  let s = seed;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return minMs + ((s >>> 8) % (maxMs - minMs));
  });
}

/**
 * How a job's output shows that no keyed state was lost or replayed: "seq", per key the numbers 1, 2, 3, … in
 * `seq`; "windows", per key one 1-second window after the other (`start`). CEP output has neither: its identity
 * is the set of input ids each result holds, which the digest covers.
 */
export type Sequence = "seq" | "windows";

/** The sequence check of a fixtures/job.ts kind's output. */
export function sequenceOf(kind: JobConfig["kind"]): Sequence | undefined {
  return kind === "keyed-seq" || kind === "broadcast" ? "seq" : kind === "window" ? "windows" : undefined;
}

/**
 * Asserts that a crashed job committed the same output as its failure-free reference run: no duplicates, as
 * many records, the same set digest, and unbroken per-key sequences where the output has them. `where`
 * prefixes the messages.
 */
export function assertSameOutput(outcome: CrashOutcome, reference: CrashOutcome, sequence: Sequence | undefined, where?: string): void {
  const at = where === undefined ? "" : `${where}: `;
  assert.equal(duplicates(outcome.lines), 0, `${at}no duplicate output records`);
  assert.equal(outcome.lines.length, reference.lines.length, `${at}same number of output records`);
  assert.deepEqual(setDigest(outcome.lines), setDigest(reference.lines), `${at}same set digest (count, Σh, Σh²)`);
  if (sequence === "seq") assert.deepEqual(brokenSequences(outcome.records, (r) => r.seq as number, 1, 1), [], `${at}per-key sequence numbers step by exactly 1`);
  if (sequence === "windows") assert.deepEqual(brokenSequences(outcome.records, (r) => (r.start as number) / 1000, 1), [], `${at}per-key windows follow each other`);
}

const M64 = (1n << 64n) - 1n;

/** 64-bit hash of a string (two independent 32-bit FNV-1a style lanes). */
export function hash64(s: string): bigint {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  return (BigInt(a >>> 0) << 32n) | BigInt(b >>> 0);
}

/** Set digest of a multiset of lines: (count, Σh, Σh²) mod 2^64 — order-free, and unlike XOR it sees duplicates. */
export function setDigest(lines: readonly string[]): { count: number; sum: bigint; sumSq: bigint } {
  let sum = 0n;
  let sumSq = 0n;
  for (const line of lines) {
    const h = hash64(line);
    sum = (sum + h) & M64;
    sumSq = (sumSq + ((h * h) & M64)) & M64;
  }
  return { count: lines.length, sum, sumSq };
}

/** Number of lines that occur more than once. */
export function duplicates(lines: readonly string[]): number {
  return lines.length - new Set(lines).size;
}

/** Keys whose sequence (sorted) does not step by exactly `step` from its first value; empty when all do. */
export function brokenSequences(
  records: readonly Record<string, unknown>[],
  seqOf: (r: Record<string, unknown>) => number,
  step: number,
  first?: number,
): string[] {
  const byKey = new Map<string, number[]>();
  for (const r of records) {
    const k = String(r.key);
    let list = byKey.get(k);
    if (list === undefined) byKey.set(k, (list = []));
    list.push(seqOf(r));
  }
  const bad: string[] = [];
  for (const [k, list] of byKey) {
    list.sort((x, y) => x - y);
    if (first !== undefined && list[0] !== first) bad.push(`${k}: starts at ${list[0]}, not ${first}`);
    for (let i = 1; i < list.length; i++) {
      if (list[i]! - list[i - 1]! !== step) {
        bad.push(`${k}: ${list[i - 1]} → ${list[i]}`);
        break;
      }
    }
  }
  return bad;
}
