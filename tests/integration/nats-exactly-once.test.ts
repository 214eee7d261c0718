/**
 * NATS → Gress → NATS exactly-once: a checkpointed job (LMDB state, JetStream source acknowledged after
 * checkpoints, JetStream sink with checkpointed Nats-Msg-Ids) runs in a child process and is killed with
 * SIGKILL several times mid-run. The output stream must equal the failure-free reference: same count, same
 * set digest (count, Σh, Σh²) mod 2^64, zero duplicates, per-key sequence numbers 1..n.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { childCommand, duplicates, setDigest } from "../crash/harness.ts";

const NATS_URL = process.env.GRESS_NATS_URL;
if (NATS_URL === undefined) throw new Error("GRESS_NATS_URL is not set: run `scripts/services up` and `eval \"$(scripts/services env)\"`");

const FIXTURE = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "nats-exactly-once-job.ts");
const N = 3000;
const KEYS = 7;
const run = Math.random().toString(36).slice(2, 8);
const inStream = `EO_IN_${run}`;
const outStream = `EO_OUT_${run}`;
const outSubject = `eo.out.${run}`;
let nc: NatsConnection;
let jsm: JetStreamManager;
const dir = mkdtempSync(join(tmpdir(), "gress-nats-eo-"));

before(async () => {
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: inStream, subjects: [`eo.in.${run}`] });
  await jsm.streams.add({ name: outStream, subjects: [outSubject], duplicate_window: 120_000_000_000 });
  const js = jetstream(nc);
  const enc = new TextEncoder();
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) acks.push(js.publish(`eo.in.${run}`, enc.encode(JSON.stringify({ i, key: `k${(i * 7919) % KEYS}` }))));
  await Promise.all(acks);
});
after(async () => {
  await jsm.streams.delete(inStream).catch(() => {});
  await jsm.streams.delete(outStream).catch(() => {});
  await nc.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The failure-free reference: the same pipeline, computed directly in input order. */
function reference(): string[] {
  const seq = new Map<string, number>();
  const out: string[] = [];
  for (let i = 0; i < N; i++) {
    const key = `k${(i * 7919) % KEYS}`;
    const s = (seq.get(key) ?? 0) + 1;
    seq.set(key, s);
    out.push(JSON.stringify({ key, seq: s, i }));
  }
  return out;
}

async function outputCount(): Promise<number> {
  return (await jsm.streams.info(outStream)).state.messages;
}

async function readOutput(): Promise<string[]> {
  const name = `reader_${run}`;
  await jsm.consumers.add(outStream, { durable_name: name, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
  const consumer = await jetstream(nc).consumers.get(outStream, name);
  const total = await outputCount();
  const lines: string[] = [];
  const dec = new TextDecoder();
  while (lines.length < total) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    for await (const m of batch) lines.push(dec.decode(m.data));
  }
  return lines;
}

/** Runs the child; kills it `killAfterMs` after records flow, or (undefined) once the output is complete. */
function runChild(killAfterMs: number | undefined): Promise<{ killedMidRun: boolean; atKill: number; stderr: string; code: number | null }> {
  const [cmd, argv] = childCommand(FIXTURE);
  const args = JSON.stringify({ url: NATS_URL, inStream, outSubject, stateDir: join(dir, "state"), intervalMs: 100, ratePerSecond: 2500 });
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...argv, args], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let killedMidRun = false;
    let atKill = -1;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let poll: ReturnType<typeof setInterval> | undefined;
    if (killAfterMs === undefined) {
      // The last run: wait until the output is complete and quiet, then stop the (unbounded) job. Polling starts
      // at spawn, because a run that only has to replay already-stored output may emit nothing new.
      let last = -1;
      poll = setInterval(() => {
        void outputCount().then((n) => {
          if (n >= N && n === last) child.kill("SIGKILL");
          last = n;
        });
      }, 300);
    }
    child.stdout.on("data", (d: Uint8Array) => {
      if (killAfterMs === undefined || !String(d).includes("running") || timer !== undefined) return;
      timer = setTimeout(() => {
        void outputCount().then((n) => {
          killedMidRun = n < N;
          atKill = n;
          child.kill("SIGKILL");
        });
      }, killAfterMs);
    });
    child.stderr.on("data", (d: Uint8Array) => (stderr += String(d)));
    child.on("error", reject);
    child.on("close", (code) => {
      if (timer !== undefined) clearTimeout(timer);
      if (poll !== undefined) clearInterval(poll);
      resolve({ killedMidRun, atKill, stderr, code });
    });
  });
}

describe("NATS → Gress → NATS exactly-once under SIGKILL (real nats-server)", () => {
  it("output equals the failure-free reference after 4 kills mid-run: same count, set digest, no duplicates", { timeout: 90_000 }, async (t) => {
    let kills = 0;
    for (const delay of [250, 300, 200, 250]) {
      const r = await runChild(delay);
      if (r.code !== null) throw new Error(`child ended by itself (code ${r.code}) instead of being killed:\n${r.stderr.slice(-3000)}`);
      if (r.killedMidRun) kills++;
      t.diagnostic(`SIGKILL after ${delay} ms of processing: ${r.atKill} of ${N} outputs stored at the kill`);
    }
    const last = await runChild(undefined);
    assert.equal(last.code, null, `the last run was stopped by the test: ${last.stderr.slice(-2000)}`);
    assert.ok(kills >= 3, `at least 3 kills landed mid-run (output incomplete at the kill), got ${kills}`);
    const got = await readOutput();
    const want = reference();
    assert.equal(duplicates(got), 0, "zero duplicates");
    assert.equal(got.length, want.length, "same count");
    assert.deepEqual(setDigest(got), setDigest(want), "same set digest (count, Σh, Σh²)");
    // Per-key sequence numbers step by exactly 1: restored state, nothing replayed twice into it.
    const perKey = new Map<string, number[]>();
    for (const line of got) {
      const o = JSON.parse(line) as { key: string; seq: number };
      perKey.set(o.key, [...(perKey.get(o.key) ?? []), o.seq]);
    }
    for (const [key, seqs] of perKey) {
      assert.deepEqual(
        seqs.sort((a, b) => a - b),
        Array.from({ length: seqs.length }, (_, i) => i + 1),
        `key ${key}`,
      );
    }
  });
});
