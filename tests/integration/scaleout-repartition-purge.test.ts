/**
 * Consumed repartition records are deleted (DeleteRecords, as Kafka Streams does), on the real broker, with
 * the client GRESS_KAFKA_CLIENT names (@platformatic/kafka by default; CI runs it on kafkajs too): the
 * pipeline of tests/integration/scaleout-shuffle-pipeline.ts (keyBy user through `gress-<job>-1-repartition`,
 * an event-time window count per user) runs in one in-process worker with a short
 * `repartitionPurgeIntervalMs`, on a client wrapped to watch it: each DeleteRecords of a repartition partition
 * must stop at or before the offset that the tasks' transactions had committed for it when the call went out
 * (recorded from the transactional producers' sendOffsets and commit, not from the purger), while input still
 * arrives (it is produced in parts), so a purge past the committed offset would show. Once every window result
 * is out, each repartition partition's earliest offset (low watermark) must reach the offset its task had
 * committed by then; the window results must equal the reference, none twice; the topic is created with
 * retention.ms = -1 of its own, so retention deletes nothing unread whatever the broker's default. Without
 * the purge the earliest offsets stay 0; without the topic setting the test broker's default shows instead.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { KafkaClient, KafkaTransactionalProducer, PartitionOffset } from "../../connectors/kafka/client.ts";
import { resolveKafkaClient } from "../../connectors/kafka/default-client.ts";
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

/** Every DeleteRecords call of the client, with what the tasks' transactions had committed for the partition when it went out. */
interface Purge {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly committed: number | undefined;
}

/** The methods of `target` bound to it, with `overrides` in their place (the adapters' objects may hold private state). */
function wrap<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(t, p) {
      if (Object.hasOwn(overrides, p)) return overrides[p as keyof T];
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

/**
 * `base` watched: the offsets each transactional producer's committed transactions sent (sendOffsets, then a
 * commit that resolved; an abort drops them), and each deleteRecords call with the committed offset of its
 * partition at that moment.
 */
function watchedClient(base: KafkaClient): { client: KafkaClient; purges: Purge[] } {
  const committed = new Map<string, number>();
  const purges: Purge[] = [];
  const tp = (topic: string, partition: number): string => `${topic}\u0000${partition}`;
  const client = wrap(base, {
    transactionalProducer(options) {
      const producer = base.transactionalProducer(options);
      let pending: PartitionOffset[] = [];
      return wrap<KafkaTransactionalProducer>(producer, {
        async sendOffsets(group, offsets) {
          await producer.sendOffsets(group, offsets);
          pending.push(...offsets);
        },
        async commit() {
          await producer.commit();
          for (const o of pending) committed.set(tp(o.topic, o.partition), Math.max(o.offset, committed.get(tp(o.topic, o.partition)) ?? 0));
          pending = [];
        },
        async abort() {
          pending = [];
          await producer.abort();
        },
      });
    },
    async deleteRecords(topic, partitions) {
      for (const p of partitions) purges.push({ topic, partition: p.partition, offset: p.offset, committed: committed.get(tp(topic, p.partition)) });
      await base.deleteRecords(topic, partitions);
    },
  });
  return { client, purges };
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
      const reference = expectedCounts(data.map((d) => d.event));
      const counter = await outputCounter(output);
      const state = mkdtempSync(join(tmpdir(), "gress-rpp-"));
      dirs.push(state);
      const name = uniqueName("rpp");
      const topic = repartitionTopic(name, 1);
      const group = `gress-${name}`;
      const log: string[] = [];
      const watched = watchedClient(resolveKafkaClient(brokers(), `${name}-worker`, client));
      const worker = runScaledOut(
        { name, kafka: watched.client, state, checkpoints: { intervalMs: 300 }, repartitionPurgeIntervalMs: 500, log: (m) => void log.push(m) },
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
        // In parts while the worker runs (the sentinels that close the windows last): a purge then happens while
        // records the task has not committed yet are in the repartition topic, which a purge must not delete.
        const parts = 8;
        for (let i = 0; i < parts; i++) {
          const part = data.slice(Math.floor((i * data.length) / parts), Math.floor(((i + 1) * data.length) / parts));
          await produce(
            input,
            part.map((d) => ({ key: String(d.event.region), value: JSON.stringify(d.event), partition: d.partition })),
          );
          await new Promise((r) => setTimeout(r, 400));
        }
        const deadline = Date.now() + 40_000;
        while (counter.count() < reference.size) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${reference.size} window results (got ${counter.count()}); worker log:\n${log.join("\n")}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        // What each task had committed once every result was out: everything the results needed was consumed.
        const then = await waitFor("a committed offset of every repartition partition", () => offsets(topic, group), (o) => o.committed.length === PARTITIONS && o.committed.every((c) => c > 0), 10_000, log);
        const purged = await waitFor("the repartition partitions purged up to those offsets", () => offsets(topic, group), (o) => o.low.every((l, p) => l >= (then.committed[p] as number)), 15_000, log);
        for (let p = 0; p < PARTITIONS; p++) assert.ok((purged.low[p] as number) > 0, `partition ${p}: records were deleted`);
        // Never beyond what the task had committed when it deleted.
        const calls = watched.purges;
        assert.ok(calls.length >= PARTITIONS, `a purge of each partition at least: ${JSON.stringify(calls)}`);
        for (const c of calls) {
          assert.equal(c.topic, topic);
          assert.ok(c.committed !== undefined && c.offset <= c.committed, `a purge of partition ${c.partition} up to ${c.offset} when its committed offset was ${c.committed}: ${JSON.stringify(calls)}`);
        }
        assert.ok(!log.some((l) => l.includes("could not delete")), log.join("\n"));
      } finally {
        await worker.stop();
        await counter.stop();
        await watched.client.close();
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
