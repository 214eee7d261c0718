/**
 * Example plumbing, not part of the engine: fills a Kafka topic with generated events (so an example has input)
 * and counts what a read_committed reader can see in an output topic.
 * @module
 */
import { Kafka, logLevel } from "kafkajs";
import type { GeneratorSource } from "../../lib/sources/generator.ts";

/** The brokers from GRESS_KAFKA_BROKERS, or an error that says how to start them. */
export function brokersFromEnv(): string[] {
  const v = process.env.GRESS_KAFKA_BROKERS;
  if (v === undefined || v === "") throw new Error('set GRESS_KAFKA_BROKERS: scripts/services up && eval "$(scripts/services env)"');
  return v.split(",");
}

function kafka(brokers: readonly string[]): Kafka {
  return new Kafka({ brokers: [...brokers], clientId: "gress-example", logLevel: logLevel.NOTHING });
}

/** Creates `topic` and writes the first `count` events of `source` to it, keyed by `key`, with event-time timestamps. */
export async function feedTopic<T>(
  brokers: readonly string[],
  topic: string,
  source: GeneratorSource<T>,
  count: number,
  key: (value: T) => string,
  partitions = 3,
): Promise<void> {
  const client = kafka(brokers);
  const admin = client.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const producer = client.producer();
  await producer.connect();
  for (let i = 0; i < count; i += 5_000) {
    const messages = [];
    for (let j = i; j < Math.min(count, i + 5_000); j++) {
      const e = source.event(j);
      messages.push({ key: key(e.value), value: JSON.stringify(e.value), timestamp: String(e.timestamp) });
    }
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();
}

/** Creates an output topic. */
export async function createTopic(brokers: readonly string[], topic: string, partitions = 1): Promise<void> {
  const admin = kafka(brokers).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
}

/** Reads every committed message of `topic` (read_committed) and returns the parsed values. */
export async function readCommitted<T>(brokers: readonly string[], topic: string): Promise<T[]> {
  const client = kafka(brokers);
  const admin = client.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const consumer = client.consumer({ groupId: `reader-${topic}-${Date.now()}`, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const out: T[] = [];
  const done = new Set<number>();
  const want = ends.filter((p) => Number(p.high) > 0 && Number(p.high) !== Number(p.low));
  await new Promise<void>((resolve) => {
    if (want.length === 0) return resolve();
    const timer = setTimeout(resolve, 15_000);
    void consumer.run({
      eachMessage: async ({ partition, message }) => {
        if (message.value !== null) out.push(JSON.parse(message.value.toString()) as T);
        // Transaction markers take offsets too, so "done" is reaching the partition's end offset.
        const end = Number(want.find((p) => p.partition === partition)?.high ?? 0);
        if (Number(message.offset) + 2 >= end) done.add(partition);
        if (done.size === want.length) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return out;
}
