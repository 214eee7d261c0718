/**
 * A bounded job ends as soon as it has read to the end: its consumer's stop does not wait for a fetch the
 * broker holds (maxWaitTime, 100 ms, when nothing new has come). On @platformatic/kafka the fetch loop went
 * on to one more fetch after the job's stop had begun, and every bounded run paid that wait at its end (a
 * tenth of a 300k-event benchmark run).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KafkaClient } from "../../connectors/kafka/client.ts";
import { kafkaSource, kafkajsClient, platformaticKafkaClient } from "../../connectors/kafka/index.ts";
import { Job, sinkFn } from "../../lib/index.ts";
import { brokers, createTopic, produce, uniqueName } from "./kafka-support.ts";

const clients: Record<string, () => KafkaClient> = {
  kafkajs: () => kafkajsClient({ brokers: brokers() }),
  platformatic: () => platformaticKafkaClient({ brokers: brokers() }),
};

for (const [name, make] of Object.entries(clients)) {
  describe(`bounded job end: ${name} (real broker)`, () => {
    it("a bounded job over three messages ends without waiting for the broker's long poll", async () => {
      const topic = uniqueName("bounded-end");
      await createTopic(topic, 1);
      await produce(topic, [0, 1, 2].map((i) => ({ value: `"m${i}"`, partition: 0 })));
      const client = make();
      try {
        // The least of three runs: one slow run on a loaded machine says nothing, a wait paid each time does.
        const times: number[] = [];
        for (let i = 0; i < 3; i++) {
          const got: unknown[] = [];
          const job = new Job({ name: uniqueName("bounded-end") });
          job.source(kafkaSource({ name: "in", client, topics: [topic], groupId: uniqueName(`bounded-end-${name}`), bounded: true })).sinkTo(sinkFn("out", (v) => void got.push(v)));
          const t0 = performance.now();
          await job.run();
          times.push(performance.now() - t0);
          assert.deepEqual(got, ["m0", "m1", "m2"]);
        }
        console.log(`bounded job end on ${name}: ${times.map((t) => t.toFixed(0)).join(", ")} ms`);
        assert.ok(Math.min(...times) < 80, `runs took ${times.map((t) => t.toFixed(0)).join(", ")} ms; the broker holds a fetch 100 ms`);
      } finally {
        await client.close();
      }
    });
  });
}
