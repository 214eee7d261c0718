/**
 * Kafka transactions the broker aborted (issue 10, failure 1), the transaction-timeout option, and default
 * transactional ids per job (failure 5), on the real broker. The broker aborts a transaction left open longer
 * than its timeout only at its periodic check (transaction.abort.timed.out.transaction.cleanup.interval.ms,
 * 10 s by default), so the tests wait timeout + 12 s.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { kafkaSink, type KafkaSinkHandle } from "../../connectors/kafka/index.ts";
import { ConfigError, Job, record } from "../../lib/index.ts";
import { checkSequences, events, runEosJob } from "./kafka-eos-support.ts";
import { brokers, connection, createTopic, produce, readCommitted, uniqueName } from "./kafka-support.ts";

const TIMEOUT_MS = 3000;
const BROKER_ABORT_WAIT_MS = TIMEOUT_MS + 12_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("kafka transactions aborted by the broker (real broker)", () => {
  it("a pre-committed transaction that timed out is reported as aborted by commit; a committed one is not", { timeout: 60_000 }, async () => {
    const topic = uniqueName("expire");
    await createTopic(topic, 1);
    const transactionalId = uniqueName("tx");
    const opts = { name: "out", ...connection(), topic, transactionalId, transactionTimeoutMs: TIMEOUT_MS };
    const first = kafkaSink<number>(opts);
    await first.open?.();
    await Promise.all([1, 2, 3].map((v) => first.write(v, record(v, 0))));
    const kept = JSON.parse(JSON.stringify(await first.preCommit?.(1))) as KafkaSinkHandle;
    assert.equal(kept.records, 3);
    assert.ok(kept.marker !== undefined, "the handle records where its marker is");
    await first.commit?.(1, kept);
    await Promise.all([4, 5].map((v) => first.write(v, record(v, 0))));
    const expiring = JSON.parse(JSON.stringify(await first.preCommit?.(2))) as KafkaSinkHandle;
    // The process "dies" here, longer than the transaction timeout.
    await first.close?.();
    await sleep(BROKER_ABORT_WAIT_MS);

    const second = kafkaSink<number>(opts);
    assert.equal(await second.commit?.(1, kept), undefined, "committed before: nothing to report");
    const lost = await second.commit?.(2, expiring);
    assert.equal(lost?.aborted, true, "the broker aborted it: commit must not say it was ended");
    assert.match(lost?.lost ?? "", /^2 records for topic/);
    assert.deepEqual((await readCommitted(topic)).map((m) => m.value), ["1", "2", "3"]);
    await second.close?.();
  });

  it("transactionTimeoutMs is checked at open: above the broker's transaction.max.timeout.ms, or not above the checkpoint interval", async () => {
    const topic = uniqueName("timeout-opt");
    await createTopic(topic, 1);
    const big = kafkaSink<number>({ name: "out", ...connection(), topic, transactionalId: uniqueName("tx"), transactionTimeoutMs: 3_600_000 });
    await assert.rejects(
      Promise.resolve(big.open?.({ jobName: "j", checkpointIntervalMs: 1000 })),
      (e: unknown) => e instanceof ConfigError && /transactionTimeoutMs \(3600000\) is larger than the broker's transaction\.max\.timeout\.ms \(\d+\)/.test(e.message),
    );
    await big.close?.();
    const small = kafkaSink<number>({ name: "out", ...connection(), topic, transactionalId: uniqueName("tx"), transactionTimeoutMs: 1000 });
    await assert.rejects(
      Promise.resolve(small.open?.({ jobName: "j", checkpointIntervalMs: 5000 })),
      (e: unknown) => e instanceof ConfigError && /must exceed the checkpoint interval \(5000 ms\)/.test(e.message),
    );
    await small.close?.();
  });

  async function crashPastTimeout(retain: number | undefined): Promise<{ second: Awaited<ReturnType<typeof runEosJob>>; output: string; count: number; keys: number }> {
    const count = 3000;
    const keys = 5;
    const input = uniqueName("tt-in");
    const output = uniqueName("tt-out");
    await createTopic(input, 2);
    await createTopic(output, 2);
    await produce(
      input,
      events(count, keys).map((e) => ({ value: JSON.stringify(e), partition: e.i % 2 })),
    );
    const stateDir = mkdtempSync(join(tmpdir(), "gress-kafka-tt-"));
    const job = uniqueName("tt-job");
    const config = { job, stateDir, brokers: brokers(), input, output, groupId: `${job}-g`, intervalMs: 300, ratePerSecond: 1500, transactionTimeoutMs: TIMEOUT_MS, ...(retain === undefined ? {} : { retain }) };
    try {
      // Dies after the 4th checkpoint is durable and before its Kafka transaction is committed...
      const first = await runEosJob(config, { failpoint: "after-flush:4" });
      assert.equal(first.signal, "SIGKILL", `the failpoint killed the first run:\n${first.stderr.slice(-2000)}`);
      // ...and stays down longer than the transaction timeout: the broker aborts that transaction.
      await sleep(BROKER_ABORT_WAIT_MS);
      const second = await runEosJob({ ...config, groupId: `${job}-g2` });
      return { second, output, count, keys };
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  }

  it("a job down longer than the transaction timeout after a checkpoint produces the aborted output again: every record exactly once", { timeout: 120_000 }, async () => {
    const { second, output, count, keys } = await crashPastTimeout(undefined);
    assert.equal(second.code, 0, `the restarted job completes:\n${second.stderr.slice(-3000)}`);
    // An independent read_committed reader: every input record once, per key sequence numbers 1..n.
    const read = (await readCommitted(output)).map((m) => JSON.parse(m.value) as { key: string; seq: number; i: number });
    assert.deepEqual(checkSequences(read, count, keys), []);
    assert.match(second.stderr, /checkpoint 4: the transaction of sink "out" was aborted before it could be committed \(\d+ records for topic/);
    assert.match(second.stderr, /rolled back to checkpoint 3/);
  });

  it("without an older checkpoint to go back to (retain: 1) the job fails loudly, saying what was lost, instead of exiting 0", { timeout: 120_000 }, async () => {
    const { second } = await crashPastTimeout(1);
    assert.equal(second.code, 1, `the restarted job must fail:\n${second.stdout}\n${second.stderr.slice(-3000)}`);
    assert.match(second.stderr, /CheckpointError: checkpoint 4: the transaction of sink "out" was aborted before it could be committed \(\d+ records for topic "[^"]+" in transaction "gress-tt-job[^"]*-out"/);
    assert.match(second.stderr, /That output is lost: no checkpoint before 4 is retained/);
    assert.doesNotMatch(second.stdout, /done/);
  });
});

describe("default transactional ids (real broker)", () => {
  it("two jobs with a sink named out do not fence each other", { timeout: 60_000 }, async () => {
    const topics = [uniqueName("fence-a"), uniqueName("fence-b")];
    for (const t of topics) await createTopic(t, 1);
    const jobs = topics.map((topic, j) => {
      const job = new Job({ name: uniqueName(`fence-job${j}`) });
      job
        .fromIterable(Array.from({ length: 3000 }, (_, i) => i))
        .sinkTo(kafkaSink<number>({ name: "out", ...connection(), topic, batchSize: 100 }));
      return job;
    });
    await Promise.all(jobs.map((j) => j.run()));
    for (const topic of topics) assert.equal((await readCommitted(topic)).length, 3000, topic);
  });
});
