/**
 * IoT alerting: sensor readings from NATS JetStream, in °C or °F, are normalised to °C, averaged per device over
 * 10-second tumbling windows, and every average is stored in PostgreSQL; averages above a threshold are
 * published as alerts to a NATS subject. Checkpoints make both outputs exactly-once.
 *
 * Needs the services: `scripts/services up && eval "$(scripts/services env)"`, then
 * `node --import tsx examples/iot-alerts.ts [--seconds 25]`. A simulated feed of 8 devices publishes readings in
 * real time while the job runs; after the given time the job stops and prints what it wrote.
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { z } from "zod";
import { natsJetStreamSink, natsJetStreamSource } from "../connectors/nats/index.ts";
import { postgresSink } from "../connectors/postgres/index.ts";
import { boundedOutOfOrderness, Job, lmdbState, type Stream, tumbling } from "../lib/index.ts";
import { isMainModule } from "../lib/runtime.ts";

/** A reading as devices send it. */
export interface Reading {
  readonly device: string;
  readonly at: number;
  readonly value: number;
  readonly unit: "C" | "F";
}

/** The schema readings are checked against; others go to dead letters with the reason. */
export const Reading: z.ZodType<Reading> = z.strictObject({
  device: z.string().min(1),
  at: z.number().int(),
  value: z.number().finite(),
  unit: z.enum(["C", "F"]),
});

/** A device's mean temperature over one window. */
export interface DeviceAverage {
  readonly device: string;
  readonly windowStart: number;
  readonly celsius: number;
  readonly readings: number;
}

/** Readings → per-device 10 s averages in °C. Alerts are the averages above `thresholdC`. */
export function iotPipeline(readings: Stream<Reading>): Stream<DeviceAverage> {
  return readings
    .withTimestamps(boundedOutOfOrderness(1_000, { timestamp: (r) => r.at, heartbeatMs: 1_000 }))
    .map((r) => ({ device: r.device, celsius: r.unit === "F" ? ((r.value - 32) * 5) / 9 : r.value }))
    .keyBy((r) => r.device)
    .window(tumbling(10_000))
    .aggregateWith(
      {
        create: () => ({ sum: 0, n: 0 }),
        add: (a, r) => ({ sum: a.sum + r.celsius, n: a.n + 1 }),
        merge: (a, b) => ({ sum: a.sum + b.sum, n: a.n + b.n }),
        result: (a) => a,
      },
      { uid: "device-average" },
    )
    .map((w) => ({ device: w.key, windowStart: w.start, celsius: Math.round((w.value.sum / w.value.n) * 100) / 100, readings: w.value.n }));
}

async function main(): Promise<void> {
  const natsUrl = process.env.GRESS_NATS_URL;
  const pgUrl = process.env.GRESS_PG_URL;
  if (natsUrl === undefined || pgUrl === undefined) throw new Error('set GRESS_NATS_URL and GRESS_PG_URL: scripts/services up && eval "$(scripts/services env)"');
  const seconds = Number(process.argv[process.argv.indexOf("--seconds") + 1] ?? 25) || 25;
  const run = Date.now().toString(36);
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: `READINGS_${run}`, subjects: [`readings.${run}`] });
  await jsm.streams.add({ name: `ALERTS_${run}`, subjects: [`alerts.${run}`] });
  await jsm.consumers.add(`READINGS_${run}`, { durable_name: "iot", ack_policy: "explicit" });
  const stateDir = mkdtempSync(join(tmpdir(), "gress-iot-"));

  const job = new Job({ name: "iot-alerts", state: lmdbState({ path: stateDir }), checkpoints: { intervalMs: 1_000 } });
  const averages = iotPipeline(
    job.source(natsJetStreamSource({ name: "readings", servers: natsUrl, stream: `READINGS_${run}`, durable: "iot", schema: Reading })),
  );
  averages.sinkTo(
    postgresSink<DeviceAverage>({
      name: "averages",
      job: `iot-${run}`,
      url: pgUrl,
      table: "iot_device_averages",
      createTable: true,
      timeColumn: "window_start",
      key: ["device", "window_start"],
      columns: {
        device: { type: "text", value: (a) => a.device },
        window_start: { type: "timestamptz", value: (a) => a.windowStart },
        celsius: { type: "double precision", value: (a) => a.celsius },
        readings: { type: "integer", value: (a) => a.readings },
      },
    }),
  );
  averages
    .filter((a) => a.celsius > 30)
    .sinkTo(natsJetStreamSink({ name: "alerts", servers: natsUrl, subject: `alerts.${run}`, idPrefix: `iot-${run}` }));

  // The simulated feed: 8 devices, 20 readings a second each; device-3 overheats; one in 500 is garbage.
  const js = jetstream(nc);
  const enc = new TextEncoder();
  let sent = 0;
  const feed = setInterval(() => {
    for (let d = 0; d < 8; d++) {
      const celsius = d === 3 ? 31 + Math.random() * 4 : 18 + Math.random() * 6;
      const fahrenheit = d % 2 === 1;
      const body = ++sent % 500 === 0 ? "{not json" : JSON.stringify({ device: `device-${d}`, at: Date.now(), value: fahrenheit ? (celsius * 9) / 5 + 32 : celsius, unit: fahrenheit ? "F" : "C" });
      void js.publish(`readings.${run}`, enc.encode(body));
    }
  }, 50);
  setTimeout(() => {
    clearInterval(feed);
    job.cancel();
  }, seconds * 1_000);
  console.log(`IoT job running for ${seconds} s (state in ${stateDir})…`);
  await job.run();

  const sql = postgres(pgUrl);
  const rows = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM iot_device_averages WHERE window_start > now() - interval '1 hour'`;
  const n = rows[0]?.n ?? 0;
  const alerts = (await jsm.streams.info(`ALERTS_${run}`)).state.messages;
  const dead = job.metrics.operators().reduce((s, o) => s + o.deadLetters, 0);
  console.log(`${sent} readings sent; ${n} device averages in PostgreSQL (last hour); ${alerts} alerts on alerts.${run}; ${dead} bad readings dead-lettered`);
  await sql.end();
  await jsm.streams.delete(`READINGS_${run}`);
  await jsm.streams.delete(`ALERTS_${run}`);
  await nc.close();
  rmSync(stateDir, { recursive: true, force: true });
}

if (isMainModule(import.meta.url)) await main();
