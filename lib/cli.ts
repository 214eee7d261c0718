/**
 * The `gress` command line.
 *
 *   gress demo [--events N] [--rate N] [--port P]   surge pricing on generated rides, no services needed
 *   gress run <pipeline.ts> [--port P] [--name N] [--checkpoint-interval MS] [--state-dir DIR] [--retain N]
 *                           [--from-savepoint DIR | --from-checkpoint ID]
 *                                                   runs a pipeline module with /metrics, /health and a live page;
 *                                                   with checkpoints, state lives in LMDB and a restart recovers
 *   gress savepoint <job> [--state-dir DIR] [--to DIR]
 *                                                   writes the job's last checkpoint as a savepoint directory
 *
 * A pipeline module default-exports `(job: Job) => void | Promise<void>` that builds the pipeline on the job
 * (sources, operators, sinks); the CLI owns the job, the metrics server and the process lifecycle.
 * @module
 */
import { join, resolve } from "node:path";
import { z } from "zod";
import { writeSavepoint } from "./checkpoint/savepoint.ts";
import { validate } from "./config.ts";
import { isGressError } from "./errors.ts";
import { Job } from "./job.ts";
import { importPipeline } from "./pipeline-module.ts";
import { type JobHealth, type MetricsServer, serveMetrics } from "./server.ts";
import { sinkFn } from "./sink.ts";
import { rides } from "./sources/generator.ts";
import { lmdbState } from "./state/lmdb.ts";

/** Parsed `--flag value` pairs and positional arguments. */
export interface ParsedArgs {
  readonly positional: string[];
  readonly flags: Record<string, string>;
}

/** Parses argv into positionals and `--flag value` / `--flag=value` pairs (`--flag` alone is "true"). */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const positional: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    if (eq > 0) flags[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) flags[a.slice(2)] = argv[++i]!;
    else flags[a.slice(2)] = "true";
  }
  return { positional, flags };
}

const USAGE = `usage:
  gress demo [--events N] [--rate EVENTS_PER_S] [--port P]
  gress run <pipeline.ts> [--name JOB] [--port P] [--checkpoint-interval MS] [--state-dir DIR] [--retain N]
                          [--from-savepoint DIR | --from-checkpoint ID]
  gress savepoint <job> [--state-dir DIR] [--to DIR]
`;

/** Where a job keeps its LMDB state unless told otherwise. */
function defaultStateDir(job: string): string {
  return join("state", job);
}

const portSchema = z.coerce.number().int().min(0).max(65535);

async function withServer(job: Job, port: number | undefined, body: (health: JobHealth) => Promise<void>): Promise<void> {
  const health: JobHealth = { status: "starting" };
  let server: MetricsServer | undefined;
  if (port !== undefined) {
    server = await serveMetrics(job, health, port);
    console.log(`metrics: http://127.0.0.1:${server.port}/metrics   live page: http://127.0.0.1:${server.port}/`);
  }
  try {
    health.status = "running";
    await body(health);
    health.status = "finished";
  } catch (e) {
    health.status = "failed";
    health.error = e instanceof Error ? e.message : String(e);
    throw e;
  } finally {
    await server?.close();
  }
}

/** The demo: surge pricing over generated rides, with live progress. */
async function demo(flags: Record<string, string>): Promise<void> {
  const o = validate(
    z.object({
      events: z.coerce.number().int().positive().default(300_000),
      rate: z.coerce.number().positive().default(150_000),
      port: portSchema.optional(),
    }),
    flags,
    "demo",
  );
  const { surgePricing } = await import("../examples/surge-pricing.ts");
  const job = new Job({ name: "surge-pricing" });
  const source = rides({ count: o.events, eventsPerSecond: 20, maxDelayMs: 4_000, ratePerSecond: o.rate });
  const started = performance.now();
  let windows = 0;
  let surging = 0;
  surgePricing(job.source(source)).sinkTo(
    sinkFn("console", (s) => {
      windows++;
      if (s.multiplier <= 1) return;
      surging++;
      console.log(`  ${s.windowStart}  ${s.area.padEnd(8)} demand ${String(s.requests).padStart(5)}  supply ${String(s.drivers).padStart(5)}  surge ×${s.multiplier.toFixed(1)}`);
    }),
  );
  console.log(`Gress demo: surge pricing, 5-minute windows per area, ${o.events.toLocaleString("en-US")} generated ride events\n`);
  const progress = setInterval(() => {
    const m = job.metrics.source("rides");
    const wm = Math.max(...job.metrics.operators().map((x) => x.watermark));
    const secs = (performance.now() - started) / 1000;
    console.log(
      `… ${m.emitted.toLocaleString("en-US")} events (${Math.round(m.emitted / secs).toLocaleString("en-US")}/s), watermark ${Number.isFinite(wm) ? new Date(wm).toISOString().slice(11, 19) : "-"}, ${windows} windows closed`,
    );
  }, 1000);
  try {
    await withServer(job, o.port, () => job.run());
  } finally {
    clearInterval(progress);
  }
  const secs = (performance.now() - started) / 1000;
  console.log(`\ndone: ${o.events.toLocaleString("en-US")} events in ${secs.toFixed(1)} s, ${windows} windows, ${surging} with surge`);
}

/** Runs a user pipeline module. */
async function runPipeline(file: string | undefined, flags: Record<string, string>): Promise<void> {
  if (file === undefined) throw new Error(`missing pipeline file\n${USAGE}`);
  const o = validate(
    z.object({
      name: z.string().optional(),
      port: portSchema.default(9464),
      "checkpoint-interval": z.coerce.number().int().positive().optional(),
      "state-dir": z.string().min(1).optional(),
      "from-savepoint": z.string().min(1).optional(),
      retain: z.coerce.number().int().positive().optional(),
      "from-checkpoint": z.coerce.number().int().positive().optional(),
    }),
    flags,
    "run",
  );
  const build = await importPipeline(resolve(file));
  if (typeof build !== "function") {
    throw new Error(`${file} must default-export a function (job: Job) => void that builds the pipeline`);
  }
  const name = o.name ?? file.replace(/^.*\//, "").replace(/\.[cm]?[jt]s$/, "").replace(/[^A-Za-z0-9_.-]/g, "-");
  const checkpointed = o["from-savepoint"] !== undefined || o["from-checkpoint"] !== undefined || o["state-dir"] !== undefined || o.retain !== undefined;
  const interval = o["checkpoint-interval"] ?? (checkpointed ? 1_000 : undefined);
  const job =
    interval === undefined
      ? new Job({ name })
      : new Job({
          name,
          state: lmdbState({ path: o["state-dir"] ?? defaultStateDir(name) }),
          checkpoints: {
            intervalMs: interval,
            ...(o["from-savepoint"] !== undefined ? { fromSavepoint: o["from-savepoint"] } : {}),
            ...(o["from-checkpoint"] !== undefined ? { restoreCheckpoint: o["from-checkpoint"] } : {}),
            ...(o.retain !== undefined ? { retain: o.retain } : {}),
          },
        });
  await (build as (job: Job) => unknown)(job);
  await withServer(job, o.port, () => job.run());
}

/** Writes the last completed checkpoint of a job as a savepoint. */
async function savepoint(jobName: string | undefined, flags: Record<string, string>): Promise<void> {
  if (jobName === undefined) throw new Error(`missing job name\n${USAGE}`);
  const o = validate(z.object({ "state-dir": z.string().min(1).optional(), to: z.string().min(1).optional() }), flags, "savepoint");
  const stateDir = o["state-dir"] ?? defaultStateDir(jobName);
  const target = o.to ?? join("savepoints", `${jobName}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  const info = await writeSavepoint(stateDir, target);
  console.log(`savepoint ${info.id} of job "${info.job}" (checkpoint ${info.checkpointId}) written to ${target}`);
}

/** Entry point; returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const { positional, flags } = parseArgs(argv);
  const [command, ...rest] = positional;
  try {
    switch (command) {
      case "demo":
        await demo(flags);
        return 0;
      case "run":
        await runPipeline(rest[0], flags);
        return 0;
      case "savepoint":
        await savepoint(rest[0], flags);
        return 0;
      default:
        console.error(USAGE);
        return command === undefined || command === "help" ? 0 : 2;
    }
  } catch (e) {
    console.error(isGressError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e));
    return 1;
  }
}
