/**
 * A bounded Kafka source reports its progress (offsets read of the end offsets seen at open), which gress run
 * shows as a progress bar; an unbounded one reports none.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { kafkaSource } from "../../connectors/kafka/index.ts";
import { Job, type SourceProgress } from "../../lib/index.ts";
import { connection, createTopic, produce, uniqueName } from "./kafka-support.ts";

describe("kafka source progress (real broker)", () => {
  it("a bounded source goes from 0 to the end offsets; an unbounded one has no progress", { timeout: 120_000 }, async () => {
    const topic = uniqueName("progress");
    await createTopic(topic, 3);
    await produce(
      topic,
      Array.from({ length: 3000 }, (_, i) => ({ value: JSON.stringify({ id: i }), partition: i % 3 })),
    );
    const source = kafkaSource<{ id: number }>({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g"), bounded: true });
    assert.equal(source.progress?.(), undefined, "unknown before open");
    const seen: (SourceProgress | undefined)[] = [];
    let n = 0;
    const job = new Job({ name: "kafka-progress" });
    job
      .source(source)
      .tap(() => {
        if (++n % 500 === 0) seen.push(source.progress?.());
      })
      .sinkTo({ name: "out", write() {} });
    await job.run();
    assert.equal(n, 3000);
    assert.equal(seen.length, 6);
    for (const p of seen) {
      assert.equal(p?.total, 3000);
      assert.equal(p?.unit, "records");
    }
    const done = seen.map((p) => p?.done ?? -1);
    assert.ok(done[0]! >= 1 && done[0]! < 3000 && done.every((d, i) => i === 0 || d >= done[i - 1]!), JSON.stringify(done));
    assert.deepEqual(source.progress?.(), { done: 3000, total: 3000, unit: "records" });

    const unbounded = kafkaSource({ name: "in", ...connection(), topics: [topic], groupId: uniqueName("g") });
    const job2 = new Job({ name: "kafka-unbounded" });
    let got = 0;
    job2
      .source(unbounded)
      .tap(() => {
        if (++got === 3000) job2.cancel();
      })
      .sinkTo({ name: "out", write() {} });
    await job2.run().catch(() => {});
    assert.equal(unbounded.progress?.(), undefined);
  });
});
