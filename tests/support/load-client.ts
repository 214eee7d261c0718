/**
 * Load generators in a process of their own, for tests that measure latency: the generator's CPU (building
 * requests, framing, buffered bytes) then stays off the event loop that measures. And the percentile they
 * compare.
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";

/** A Node script run by {@link startLoadClient}. */
export interface LoadClient {
  /** Resolves once the script printed its first line, `readyLine`; rejects if it exited before. */
  readonly ready: Promise<void>;
  /** The script's exit code. */
  readonly exited: Promise<number | null>;
  /** What the script printed after its ready line. */
  result(): string;
  /** Ends the script's stdin: a script that runs until then stops. */
  stop(): void;
}

/** Runs `script` with `args` on this runtime's executable; its stderr goes to the test's. */
export function startLoadClient(script: string, args: readonly string[], readyLine: string): LoadClient {
  const child = spawn(process.execPath, [script, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.setEncoding("utf8");
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: string) => {
      out += chunk;
      if (out.startsWith(`${readyLine}\n`)) resolve();
    });
    void exited.then((code) => reject(new Error(`${script} exited (${code}) before it printed "${readyLine}"`)));
  });
  return {
    ready,
    exited,
    result: () => (out.startsWith(`${readyLine}\n`) ? out.slice(readyLine.length + 1) : out),
    stop: () => void child.stdin.end(),
  };
}

/** The 99th percentile of `xs` (nearest rank). */
export const p99 = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)] as number;
