/**
 * Issue 10, failure 4: a job restarted right after a SIGKILL finds its previous incarnation still a member of
 * the consumer group (until that member's session times out). The Kafka source waits that out instead of
 * failing. Real broker; the job runs in a child process (kafka-eos-job.ts).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { checkSequences, events, runEosJob } from "./kafka-eos-support.ts";
import { brokers, createTopic, kafka, produce, readCommitted, uniqueName } from "./kafka-support.ts";

async function setUp(count: number, keys: number): Promise<{ input: string; output: string }> {
  const input = uniqueName("qr-in");
  const output = uniqueName("qr-out");
  await createTopic(input, 2);
  await createTopic(output, 2);
  await produce(
    input,
    events(count, keys).map((e) => ({ value: JSON.stringify(e), partition: e.i % 2 })),
  );
  return { input, output };
}

describe("kafka source: restarting while the old group member lingers (real broker)", () => {
  it("a member still holding partitions when the job starts is waited out, and the job reads everything once it left", { timeout: 90_000 }, async () => {
    const count = 2000;
    const keys = 4;
    const { input, output } = await setUp(count, keys);
    const groupId = uniqueName("qr-group");
    // Another member of the group (as a killed incarnation is, until its session expires).
    const other = kafka().consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500 });
    let joined!: () => void;
    const otherJoined = new Promise<void>((r) => (joined = r));
    other.on(other.events.GROUP_JOIN, () => joined());
    await other.connect();
    await other.subscribe({ topics: [input], fromBeginning: true });
    await other.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => {} });
    await otherJoined;
    const stateDir = mkdtempSync(join(tmpdir(), "gress-kafka-qr-"));
    try {
      const job = uniqueName("qr-job");
      const run = runEosJob({ job, stateDir, brokers: brokers(), input, output, groupId, intervalMs: 300, ratePerSecond: 4000, transactionTimeoutMs: 30_000 });
      // The job joins and gets only some partitions; a few seconds later the other member leaves.
      await new Promise((r) => setTimeout(r, 5000));
      await other.disconnect();
      const r = await run;
      assert.equal(r.code, 0, `the job waits for the other member instead of failing:\n${r.stderr.slice(-3000)}`);
      const read = (await readCommitted(output)).map((m) => JSON.parse(m.value) as { key: string; seq: number; i: number });
      assert.deepEqual(checkSequences(read, count, keys), []);
    } finally {
      await other.disconnect().catch(() => {});
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it("SIGKILL, then an immediate restart with the same group, three times: every restart succeeds, every record once", { timeout: 150_000 }, async () => {
    const count = 6000;
    const keys = 4;
    const { input, output } = await setUp(count, keys);
    const stateDir = mkdtempSync(join(tmpdir(), "gress-kafka-qr-"));
    const job = uniqueName("qr-job");
    const config = { job, stateDir, brokers: brokers(), input, output, groupId: `${job}-g`, intervalMs: 200, ratePerSecond: 1500, transactionTimeoutMs: 30_000 };
    try {
      let kills = 0;
      for (let i = 0; i < 3; i++) {
        const r = await runEosJob(config, { killAfterMs: 700 });
        assert.ok(r.signal === "SIGKILL", `run ${i} was killed while running (code ${r.code}):\n${r.stderr.slice(-3000)}`);
        kills++;
      }
      const last = await runEosJob(config);
      assert.equal(last.code, 0, `the restart right after the last kill completes:\n${last.stderr.slice(-3000)}`);
      assert.equal(kills, 3);
      const read = (await readCommitted(output)).map((m) => JSON.parse(m.value) as { key: string; seq: number; i: number });
      assert.deepEqual(checkSequences(read, count, keys), []);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
