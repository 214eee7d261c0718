import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import { Job, record } from "../../lib/index.ts";
import { kafkaSink, type KafkaSinkHandle } from "../../connectors/kafka/index.ts";
import { brokers, connection, createTopic, readCommitted, testClient, uniqueName } from "./kafka-support.ts";

describe("kafka sink (real broker)", () => {
  it("a bounded job without checkpoints commits everything once at the end; read_committed sees each record once", { timeout: 120_000 }, async () => {
    const topic = uniqueName("sink");
    await createTopic(topic, 3);
    const job = new Job({ name: "kafka-sink" });
    job
      .fromIterable(Array.from({ length: 5000 }, (_, i) => i))
      .map((i) => ({ id: i }))
      .sinkTo(kafkaSink<{ id: number }>({ name: "out", ...connection(), topic, key: (v) => String(v.id), transactionalId: uniqueName("tx") }));
    await job.run();
    const read = await readCommitted(topic);
    assert.equal(read.length, 5000);
    assert.deepEqual(new Set(read.map((m) => JSON.parse(m.value).id)).size, 5000);
    assert.ok(new Set(read.map((m) => m.partition)).size > 1, "keys spread over partitions");
  });

  it("a pre-committed transaction outlives its producer: a new incarnation commits it from the stored handle, exactly once", { timeout: 120_000 }, async () => {
    const topic = uniqueName("2pc");
    await createTopic(topic, 1);
    const transactionalId = uniqueName("tx");
    const first = kafkaSink<number>({ name: "out", ...connection(), topic, transactionalId });
    await first.open?.();
    await Promise.all([1, 2, 3].map((v) => first.write(v, record(v, 0))));
    const handle = (await first.preCommit?.(1)) as KafkaSinkHandle;
    assert.equal(handle.empty, false);
    assert.equal(handle.transactionalId, transactionalId);
    // Records after the pre-commit belong to the next checkpoint's transaction: held until commit(1).
    const later = Promise.resolve(first.write(4, record(4, 0)));
    // The process "dies" here: the transaction is neither committed nor aborted.
    const handleJson = JSON.parse(JSON.stringify(handle)) as KafkaSinkHandle;

    // Recovery in a fresh sink (another process would do the same): commit from the stored handle, twice.
    const second = kafkaSink<number>({ name: "out", ...connection(), topic, transactionalId });
    await second.commit?.(1, handleJson);
    await second.commit?.(1, handleJson);
    assert.deepEqual((await readCommitted(topic)).map((m) => m.value), ["1", "2", "3"]);
    // Opening fences the old producer (and aborts whatever it had open); new work goes on.
    await second.open?.();
    await second.write(5, record(5, 0));
    await second.commit?.(2, await second.preCommit?.(2));
    await second.close?.();
    await first.close?.();
    await assert.rejects(later, /not open/, "the held write of the old incarnation fails on close");
    assert.deepEqual((await readCommitted(topic)).map((m) => m.value), ["1", "2", "3", "5"]);
  });

  it("a transaction left open by a dead producer is aborted at start and does not block read_committed readers", { timeout: 120_000 }, async () => {
    const topic = uniqueName("leftover");
    await createTopic(topic, 1);
    const transactionalId = uniqueName("tx");
    const kafka = new Kafka({ brokers: brokers(), logLevel: logLevel.NOTHING });
    const dead = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
    await dead.connect();
    const txn = await dead.transaction();
    await txn.send({ topic, messages: [{ value: "leftover" }] });
    await dead.disconnect(); // never committed: the transaction stays open on the broker

    const job = new Job({ name: "kafka-leftover" });
    job.fromIterable(["a", "b"]).sinkTo(kafkaSink<string>({ name: "out", ...connection(), topic, transactionalId, serialize: (v) => v }));
    await job.run();
    const read = await readCommitted(topic, 15_000);
    assert.deepEqual(
      read.map((m) => m.value),
      ["a", "b"],
    );
  });

  it("endTransaction on an already committed or unknown handle reports already-ended instead of failing", { timeout: 120_000 }, async () => {
    const client = testClient();
    try {
      const r = await client.endTransaction({ transactionalId: uniqueName("never-used"), producerId: "123456", producerEpoch: 0 }, true);
      assert.equal(r, "already-ended");
    } finally {
      await client.close();
    }
  });
});
