/**
 * Fault-scenario harness: runs tests/faults/job.ts in child processes like a supervisor would (a run that
 * fails is started again after a pause, as systemd or Kubernetes would), lets the scenario inject faults
 * while it runs (at the proxy, on the private service, or SIGKILL), and checks the committed output with the
 * crash suite's exactly-once checks against the failure-free reference: the input is deterministic, so the
 * reference is computed, not run.
 *
 * Each scenario records its figures (faults injected, kills, records compared, lost, duplicated) in the file
 * named by GRESS_FAULT_FIGURES, when set; scripts/test.mjs sums them at the end of the suite.
 * @module
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { brokenSequences, childCommand, duplicates, setDigest } from "../crash/harness.ts";
import type { Sequenced } from "../support/sequence.ts";
import { type FaultJobConfig, keyOf } from "./config.ts";

const JOB = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "job.ts");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One child process, while it runs. */
export interface RunningChild {
  readonly child: ChildProcess;
  /** 0-based number of the run. */
  readonly run: number;
  stdout(): string;
  kill(): void;
}

/** How a scenario drives the runs. */
export interface Drive {
  /** Called once per run when records flow ("running"). */
  readonly onRunning?: (c: RunningChild) => void | Promise<void>;
  /** Called with each stdout line. */
  readonly onLine?: (c: RunningChild, line: string) => void;
  /** GRESS_FAILPOINT per run. */
  readonly failpoints?: readonly (string | undefined)[];
  /** Called after a run ended and before the next starts (e.g. to wait out a transaction timeout). */
  readonly between?: (run: number, how: RunEnd) => Promise<void>;
  /** Pause of the "supervisor" before starting a failed run again. Default 500 ms. */
  readonly restartPauseMs?: number;
  readonly maxRuns?: number;
  /** A run still going after this long is killed and the scenario fails. Default 120 s. */
  readonly runTimeoutMs?: number;
  /** The test's signal: when it aborts (the test timed out or was cancelled), the run is killed and no other starts. */
  readonly signal?: AbortSignal;
}

/** How one run ended. */
export interface RunEnd {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Killed by the harness because it ran longer than `runTimeoutMs`: it hung. */
  readonly hung: boolean;
}

/** The runs of a scenario. */
export interface Runs {
  readonly runs: number;
  /** Runs ended by a SIGKILL of the scenario. */
  readonly kills: number;
  /** Runs that hung (no end within `runTimeoutMs`) and were killed: a failure of the scenario. */
  readonly hung: number;
  /** Runs that ended with a non-zero exit (a failure the supervisor restarted). */
  readonly failed: number;
  /** Restarts inside the job (its restart strategy), from "restart:" lines. */
  readonly restartsInJob: number;
  /** Last lines of stderr of each failed run: what the user saw. */
  readonly failures: string[];
  readonly stdout: string[];
  readonly stderr: string[];
}

function runOnce(config: FaultJobConfig, run: number, drive: Drive): Promise<RunEnd> {
  const [cmd, argv] = childCommand(JOB);
  const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: "1" };
  delete env.GRESS_FAILPOINT;
  const fp = drive.failpoints?.[run];
  if (fp !== undefined) env.GRESS_FAILPOINT = fp;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...argv, JSON.stringify(config)], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let partial = "";
    let started = false;
    const handle: RunningChild = { child, run, stdout: () => stdout, kill: () => child.kill("SIGKILL") };
    let hung = false;
    const guard = setTimeout(() => {
      hung = true;
      child.kill("SIGKILL");
    }, drive.runTimeoutMs ?? 120_000);
    child.stdout.on("data", (d: Uint8Array) => {
      stdout += String(d);
      partial += String(d);
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        drive.onLine?.(handle, line);
        if (line === "running" && !started) {
          started = true;
          Promise.resolve(drive.onRunning?.(handle)).catch(reject);
        }
      }
    });
    child.stderr.on("data", (d: Uint8Array) => (stderr += String(d)));
    const abort = (): void => {
      child.kill("SIGKILL");
    };
    drive.signal?.addEventListener("abort", abort);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      drive.signal?.removeEventListener("abort", abort);
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr, hung });
    });
  });
}

/**
 * Runs the job until a run prints "done" and exits 0. SIGKILLed runs and failed runs are started again (a
 * failed run after `restartPauseMs`). Fails the test after `maxRuns` runs.
 */
export async function runUntilDone(config: Omit<FaultJobConfig, "stateDir">, drive: Drive = {}): Promise<Runs> {
  const dir = mkdtempSync(join(tmpdir(), "gress-faults-state-"));
  const full = { ...config, stateDir: join(dir, "state") } as FaultJobConfig & { restart?: unknown };
  // GRESS_FAULTS_NO_RESTART=1: no restart strategy, only the supervisor's process restarts (to tell whether a
  // failure comes from restarting inside the process).
  if (process.env.GRESS_FAULTS_NO_RESTART === "1") delete full.restart;
  let kills = 0;
  let hung = 0;
  let failed = 0;
  let restartsInJob = 0;
  const failures: string[] = [];
  const stdout: string[] = [];
  const stderr: string[] = [];
  const maxRuns = drive.maxRuns ?? 30;
  try {
    for (let run = 0; run < maxRuns; run++) {
      if (drive.signal?.aborted) throw new Error(`the scenario was cancelled after ${run} runs`);
      const r = await runOnce(full, run, drive);
      stdout.push(r.stdout);
      stderr.push(r.stderr);
      if (process.env.GRESS_FAULTS_DEBUG) console.error(`run ${run}: code ${r.code} signal ${r.signal}\n${r.stdout}\n${r.stderr.slice(-8000)}`);
      restartsInJob += r.stdout.split("\n").filter((l) => l.startsWith("restart: ") && !/not restarted/.test(l)).length;
      if (r.code === 0 && r.stdout.includes("done")) return { runs: run + 1, kills, hung, failed, restartsInJob, failures, stdout, stderr };
      if (r.hung) {
        hung++;
        failures.push(`hung, killed after ${drive.runTimeoutMs ?? 120_000} ms; last output:\n${r.stdout.trim().split("\n").slice(-3).join("\n")}\n${r.stderr.trim().split("\n").slice(-3).join("\n")}`);
      } else if (r.signal === "SIGKILL") kills++;
      else {
        failed++;
        failures.push(r.stderr.trim().split("\n").slice(-3).join("\n"));
      }
      await drive.between?.(run, r);
      if (r.signal !== "SIGKILL" || r.hung) await sleep(drive.restartPauseMs ?? 500);
    }
    throw new Error(`the job did not complete in ${maxRuns} runs; last failures:\n${failures.slice(-3).join("\n---\n")}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What the exactly-once check compared. */
export interface Compared {
  readonly records: number;
  readonly lost: number;
  readonly duplicated: number;
}

const line = (o: Sequenced): string => `${o.key}|${o.seq}|${o.i}`;

/** The failure-free output of `count` input records over `keys` keys. */
export function reference(count: number, keys: number): Sequenced[] {
  const seq = new Map<string, number>();
  return Array.from({ length: count }, (_, i) => {
    const key = keyOf(i, keys);
    const s = (seq.get(key) ?? 0) + 1;
    seq.set(key, s);
    return { key, seq: s, i };
  });
}

/**
 * The exactly-once check against the reference: same count, no duplicates, same set digest (count, Σh, Σh²)
 * mod 2^64, and per key the sequence numbers 1, 2, 3, … without a gap. Returns what it compared.
 */
export function assertExactlyOnce(output: readonly Sequenced[], count: number, keys: number): Compared {
  const ref = reference(count, keys).map(line);
  const got = output.map(line);
  const have = new Set(got);
  const missing = ref.filter((l) => !have.has(l));
  const lost = missing.length;
  const duplicated = duplicates(got);
  const dupSample = duplicated === 0 ? [] : [...new Set(got.filter((l, i) => got.indexOf(l) !== i))].slice(0, 5);
  assert.equal(duplicated, 0, `no duplicate output records (${duplicated} duplicated, e.g. ${dupSample.join(", ")})`);
  const inputs = missing.map((l) => Number(l.split("|")[2]));
  assert.equal(
    lost,
    0,
    `no lost output records (${lost} of ${ref.length} lost: inputs ${Math.min(...inputs)}..${Math.max(...inputs)}, e.g. ${missing.slice(0, 5).join(", ")}; ${got.length} records in the output)`,
  );
  assert.equal(got.length, ref.length, "same number of output records as the reference");
  assert.deepEqual(setDigest(got), setDigest(ref), "same set digest (count, Σh, Σh²) as the reference");
  assert.deepEqual(
    brokenSequences(output as unknown as Record<string, unknown>[], (r) => r.seq as number, 1, 1),
    [],
    "per-key sequence numbers step by exactly 1 from 1",
  );
  return { records: got.length, lost, duplicated };
}

/** The figures of one scenario. */
export interface Figures {
  readonly scenario: string;
  readonly faults: number;
  readonly kills: number;
  readonly runs: number;
  readonly restarts: number;
  readonly records: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly seconds: number;
}

/** Prints a scenario's figures and appends them to GRESS_FAULT_FIGURES (for the suite's total). */
export function report(f: Figures): void {
  console.log(
    `fault scenario "${f.scenario}": ${f.faults} faults injected, ${f.kills} kills, ${f.runs} runs, ${f.restarts} restarts (in the job or of the process), ${f.records} records compared, lost ${f.lost}, duplicated ${f.duplicated}, ${f.seconds.toFixed(1)} s`,
  );
  const file = process.env.GRESS_FAULT_FIGURES;
  if (file !== undefined && file !== "") appendFileSync(file, `${JSON.stringify(f)}\n`);
}
