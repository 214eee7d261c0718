/**
 * read_committed with interleaved aborted transactions, on the real broker, through the client under test
 * (GRESS_KAFKA_CLIENT, @platformatic/kafka by default). Producer 1 opens a transaction and writes, producer 2 opens one and
 * writes, producer 2 aborts, producer 1 writes again and aborts; then a committed record. The broker lists the
 * aborted transactions by abort marker (producer 2's first), and kafkajs 2.2.4's own filter then handed out
 * producer 1's first record as committed (connectors/kafka/kafkajs-aborted.ts corrects it). In a scale-out
 * job that was a revoked task's aborted shuffle output counted downstream beside its successor's copy.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { createTopic, testClient, uniqueName, clientName } from "./kafka-support.ts";

describe(`read_committed with interleaved aborted transactions (${clientName()}, real broker)`, () => {
  const client = testClient();
  after(() => client.close());

  it("no record of either aborted transaction is handed out, only the committed one after them", { timeout: 60_000 }, async () => {
    const topic = uniqueName("aborted-interleaved");
    await createTopic(topic, 1);
    const p1 = client.transactionalProducer({ transactionalId: uniqueName("aborted-p1"), transactionTimeoutMs: 30_000 });
    const p2 = client.transactionalProducer({ transactionalId: uniqueName("aborted-p2"), transactionTimeoutMs: 30_000 });
    const p3 = client.transactionalProducer({ transactionalId: uniqueName("aborted-p3"), transactionTimeoutMs: 30_000 });
    const record = (value: string) => [{ key: null, value: new TextEncoder().encode(value), partition: 0 }];
    try {
      for (const p of [p1, p2, p3]) await p.connect();
      await p1.begin(false);
      await p1.send(topic, record("p1-first"));
      await p2.begin(false);
      await p2.send(topic, record("p2"));
      await p2.abort();
      await p1.send(topic, record("p1-second"));
      await p1.abort();
      await p3.begin(false);
      await p3.send(topic, record("committed"));
      await p3.commit();
    } finally {
      for (const p of [p1, p2, p3]) await p.disconnect().catch(() => undefined);
    }
    const consumer = client.consumer({ groupId: uniqueName("aborted-reader"), topics: [topic], fromBeginning: true, readCommitted: true });
    const seen: string[] = [];
    let done!: () => void;
    const reachedEnd = new Promise<void>((resolve) => (done = resolve));
    await consumer.start(async (batch) => {
      for (const m of batch.messages) {
        const value = new TextDecoder().decode(m.value ?? new Uint8Array());
        seen.push(value);
        if (value === "committed") done();
      }
      return (batch.messages.at(-1)?.offset ?? 0) + 1;
    });
    const timeout = setTimeout(() => done(), 30_000);
    try {
      await reachedEnd;
    } finally {
      clearTimeout(timeout);
      await consumer.stop();
    }
    assert.deepEqual(seen, ["committed"]);
  });
});
