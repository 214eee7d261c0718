/**
 * What the scale-out integration tests share: worker processes started from a job module (killed, frozen,
 * stopped by the tests), the tasks a worker runs read from its log, and a counter of committed output.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import assert from "node:assert/strict";
import { checkSequences, events } from "./kafka-eos-support.ts";
import { kafka, readCommitted, uniqueName } from "./kafka-support.ts";

const JOB = join(import.meta.dirname, "scaleout-job.ts");

export interface Worker {
  readonly child: ChildProcess;
  log: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a worker process of the job module `job` (default scaleout-job.ts) with `config` as JSON in argv[2]. */
export function startWorker(config: object, env: Record<string, string> = {}, job: string = JOB): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", job, JSON.stringify(config)], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  const w: Worker = {
    child,
    log: "",
    exited: new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal }))),
  };
  child.stdout?.on("data", (d: Buffer) => (w.log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (w.log += d.toString()));
  return w;
}

/** The tasks a worker runs now, from its log (started minus stopped). */
export const current = (w: Worker): string[] => {
  const now = new Set<string>();
  for (const m of w.log.matchAll(/task (\d+_\d+) (started|stopped)/g)) {
    if (m[2] === "started") now.add(m[1] as string);
    else now.delete(m[1] as string);
  }
  return [...now].sort();
};
export const started = (w: Worker): string[] => [...w.log.matchAll(/task (\d+_\d+) started/g)].map((m) => m[1] as string);

/** Counts committed output messages as they come (read_committed), to know when the job is through; keeps their values. */
export async function outputCounter(topic: string): Promise<{ count: () => number; values: () => readonly string[]; stop: () => Promise<void> }> {
  const consumer = kafka().consumer({ groupId: uniqueName("watch"), readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const values: string[] = [];
  await consumer.run({ eachBatch: async ({ batch }) => void values.push(...batch.messages.map((m) => m.value?.toString() ?? "")) });
  return { count: () => values.length, values: () => values, stop: () => consumer.disconnect() };
}

export const until = async (what: string, f: () => boolean, timeoutMs: number, workers: readonly Worker[]): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; worker logs:\n${workers.map((w) => w.log).join("\n---\n")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** The output read back, checked against the input: exactly once, per-key sequences in input order. */
export async function checkOutput(output: string, count: number, keys: number): Promise<void> {
  const read = (await readCommitted(output, 60_000)).map((m) => JSON.parse(m.value) as { key: string; seq: number; i: number });
  assert.deepEqual(checkSequences(read, count, keys), []);
  assert.equal(read.length, count, "exactly one output per input record");
  // The failure-free reference: seq j of a key belongs to that key's j-th input record.
  const expected = new Map<string, number>();
  const next = new Map<string, number>();
  for (const e of events(count, keys)) {
    const seq = (next.get(e.key) ?? 0) + 1;
    next.set(e.key, seq);
    expected.set(`${e.key}/${seq}`, e.i);
  }
  const wrong = read.filter((o) => expected.get(`${o.key}/${o.seq}`) !== o.i);
  assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} outputs pair a sequence number with another input record than the reference`);
}
