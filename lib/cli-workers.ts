/**
 * `gress run <pipeline> --workers N`: a scale-out job (docs/SCALE-OUT.md, section 7) from the command line.
 *
 * - **The parent** (`--workers N`, no `--worker-index`) imports the pipeline once and checks that every source is
 *   a Kafka source (else a ConfigError, before any process starts), then starts N worker processes: the same
 *   runtime (`process.execPath`, with its loader flags) on the same script and arguments plus
 *   `--worker-index i`. Their output lines go to the parent's stdout/stderr prefixed `[worker i]`. SIGINT and
 *   SIGTERM are forwarded to every worker (each leaves the group gracefully); a second signal kills them at once.
 *   The parent does not restart a worker that ends: it exits, once all have ended, with the first non-zero
 *   exit code (128 + signal number for a worker killed by a signal), else 0.
 * - **A worker** (`--worker-index i`) runs the module's default export through `runScaledOut` with job name
 *   `--name` (group `gress-<name>` or `--group`), the brokers of `--brokers`, its own state directory
 *   `<state-dir>/worker-<i>` and the checkpoint interval of `--checkpoint-interval` (default 1000 ms). It serves
 *   `/metrics` (tasks running, assignments received, each task's restore from its changelog, and per task what
 *   it writes to the status topic: state, watermark, records in/out, restore offsets, last checkpoint) and
 *   `/health` on `--port` + i (0: any free port); no live page (that is single-process mode's). Its group
 *   instance id (static membership, @platformatic/kafka only) is `<name>-<host>-<i>`, or `<prefix>-<i>` with
 *   `--instance-id PREFIX`, none with `--instance-id none`: a worker killed and started again within the session
 *   timeout gets its tasks back without a rebalance. SIGTERM still leaves the group (its tasks move at once). The
 *   pipeline's Kafka sources and sinks name their own brokers and topics, as in single-process mode; their
 *   consumer group ids are not used (the job's group is).
 * A worker started by hand with `--worker-index` (and no `--workers`) on another machine joins the same job.
 * @module
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { z } from "zod";
import { defaultKafkaClient, type KafkaClientName } from "../connectors/kafka/default-client.ts";
import { brokersSchema, portSchema } from "./cli-options.ts";
import { validate } from "./config.ts";
import { ConfigError } from "./errors.ts";
import { importPipeline } from "./pipeline-module.ts";
import { restoreMetrics } from "./scaleout/changelog.ts";
import { checkScaleOutSources } from "./scaleout/config-checks.ts";
import { statusMetrics } from "./scaleout/status.ts";
import { type BuildPipeline, TaskJob } from "./scaleout/task.ts";
import { scaleOutSourceInfo } from "./scaleout/task-io.ts";
import { runScaledOut, type ScaleOutWorker } from "./scaleout/worker.ts";

/** The run options that make sense for a scale-out job; the others (restart strategies, savepoints, retained checkpoints) belong to single-process mode. */
const WORKER_FLAGS = ["name", "port", "checkpoint-interval", "state-dir", "quiet", "workers", "worker-index", "group", "brokers", "kafka-client", "instance-id"] as const;

const schema: z.ZodType<Omit<WorkerFlags, "brokers"> & { brokers?: string[] | undefined }, unknown> = z.object({
  name: z.string().min(1),
  port: portSchema.default(9464),
  "checkpoint-interval": z.coerce.number().int().positive().default(1000),
  "state-dir": z.string().min(1).optional(),
  quiet: z.literal("true").optional(),
  workers: z.coerce.number().int().positive().optional(),
  "worker-index": z.coerce.number().int().nonnegative().optional(),
  group: z.string().min(1).optional(),
  brokers: brokersSchema.optional(),
  "kafka-client": z.enum(["platformatic", "kafkajs"]).optional(),
  "instance-id": z.string().regex(/^\S+$/, "a prefix without whitespace, or none").optional(),
});

/** The validated options of a scale-out run. */
export interface WorkerFlags {
  readonly name: string;
  readonly port: number;
  readonly "checkpoint-interval": number;
  readonly "state-dir"?: string | undefined;
  readonly quiet?: "true" | undefined;
  readonly workers?: number | undefined;
  readonly "worker-index"?: number | undefined;
  readonly group?: string | undefined;
  readonly brokers: string[];
  /** Undefined: the default client (connectors/kafka/default-client.ts). */
  readonly "kafka-client"?: KafkaClientName | undefined;
  /** The prefix of each worker's group instance id (`<prefix>-<index>`), or "none" for dynamic members. */
  readonly "instance-id"?: string | undefined;
}

/**
 * Validates the flags of `gress run --workers` / `--worker-index`: `--workers` a positive integer, `--brokers`
 * given, and no single-process option. A ConfigError naming the option otherwise.
 */
export function workerFlags(flags: Record<string, string>, name: string): WorkerFlags {
  const other = Object.keys(flags).filter((f) => !(WORKER_FLAGS as readonly string[]).includes(f));
  if (other.length > 0) {
    throw new ConfigError(
      `gress run --workers: ${other.map((f) => `--${f}`).join(", ")} ${other.length > 1 ? "are" : "is"} not supported in scale-out mode (a worker that fails is not restarted; its tasks move to the other workers)`,
      other.map((f) => ({ path: ["run", f], code: "not_supported", message: "not supported with --workers" })),
    );
  }
  const o = validate(schema, { ...flags, name }, "run");
  if (o.brokers === undefined) throw new ConfigError("gress run --workers: --brokers HOST:PORT[,HOST:PORT...] is required (the brokers of the job's consumer group and changelog)", [{ path: ["run", "brokers"], code: "required", message: "required" }]);
  const prefix = o["instance-id"];
  if (prefix !== undefined && prefix !== "none" && (o["kafka-client"] ?? defaultKafkaClient()) === "kafkajs") {
    throw new ConfigError("gress run --workers: --instance-id (static membership) needs the @platformatic/kafka client; kafkajs has none (--instance-id none, or leave it out, for dynamic members)", [
      { path: ["run", "instance-id"], code: "not_supported", message: "kafkajs has no static membership" },
    ]);
  }
  return { ...o, brokers: o.brokers };
}

/**
 * Worker `index`'s group instance id: `<prefix>-<index>` with `--instance-id PREFIX`, by default
 * `<job>-<host>-<dir>-<index>` when the client has static membership (@platformatic/kafka), where `<dir>` is a
 * short hash of the absolute state directory; none with `--instance-id none` or on kafkajs. Stable across
 * restarts of the same worker (same host, same state directory), unique per worker of one command; commands
 * on several hosts differ by host name, and two commands on one host by their state directories (which they
 * cannot share anyway), so neither fences the other's workers.
 */
export function workerInstanceId(o: WorkerFlags, index: number, host: string = hostname()): string | undefined {
  const prefix = o["instance-id"];
  if (prefix === "none") return undefined;
  if (prefix !== undefined) return `${prefix}-${index}`;
  if ((o["kafka-client"] ?? defaultKafkaClient()) === "kafkajs") return undefined;
  const dir = createHash("sha256")
    .update(resolve(o["state-dir"] ?? join("state", o.name)))
    .digest("hex")
    .slice(0, 8);
  return `${o.name}-${host.replace(/\s/g, "_")}-${dir}-${index}`;
}

/** Imports the pipeline module's default export (a ConfigError when it is not a function). */
async function loadPipeline(file: string): Promise<BuildPipeline> {
  const build = await importPipeline(resolve(file));
  if (typeof build !== "function") throw new ConfigError(`gress run: ${file} must default-export a function (job: Job) => void that builds the pipeline`, [{ path: ["run", "pipeline"], code: "not_a_function", message: "default export is not a function" }]);
  return build as BuildPipeline;
}

/** Builds the pipeline on a probe job (never run) and checks that every source is a Kafka source. */
async function checkSources(name: string, build: BuildPipeline): Promise<void> {
  const probe = new TaskJob({ name }, undefined);
  await build(probe);
  checkScaleOutSources(probe.givenSources.map((s) => scaleOutSourceInfo(s, `not Kafka: ${s.constructor.name}`)));
}

/** The runtime's own arguments before the script: Deno does not report the flags it was started with. */
function runtimeArgs(): string[] {
  return "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports"] : [...process.execArgv];
}

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** Copies a child's stream line by line, with a prefix. */
function prefixLines(from: NodeJS.ReadableStream | null, to: NodeJS.WritableStream, prefix: string): void {
  if (from === null) return;
  createInterface({ input: from, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => to.write(`${prefix}${line}\n`));
}

/** The parent: starts the workers, forwards signals, returns the first non-zero exit code once all ended. */
async function runParent(file: string, o: WorkerFlags, workers: number): Promise<number> {
  try {
    await checkSources(o.name, await loadPipeline(file));
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    console.error(`gress run: ${file} failed while building the pipeline:\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 1;
  }
  const script = process.argv[1]!;
  const args = process.argv.slice(2);
  let firstFailure = 0;
  const children = Array.from({ length: workers }, (_, i) => {
    const child = spawn(process.execPath, [...runtimeArgs(), script, ...args, "--worker-index", String(i)], { stdio: ["ignore", "pipe", "pipe"] });
    prefixLines(child.stdout, process.stdout, `[worker ${i}] `);
    prefixLines(child.stderr, process.stderr, `[worker ${i}] `);
    const exited = new Promise<void>((res) =>
      child.on("close", (code, signal) => {
        const exit = code ?? 128 + (SIGNALS[signal ?? ""] ?? 1);
        if (exit !== 0 && firstFailure === 0) firstFailure = exit;
        if (exit !== 0) {
          const others = children.some((c, j) => j !== i && c.child.exitCode === null && c.child.signalCode === null);
          const tasks = others ? "its tasks move to the other workers" : "no worker of this command is left to take its tasks";
          console.error(`gress: worker ${i} exited with ${signal === null ? `code ${code}` : signal}; it is not restarted (${tasks})`);
        }
        res();
      }),
    );
    return { child, exited };
  });
  if (o.quiet === undefined) console.error(`gress: started ${workers} worker${workers === 1 ? "" : "s"} of job "${o.name}" (pids ${children.map((c) => c.child.pid).join(", ")})`);
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const live = children.filter((c) => c.child.exitCode === null && c.child.signalCode === null);
    if (!signalled) {
      signalled = true;
      console.error(`gress: ${signal}: stopping ${live.length} worker${live.length === 1 ? "" : "s"} gracefully (each leaves the group); ${signal} again stops them at once`);
      for (const c of live) process.kill(c.child.pid!, signal);
      return;
    }
    console.error(`gress: ${signal} again: killing the workers`);
    for (const c of live) process.kill(c.child.pid!, "SIGKILL");
    process.exit(128 + (SIGNALS[signal] ?? 15));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await Promise.all(children.map((c) => c.exited));
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return firstFailure;
}

/** One worker: the pipeline through runScaledOut, /metrics and /health on port + index. */
async function runWorker(file: string, o: WorkerFlags, index: number): Promise<number> {
  let build: BuildPipeline;
  try {
    build = await loadPipeline(file);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    console.error(`gress run: ${file} failed while loading the pipeline:\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 1;
  }
  let worker: ScaleOutWorker | undefined;
  let status: "starting" | "running" | "stopping" | "finished" | "failed" = "starting";
  const labels = `job="${o.name.replace(/["\\\n]/g, "_")}",worker="${index}"`;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      const lines = [
        "# HELP gress_scaleout_tasks Tasks (input partitions) this worker runs now.",
        "# TYPE gress_scaleout_tasks gauge",
        `gress_scaleout_tasks{${labels}} ${worker?.tasks.length ?? 0}`,
        "# HELP gress_scaleout_task_running 1 for each task this worker runs now.",
        "# TYPE gress_scaleout_task_running gauge",
        ...(worker?.tasks ?? []).map((t) => `gress_scaleout_task_running{${labels},task="${t}"} 1`),
        "# HELP gress_scaleout_assignments_total Group assignments this worker received.",
        "# TYPE gress_scaleout_assignments_total counter",
        `gress_scaleout_assignments_total{${labels}} ${worker?.rebalances ?? 0}`,
        // Each task's state restores from its changelog in this process (entries, duration, whether under way).
        ...restoreMetrics(`worker="${index}"`),
        // Per task what it writes to the status topic (lib/scaleout/status.ts): state, watermark, records, restore, checkpoint.
        ...statusMetrics(worker?.taskStatus ?? [], labels),
      ];
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(`${lines.join("\n")}\n`);
    } else if (path === "/health") {
      res.writeHead(status === "failed" ? 503 : 200, { "content-type": "application/json" }).end(JSON.stringify({ status, worker: index, tasks: worker?.tasks ?? [] }));
    } else res.writeHead(404).end();
  });
  // Listening first: a port in use fails the worker before it joins the group.
  const port = o.port === 0 ? 0 : o.port + index;
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(port, "127.0.0.1", () => res());
  });
  const address = server.address();
  if (o.quiet === undefined) console.log(`worker ${index} of "${o.name}": metrics http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : port}/metrics`);
  const stateDir = join(o["state-dir"] ?? join("state", o.name), `worker-${index}`);
  const instanceId = workerInstanceId(o, index);
  if (o.quiet === undefined && instanceId !== undefined) console.log(`worker ${index} of "${o.name}": group instance id ${instanceId} (static membership)`);
  const running = runScaledOut(
    {
      name: o.name,
      kafka: { brokers: o.brokers, ...(o["kafka-client"] === undefined ? {} : { client: o["kafka-client"] }) },
      state: stateDir,
      checkpoints: { intervalMs: o["checkpoint-interval"] },
      ...(o.group === undefined ? {} : { group: o.group }),
      ...(instanceId === undefined ? {} : { instanceId }),
    },
    build,
  );
  worker = running;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (status === "stopping") {
      process.exit(128 + (SIGNALS[signal] ?? 15));
    }
    status = "stopping";
    void running.stop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  running.started.then(
    () => {
      if (status === "starting") status = "running";
    },
    () => undefined,
  );
  try {
    await running.done;
    status = "finished";
    console.log(`worker ${index} of "${o.name}" stopped`);
    return 0;
  } catch (e) {
    status = "failed";
    throw e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    server.closeAllConnections?.();
    await new Promise<void>((res) => server.close(() => res()));
  }
}

/**
 * `gress run <file> --workers N` (the parent) or `--worker-index i` (one worker); `name` is the job name
 * the run command derived. Returns the exit code; throws a ConfigError for bad options or a non-Kafka source.
 */
export function runWorkers(file: string, flags: Record<string, string>, name: string): Promise<number> {
  const o = workerFlags(flags, name);
  if (o["worker-index"] !== undefined) return runWorker(file, o, o["worker-index"]);
  return runParent(file, o, o.workers ?? 1);
}
