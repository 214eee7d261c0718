/**
 * The KafkaClient's `deleteRecords` (DeleteRecords) on the real broker, for both implementations: the records
 * before the given offset go, the partition's earliest offset (low watermark) becomes that offset, other
 * partitions keep theirs, a repeat below the low watermark deletes nothing, and an offset past the end fails.
 * The checks use an independent kafkajs admin from kafka-support, never the client under test.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { KafkaClient } from "../../connectors/kafka/client.ts";
import { kafkajsClient, platformaticKafkaClient } from "../../connectors/kafka/index.ts";
import { brokers, createTopic, kafka, produce, uniqueName } from "./kafka-support.ts";

const clients: Record<string, () => KafkaClient> = {
  kafkajs: () => kafkajsClient({ brokers: brokers() }),
  platformatic: () => platformaticKafkaClient({ brokers: brokers() }),
};

/** Low and high watermark of each partition, from a kafkajs admin. */
async function watermarks(topic: string): Promise<Map<number, { low: number; high: number }>> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, { low: Number(o.low), high: Number(o.high) }]));
  } finally {
    await admin.disconnect();
  }
}

for (const [name, make] of Object.entries(clients)) {
  describe(`KafkaClient deleteRecords: ${name} (real broker)`, () => {
    const client = make();
    after(() => client.close());

    it("deletes the records before the offset: the earliest offset becomes it; other partitions keep theirs", { timeout: 60_000 }, async () => {
      const topic = uniqueName(`delrec-${name}`);
      await createTopic(topic, 2);
      await produce(
        topic,
        Array.from({ length: 20 }, (_, i) => ({ value: `m${i}`, partition: i % 2 })),
      );
      assert.deepEqual([...(await watermarks(topic))].sort(), [
        [0, { low: 0, high: 10 }],
        [1, { low: 0, high: 10 }],
      ]);
      await client.deleteRecords(topic, [{ partition: 0, offset: 6 }]);
      assert.deepEqual((await watermarks(topic)).get(0), { low: 6, high: 10 });
      assert.deepEqual((await watermarks(topic)).get(1), { low: 0, high: 10 }, "a partition not named keeps its records");
      // Below the low watermark: nothing more goes, and it is no error.
      await client.deleteRecords(topic, [{ partition: 0, offset: 3 }]);
      assert.deepEqual((await watermarks(topic)).get(0), { low: 6, high: 10 });
      // Both partitions in one call; up to the high watermark is allowed.
      await client.deleteRecords(topic, [
        { partition: 0, offset: 10 },
        { partition: 1, offset: 4 },
      ]);
      const after2 = await watermarks(topic);
      assert.deepEqual(after2.get(0), { low: 10, high: 10 });
      assert.deepEqual(after2.get(1), { low: 4, high: 10 });
      await client.deleteRecords(topic, []);
      // Past the high watermark: refused, and nothing deleted.
      await assert.rejects(client.deleteRecords(topic, [{ partition: 1, offset: 11 }]));
      assert.deepEqual((await watermarks(topic)).get(1), { low: 4, high: 10 });
    });
  });
}
