import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { DEAD_LETTERS, Job, VirtualClock } from "../../lib/index.ts";
import { connection, createTopic, produce, readCommitted, uniqueName } from "./kafka-support.ts";

const until = async (cond: () => boolean, what: string, ms = 15_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("kafka source flow control (real broker)", () => {
  it("a slow sink pauses the consumer; after resume every record arrives once, in partition order", { timeout: 120_000 }, async () => {
    const topic = uniqueName("pause");
    await createTopic(topic, 2);
    await produce(
      topic,
      Array.from({ length: 2000 }, (_, i) => ({ value: JSON.stringify({ i }), partition: i % 2 })),
    );
    const job = new Job({ name: "kafka-pause", maxInFlight: 16 });
    const source = kafkaSource<{ i: number }>({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g"), bounded: true });
    let pauses = 0;
    const pause = source.pause.bind(source);
    source.pause = () => {
      pauses++;
      pause();
    };
    const got: number[] = [];
    job.source(source).sinkTo({
      name: "slow",
      write: (v) =>
        new Promise<void>((r) =>
          setTimeout(() => {
            got.push(v.i);
            r();
          }, 0),
        ),
    });
    await job.run();
    assert.ok(pauses > 10, `the source was paused (${pauses} times)`);
    assert.equal(got.length, 2000);
    assert.equal(new Set(got).size, 2000);
    for (const p of [0, 1]) {
      const seq = got.filter((i) => i % 2 === p);
      assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `partition ${p} in order`);
    }
  });

  it("the token bucket limits the rate on the job's clock: a burst, then ratePerSecond", { timeout: 120_000 }, async () => {
    const topic = uniqueName("rate");
    await createTopic(topic, 1);
    await produce(
      topic,
      Array.from({ length: 40 }, (_, i) => ({ value: JSON.stringify({ i }) })),
    );
    const clock = new VirtualClock(1_000_000);
    const job = new Job({ name: "kafka-rate", clock });
    const got: number[] = [];
    job
      .source(kafkaSource<{ i: number }>({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g"), bounded: true, rateLimit: { ratePerSecond: 100, burst: 10 } }))
      .sinkTo({ name: "collect", write: (v) => void got.push(v.i) });
    const done = job.run();
    await until(() => got.length >= 10, "the burst");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got.length, 10, "no more than the burst while the clock stands still");
    clock.advance(100); // 100 ms at 100/s: 10 more tokens
    await until(() => got.length >= 20, "the next 10");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got.length, 20);
    // The bucket holds at most `burst` tokens: a long pause still lets only 10 through at once.
    clock.advance(10_000);
    await until(() => got.length >= 30, "one more burst");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got.length, 30);
    clock.advance(100);
    await done;
    assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => i));
  });

  it("dead letters can go to a Kafka topic like any stream (a dead-letter queue)", { timeout: 120_000 }, async () => {
    const topic = uniqueName("dlq-in");
    const dlq = uniqueName("dlq");
    await createTopic(topic, 1);
    await createTopic(dlq, 1);
    await produce(topic, [{ value: '{"ok":1}' }, { value: "oops" }, { value: '{"ok":2}' }]);
    const job = new Job({ name: "kafka-dlq" });
    const stream = job.source(kafkaSource({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g"), bounded: true }));
    const good: unknown[] = [];
    stream.sinkTo({ name: "good", write: (v) => void good.push(v) });
    stream.sideOutput(DEAD_LETTERS).sinkTo(kafkaSink({ name: "dlq", ...connection(), topic: dlq, transactionalId: uniqueName("dlq-tx") }));
    await job.run();
    assert.deepEqual(good, [{ ok: 1 }, { ok: 2 }]);
    const dead = await readCommitted(dlq);
    assert.equal(dead.length, 1);
    assert.deepEqual(JSON.parse(dead[0]?.value ?? ""), { source: "in", split: `${topic}-0`, position: 1, size: 4, preview: "oops" });
  });
});
