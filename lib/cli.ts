/**
 * The `gress` command line.
 *
 *   gress demo [options]                  surge pricing on generated rides, no services needed
 *   gress run <pipeline> [options]        runs a pipeline module with /metrics, /health and a live page; with
 *                                         checkpoints, state lives in LMDB and a restart recovers
 *   gress savepoint <job> [options]       writes the job's last checkpoint as a savepoint directory
 *   gress <command> --help, gress --version
 *
 * A pipeline module default-exports `(job: Job) => void | Promise<void>` that builds the pipeline on the job
 * (sources, operators, sinks); the CLI owns the job, the metrics server and the process lifecycle.
 *
 * Exit codes: 0 done (also after a graceful stop by SIGINT/SIGTERM), 1 the job or the command failed, 2 a
 * usage error (unknown command or option, missing argument), 128 + signal number when a second signal stops
 * the process at once. A failed job prints its error code and message, never a stack; a pipeline module that
 * throws while it builds the pipeline prints its stack, since that is the user's code.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { writeSavepoint } from "./checkpoint/savepoint.ts";
import { validate } from "./config.ts";
import { isGressError } from "./errors.ts";
import { Job } from "./job.ts";
import { importPipeline } from "./pipeline-module.ts";
import type { RestartOptions } from "./restart.ts";
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

/** One option of a command, for parsing and for its --help. */
interface OptionSpec {
  readonly name: string;
  /** The value's placeholder; absent for a flag without value. */
  readonly arg?: string;
  readonly help: string;
}

/** A command: its positional argument, a one-line summary, and its options. */
interface CommandSpec {
  readonly name: string;
  readonly args: string;
  readonly summary: string;
  readonly options: readonly OptionSpec[];
}

const HELP_OPTION: OptionSpec = { name: "help", help: "show this help" };

const COMMANDS: readonly CommandSpec[] = [
  {
    name: "demo",
    args: "",
    summary: "surge pricing on generated rides, with live output; needs no services",
    options: [
      { name: "events", arg: "N", help: "ride events to generate (default 300000)" },
      { name: "rate", arg: "EVENTS_PER_S", help: "events generated per second (default 150000)" },
      { name: "port", arg: "P", help: "serve /metrics, /health and a live page on this port (0: any free port)" },
      HELP_OPTION,
    ],
  },
  {
    name: "run",
    args: "<pipeline.ts|.js>",
    summary: "run a pipeline module (it default-exports (job) => void) until its input ends or a signal stops it",
    options: [
      { name: "name", arg: "JOB", help: "job name, used in metrics and the state directory (default: the file's name)" },
      { name: "port", arg: "P", help: "port of /metrics, /health and the live page (default 9464; 0: any free port)" },
      { name: "checkpoint-interval", arg: "MS", help: "take a checkpoint every MS ms (default 1000 when a checkpoint option is given)" },
      { name: "state-dir", arg: "DIR", help: "LMDB state directory (default state/<job>); turns checkpoints on" },
      { name: "retain", arg: "N", help: "checkpoints kept restorable (default 2 with a transactional sink, else 1)" },
      { name: "from-savepoint", arg: "DIR", help: "start from this savepoint when the state directory has no checkpoint yet" },
      { name: "from-checkpoint", arg: "ID", help: "start from this retained checkpoint instead of the latest" },
      { name: "restart", arg: "STRATEGY", help: "what a failure does: none (default), fixed-delay or exponential-backoff" },
      { name: "restart-attempts", arg: "N", help: "restarts before the job fails (fixed-delay: default 3; exponential-backoff: unbounded)" },
      { name: "restart-delay", arg: "MS", help: "wait before a restart (fixed-delay), or the first wait (exponential-backoff); default 1000" },
      { name: "restart-max-delay", arg: "MS", help: "exponential-backoff: longest wait (default 60000)" },
      { name: "restart-multiplier", arg: "X", help: "exponential-backoff: each wait is the previous one times X (default 1.5)" },
      { name: "restart-jitter", arg: "F", help: "exponential-backoff: move each wait randomly by up to ±F of itself (default 0.1)" },
      { name: "restart-reset-after", arg: "MS", help: "exponential-backoff: an attempt that ran MS ms resets the wait (default 3600000)" },
      { name: "max-failures", arg: "N", help: "failure-rate limit: more than N failures within --failure-interval end the job" },
      { name: "failure-interval", arg: "MS", help: "the failure-rate limit's interval (default 60000)" },
      HELP_OPTION,
    ],
  },
  {
    name: "savepoint",
    args: "<job>",
    summary: "write the last completed checkpoint of a job as a savepoint directory",
    options: [
      { name: "state-dir", arg: "DIR", help: "the job's LMDB state directory (default state/<job>)" },
      { name: "to", arg: "DIR", help: "where to write the savepoint (default savepoints/<job>-<time>)" },
      HELP_OPTION,
    ],
  },
];

const USAGE = `usage: gress <command> [options]

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(11)} ${c.summary}`).join("\n")}
  help        show this help

\`gress <command> --help\` lists a command's options; \`gress --version\` prints the version.
`;

/** The --help text of a command. */
function commandHelp(c: CommandSpec): string {
  const rows = c.options.map((o) => [`--${o.name}${o.arg === undefined ? "" : ` ${o.arg}`}`, o.help] as const);
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return `usage: gress ${c.name}${c.args === "" ? "" : ` ${c.args}`} [options]

${c.summary}

options:
${rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help}`).join("\n")}
`;
}

/** A mistake in the command line: exit code 2, with the usage. */
class UsageError extends Error {
  readonly usage: string;
  constructor(message: string, usage: string) {
    super(message);
    this.usage = usage;
  }
}

/** Refuses flags the command does not have, and positional arguments beyond `max`. */
function checkArgs(c: CommandSpec, flags: Record<string, string>, positional: readonly string[], max: number): void {
  for (const flag of Object.keys(flags)) {
    if (!c.options.some((o) => o.name === flag)) throw new UsageError(`gress ${c.name}: unknown option --${flag}`, commandHelp(c));
  }
  for (const o of c.options) {
    if (o.arg !== undefined && flags[o.name] === "true") throw new UsageError(`gress ${c.name}: option --${o.name} needs a value (${o.arg})`, commandHelp(c));
  }
  if (positional.length > max) throw new UsageError(`gress ${c.name}: unexpected argument "${positional[max]}"`, commandHelp(c));
}

/** The package version, from the package.json next to the sources (lib/) or the build (dist/lib/). */
function version(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: unknown; version?: unknown };
      if (pkg.name === "gress" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not there: try the next place
    }
  }
  return "unknown";
}

/** Where a job keeps its LMDB state unless told otherwise. */
function defaultStateDir(job: string): string {
  return join("state", job);
}

const portSchema = z.coerce.number().int().min(0).max(65535);

async function withServer(job: Job, port: number | undefined, health: JobHealth, body: () => Promise<void>): Promise<void> {
  let server: MetricsServer | undefined;
  if (port !== undefined) {
    server = await serveMetrics(job, health, port);
    console.log(`metrics: http://127.0.0.1:${server.port}/metrics   live page: http://127.0.0.1:${server.port}/`);
  }
  try {
    health.status = "running";
    await body();
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
    await withServer(job, o.port, { status: "starting" }, () => job.run());
  } finally {
    clearInterval(progress);
  }
  const secs = (performance.now() - started) / 1000;
  console.log(`\ndone: ${o.events.toLocaleString("en-US")} events in ${secs.toFixed(1)} s, ${windows} windows, ${surging} with surge`);
}

const count = (n: number): string => n.toLocaleString("en-US");

/** Non-zero per-operator counts, as "op: n, op: n". */
function byOperator(job: Job, read: (m: { deadLetters: number; lateRecords: number }) => number): string {
  return job.metrics
    .operators()
    .filter((m) => read(m) > 0)
    .map((m) => `${m.operator}: ${count(read(m))}`)
    .join(", ");
}

/**
 * The end-of-run summary (stdout): records in per source and out per sink, dead letters, late records,
 * checkpoints, restarts and duration; and (stderr) a warning for dead letters and late records, saying where
 * they went.
 */
function printSummary(job: Job, outcome: string, seconds: number): void {
  const m = job.metrics;
  const deadLetters = m.operators().reduce((n, o) => n + o.deadLetters, 0);
  const late = m.operators().reduce((n, o) => n + o.lateRecords, 0);
  const lines = [`job "${job.name}" ${outcome} after ${seconds.toFixed(1)} s`];
  for (const s of m.sources()) lines.push(`  in   ${s.source}: ${count(s.emitted)} records`);
  for (const s of m.sinks()) lines.push(`  out  ${s.sink}: ${count(s.written)} records`);
  lines.push(`  dead letters: ${count(deadLetters)}, late records: ${count(late)}, checkpoints: ${count(m.checkpointsCompleted)}, restarts: ${count(m.restarts)}`);
  console.log(lines.join("\n"));
  if (deadLetters > 0) {
    console.error(
      `gress: warning: ${count(deadLetters)} record${deadLetters === 1 ? "" : "s"} went to dead letters (${byOperator(job, (o) => o.deadLetters)}). They are on the DEAD_LETTERS side output of the stream they failed in (stream.sideOutput(DEAD_LETTERS); a sink's: sinkTo(...).sideOutput(DEAD_LETTERS)), each with its reason: sink that output to keep them. /metrics counts them in gress_dead_letters_total.`,
    );
  }
  if (late > 0) {
    console.error(
      `gress: warning: ${count(late)} record${late === 1 ? " was" : "s were"} later than the allowed lateness (${byOperator(job, (o) => o.lateRecords)}). They are on the window's late side output (sideOutput(LATE_DATA), or the window's lateTag): sink it to keep them. /metrics counts them in gress_late_records_total.`,
    );
  }
}

const optionalInt = z.coerce.number().int().positive().optional();
const optionalMs = z.coerce.number().nonnegative().optional();

/** The `restart` option from the run command's flags (validated there, so errors name the flag). */
function restartFromFlags(o: {
  restart?: "none" | "fixed-delay" | "exponential-backoff" | undefined;
  "restart-attempts"?: number | undefined;
  "restart-delay"?: number | undefined;
  "restart-max-delay"?: number | undefined;
  "restart-multiplier"?: number | undefined;
  "restart-jitter"?: number | undefined;
  "restart-reset-after"?: number | undefined;
  "max-failures"?: number | undefined;
  "failure-interval"?: number | undefined;
}): RestartOptions | undefined {
  const given = <K extends string, V>(key: K, v: V | undefined): Partial<Record<K, V>> => (v === undefined ? {} : ({ [key]: v } as Record<K, V>));
  const failureRate = o["max-failures"] === undefined ? {} : { failureRate: { maxFailures: o["max-failures"], intervalMs: o["failure-interval"] ?? 60_000 } };
  switch (o.restart) {
    case undefined:
      return undefined;
    case "none":
      return { strategy: "none" };
    case "fixed-delay":
      return { strategy: "fixed-delay", ...given("attempts", o["restart-attempts"]), ...given("delayMs", o["restart-delay"]), ...failureRate };
    case "exponential-backoff":
      return {
        strategy: "exponential-backoff",
        ...given("attempts", o["restart-attempts"]),
        ...given("initialDelayMs", o["restart-delay"]),
        ...given("maxDelayMs", o["restart-max-delay"]),
        ...given("multiplier", o["restart-multiplier"]),
        ...given("jitter", o["restart-jitter"]),
        ...given("resetAfterMs", o["restart-reset-after"]),
        ...failureRate,
      };
  }
}

/** Runs a user pipeline module; returns the exit code. */
async function runPipeline(file: string | undefined, flags: Record<string, string>): Promise<number> {
  const spec = COMMANDS.find((c) => c.name === "run")!;
  if (file === undefined) throw new UsageError("gress run: missing pipeline file", commandHelp(spec));
  const o = validate(
    z
      .object({
        name: z.string().optional(),
        port: portSchema.default(9464),
        "checkpoint-interval": z.coerce.number().int().positive().optional(),
        "state-dir": z.string().min(1).optional(),
        "from-savepoint": z.string().min(1).optional(),
        retain: optionalInt,
        "from-checkpoint": optionalInt,
        restart: z.enum(["none", "fixed-delay", "exponential-backoff"]).optional(),
        "restart-attempts": z.coerce.number().int().nonnegative().optional(),
        "restart-delay": optionalMs,
        "restart-max-delay": z.coerce.number().positive().optional(),
        "restart-multiplier": z.coerce.number().min(1).optional(),
        "restart-jitter": z.coerce.number().min(0).max(1).optional(),
        "restart-reset-after": z.coerce.number().positive().optional(),
        "max-failures": optionalInt,
        "failure-interval": z.coerce.number().positive().optional(),
      })
      .refine((x) => x.restart !== undefined || Object.keys(x).every((k) => !/^restart-|^max-failures$|^failure-interval$/.test(k)), {
        message: "give --restart fixed-delay or exponential-backoff with the other restart options",
        path: ["restart"],
      }),
    flags,
    "run",
  );
  if (!existsSync(file)) {
    console.error(`gress run: no such file: ${file}`);
    return 1;
  }
  const name = o.name ?? file.replace(/^.*\//, "").replace(/\.[cm]?[jt]s$/, "").replace(/[^A-Za-z0-9_.-]/g, "-");
  const checkpointed = o["from-savepoint"] !== undefined || o["from-checkpoint"] !== undefined || o["state-dir"] !== undefined || o.retain !== undefined;
  const interval = o["checkpoint-interval"] ?? (checkpointed ? 1_000 : undefined);
  const restart = restartFromFlags(o);
  const job = new Job({
    name,
    ...(restart === undefined ? {} : { restart }),
    ...(interval === undefined
      ? {}
      : {
          state: lmdbState({ path: o["state-dir"] ?? defaultStateDir(name) }),
          checkpoints: {
            intervalMs: interval,
            ...(o["from-savepoint"] !== undefined ? { fromSavepoint: o["from-savepoint"] } : {}),
            ...(o["from-checkpoint"] !== undefined ? { restoreCheckpoint: o["from-checkpoint"] } : {}),
            ...(o.retain !== undefined ? { retain: o.retain } : {}),
          },
        }),
  });
  // The user's code: a throw here (or in the module's top level) is shown with its stack.
  try {
    const build = await importPipeline(resolve(file));
    if (typeof build !== "function") {
      console.error(`gress run: ${file} must default-export a function (job: Job) => void that builds the pipeline`);
      return 1;
    }
    await (build as (job: Job) => unknown)(job);
  } catch (e) {
    console.error(`gress run: ${file} failed while building the pipeline:\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 1;
  }
  const started = performance.now();
  const health: JobHealth = { status: "starting" };
  let stopping: string | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping === undefined) {
      stopping = signal;
      console.error(`gress: ${signal}: stopping "${job.name}" gracefully (sources stop, ${job.checkpoints === undefined ? "sinks drain" : "a last checkpoint commits"}); ${signal} again stops at once`);
      void job.stop();
      return;
    }
    console.error(`gress: ${signal} again: stopping at once`);
    process.exit(128 + (signal === "SIGINT" ? 2 : 15));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await withServer(job, o.port, health, () => job.run());
  } catch (e) {
    printSummary(job, "failed", (performance.now() - started) / 1000);
    throw e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  printSummary(job, stopping === undefined ? "finished" : `stopped by ${stopping}`, (performance.now() - started) / 1000);
  return 0;
}

/** Writes the last completed checkpoint of a job as a savepoint. */
async function savepoint(jobName: string | undefined, flags: Record<string, string>): Promise<void> {
  const spec = COMMANDS.find((c) => c.name === "savepoint")!;
  if (jobName === undefined) throw new UsageError("gress savepoint: missing job name", commandHelp(spec));
  const o = validate(z.object({ "state-dir": z.string().min(1).optional(), to: z.string().min(1).optional() }), flags, "savepoint");
  const stateDir = o["state-dir"] ?? defaultStateDir(jobName);
  const target = o.to ?? join("savepoints", `${jobName}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  const info = await writeSavepoint(stateDir, target);
  console.log(`savepoint ${info.id} of job "${info.job}" (checkpoint ${info.checkpointId}) written to ${target}`);
}

/** Entry point; returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  // -h and -V are the only short options.
  const { positional, flags } = parseArgs(argv.map((a) => (a === "-h" ? "--help" : a === "-V" ? "--version" : a)));
  const [command, ...rest] = positional;
  try {
    if (command === undefined || command === "help") {
      if (flags.version !== undefined && command === undefined) {
        console.log(`gress ${version()}`);
        return 0;
      }
      if (command === "help" || flags.help !== undefined) {
        const topic = COMMANDS.find((c) => c.name === rest[0]);
        console.log(topic === undefined ? USAGE : commandHelp(topic));
        return 0;
      }
      const unknown = Object.keys(flags)[0];
      throw new UsageError(unknown === undefined ? "gress: missing command" : `gress: unknown option --${unknown}`, USAGE);
    }
    const spec = COMMANDS.find((c) => c.name === command);
    if (spec === undefined) throw new UsageError(`gress: unknown command "${command}"`, USAGE);
    if (flags.help !== undefined) {
      console.log(commandHelp(spec));
      return 0;
    }
    checkArgs(spec, flags, rest, spec.args === "" ? 0 : 1);
    switch (spec.name) {
      case "demo":
        await demo(flags);
        return 0;
      case "run":
        return await runPipeline(rest[0], flags);
      default:
        await savepoint(rest[0], flags);
        return 0;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${e.message}\n\n${e.usage}`);
      return 2;
    }
    console.error(isGressError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e));
    return 1;
  }
}
