/**
 * A restart strategy on real Kafka: the transactional sink's producer loses its connections mid-run (the
 * test disconnects the real producer under the sink, as a broker-side close would), the job fails with
 * ERR_SINK, restarts in the same process from its last checkpoint, and the topic ends with every record exactly
 * once (read with read_committed).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type KafkaClient, type KafkaTransactionalProducer, kafkajsClient, kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { generator, Job, type Source } from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";
import { brokers, createTopic, produce, readCommitted, uniqueName } from "./kafka-support.ts";

const tempDir = tempDirs("gress-restart-kafka-");

/** Calls methods on the real object (so that private fields and `this` work). */
function delegate<T extends object>(target: T, override: (prop: string | symbol) => unknown): T {
  return new Proxy(target, {
    get(t, prop) {
      const own = override(prop);
      if (own !== undefined) return own;
      const v = Reflect.get(t, prop, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

/**
 * Runs `source` into a transactional Kafka sink whose first producer is disconnected (its connections to the
 * brokers closed) before a send once two checkpoints have completed: that send fails as it would on a dropped
 * connection. Checks one restart and every record exactly once in the output topic.
 */
async function runWithCut(name: string, source: Source<number>, total: number): Promise<void> {
  const topic = uniqueName("restart-out");
  await createTopic(topic, 2);
  const real = kafkajsClient({ brokers: brokers(), clientId: name });
  const state = new LmdbStateBackend({ path: join(tempDir(), "state"), mapSize: 64 * 1024 * 1024, durability: "process" });
  const log: string[] = [];
  const job = new Job({
    name,
    state,
    checkpoints: { intervalMs: 200, log: () => {} },
    restart: { strategy: "fixed-delay", attempts: 3, delayMs: 100, log: (m) => log.push(m) },
  });
  let producers = 0;
  let cuts = 0;
  const client: KafkaClient = delegate(real, (prop) =>
    prop !== "transactionalProducer"
      ? undefined
      : (o: Parameters<KafkaClient["transactionalProducer"]>[0]): KafkaTransactionalProducer => {
          const producer = real.transactionalProducer(o);
          const n = ++producers;
          return delegate(producer, (p) =>
            p !== "send" || n !== 1
              ? undefined
              : async (...args: Parameters<KafkaTransactionalProducer["send"]>) => {
                  if (cuts === 0 && job.metrics.checkpointsCompleted >= 2) {
                    cuts++;
                    await producer.disconnect();
                  }
                  return producer.send(...args);
                },
          );
        },
  );
  job.source(source).sinkTo(kafkaSink<number>({ name: "out", client, topic, serialize: (v) => String(v) }));
  try {
    await job.run();
  } finally {
    await state.close();
    await real.close();
  }
  assert.equal(cuts, 1, "the connection was cut once");
  assert.equal(job.metrics.restarts, 1, log.join(" | "));
  assert.match(log[0] ?? "", /^restart 1\/3 in 0\.1 s after ERR_SINK: sink "out" failed to write: /);
  assert.ok(producers >= 2, "the restarted attempt opened a new producer");
  const values = (await readCommitted(topic)).map((m) => Number(m.value));
  assert.equal(values.length, total, "every record committed");
  assert.equal(new Set(values).size, total, "no record twice");
}

describe("restart strategies on Kafka", { timeout: 180_000 }, () => {
  it("generator → Kafka: the sink's producer connection is closed mid-run; the job restarts from its checkpoint, the topic holds every record once", { timeout: 120_000 }, async () => {
    const total = 40_000;
    await runWithCut(uniqueName("restart-gen"), generator({ name: "numbers", count: total, ratePerSecond: 20_000, make: (i) => i }), total);
  });

  it("Kafka → Kafka: the same with a Kafka source, which is opened again at its checkpointed offsets", { timeout: 120_000 }, async () => {
    const total = 30_000;
    const input = uniqueName("restart-in");
    await createTopic(input, 3);
    await produce(
      input,
      Array.from({ length: total }, (_, i) => ({ value: String(i), partition: i % 3 })),
    );
    const name = uniqueName("restart-k2k");
    const source = kafkaSource<number>({
      name: "numbers",
      brokers: brokers(),
      topics: [input],
      groupId: name,
      bounded: true,
      decode: (bytes) => ({ ok: true, value: Number(new TextDecoder().decode(bytes ?? undefined)) }),
      rateLimit: { ratePerSecond: 15_000 },
    });
    await runWithCut(name, source, total);
  });
});
