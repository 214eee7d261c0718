/**
 * Ride-sharing surge pricing: 5-minute tumbling windows of demand (ride requests) and supply (available
 * drivers) per area, then a surge multiplier per area and window.
 *
 * Run on generated rides, no services needed: `npm run demo` (or `node --import tsx examples/surge-pricing.ts`).
 * With Kafka (`scripts/services up && eval "$(scripts/services env)"`), `node --import tsx examples/surge-pricing.ts
 * --kafka` fills a rides topic, runs the same pipeline Kafka → Gress → Kafka with exactly-once checkpoints, and
 * reads the surge topic back with a read_committed consumer.
 * @module
 */
import {
  aggregate,
  boundedOutOfOrderness,
  Job,
  type RideEvent,
  rides,
  sinkFn,
  type Stream,
  tumbling,
} from "../lib/index.ts";
import { isMainModule } from "../lib/runtime.ts";

/** The surge multiplier of one area for one window. */
export interface Surge {
  readonly area: string;
  readonly windowStart: string;
  readonly requests: number;
  readonly drivers: number;
  readonly multiplier: number;
}

/** 1.0 while drivers meet demand, rising by 0.5 per unit of excess demand ratio, capped at 3.0. */
export function multiplier(requests: number, drivers: number): number {
  const ratio = requests / Math.max(drivers, 1);
  if (ratio <= 1) return 1;
  return Math.min(3, Math.round((1 + 0.5 * (ratio - 1)) * 10) / 10);
}

const demandSupply = aggregate<RideEvent, { requests: number; drivers: number }, { requests: number; drivers: number }>({
  name: "demandSupply",
  create: () => ({ requests: 0, drivers: 0 }),
  add: (acc, e) => {
    if (e.type === "request") acc.requests++;
    else acc.drivers++;
    return acc;
  },
  merge: (a, b) => ({ requests: a.requests + b.requests, drivers: a.drivers + b.drivers }),
  result: (acc) => ({ ...acc }),
});

/** The surge pipeline on any stream of ride events. */
export function surgePricing(events: Stream<RideEvent>): Stream<Surge> {
  return events
    .filter((e) => (e.type === "request" || e.type === "driver") && typeof e.area === "string")
    .withTimestamps(boundedOutOfOrderness(5_000, { timestamp: (e) => e.at }))
    .keyBy((e) => e.area)
    .window(tumbling(5 * 60_000))
    .aggregate(demandSupply, { uid: "surge-window" })
    .map((w) => ({
      area: w.key,
      windowStart: new Date(w.start).toISOString().slice(11, 16),
      requests: w.value.requests,
      drivers: w.value.drivers,
      multiplier: multiplier(w.value.requests, w.value.drivers),
    }));
}

/** Runs the pipeline on `count` generated rides and prints each surging area. */
export async function main(count = 100_000): Promise<void> {
  const job = new Job({ name: "surge-pricing" });
  surgePricing(job.source(rides({ count, eventsPerSecond: 20, maxDelayMs: 4_000 }))).sinkTo(
    sinkFn("print", (s) => {
      if (s.multiplier > 1) console.log(`${s.windowStart} ${s.area.padEnd(8)} ${s.requests}/${s.drivers} → ×${s.multiplier}`);
    }),
  );
  await job.run();
}

/** Kafka → surge pricing → Kafka, exactly-once, on `count` generated rides written to a fresh topic. */
export async function mainKafka(count = 60_000): Promise<void> {
  const { kafkaSink, kafkaSource } = await import("../connectors/kafka/index.ts");
  const { brokersFromEnv, createTopic, feedTopic, readCommitted } = await import("./support/kafka-feed.ts");
  const { lmdbState } = await import("../lib/index.ts");
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const brokers = brokersFromEnv();
  const run = Date.now().toString(36);
  const ridesTopic = `rides-${run}`;
  const surgeTopic = `surge-${run}`;
  const source = rides({ count, eventsPerSecond: 20, maxDelayMs: 4_000 });
  await feedTopic(brokers, ridesTopic, source, count, (r) => r.area);
  await createTopic(brokers, surgeTopic);
  console.log(`${count} rides written to ${ridesTopic}`);

  const stateDir = mkdtempSync(join(tmpdir(), "gress-surge-"));
  const job = new Job({ name: "surge-pricing", state: lmdbState({ path: stateDir }), checkpoints: { intervalMs: 500 } });
  surgePricing(job.source(kafkaSource<RideEvent>({ name: "rides", brokers, topics: [ridesTopic], groupId: `surge-${run}`, bounded: true })))
    .filter((s) => s.multiplier > 1)
    .sinkTo(kafkaSink<Surge>({ name: "surge", brokers, topic: surgeTopic, key: (s) => s.area, transactionalId: `surge-${run}` }));
  const started = performance.now();
  await job.run();
  const surges = await readCommitted<Surge>(brokers, surgeTopic);
  console.log(`job finished in ${((performance.now() - started) / 1000).toFixed(1)} s; ${surges.length} surge records on ${surgeTopic} (read_committed):`);
  for (const s of surges.slice(0, 8)) console.log(`  ${s.windowStart} ${s.area.padEnd(8)} ${s.requests}/${s.drivers} → ×${s.multiplier}`);
  rmSync(stateDir, { recursive: true, force: true });
}

if (isMainModule(import.meta.url)) await (process.argv.includes("--kafka") ? mainKafka() : main());
