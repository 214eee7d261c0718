/**
 * The KafkaClient contract, on the real broker, for both implementations (kafkajs and @platformatic/kafka):
 * group consumption with batches, re-fetch, seek, pause, commits, read_committed over aborted transactions,
 * transactions ended from a handle, marker outcomes, topics, broker config and key partitioning. The checks
 * use an independent kafkajs reader/admin from kafka-support, never the client under test.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import * as zlib from "node:zlib";
import type { GroupAssignor, KafkaBatch, KafkaClient, KafkaConsumer, KafkaMessage, Rebalance, TopicPartition } from "../../connectors/kafka/client.ts";
import { kafkajsClient, kafkaSource, platformaticKafkaClient } from "../../connectors/kafka/index.ts";
import { isGressError, Job, sinkFn } from "../../lib/index.ts";
import { brokers, createTopic, kafka, produce, produceWithJava, readCommitted, uniqueName } from "./kafka-support.ts";

const clients: Record<string, () => KafkaClient> = {
  kafkajs: () => kafkajsClient({ brokers: brokers() }),
  platformatic: () => platformaticKafkaClient({ brokers: brokers() }),
};
/**
 * The consumption contract also on @platformatic/kafka with the library's own fetch() and record reader, which
 * the adapter uses on brokers without Fetch v17 (the default reads the records itself, see record-batches.ts).
 */
const withReaders: Record<string, () => KafkaClient> = {
  ...clients,
  "platformatic-library-reader": () => platformaticKafkaClient({ brokers: brokers(), readRecords: "library" }),
};

const text = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b).toString());

/** Runs a consumer until `until` holds for what it received (or fails after `timeoutMs`). */
async function consumeUntil(
  consumer: KafkaConsumer,
  until: (got: readonly (KafkaMessage & { partition: number })[]) => boolean,
  handle: (batch: KafkaBatch, got: (KafkaMessage & { partition: number })[]) => number = (b, got) => {
    for (const m of b.messages) got.push({ ...m, partition: b.partition });
    return (b.messages.at(-1) as KafkaMessage).offset + 1;
  },
  timeoutMs = 20_000,
): Promise<(KafkaMessage & { partition: number })[]> {
  const got: (KafkaMessage & { partition: number })[] = [];
  let done!: () => void;
  const reached = new Promise<void>((r) => (done = r));
  await consumer.start(async (b) => {
    const next = handle(b, got);
    if (until(got)) done();
    return next;
  });
  const timer = setTimeout(done, timeoutMs);
  await reached;
  clearTimeout(timer);
  return got;
}

for (const [name, make] of Object.entries(withReaders)) {
  describe(`KafkaClient contract: ${name} (real broker)`, () => {
    const client = make();
    after(() => client.close());

    it("a group member is assigned every partition and reads each message once, with key, value, offset and timestamp", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 3);
      await produce(
        topic,
        Array.from({ length: 300 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: i % 3, timestamp: 1_700_000_000_000 + i })),
      );
      const consumer = client.consumer({ groupId: uniqueName("g"), topics: [topic], fromBeginning: true });
      const assignments: number[][] = [];
      consumer.onAssignment((a) => assignments.push(a.map((x) => x.partition).sort()));
      try {
        const got = await consumeUntil(consumer, (g) => g.length >= 300);
        assert.deepEqual(assignments.at(-1), [0, 1, 2]);
        assert.equal(got.length, 300);
        for (const m of got) {
          const i = Number(text(m.value)?.slice(1));
          assert.equal(text(m.key), `k${i}`);
          assert.equal(m.partition, i % 3);
          assert.equal(m.offset, Math.floor(i / 3));
          assert.equal(m.timestamp, 1_700_000_000_000 + i);
        }
      } finally {
        await consumer.stop();
      }
    });

    it("gzip-compressed batches, null and empty keys and values, and a topic with broker (log-append) timestamps read like plain batches", { timeout: 120_000 }, async () => {
      const compressed = uniqueName(`cc-gz-${name}`);
      await createTopic(compressed, 2);
      const value = (i: number): string | null => (i % 7 === 0 ? null : i % 11 === 0 ? "" : `v${i}`);
      const key = (i: number): string | null => (i % 5 === 0 ? null : i % 13 === 0 ? "" : `k${i}`);
      await produce(
        compressed,
        Array.from({ length: 400 }, (_, i) => {
          const k = key(i);
          return { ...(k === null ? {} : { key: k }), value: value(i), partition: i % 2, timestamp: 1_700_000_000_000 + i };
        }),
        { gzip: true },
      );
      const appended = uniqueName(`cc-lat-${name}`);
      await createTopic(appended, 1, { "message.timestamp.type": "LogAppendTime" });
      const before = Date.now();
      await produce(appended, Array.from({ length: 50 }, (_, i) => ({ value: `a${i}`, timestamp: 1_600_000_000_000 })));
      const after = Date.now();
      for (const [topic, count] of [
        [compressed, 400],
        [appended, 50],
      ] as const) {
        const consumer = client.consumer({ groupId: uniqueName("g"), topics: [topic], fromBeginning: true });
        try {
          const got = await consumeUntil(consumer, (g) => g.length >= count);
          assert.equal(got.length, count, topic);
          if (topic === compressed) {
            const byIndex = new Map(got.map((m) => [m.partition + 2 * m.offset, m]));
            assert.equal(byIndex.size, 400, "each message once");
            for (let i = 0; i < 400; i++) {
              const m = byIndex.get(i);
              assert.ok(m !== undefined, `message ${i}`);
              assert.equal(text(m.value), value(i), `value of ${i}`);
              assert.equal(text(m.key), key(i), `key of ${i}`);
              assert.equal(m.timestamp, 1_700_000_000_000 + i);
            }
          } else {
            assert.deepEqual(
              got.map((m) => text(m.value)),
              Array.from({ length: 50 }, (_, i) => `a${i}`),
            );
            // The broker's append time, not the producer's timestamp (the broker clock is this machine's).
            for (const m of got) assert.ok(m.timestamp >= before - 1000 && m.timestamp <= after + 1000, `append time ${m.timestamp} within [${before}, ${after}]`);
          }
        } finally {
          await consumer.stop();
        }
      }
    });

    it("a handler that takes only part of a batch gets the rest again, and a seek re-reads from the given offset", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 1);
      await produce(
        topic,
        Array.from({ length: 50 }, (_, i) => ({ value: `v${i}` })),
      );
      const consumer = client.consumer({ groupId: uniqueName("g"), topics: [topic], fromBeginning: true });
      let sought = false;
      try {
        const got = await consumeUntil(
          consumer,
          (g) => g.length >= 60,
          (b, g) => {
            // Take at most 7 messages per batch: the client must fetch from the returned offset.
            const taken = b.messages.slice(0, 7);
            for (const m of taken) g.push({ ...m, partition: b.partition });
            if (!sought && g.length >= 50) {
              sought = true;
              consumer.seek({ topic, partition: 0, offset: 40 });
            }
            return (taken.at(-1) as KafkaMessage).offset + 1;
          },
        );
        assert.deepEqual(
          got.map((m) => m.offset),
          [...Array.from({ length: 50 }, (_, i) => i), ...Array.from({ length: 10 }, (_, i) => 40 + i)],
        );
      } finally {
        await consumer.stop();
      }
    });

    it("a paused topic delivers nothing until resumed; committed offsets are where a new member of the group starts", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 2);
      const batch = (from: number) => Array.from({ length: 10 }, (_, i) => ({ value: `v${from + i}`, partition: (from + i) % 2 }));
      await produce(topic, batch(0));
      const groupId = uniqueName("g");
      const consumer = client.consumer({ groupId, topics: [topic], fromBeginning: true });
      let delivered = 0;
      const waitFor = async (n: number): Promise<void> => {
        const deadline = Date.now() + 15_000;
        while (delivered < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      };
      await consumer.start((b) => {
        delivered += b.messages.length;
        return (b.messages.at(-1) as KafkaMessage).offset + 1;
      });
      await waitFor(10);
      assert.equal(delivered, 10);
      consumer.pause([topic]);
      await produce(topic, batch(10));
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(delivered, 10, "nothing while paused");
      consumer.resume([topic]);
      await waitFor(20);
      assert.equal(delivered, 20);
      await consumer.commit([
        { topic, partition: 0, offset: 7 },
        { topic, partition: 1, offset: 9 },
      ]);
      await consumer.stop();

      const next = client.consumer({ groupId, topics: [topic], fromBeginning: true });
      try {
        const got = await consumeUntil(next, (g) => g.length >= 4);
        assert.deepEqual(got.map((m) => `${m.partition}@${m.offset}`).sort(), ["0@7", "0@8", "0@9", "1@9"]);
      } finally {
        await next.stop();
      }
    });

    it("read_committed skips every aborted transaction, also several of one producer id in one fetch, and control records move the position", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 1);
      const p = client.transactionalProducer({ transactionalId: uniqueName("tx") });
      await p.connect();
      // committed, aborted, aborted, committed, aborted: all under one producer id, each under a new epoch.
      const plan: [string, boolean][] = [
        ["a", true],
        ["b", false],
        ["c", false],
        ["d", true],
        ["e", false],
      ];
      const producerIds = new Set<string>();
      for (const [prefix, commit] of plan) {
        await p.begin(true);
        await p.send(
          topic,
          Array.from({ length: 5 }, (_, i) => ({ key: null, value: `${prefix}${i}` })),
        );
        producerIds.add(p.handle().producerId);
        await (commit ? p.commit() : p.abort());
      }
      await p.disconnect();
      assert.equal(producerIds.size, 1, "one producer id, new epochs");
      // The coordinator writes a transaction's marker after EndTxn has returned: wait for the last one.
      let end = 0;
      for (let waited = 0; waited < 10_000; waited += 100) {
        end = (await client.endOffsets(topic)).get(0) as number;
        if (end >= 25 + plan.length) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(end, 25 + plan.length, "25 records and 5 markers");

      const consumer = client.consumer({ groupId: uniqueName("g"), topics: [topic], fromBeginning: true });
      const positions: number[] = [];
      consumer.onPositionAdvanced((t) => positions.push(t.offset));
      try {
        const got = await consumeUntil(consumer, (g) => g.length >= 10, undefined, 15_000);
        const deadline = Date.now() + 10_000;
        while (!positions.includes(end) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(
          got.map((m) => text(m.value)),
          ["a0", "a1", "a2", "a3", "a4", "d0", "d1", "d2", "d3", "d4"],
        );
        assert.ok(positions.includes(end), `the position reaches the end offset ${end} past the last abort marker`);
      } finally {
        await consumer.stop();
      }
      const uncommitted = client.consumer({ groupId: uniqueName("g"), topics: [topic], fromBeginning: true, readCommitted: false });
      try {
        assert.equal((await consumeUntil(uncommitted, (g) => g.length >= 25)).length, 25, "read_uncommitted sees aborted records too");
      } finally {
        await uncommitted.stop();
      }
    });

    it("a send larger than the broker's 1 MB batch limit lands whole in its transaction, in order, and reports where it began", { timeout: 120_000 }, async () => {
      // 3 000 records of 1 KiB to one partition: one batch of 3 MB would be refused (MESSAGE_TOO_LARGE), as a
      // scale-out task's changelog at a checkpoint with many changed keys was.
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 1);
      const pad = "x".repeat(1024);
      const p = client.transactionalProducer({ transactionalId: uniqueName("big") });
      await p.connect();
      try {
        await p.begin(false);
        await p.send(topic, [{ key: null, value: "first", partition: 0 }]);
        const landed = await p.send(
          topic,
          Array.from({ length: 3000 }, (_, i) => ({ key: `k${i}`, value: `${i}:${pad}`, partition: 0 })),
        );
        await p.commit();
        assert.deepEqual(landed, [{ partition: 0, baseOffset: 1 }]);
      } finally {
        await p.disconnect();
      }
      const got = await readCommitted(topic);
      assert.equal(got.length, 3001);
      assert.deepEqual(
        got.slice(1).map((m) => Number(m.value.slice(0, m.value.indexOf(":")))),
        Array.from({ length: 3000 }, (_, i) => i),
      );
    });

    it("a pre-committed transaction of a dead producer is committed from its handle, once; send reports where batches landed", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 2);
      const transactionalId = uniqueName("tx");
      const dead = client.transactionalProducer({ transactionalId });
      await dead.connect();
      await dead.begin(false);
      const batches = await dead.send(topic, [
        { key: null, value: "x", partition: 1 },
        { key: null, value: "y", partition: 1 },
      ]);
      assert.deepEqual(batches, [{ partition: 1, baseOffset: 0 }]);
      const handle = JSON.parse(JSON.stringify(dead.handle())) as ReturnType<typeof dead.handle>;
      const marker = { topic, partition: 1, offset: 0, producerId: handle.producerId };
      assert.equal(await client.markerOutcome(marker, 200), "open");
      // The process dies: no commit, no abort. Another client ends it from the handle.
      const other = make();
      try {
        assert.equal(await other.endTransaction(handle, true), "ended");
        // Again: the broker answers a repeated EndTxn of the same epoch and result with success, so "ended"
        // is as right as "already-ended" here; what counts is that it neither fails nor ends anything else.
        assert.ok(["ended", "already-ended"].includes(await other.endTransaction(handle, true)));
        assert.equal(await other.markerOutcome(marker, 10_000), "committed");
      } finally {
        await other.close();
        await dead.disconnect();
      }
      assert.deepEqual(
        (await readCommitted(topic)).map((m) => m.value),
        ["x", "y"],
      );
      assert.equal(await client.endTransaction({ transactionalId: uniqueName("never-used"), producerId: "123456", producerEpoch: 0 }, true), "already-ended");
    });

    it("a new incarnation fences the old producer and aborts what it left open; the marker outcome says aborted", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 1);
      const transactionalId = uniqueName("tx");
      const old = client.transactionalProducer({ transactionalId });
      await old.connect();
      await old.begin(false);
      await old.send(topic, [{ key: null, value: "lost" }]);
      const handle = old.handle();
      const fresh = client.transactionalProducer({ transactionalId });
      await fresh.connect();
      await assert.rejects(old.commit(), "the fenced producer cannot commit");
      assert.equal(await client.markerOutcome({ topic, partition: 0, offset: 0, producerId: handle.producerId }, 10_000), "aborted");
      assert.equal(await client.endTransaction(handle, true), "already-ended");
      await fresh.begin(true);
      await fresh.send(topic, [{ key: null, value: "kept" }]);
      await fresh.commit();
      await fresh.disconnect();
      await old.disconnect().catch(() => undefined);
      assert.deepEqual(
        (await readCommitted(topic)).map((m) => m.value),
        ["kept"],
      );
    });

    it("createTopic applies topic config and is idempotent; brokerConfig reads named broker settings", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await client.createTopic(topic, 4, { config: { "retention.ms": "3600000" } });
      await client.createTopic(topic, 4, { config: { "retention.ms": "3600000" } });
      assert.deepEqual([...(await client.endOffsets(topic)).keys()].sort(), [0, 1, 2, 3]);
      const admin = kafka().admin();
      await admin.connect();
      try {
        const described = await admin.describeConfigs({ resources: [{ type: 2, name: topic, configNames: ["retention.ms"] }], includeSynonyms: false });
        assert.equal(described.resources[0]?.configEntries.find((c) => c.configName === "retention.ms")?.configValue, "3600000");
      } finally {
        await admin.disconnect();
      }
      const config = await client.brokerConfig(["transaction.max.timeout.ms", "no.such.setting"]);
      assert.match(config.get("transaction.max.timeout.ms") ?? "", /^\d+$/);
      assert.equal(config.has("no.such.setting"), false);
    });

    it("a key goes to the partition the Java client (and kafkajs) picks: murmur2, positive", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-${name}`);
      await createTopic(topic, 7);
      const p = client.transactionalProducer({ transactionalId: uniqueName("tx") });
      await p.connect();
      await p.begin(false);
      const keys = Array.from({ length: 200 }, (_, i) => `key-${i}`);
      await p.send(
        topic,
        keys.map((k) => ({ key: k, value: k })),
      );
      await p.commit();
      await p.disconnect();
      const read = await readCommitted(topic);
      assert.equal(read.length, keys.length);
      for (const m of read) assert.equal(m.partition, javaPartition(m.key as string, 7), `partition of ${m.key}`);
    });
  });
}

/** The Java client's default partition of a string key: murmur2 of its UTF-8 bytes, made positive, mod n. */
function javaPartition(key: string, partitions: number): number {
  const data = Buffer.from(key);
  const m = 0x5bd1e995;
  let h = (0x9747b28c ^ data.length) | 0;
  const four = data.length & ~3;
  for (let i = 0; i < four; i += 4) {
    let k = data.readInt32LE(i);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const rest = data.length & 3;
  if (rest === 3) h ^= (data[four + 2] as number) << 16;
  if (rest >= 2) h ^= (data[four + 1] as number) << 8;
  if (rest >= 1) {
    h ^= data[four] as number;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return (h & 0x7fffffff) % partitions;
}

describe("KafkaClient contract: both clients in one consumer group (real broker)", () => {
  it("a kafkajs member and a platformatic member split the partitions and read each message once", { timeout: 120_000 }, async () => {
    const topic = uniqueName("cc-mixed");
    await createTopic(topic, 4);
    const groupId = uniqueName("g");
    const members = Object.entries(clients).map(([name, make]) => ({ name, client: make(), assigned: [] as number[], got: [] as string[] }));
    const consumers = members.map((m) => {
      const c = m.client.consumer({ groupId, topics: [topic], fromBeginning: true, sessionTimeoutMs: 6000 });
      c.onAssignment((a) => (m.assigned = a.map((x) => x.partition).sort()));
      return c;
    });
    try {
      for (const [i, c] of consumers.entries()) {
        const m = members[i] as (typeof members)[number];
        await c.start((b) => {
          for (const msg of b.messages) m.got.push(text(msg.value) as string);
          return (b.messages.at(-1) as KafkaMessage).offset + 1;
        });
      }
      const settled = Date.now() + 60_000;
      while (members.some((m) => m.assigned.length !== 2) && Date.now() < settled) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(members.flatMap((m) => m.assigned).sort(), [0, 1, 2, 3], JSON.stringify(members.map((m) => [m.name, m.assigned])));
      assert.ok(
        members.every((m) => m.assigned.length === 2),
        "two partitions each",
      );
      await produce(
        topic,
        Array.from({ length: 40 }, (_, i) => ({ value: `v${i}`, partition: i % 4 })),
      );
      const deadline = Date.now() + 20_000;
      while (members.reduce((n, m) => n + m.got.length, 0) < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const m of members) {
        assert.deepEqual(
          m.got.map((v) => Number(v.slice(1)) % 4).filter((p, i, a) => a.indexOf(p) === i).sort(),
          m.assigned,
          `${m.name} read only its partitions`,
        );
      }
      assert.deepEqual(
        members.flatMap((m) => m.got).sort(),
        Array.from({ length: 40 }, (_, i) => `v${i}`).sort(),
      );
    } finally {
      await Promise.all(consumers.map((c) => c.stop()));
      await Promise.all(members.map((m) => m.client.close()));
    }
  });
});

/** The group's committed offsets of a topic (kafkajs admin, independent of the client under test). */
async function groupOffsets(groupId: string, topic: string): Promise<Map<number, number>> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map((t?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

const waitUntil = async (f: () => boolean, timeoutMs: number, what: string): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

for (const [name, make] of Object.entries(clients)) {
  describe(`KafkaClient contract for scale-out: ${name} (real broker)`, () => {
    const client = make();
    after(() => client.close());

    it("a paused partition delivers nothing until resumed while the other partition of its topic goes on", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cs-${name}`);
      await createTopic(topic, 2);
      const consumer = client.consumer({ groupId: uniqueName("g"), topics: [topic], fromBeginning: true });
      const got = new Map<number, number>([
        [0, 0],
        [1, 0],
      ]);
      await consumer.start((b) => {
        got.set(b.partition, (got.get(b.partition) ?? 0) + b.messages.length);
        return (b.messages.at(-1) as KafkaMessage).offset + 1;
      });
      try {
        await produce(topic, [{ value: "a", partition: 0 }, { value: "b", partition: 1 }]);
        await waitUntil(() => got.get(0) === 1 && got.get(1) === 1, 20_000, "the first two messages");
        consumer.pausePartitions([{ topic, partition: 0 }]);
        await produce(topic, Array.from({ length: 10 }, (_, i) => ({ value: `v${i}`, partition: i % 2 })));
        await waitUntil(() => got.get(1) === 6, 20_000, "partition 1");
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(got.get(0), 1, "nothing from the paused partition");
        consumer.resumePartitions([{ topic, partition: 0 }]);
        await waitUntil(() => got.get(0) === 6, 20_000, "partition 0 after resume");
      } finally {
        await consumer.stop();
      }
    });

    it("a custom assignor sees every member's user data, keeps partition p of co-partitioned topics together, and rebalances report added and revoked partitions", { timeout: 120_000 }, async () => {
      const a = uniqueName(`cs-${name}-a`);
      const b = uniqueName(`cs-${name}-b`);
      await createTopic(a, 4);
      await createTopic(b, 4);
      const groupId = uniqueName("g");
      const seenUserData: string[][] = [];
      const assignor = (tag: string): GroupAssignor => ({
        name: "gress-test-tasks",
        userData: () => new TextEncoder().encode(tag),
        assign(members, partitions) {
          seenUserData.push(members.map((m) => (m.userData === null ? "" : new TextDecoder().decode(m.userData))).sort());
          // Members in the order of their user data; partition p of every topic to member p % n.
          const ordered = [...members].sort((x, y) => (new TextDecoder().decode(x.userData ?? new Uint8Array()) < new TextDecoder().decode(y.userData ?? new Uint8Array()) ? -1 : 1));
          const out = new Map<string, TopicPartition[]>(ordered.map((m) => [m.memberId, []]));
          for (const [topic, count] of partitions) for (let p = 0; p < count; p++) out.get(ordered[p % ordered.length]!.memberId)!.push({ topic, partition: p });
          return out;
        },
      });
      const first = client.consumer({ groupId, topics: [a, b], fromBeginning: true, sessionTimeoutMs: 6000, assignor: assignor("first") });
      const second = make().consumer({ groupId, topics: [a, b], fromBeginning: true, sessionTimeoutMs: 6000, assignor: assignor("second") });
      const firstEvents: Rebalance[] = [];
      const secondEvents: Rebalance[] = [];
      first.onRebalance((r) => firstEvents.push(r));
      second.onRebalance((r) => secondEvents.push(r));
      const label = (tps: readonly TopicPartition[]): string[] => tps.map((tp) => `${tp.topic === a ? "a" : "b"}${tp.partition}`).sort();
      const take = (batch: KafkaBatch): number => (batch.messages.at(-1) as KafkaMessage).offset + 1;
      try {
        await first.start(take);
        await waitUntil(() => label(firstEvents.at(-1)?.assigned ?? []).length === 8, 30_000, "the first member's assignment");
        assert.deepEqual(label(firstEvents.at(-1)!.added), ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]);
        const genBefore = firstEvents.at(-1)!.generation;
        assert.ok(first.groupMetadata() !== undefined, "group metadata after the join");
        await second.start(take);
        await waitUntil(
          () => label(firstEvents.at(-1)?.assigned ?? []).join() === "a0,a2,b0,b2" && label(secondEvents.at(-1)?.assigned ?? []).join() === "a1,a3,b1,b3",
          60_000,
          "the split between the two members",
        );
        const last = firstEvents.at(-1)!;
        assert.ok(last.generation > genBefore, `generation grows: ${genBefore} → ${last.generation}`);
        assert.deepEqual(label(last.revoked), ["a1", "a3", "b1", "b3"]);
        assert.deepEqual(label(last.added), []);
        assert.ok(
          seenUserData.some((u) => u.join() === "first,second"),
          `the leader saw both members' user data: ${JSON.stringify(seenUserData)}`,
        );
      } finally {
        await second.stop();
        await first.stop();
      }
    });

    it("members that commit after every batch while data flows see one new generation per membership change, not more", { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cs-${name}-gen`);
      await createTopic(topic, 4);
      const groupId = uniqueName("g");
      let producing = true;
      const feeding = (async () => {
        for (let i = 0; producing; i++) {
          await produce(topic, Array.from({ length: 8 }, (_, j) => ({ value: `v${i}-${j}`, partition: j % 4 })));
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const members = [client, make()].map((cl) => {
        const consumer = cl.consumer({ groupId, topics: [topic], fromBeginning: true, sessionTimeoutMs: 6000 });
        const generations = new Set<number>();
        consumer.onRebalance((r) => generations.add(r.generation));
        return { consumer, generations };
      });
      // The Kafka source's ack(): commit what was read, ignoring a commit refused during a rebalance.
      const committing = (consumer: KafkaConsumer) => async (b: KafkaBatch): Promise<number> => {
        const next = (b.messages.at(-1) as KafkaMessage).offset + 1;
        await consumer.commit([{ topic: b.topic, partition: b.partition, offset: next }]).catch(() => undefined);
        return next;
      };
      const [first, second] = members as [(typeof members)[number], (typeof members)[number]];
      try {
        await first.consumer.start(committing(first.consumer));
        await waitUntil(() => first.generations.size === 1, 20_000, "the first join");
        await new Promise((r) => setTimeout(r, 2000));
        await second.consumer.start(committing(second.consumer));
        await waitUntil(() => second.generations.size > 0, 30_000, "the second join");
        // Extra rebalances came about a second apart (docs/SCALE-OUT.md F3): give them time to show.
        await new Promise((r) => setTimeout(r, 6000));
        assert.equal(first.generations.size, 2, `the first member's generations: ${[...first.generations].join(", ")}`);
        assert.equal(second.generations.size, 1, `the second member's generations: ${[...second.generations].join(", ")}`);
      } finally {
        producing = false;
        await feeding;
        await second.consumer.stop();
        await first.consumer.stop();
      }
    });

    it("offsets sent in a transaction become the group's committed offsets when it commits, and not when it aborts", { timeout: 120_000 }, async () => {
      const input = uniqueName(`cs-${name}-in`);
      const output = uniqueName(`cs-${name}-out`);
      await createTopic(input, 1);
      await createTopic(output, 1);
      await produce(input, Array.from({ length: 5 }, (_, i) => ({ value: `v${i}` })));
      const groupId = uniqueName("g");
      const consumer = client.consumer({ groupId, topics: [input], fromBeginning: true });
      await consumer.start((batch) => (batch.messages.at(-1) as KafkaMessage).offset + 1);
      const producer = client.transactionalProducer({ transactionalId: uniqueName("tx") });
      try {
        await waitUntil(() => consumer.groupMetadata() !== undefined, 20_000, "the join");
        await producer.connect();
        await producer.begin(false);
        await producer.send(output, [{ key: null, value: "aborted" }]);
        await producer.sendOffsets(consumer.groupMetadata()!, [{ topic: input, partition: 0, offset: 2 }]);
        await producer.abort();
        assert.equal((await groupOffsets(groupId, input)).get(0), -1, "an aborted transaction commits no offset");
        await producer.begin(false);
        await producer.send(output, [{ key: null, value: "committed" }]);
        await producer.sendOffsets(consumer.groupMetadata()!, [{ topic: input, partition: 0, offset: 4 }]);
        await producer.commit();
        assert.equal((await groupOffsets(groupId, input)).get(0), 4);
        assert.deepEqual(
          (await readCommitted(output)).map((m) => m.value),
          ["committed"],
        );
      } finally {
        await producer.disconnect();
        await consumer.stop();
      }
    });

    it("connect() fences a zombie with the same transactional id: its records and offsets are never committed", { timeout: 120_000 }, async () => {
      const output = uniqueName(`cs-${name}-out`);
      const input = uniqueName(`cs-${name}-in`);
      await createTopic(output, 1);
      await createTopic(input, 1);
      const groupId = uniqueName("g");
      const transactionalId = uniqueName("tx");
      const group = { groupId, generationId: -1, memberId: "", coordinatorId: await coordinatorOf(groupId) };
      const zombie = client.transactionalProducer({ transactionalId });
      const successor = make().transactionalProducer({ transactionalId });
      try {
        await zombie.connect();
        await zombie.begin(false);
        await zombie.send(output, [{ key: null, value: "zombie" }]);
        await zombie.sendOffsets(group, [{ topic: input, partition: 0, offset: 7 }]);
        await successor.connect();
        await assert.rejects(zombie.commit(), "the zombie's commit fails");
        await successor.begin(false);
        await successor.send(output, [{ key: null, value: "successor" }]);
        await successor.sendOffsets(group, [{ topic: input, partition: 0, offset: 3 }]);
        await successor.commit();
        assert.deepEqual(
          (await readCommitted(output)).map((m) => m.value),
          ["successor"],
        );
        assert.equal((await groupOffsets(groupId, input)).get(0), 3);
      } finally {
        await zombie.disconnect().catch(() => undefined);
        await successor.disconnect();
      }
    });

    it("topicConfig reports a topic's cleanup policy", { timeout: 60_000 }, async () => {
      const compacted = uniqueName(`cs-${name}-compact`);
      const plain = uniqueName(`cs-${name}-plain`);
      await client.createTopic(compacted, 1, { config: { "cleanup.policy": "compact" } });
      await client.createTopic(plain, 1);
      assert.equal((await client.topicConfig(compacted)).get("cleanup.policy"), "compact");
      assert.equal((await client.topicConfig(plain)).get("cleanup.policy"), "delete");
    });
  });
}

/** The broker id of a group's coordinator (kafkajs admin, independent of the client under test). */
async function coordinatorOf(groupId: string): Promise<number> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    // Describing the group makes sure the coordinator is known; a single-broker cluster has one node.
    await admin.describeGroups([groupId]);
    const { brokers: nodes } = await admin.describeCluster();
    if (nodes.length !== 1) throw new Error("this test expects a single-broker cluster");
    return nodes[0]!.nodeId;
  } finally {
    await admin.disconnect();
  }
}

describe("KafkaClient contract: KIP-447 on @platformatic/kafka (real broker)", () => {
  it("offsets sent with an older group generation are refused (ILLEGAL_GENERATION) once another member joined", { timeout: 120_000 }, async () => {
    const client = clients.platformatic!();
    const input = uniqueName("cs-kip447");
    await createTopic(input, 2);
    const groupId = uniqueName("g");
    const first = client.consumer({ groupId, topics: [input], fromBeginning: true, sessionTimeoutMs: 6000 });
    const second = client.consumer({ groupId, topics: [input], fromBeginning: true, sessionTimeoutMs: 6000 });
    const producer = client.transactionalProducer({ transactionalId: uniqueName("tx") });
    const take = (batch: KafkaBatch): number => (batch.messages.at(-1) as KafkaMessage).offset + 1;
    const generations: number[] = [];
    first.onRebalance((r) => generations.push(r.generation));
    try {
      await first.start(take);
      await waitUntil(() => first.groupMetadata() !== undefined && generations.length > 0, 20_000, "the first join");
      const old = first.groupMetadata()!;
      await second.start(take);
      await waitUntil(() => (first.groupMetadata()?.generationId ?? 0) > old.generationId, 30_000, "the next generation");
      await producer.connect();
      await producer.begin(false);
      await assert.rejects(producer.sendOffsets(old, [{ topic: input, partition: 0, offset: 1 }]), /ILLEGAL_GENERATION|generation/i);
      await producer.abort().catch(() => undefined);
      await producer.begin(false);
      await producer.sendOffsets(first.groupMetadata()!, [{ topic: input, partition: 0, offset: 1 }]);
      await producer.commit();
      assert.equal((await groupOffsets(groupId, input)).get(0), 1);
    } finally {
      await producer.disconnect();
      await second.stop();
      await first.stop();
      await client.close();
    }
  });
});

/** Node.js 20 has no zstd in node:zlib (22 has): @platformatic/kafka cannot read zstd batches there. */
const hasZstd = typeof (zlib as { zstdDecompressSync?: unknown }).zstdDecompressSync === "function";

describe(`KafkaClient contract: zstd batches on a runtime ${hasZstd ? "with" : "without"} zstd (@platformatic/kafka, real broker)`, () => {
  for (const readRecords of ["gress", "library"] as const) {
    it(`readRecords "${readRecords}": ${hasZstd ? "they are read" : "the consumer fails for good, once, naming why, and delivers nothing (no endless refetch)"}`, { timeout: 120_000 }, async () => {
      const topic = uniqueName(`cc-zstd-${readRecords}`);
      await createTopic(topic, 1);
      await produceWithJava(topic, ["z1", "z2", "z3"], "zstd");
      const client = platformaticKafkaClient({ brokers: brokers(), readRecords });
      const consumer = client.consumer({ groupId: uniqueName("g"), topics: [topic], fromBeginning: true });
      const failures: { error: Error; kind: string }[] = [];
      consumer.onFailure?.((error, kind) => failures.push({ error, kind }));
      try {
        if (hasZstd) {
          const got = await consumeUntil(consumer, (g) => g.length >= 3);
          assert.deepEqual(
            got.map((m) => text(m.value)),
            ["z1", "z2", "z3"],
          );
          assert.deepEqual(failures, []);
          return;
        }
        const got: KafkaMessage[] = [];
        await consumer.start(async (b) => {
          got.push(...b.messages);
          return (b.messages.at(-1) as KafkaMessage).offset + 1;
        });
        await waitUntil(() => failures.length > 0, 30_000, "the consumer's failure");
        // Another second: a consumer that kept fetching would report again, or deliver.
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(failures.length, 1);
        assert.equal(failures[0]?.kind, "unreadable");
        assert.match(failures[0]?.error.message ?? "", /zstd/);
        if (readRecords === "gress") assert.match(failures[0]?.error.message ?? "", new RegExp(`the records of ${topic}-0 fetched from offset 0 cannot be read`));
        assert.deepEqual(got, []);
      } finally {
        await consumer.stop();
        await client.close();
      }
    });
  }

  it(`a Kafka source on such a topic ${hasZstd ? "reads it" : "fails its job with a SourceError that names the source and the codec"}`, { timeout: 120_000 }, async () => {
    const topic = uniqueName("cc-zstd-job");
    await createTopic(topic, 1);
    await produceWithJava(topic, ["1", "2", "3"], "zstd");
    const client = platformaticKafkaClient({ brokers: brokers() });
    const job = new Job({ name: uniqueName("zstd-job") });
    const got: number[] = [];
    job.source(kafkaSource<number>({ name: "zstd-in", client, topics: [topic], groupId: uniqueName("g"), bounded: true })).sinkTo(sinkFn("out", (v) => void got.push(v)));
    // A job that neither ends nor fails (a consumer fetching the same batches for ever) is cancelled after 30 s,
    // so that the assertions below fail instead of the test hanging.
    const watchdog = setTimeout(() => job.cancel(), 30_000);
    try {
      if (hasZstd) {
        await job.run();
        assert.deepEqual(got, [1, 2, 3]);
      } else {
        await assert.rejects(job.run(), (e: Error) => isGressError(e, "ERR_SOURCE") && /^kafka source "zstd-in": .*zstd/.test(e.message));
        assert.deepEqual(got, []);
      }
    } finally {
      clearTimeout(watchdog);
      await client.close();
    }
  });
});
