/**
 * Runs tests/integration/kafka-eos-job.ts in a child process (Node with tsx), optionally armed with a
 * failpoint or killed with SIGKILL a while after records flow, and reports how it ended.
 * @module
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import process from "node:process";

const CHILD = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "kafka-eos-job.ts");

/** How a child run ended. */
export interface ChildRun {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the job once; a guard kills it after `guardMs`. */
export function runEosJob(config: object, options: { failpoint?: string; killAfterMs?: number; guardMs?: number } = {}): Promise<ChildRun> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  delete env.GRESS_FAILPOINT;
  if (options.failpoint !== undefined) env.GRESS_FAILPOINT = options.failpoint;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, JSON.stringify(config)], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const guard = setTimeout(() => child.kill("SIGKILL"), options.guardMs ?? 90_000);
    child.stdout.on("data", (d: Uint8Array) => {
      stdout += String(d);
      if (options.killAfterMs !== undefined && timer === undefined && stdout.includes("running")) timer = setTimeout(() => child.kill("SIGKILL"), options.killAfterMs);
    });
    child.stderr.on("data", (d: Uint8Array) => (stderr += String(d)));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Input events: `i` = 0..count-1, key `k<i mod keys>`. */
export function events(count: number, keys: number): { i: number; key: string }[] {
  return Array.from({ length: count }, (_, i) => ({ i, key: `k${i % keys}` }));
}

/**
 * Checks the committed output of the sequence job against its input: every input record exactly once, and
 * per key the sequence numbers exactly 1..n (state restored together with the positions). Returns problems.
 */
export function checkSequences(output: readonly { key: string; seq: number; i: number }[], count: number, keys: number): string[] {
  const problems: string[] = [];
  const seen = new Map<number, number>();
  for (const o of output) seen.set(o.i, (seen.get(o.i) ?? 0) + 1);
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !seen.has(i));
  const duplicated = [...seen].filter(([, n]) => n > 1).map(([i]) => i);
  if (missing.length > 0) problems.push(`${missing.length} of ${count} records missing (first: ${missing.slice(0, 5).join(", ")})`);
  if (duplicated.length > 0) problems.push(`${duplicated.length} records duplicated (first: ${duplicated.slice(0, 5).join(", ")})`);
  for (let k = 0; k < keys; k++) {
    const key = `k${k}`;
    const seqs = output.filter((o) => o.key === key).map((o) => o.seq).sort((a, b) => a - b);
    const expected = Math.floor(count / keys) + (k < count % keys ? 1 : 0);
    if (seqs.length !== expected || seqs.some((s, j) => s !== j + 1)) problems.push(`key ${key}: sequence numbers are not exactly 1..${expected} (got ${seqs.length}, first ${seqs.slice(0, 3).join(",")}, last ${seqs.slice(-3).join(",")})`);
  }
  return problems;
}
