import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import postgres from "postgres";
import { brokers, createTopic, produce, readCommitted, setDigest, uniqueName } from "./kafka-support.ts";

const CHILD = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "kafka-e2e-job.ts");

function pgUrl(): string {
  const v = process.env.GRESS_PG_URL;
  if (v === undefined || v === "") throw new Error('GRESS_PG_URL is not set: run `scripts/services up` and `eval "$(scripts/services env)"` first');
  return v;
}

interface Run {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(config: object, failpoint: string | undefined, killAfterMs: number | undefined): Promise<Run> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  delete env.GRESS_FAILPOINT;
  if (failpoint !== undefined) env.GRESS_FAILPOINT = failpoint;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, JSON.stringify(config)], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stdout.on("data", (d: Uint8Array) => {
      stdout += String(d);
      if (killAfterMs !== undefined && timer === undefined && stdout.includes("running")) timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
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

interface Out {
  readonly id: number;
  readonly k: string;
  readonly seq: number;
  readonly sq: number;
}
const line = (o: Out): string => `${o.id}|${o.k}|${o.seq}|${o.sq}`;

describe("exactly-once end to end (real Kafka and PostgreSQL, SIGKILL)", () => {
  it("Kafka → Gress → Kafka and → PostgreSQL, killed repeatedly mid-run, equal the failure-free reference", { timeout: 150_000 }, async () => {
    const count = 24_000;
    const keys = 7;
    const input = uniqueName("e2e-in");
    const output = uniqueName("e2e-out");
    const table = `e2e_${process.pid}_${Date.now().toString(36)}`;
    await createTopic(input, 3);
    await createTopic(output, 3);
    // Input: per key, seq counts 0, 1, 2, ... in id order; partition = id % 3.
    const perKey = new Map<string, number>();
    const events = Array.from({ length: count }, (_, id) => {
      const k = `k${(id * 7919) % keys}`;
      const seq = perKey.get(k) ?? 0;
      perKey.set(k, seq + 1);
      return { id, k, seq };
    });
    await produce(
      input,
      events.map((e) => ({ value: JSON.stringify(e), partition: e.id % 3, key: e.k })),
    );
    // The failure-free reference, computed from the deterministic input.
    const reference = events.map((e) => line({ ...e, sq: (e.id * e.id) % 1_000_003 }));
    const refDigest = setDigest(reference);

    const stateDir = mkdtempSync(join(tmpdir(), "gress-kafka-e2e-"));
    const job = uniqueName("e2e-job");
    // A timed kill first, then failpoints (durable-but-uncommitted, between checkpoints, mid-snapshot, after
    // commit), then a run to the end. The kill runs together take about 1.7 s of input at 6000/s: with 2 s of
    // input (12 000 records) a run sometimes reached the end before its failpoint fired; 4 s leaves a margin.
    const plan: { failpoint?: string; killAfterMs?: number }[] = [
      { killAfterMs: 350 },
      { failpoint: "after-flush:3" },
      { failpoint: "between-checkpoints:3" },
      { failpoint: "checkpoint-snapshot:2" },
      { failpoint: "after-sink-commit:2" },
      { failpoint: "recovery" },
      {},
    ];
    let kills = 0;
    let runs = 0;
    let done: Run | undefined;
    try {
      for (let i = 0; done === undefined && i < 20; i++) {
        const step = plan[Math.min(i, plan.length - 1)] ?? {};
        const config = { job, stateDir, brokers: brokers(), pgUrl: pgUrl(), input, output, table, groupId: `${job}-g${i}`, intervalMs: 150, ratePerSecond: 6000 };
        const r = await runChild(config, step.failpoint, step.killAfterMs);
        runs++;
        if (r.signal === "SIGKILL") kills++;
        else if (r.code === 0 && r.stdout.includes("done")) done = r;
        else assert.fail(`run ${i} ended with code ${r.code} signal ${r.signal}:\n${r.stderr.slice(-3000)}`);
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
    assert.ok(done !== undefined, "the job completed");
    assert.ok(kills >= 5, `at least 5 injected SIGKILLs really happened (got ${kills} in ${runs} runs)`);

    // Kafka: a read_committed reader sees every record exactly once; it is not blocked by leftovers.
    const fromKafka = (await readCommitted(output, 30_000)).map((m) => line(JSON.parse(m.value) as Out));
    assert.equal(new Set(fromKafka).size, fromKafka.length, "no duplicates in Kafka");
    assert.deepEqual(setDigest(fromKafka), refDigest);
    // PostgreSQL: the append-only table holds every record exactly once.
    const sql = postgres(pgUrl(), { max: 1, onnotice: () => {} });
    try {
      const rows = await sql.unsafe(`select id, k, seq, sq from "${table}"`);
      const fromPg = rows.map((r) => line({ id: Number(r.id), k: String(r.k), seq: Number(r.seq), sq: Number(r.sq) }));
      assert.equal(new Set(fromPg).size, fromPg.length, "no duplicates in PostgreSQL");
      assert.deepEqual(setDigest(fromPg), refDigest);
      // Per key, the sequence numbers are exactly 0..n-1.
      for (const [k, n] of perKey) {
        const seqs = rows.filter((r) => r.k === k).map((r) => Number(r.seq)).sort((a, b) => a - b);
        assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i), `key ${k}`);
      }
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});
