import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { DEAD_LETTERS, isGressError, Job, type SideRecord } from "../../lib/index.ts";
import { jsonDecoder, kafkaSource } from "../../connectors/kafka/index.ts";
import { connection, createTopic, kafka, produce, uniqueName } from "./kafka-support.ts";

describe("kafka source (real broker)", () => {
  it("reads every partition once, with split = topic-partition, Kafka timestamps, and positions = end offsets", { timeout: 120_000 }, async () => {
    const topic = uniqueName("src");
    await createTopic(topic, 3);
    const messages = Array.from({ length: 3000 }, (_, i) => ({
      value: JSON.stringify({ id: i, p: i % 3 }),
      partition: i % 3,
      timestamp: 1_700_000_000_000 + i,
    }));
    await produce(topic, messages);

    const job = new Job({ name: "kafka-src" });
    const source = kafkaSource<{ id: number; p: number }>({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g"), bounded: true });
    const seen: { id: number; split: string | undefined; ts: number }[] = [];
    const records = job.source(source).records();
    const done = new Promise<void>((resolve, reject) => records.subscribe({ next: (r) => seen.push({ id: r.value.id, split: r.split, ts: r.timestamp }), complete: resolve, error: reject }));
    await done;

    assert.equal(seen.length, 3000);
    assert.deepEqual(new Set(seen.map((s) => s.id)).size, 3000);
    for (const s of seen) {
      assert.equal(s.split, `${topic}-${s.id % 3}`);
      assert.equal(s.ts, 1_700_000_000_000 + s.id);
    }
    // Within a partition the order is the produce order.
    for (let p = 0; p < 3; p++) {
      const ids = seen.filter((s) => s.id % 3 === p).map((s) => s.id);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    }
    assert.deepEqual(source.positions?.(), { [`${topic}-0`]: 1000, [`${topic}-1`]: 1000, [`${topic}-2`]: 1000 });
  });

  it("opened from positions, it seeks and emits only what comes after them", { timeout: 120_000 }, async () => {
    const topic = uniqueName("seek");
    await createTopic(topic, 2);
    await produce(
      topic,
      Array.from({ length: 200 }, (_, i) => ({ value: JSON.stringify({ id: i }), partition: i % 2 })),
    );
    const job = new Job({ name: "kafka-seek" });
    const ids = await job
      .source(kafkaSource<{ id: number }>({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g"), bounded: true }), {
        from: { [`${topic}-0`]: 90, [`${topic}-1`]: 100 },
      })
      .map((v) => v.id)
      .collect();
    // Partition 0 holds even ids at offsets 0..99: offsets 90..99 are ids 180..198. Partition 1 is done.
    assert.deepEqual(ids.sort((a, b) => a - b), [180, 182, 184, 186, 188, 190, 192, 194, 196, 198]);
  });

  it("bad input goes to dead letters with the reason and exact counts; the job goes on", { timeout: 120_000 }, async () => {
    const topic = uniqueName("bad");
    await createTopic(topic, 1);
    const good = (i: number): string => JSON.stringify({ id: i, amount: i * 10 });
    const messages = [
      { value: good(0) },
      { value: "{not json" }, // malformed JSON
      { value: good(1) },
      { value: JSON.stringify({ id: 2, amount: "ten" }) }, // schema violation
      { value: JSON.stringify({ id: 3, amount: 1, pad: "x".repeat(2000) }) }, // oversized (limit 1 KiB)
      { value: '{"id":4,"amount":1,"__proto__":{"polluted":true}}' }, // __proto__ key
      { value: '{"id":5,"amount":1,"\\u005f_proto__":{"polluted":true}}' }, // __proto__ spelled with an escape
      { value: new Uint8Array([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0xff, 0xfe, 0x7d]) }, // invalid UTF-8
      { value: null }, // tombstone
      { value: good(6) },
    ];
    await produce(topic, messages);
    const schema = z.strictObject({ id: z.number().int(), amount: z.number() });
    const job = new Job({ name: "kafka-bad" });
    const stream = job.source(
      kafkaSource({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g"), bounded: true, decode: jsonDecoder({ schema, maxBytes: 1024 }) }),
    );
    const dead: SideRecord[] = [];
    // Declare both consumers before subscribing, so the source runs once for both.
    const deadLetters = stream.sideRecords(DEAD_LETTERS);
    const collected = stream.collect();
    deadLetters.subscribe((d) => dead.push(d));
    const values = await collected;

    assert.deepEqual(values, [
      { id: 0, amount: 0 },
      { id: 1, amount: 10 },
      { id: 6, amount: 60 },
    ]);
    assert.equal(dead.length, 7);
    const reasons = dead.map((d) => d.reason);
    assert.match(reasons[0] as string, /^malformed JSON/);
    assert.match(reasons[1] as string, /^schema violation: amount: /);
    assert.match(reasons[2] as string, /^oversized: \d+ bytes > limit 1024$/);
    assert.equal(reasons[3], 'forbidden key "__proto__"');
    assert.equal(reasons[4], 'forbidden key "__proto__"');
    assert.equal(reasons[5], "invalid UTF-8");
    assert.equal(reasons[6], "empty message (null value)");
    const first = dead[0]?.value as { split: string; position: number; preview: string };
    assert.equal(first.split, `${topic}-0`);
    assert.equal(first.position, 1);
    assert.equal(first.preview, "{not json");
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(job.metrics.operator("source:in").deadLetters, 7);
  });
  it("refuses to share its consumer group: another member that keeps partitions past otherMemberWaitMs fails the job with a clear error", { timeout: 120_000 }, async () => {
    const topic = uniqueName("shared");
    await createTopic(topic, 2);
    await produce(topic, [{ value: "{}", partition: 0 }, { value: "{}", partition: 1 }]);
    const groupId = uniqueName("g");
    // Another member already in the group takes (at least) one of the two partitions at the next rebalance.
    const other = kafka().consumer({ groupId, sessionTimeout: 10_000 });
    await other.connect();
    await other.subscribe({ topics: [topic], fromBeginning: true });
    await other.run({ eachMessage: async () => {} });
    try {
      const job = new Job({ name: "kafka-shared" });
      const failed = new Promise<unknown>((resolve) => {
        job
          .source(kafkaSource({ name: "in", ...connection(), topics: [topic], groupId, otherMemberWaitMs: 3000 }))
          .records()
          .subscribe({ error: resolve, complete: () => resolve(new Error("completed instead of failing")) });
      });
      const error = await failed;
      assert.ok(isGressError(error, "ERR_SOURCE"), String(error));
      assert.match((error as Error).message, new RegExp(`consumer group "${groupId}" still has another member, which holds ${topic}-\\d.*, after waiting \\d+ ms`));
      assert.match((error as Error).message, /must be its group's only member/);
    } finally {
      await other.disconnect();
    }
  });
});
