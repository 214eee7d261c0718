/**
 * The job the TimescaleDB test runs in a child process and kills with SIGKILL. argv[2] is JSON:
 * `{ url, readings, counts, stateDir, count, ratePerSecond }`.
 * Generated readings (3 devices, 20 per event-time second, in order) → the raw readings into a hypertable, and
 * their count per device in 1-minute tumbling windows into a second hypertable; both sinks append (no key), so
 * a duplicate would stay visible. Checkpointed on LMDB every 100 ms. Prints "running" when the first record
 * flows and "done" when the bounded input has been written and committed.
 */
import process from "node:process";
import { postgresSink } from "../../connectors/postgres/index.ts";
import { boundedOutOfOrderness, generator, Job, lmdbState, tumbling } from "../../lib/index.ts";

interface Config {
  readonly url: string;
  readonly readings: string;
  readonly counts: string;
  readonly stateDir: string;
  readonly count: number;
  readonly ratePerSecond: number;
}
interface Reading {
  readonly id: number;
  readonly device: string;
  readonly at: number;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const job = new Job({
  name: "pg-timescale",
  state: lmdbState({ path: cfg.stateDir, mapSize: 64 * 1024 * 1024, durability: "process" }),
  checkpoints: { intervalMs: 100, log: () => {} },
});
let running = false;
const readings = job
  .source(
    generator<Reading>({
      name: "readings",
      seed: 11,
      count: cfg.count,
      eventsPerSecond: 20,
      ratePerSecond: cfg.ratePerSecond,
      make: (id, at) => ({ id, device: `d${id % 3}`, at }),
    }),
  )
  .tap(() => {
    if (running) return;
    running = true;
    process.stdout.write("running\n");
  });
readings.sinkTo(
  postgresSink<Reading>({
    name: "readings",
    job: cfg.readings,
    url: cfg.url,
    table: cfg.readings,
    createTable: true,
    timeColumn: "at",
    columns: {
      id: { type: "integer", value: (r) => r.id },
      device: { type: "text", value: (r) => r.device },
      at: { type: "timestamptz", value: (r) => r.at },
    },
  }),
);
readings
  .withTimestamps(boundedOutOfOrderness(0, { timestamp: (r) => r.at }))
  .keyBy((r) => r.device)
  .window(tumbling(60_000))
  .count({ uid: "per-minute" })
  .sinkTo(
    postgresSink({
      name: "counts",
      job: cfg.counts,
      url: cfg.url,
      table: cfg.counts,
      createTable: true,
      timeColumn: "window_start",
      columns: {
        device: { type: "text", value: (w) => String(w.key) },
        window_start: { type: "timestamptz", value: (w) => w.start },
        readings: { type: "bigint", value: (w) => w.value },
      },
    }),
  );
await job.run();
process.stdout.write("done\n");
process.exit(0);
