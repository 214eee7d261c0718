/**
 * Live analytics: click events arrive over HTTP (NDJSON batches with a bearer token and an idempotency key),
 * are written to a durable ingest log before they are acknowledged, and are counted per action in 1-minute
 * windows sliding every 10 seconds. Each count is upserted into PostgreSQL, exactly once per window and action.
 *
 * Needs PostgreSQL: `scripts/services up && eval "$(scripts/services env)"`, then
 * `node --import tsx examples/live-analytics.ts [--seconds 25]`. A simulated browser fleet posts batches while
 * the job runs; afterwards the job stops and prints the latest counts from the table.
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { z } from "zod";
import { httpSource } from "../connectors/http/index.ts";
import { postgresSink } from "../connectors/postgres/index.ts";
import { boundedOutOfOrderness, Job, lmdbState, sliding, type Stream } from "../lib/index.ts";
import { isMainModule } from "../lib/runtime.ts";

/** A click as browsers send it. */
export interface Click {
  readonly user: string;
  readonly action: string;
  readonly at: number;
}

/** The schema clicks are checked against. */
export const Click: z.ZodType<Click> = z.strictObject({ user: z.string(), action: z.string().min(1).max(64), at: z.number().int() });

/** Count of one action in one sliding window. */
export interface ActionCount {
  readonly action: string;
  readonly windowStart: number;
  readonly windowEnd: number;
  readonly clicks: number;
}

/** Clicks → counts per action over 1-minute windows every 10 s. */
export function liveAnalytics(clicks: Stream<Click>): Stream<ActionCount> {
  return clicks
    .withTimestamps(boundedOutOfOrderness(2_000, { timestamp: (c) => c.at, heartbeatMs: 1_000 }))
    .keyBy((c) => c.action)
    .window(sliding(60_000, 10_000))
    .count({ uid: "action-counts" })
    .map((w) => ({ action: w.key, windowStart: w.start, windowEnd: w.end, clicks: w.value }));
}

const ACTIONS = ["view", "view", "view", "scroll", "click", "add-to-cart", "checkout"];

async function main(): Promise<void> {
  const pgUrl = process.env.GRESS_PG_URL;
  if (pgUrl === undefined) throw new Error('set GRESS_PG_URL: scripts/services up && eval "$(scripts/services env)"');
  const seconds = Number(process.argv[process.argv.indexOf("--seconds") + 1] ?? 25) || 25;
  const dir = mkdtempSync(join(tmpdir(), "gress-analytics-"));
  const token = "demo-token";
  const job = new Job({ name: "live-analytics", state: lmdbState({ path: join(dir, "state") }), checkpoints: { intervalMs: 1_000 } });
  const ingest = httpSource<Click>({ name: "clicks", dir: join(dir, "ingest"), tokens: [token], schema: Click });
  // With the timescaledb extension in the database (scripts/services creates it), createTable with a
  // timeColumn makes action_counts a hypertable on window_start; without, a plain table with an index on it.
  const counts = postgresSink<ActionCount>({
      name: "action-counts",
      job: `live-analytics-${Date.now().toString(36)}`,
      url: pgUrl,
      table: "action_counts",
      createTable: true,
      timeColumn: "window_start",
      key: ["action", "window_start"],
      columns: {
        action: { type: "text", value: (c) => c.action },
        window_start: { type: "timestamptz", value: (c) => c.windowStart },
        window_end: { type: "timestamptz", value: (c) => c.windowEnd },
        clicks: { type: "bigint", value: (c) => c.clicks },
      },
  });
  liveAnalytics(job.source(ingest)).sinkTo(counts);
  const running = job.run();
  await ingest.listening;
  console.log(`ingesting at ${ingest.url} for ${seconds} s…`);

  // The simulated fleet: a batch of 50 clicks every 100 ms, each batch with its own idempotency key.
  let batches = 0;
  let accepted = 0;
  const fleet = setInterval(() => {
    const n = ++batches;
    const body = Array.from({ length: 50 }, (_, i) =>
      JSON.stringify({ user: `u${(n * 50 + i) % 997}`, action: ACTIONS[(n * 7 + i) % ACTIONS.length], at: Date.now() }),
    ).join("\n");
    fetch(ingest.url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/x-ndjson", "idempotency-key": `batch-${n}` },
      body,
    })
      .then(async (res) => {
        if (res.ok) accepted += ((await res.json()) as { accepted: number }).accepted;
      })
      .catch(() => {});
  }, 100);
  setTimeout(() => {
    clearInterval(fleet);
    job.cancel();
  }, seconds * 1_000);
  await running;

  const sql = postgres(pgUrl);
  const latest = await sql<{ action: string; window_start: Date; clicks: string }[]>`
    SELECT action, window_start, clicks FROM action_counts
    WHERE window_start = (SELECT max(window_start) FROM action_counts) ORDER BY clicks DESC`;
  console.log(`${accepted} clicks accepted in ${batches} batches; latest window in PostgreSQL:`);
  for (const r of latest) console.log(`  ${r.window_start.toISOString()}  ${r.action.padEnd(12)} ${r.clicks}`);
  if (counts.hypertable) {
    // The query the "Live analytics" Grafana dashboard runs: the largest 1-minute count per action and minute.
    const perMinute = await sql<{ minute: Date; action: string; clicks: string }[]>`
      SELECT time_bucket('1 minute', window_start) AS minute, action, max(clicks) AS clicks FROM action_counts
      WHERE window_start > now() - interval '5 minutes' GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC LIMIT 5`;
    console.log("action_counts is a TimescaleDB hypertable; time_bucket('1 minute'):");
    for (const r of perMinute) console.log(`  ${r.minute.toISOString()}  ${r.action.padEnd(12)} ${r.clicks}`);
  } else console.log("action_counts is a plain table (no timescaledb extension in this database)");
  await sql.end();
  rmSync(dir, { recursive: true, force: true });
}

if (isMainModule(import.meta.url)) await main();
