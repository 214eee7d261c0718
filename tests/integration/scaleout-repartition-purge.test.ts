/**
 * Consumed repartition records are deleted (DeleteRecords, as Kafka Streams does), on the real broker, with
 * the client GRESS_KAFKA_CLIENT names (@platformatic/kafka by default; CI runs it on kafkajs too): the
 * pipeline of tests/integration/scaleout-shuffle-pipeline.ts (keyBy user through `gress-<job>-1-repartition`,
 * an event-time window count per user) runs in one in-process worker with a short
 * `repartitionPurgeIntervalMs`. Once every window result is out, each repartition partition's earliest offset
 * (low watermark) must reach the offset its task had committed by then, and never pass the offset its task
 * has committed; the window results must equal the reference, none twice; the topic is created with
 * retention.ms = -1 of its own, so retention deletes nothing unread whatever the broker's default. Without
 * the purge the earliest offsets stay 0; without the topic setting the test broker's default shows instead.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { kafkaSink, runScaledOut } from "../../connectors/kafka/index.ts";
import { repartitionTopic } from "../../lib/scaleout/shuffle.ts";
import { brokers, clientName, createTopic, kafka, produce, readCommitted, uniqueName } from "./kafka-support.ts";
import { expectedCounts, shuffleEvents, type UserCount, windowPipeline } from "./scaleout-shuffle-pipeline.ts";
import { outputCounter } from "./scaleout-support.ts";

const PARTITIONS = 2;

const key = (r: UserCount): string => `${r.user}@${r.start}`;
const sorted = (m: ReadonlyMap<string, number>): [string, number][] => [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

/** Earliest offset (low watermark) of each partition, and the group's committed offset of each (-1: none). */
async function offsets(topic: string, group: string): Promise<{ low: number[]; committed: number[] }> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    const low: number[] = [];
    for (const o of await admin.fetchTopicOffsets(topic)) low[o.partition] = Number(o.low);
    const committed: number[] = [];
    for (const t of await admin.fetchOffsets({ groupId: group, topics: [topic] })) for (const p of t.partitions) committed[p.partition] = Number(p.offset);
    return { low, committed };
  } finally {
    await admin.disconnect();
  }
}

async function waitFor<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number, log: readonly string[]): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(v)}); worker log:\n${log.join("\n")}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

{
  const client = clientName();
  describe(`scale-out repartition purge (${client}, real broker)`, () => {
    const dirs: string[] = [];
    after(() => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });

    it("each task deletes the repartition records it consumed, up to its committed offset and no further; the output equals the reference", { timeout: 90_000 }, async () => {
      const input = uniqueName("rpp-in");
      const output = uniqueName("rpp-out");
      await createTopic(input, PARTITIONS);
      await createTopic(output, PARTITIONS);
      const data = shuffleEvents(800, 4, 8, PARTITIONS);
      await produce(
        input,
        data.map((d) => ({ key: String(d.event.region), value: JSON.stringify(d.event), partition: d.partition })),
      );
      const reference = expectedCounts(data.map((d) => d.event));
      const counter = await outputCounter(output);
      const state = mkdtempSync(join(tmpdir(), "gress-rpp-"));
      dirs.push(state);
      const name = uniqueName("rpp");
      const topic = repartitionTopic(name, 1);
      const group = `gress-${name}`;
      const log: string[] = [];
      const worker = runScaledOut(
        { name, kafka: { brokers: brokers(), client }, state, checkpoints: { intervalMs: 300 }, repartitionPurgeIntervalMs: 500, log: (m) => void log.push(m) },
        windowPipeline({
          input,
          kafka: { brokers: brokers() },
          bounded: false,
          copartitioned: false,
          sink: () => kafkaSink<UserCount>({ name: "out", brokers: brokers(), topic: output, key: (o) => o.user }),
        }),
      );
      try {
        await worker.started;
        const deadline = Date.now() + 40_000;
        while (counter.count() < reference.size) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${reference.size} window results (got ${counter.count()}); worker log:\n${log.join("\n")}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        // What each task had committed once every result was out: everything the results needed was consumed.
        const then = await waitFor("a committed offset of every repartition partition", () => offsets(topic, group), (o) => o.committed.length === PARTITIONS && o.committed.every((c) => c > 0), 10_000, log);
        const purged = await waitFor("the repartition partitions purged up to those offsets", () => offsets(topic, group), (o) => o.low.every((l, p) => l >= (then.committed[p] as number)), 15_000, log);
        // Never beyond what the task committed (read after the low watermarks: committed offsets only grow).
        const now = await offsets(topic, group);
        for (let p = 0; p < PARTITIONS; p++) {
          assert.ok((purged.low[p] as number) > 0, `partition ${p}: records were deleted`);
          assert.ok((purged.low[p] as number) <= (now.committed[p] as number), `partition ${p}: earliest offset ${purged.low[p]} is not past the committed ${now.committed[p]}`);
        }
        assert.ok(!log.some((l) => l.includes("could not delete")), log.join("\n"));
      } finally {
        await worker.stop();
        await counter.stop();
      }
      await worker.done;
      const config = kafka().admin();
      await config.connect();
      try {
        // Set on the topic itself (configSource 1, DYNAMIC_TOPIC_CONFIG), not the broker's default: this test
        // broker's log.retention.ms is -1 too, a production broker's is 7 days.
        const described = await config.describeConfigs({ resources: [{ type: 2, name: topic, configNames: ["retention.ms"] }], includeSynonyms: false });
        const entry = described.resources[0]?.configEntries.find((e) => e.configName === "retention.ms");
        assert.deepEqual({ value: entry?.configValue, source: entry?.configSource }, { value: "-1", source: 1 }, "the repartition topic keeps unread records by no age, by its own setting");
      } finally {
        await config.disconnect();
      }
      const read = (await readCommitted(output, 30_000)).map((m) => JSON.parse(m.value) as UserCount);
      const counts = new Map(read.map((r) => [key(r), r.count]));
      assert.equal(read.length, counts.size, "no window result twice");
      assert.deepEqual(sorted(counts), sorted(reference));
    });
  });
}
