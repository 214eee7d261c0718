/**
 * gress_kafka_consumer_lag_records{source, partition} against a real broker, on the client under test
 * (GRESS_KAFKA_CLIENT): at a pause point it equals each partition's log end offset (read independently with the
 * admin client) minus the records consumed from it, and it is 0 once the job caught up, also after a
 * committed transaction (whose commit marker takes an offset but is no record to read). The live page's
 * snapshot shows their sum per source. The "Gress job" dashboard's queries of this metric are checked against
 * the same /metrics (tests/unit/dashboard-promql.test.ts checks the rest on a job without services).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { kafkaSource, splitOf } from "../../connectors/kafka/index.ts";
import { Job } from "../../lib/index.ts";
import { liveSnapshot } from "../../lib/live-page/snapshot.ts";
import { serveMetrics } from "../../lib/server.ts";
import { dashboardQueries, exposed, promProblems } from "../dashboard-queries.ts";
import { connection, createTopic, kafka, produce, uniqueName } from "./kafka-support.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const METRIC = "gress_kafka_consumer_lag_records";

/** The lag samples of source `source` in a /metrics text, per partition label. */
function lagOf(text: string, source: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^gress_kafka_consumer_lag_records\{(.*)\} (\S+)$/.exec(line);
    if (m === null || !m[1]!.includes(`source="${source}"`)) continue;
    const partition = /partition="([^"]*)"/.exec(m[1]!)?.[1];
    if (partition !== undefined) out.set(partition, Number(m[2]));
  }
  return out;
}

async function endOffsets(topic: string): Promise<Map<string, number>> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((o) => [splitOf(topic, o.partition), Number(o.high)]));
  } finally {
    await admin.disconnect();
  }
}

describe("kafka consumer lag metric (real broker)", () => {
  it("is the log end minus what was consumed at a pause point, and 0 after catching up past a transaction", { timeout: 120_000 }, async () => {
    const topic = uniqueName("lag");
    await createTopic(topic, 2);
    await produce(
      topic,
      Array.from({ length: 400 }, (_, i) => ({ value: JSON.stringify({ id: i }), partition: i % 2 })),
    );
    // 50 more records per partition in one committed transaction: each partition then ends in a commit marker.
    const producer = kafka().producer({ transactionalId: uniqueName("lag-tx"), idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const tx = await producer.transaction();
    await tx.send({ topic, messages: Array.from({ length: 100 }, (_, i) => ({ value: JSON.stringify({ id: 400 + i }), partition: i % 2 })) });
    await tx.commit();
    await producer.disconnect();
    // The coordinator writes the commit markers after EndTxn has returned: wait until both partitions have theirs.
    let ends = await endOffsets(topic);
    for (let i = 0; i < 100 && [...ends.values()].some((end) => end !== 251); i++) {
      await sleep(50);
      ends = await endOffsets(topic);
    }
    assert.deepEqual([...ends.values()], [251, 251], "250 records and a commit marker per partition");

    const job = new Job({ name: "kafka-lag" });
    const consumed = new Map<string, number>();
    let total = 0;
    const PAUSE_AT = 150;
    job
      .source(kafkaSource<{ id: number }>({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g") }))
      .tap((v) => {
        // Record id i went to partition i % 2.
        const split = splitOf(topic, v.id % 2);
        consumed.set(split, (consumed.get(split) ?? 0) + 1);
        // The pause point: backpressure as a sink would press it; the source stops at the next message.
        if (++total === PAUSE_AT) job.flow.press("lag-test");
      })
      .sinkTo({ name: "out", write() {} });
    const server = await serveMetrics(job, { status: "running" }, 0);
    const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
    const running = job.run();
    try {
      for (let i = 0; i < 300 && total < PAUSE_AT; i++) await sleep(100);
      assert.equal(total, PAUSE_AT);
      await sleep(1000);
      assert.equal(total, PAUSE_AT, "paused");
      const paused = lagOf(await scrape(), "in");
      assert.ok(paused.size >= 1, `lag reported for a fetched partition: ${JSON.stringify([...paused])}`);
      for (const [split, lag] of paused) assert.equal(lag, ends.get(split)! - (consumed.get(split) ?? 0), `${split} at the pause point`);
      assert.ok([...paused.values()].some((lag) => lag > 0));
      // The live page's sources table shows the sum over partitions (its snapshot, as /events sends it).
      const sum = [...paused.values()].reduce((a, b) => a + b, 0);
      assert.equal(liveSnapshot(job, { status: "running" }).sources.find((x) => x.name === "in")?.lag, sum);

      job.flow.release("lag-test");
      for (let i = 0; i < 300 && total < 500; i++) await sleep(100);
      assert.equal(total, 500);
      let text = "";
      let caughtUp = new Map<string, number>();
      for (let i = 0; i < 50; i++) {
        text = await scrape();
        caughtUp = lagOf(text, "in");
        if (caughtUp.size === 2 && [...caughtUp.values()].every((l) => l === 0)) break;
        await sleep(100);
      }
      assert.deepEqual(Object.fromEntries(caughtUp), { [splitOf(topic, 0)]: 0, [splitOf(topic, 1)]: 0 });

      // The dashboards' queries of this metric find it, with their labels, at this job's /metrics.
      const { problems, selectors } = promProblems(dashboardQueries(), exposed(text), (m) => m === METRIC);
      assert.deepEqual(problems, []);
      assert.ok(selectors >= 1, "the Gress job dashboard queries the consumer lag");
    } finally {
      job.cancel();
      await running.catch(() => {});
      await server.close();
    }
  });
});
