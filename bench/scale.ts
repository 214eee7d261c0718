/**
 * Scale-out benchmark on the real broker (`npm run bench -- scale`, services up, `eval "$(scripts/services env)"`).
 *
 * The job: Kafka (12 partitions, JSON events keyed by `k`) → keyBy(k, { copartitioned: true }), the input's own partitioning (no shuffle) → tumbling
 * event-time window (count) → Kafka, exactly-once with a checkpoint every second and LMDB state. Every mode runs
 * it in separate child processes (this file with `--scale-child`), so the parent's reader costs all modes alike.
 *
 * 1. **Throughput.** Modes: today's single-process `Job`, one scale-out worker (`runScaledOut`, 12 tasks), two
 *    scale-out workers (6 tasks each). Each run reads the same events (same generator, same keys and partitions)
 *    from an input topic of its own whose records are all written in one Kafka transaction that stays open
 *    until the job's processes have joined their group and started their tasks: read_committed readers see
 *    nothing before the commit, so the measurement starts at the commit, with the group settled, and no mode
 *    pays for another's group joins. The clock stops when the parent's read_committed reader has every window
 *    result (the last output committed). The data ends with one far-future event per partition, so that every
 *    window of the data fires. Checked per run: the result count and the sum of the counts (every event once),
 *    and no extra result 1 s later. Median of the rounds; the ratios come from the medians of the same run.
 * 2. **Rebalance pause.** Two workers keep up with input produced live (24 000 events/s over the 12
 *    partitions, the same events); 6 s in, one is killed with SIGKILL. Pause = from the kill to the
 *    moment the last of the moved tasks processes its first record on the survivor (the pipeline's tap logs
 *    each task's first record with a timestamp; the worker logs its assignments and task starts with
 *    timestamps), split into detection (kill → the survivor's new assignment: the group's session timeout),
 *    start (→ the last moved task started: fence, restore, build) and first record (→ its first record).
 * 3. **State restore rate.** A worker builds a large keyed state (one window per key, never fired) in a
 *    one-partition job (rate-limited, checkpoints every 250 ms, so that no checkpoint's changelog records
 *    exceed the broker's 1 MB request limit) and stops once its checkpoints cover the input; a second worker with an empty state
 *    directory starts the task and restores it from the changelog. Rate = changelog records applied / restore
 *    duration, from the restore's own log line (lib/scaleout/changelog.ts), with and without the reader's group
 *    join and first fetch.
 *
 * Environment: GRESS_BENCH_SCALE_EVENTS (throughput runs, default 4 000 000), GRESS_BENCH_SCALE_LIVE_EVENTS (the
 * rebalance run, produced live at 24 000/s, default 1 000 000), GRESS_BENCH_SCALE_ROUNDS (default 3),
 * GRESS_BENCH_SCALE_ONLY (throughput|rebalance|restore), GRESS_KAFKA_CLIENT (platformatic by default, or kafkajs),
 * GRESS_BENCH_SCALE_PROFILE=<dir> (each child process writes a V8 CPU profile there), GRESS_BENCH_SCALE_VERBOSE=1
 * (prints the processes' logs after each throughput run), GRESS_BENCH_SCALE_MODES (a comma-separated subset of
 * "single-process", "1 worker", "2 workers"; no ratios then).
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { Kafka, logLevel, Partitioners, type Transaction } from "kafkajs";
import { kafkaSink, kafkaSource, platformaticKafkaClient, runScaledOut } from "../connectors/kafka/index.ts";
import { boundedOutOfOrderness, Job, lmdbState, tumbling, type WindowResult } from "../lib/index.ts";
import { fmt, median } from "./harness.ts";

const PARTITIONS = 12;
const KEYS_PER_PARTITION = 100;
const WINDOW_MS = 120_000;
const BASE_TS = 1_700_000_000_000;
/** The far-future event that ends each partition: its watermark fires every window of the data. */
const FLUSH_TS = BASE_TS + 1_000_000_000_000;
const INTERVAL_MS = 1000;
const SESSION_MS = 6000;
/** Events per partition per 100 ms in the rebalance run (24 000 events/s in all). */
const LIVE_PER_PARTITION = 200;

interface Event {
  readonly k: string;
  readonly ts: number;
  readonly v: number;
}

interface ChildConfig {
  readonly mode: "single" | "worker";
  readonly job: string;
  readonly state: string;
  readonly brokers: string[];
  readonly client: "kafkajs" | "platformatic";
  readonly input: string;
  readonly output: string;
  readonly windowMs: number;
  /** Log each task's first record (the rebalance run). */
  readonly tapFirst: boolean;
  /** Checkpoint interval (default INTERVAL_MS). */
  readonly intervalMs?: number;
  /** Per-task (per-source) rate limit, events/s. */
  readonly rate?: number;
}

// ---------------------------------------------------------------------------------------------------------
// Child: one process of the job (single-process mode or one scale-out worker). Logs go to stderr, each line
// prefixed with `@<epoch ms>` so that the parent can time them.

const say = (m: string): boolean => process.stderr.write(`@${Date.now()} ${m}\n`);

function pipeline(cfg: ChildConfig): (job: Job) => void {
  return (job) => {
    const client = cfg.client === "platformatic" && cfg.mode === "single" ? { client: platformaticKafkaClient({ brokers: cfg.brokers, clientId: "bench-scale" }) } : { brokers: cfg.brokers };
    let events = job.source(
      kafkaSource<Event>({
        name: "in",
        ...client,
        topics: [cfg.input],
        groupId: `bench-scale-${cfg.job}`,
        sessionTimeoutMs: SESSION_MS,
        ...(cfg.rate === undefined ? {} : { rateLimit: { ratePerSecond: cfg.rate, burst: 500 } }),
      }),
      { watermarks: boundedOutOfOrderness(0, { timestamp: (e: Event) => e.ts }) },
    );
    if (cfg.tapFirst) {
      const task = job.name.split(".task-")[1] ?? job.name;
      let seen = false;
      events = events.tap(() => {
        if (seen) return;
        seen = true;
        say(`first record of task ${task}`);
      });
    }
    events
      // The input is keyed by k (Kafka's default partitioner): the keyBy needs no shuffle.
      .keyBy((e) => e.k, { copartitioned: true })
      .window(tumbling(cfg.windowMs))
      .count()
      .sinkTo(kafkaSink<WindowResult<string, number>>({ name: "out", brokers: cfg.brokers, topic: cfg.output, key: (r) => r.key }));
  };
}

async function child(cfg: ChildConfig): Promise<void> {
  if (cfg.mode === "single") {
    const job = new Job({ name: cfg.job, state: lmdbState({ path: cfg.state, mapSize: 1024 * 1024 * 1024 }), checkpoints: { intervalMs: INTERVAL_MS, log: (m) => say(m) } });
    pipeline(cfg)(job);
    process.once("SIGTERM", () => job.cancel());
    say("single-process job started");
    await job.run();
    process.exit(0);
  }
  const worker = runScaledOut(
    {
      name: cfg.job,
      kafka: { brokers: cfg.brokers, client: cfg.client },
      state: cfg.state,
      checkpoints: { intervalMs: cfg.intervalMs ?? INTERVAL_MS },
      sessionTimeoutMs: SESSION_MS,
      mapSize: 1024 * 1024 * 1024,
      log: (m) => say(m),
    },
    pipeline(cfg),
  );
  process.once("SIGTERM", () => void worker.stop());
  await worker.started;
  say("worker started");
  await worker.done;
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------------------
// Parent.

function env(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set: run scripts/services up and eval "$(scripts/services env)"`);
  return v;
}

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  /** Log lines with their timestamps. */
  readonly lines: { at: number; text: string }[];
  readonly exited: Promise<void>;
}

function startChild(name: string, cfg: ChildConfig): Proc {
  const profile = process.env.GRESS_BENCH_SCALE_PROFILE; // a directory: each child writes a V8 CPU profile there
  const flags = profile === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${join(profile, `${name}-${cfg.job}`)}`];
  const child = spawn(process.execPath, [...process.execArgv, ...flags, import.meta.filename, "--scale-child", JSON.stringify(cfg)], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: { at: number; text: string }[] = [];
  const read = (stream: NodeJS.ReadableStream | null): void => {
    if (stream === null) return;
    createInterface({ input: stream }).on("line", (line) => {
      // Worker lines carry their own time; the restore's log line (lib/scaleout/changelog.ts) is timed on arrival.
      const m = /^@(\d+) (.*)$/.exec(line);
      const text = m === null ? line : (m[2] as string);
      lines.push({ at: m === null ? Date.now() : Number(m[1]), text: text.startsWith("gress: ") ? text.slice(7) : text });
    });
  };
  read(child.stdout);
  read(child.stderr);
  return { name, child, lines, exited: new Promise((resolve) => child.on("exit", () => resolve())) };
}

/**
 * CPU seconds a process has used (user + system), from /proc (Linux; undefined elsewhere or once it is gone).
 * USER_HZ is 100 on every Linux this runs on.
 */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** The local Kafka broker's pid (scripts/services runs it on this machine), if there is one. */
function brokerPid(): number | undefined {
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("kafka.Kafka")) return Number(entry);
      } catch {}
    }
  } catch {}
  return undefined;
}

/** CPU seconds used between two snapshots, by role; undefined where /proc could not say. */
interface CpuUse {
  readonly job?: number;
  readonly broker?: number;
  readonly bench: number;
}

function cpuSnapshot(procs: readonly Proc[], broker: number | undefined): { job?: number; broker?: number; bench: number } {
  const each = procs.map((p) => cpuSeconds(p.child.pid));
  const job = each.some((c) => c === undefined) ? undefined : each.reduce<number>((a, c) => a + (c as number), 0);
  const brokerCpu = cpuSeconds(broker);
  const u = process.cpuUsage();
  return { ...(job === undefined ? {} : { job }), ...(brokerCpu === undefined ? {} : { broker: brokerCpu }), bench: (u.user + u.system) / 1e6 };
}

function cpuUsed(a: ReturnType<typeof cpuSnapshot>, b: ReturnType<typeof cpuSnapshot>): CpuUse {
  return {
    ...(a.job === undefined || b.job === undefined ? {} : { job: b.job - a.job }),
    ...(a.broker === undefined || b.broker === undefined ? {} : { broker: b.broker - a.broker }),
    bench: b.bench - a.bench,
  };
}

const logOf = (p: Proc): string => p.lines.map((l) => `${p.name} ${new Date(l.at).toISOString()} ${l.text}`).join("\n");

/** The tasks a worker runs now, from its log (started minus stopped). */
function current(p: Proc): string[] {
  const now = new Set<string>();
  for (const l of p.lines) {
    const m = /^task (\d+_\d+) (started|stopped)/.exec(l.text);
    if (m === null) continue;
    if (m[2] === "started") now.add(m[1] as string);
    else now.delete(m[1] as string);
  }
  return [...now].sort();
}

async function stopAll(procs: readonly Proc[]): Promise<void> {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGTERM");
  const timeout = new Promise<void>((r) => setTimeout(r, 15_000).unref());
  await Promise.race([Promise.all(procs.map((p) => p.exited)), timeout]);
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
}

async function until(what: string, f: () => boolean | Promise<boolean>, timeoutMs: number, procs: readonly Proc[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    for (const p of procs) if (p.child.exitCode !== null) throw new Error(`${p.name} exited (${p.child.exitCode}) while waiting for ${what}:\n${logOf(p)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${procs.map(logOf).join("\n---\n")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The keys: KEYS_PER_PARTITION per partition, where Kafka's default (murmur2) partitioner puts them. */
function keysByPartition(): string[][] {
  const partitioner = Partitioners.DefaultPartitioner();
  const by: string[][] = Array.from({ length: PARTITIONS }, () => []);
  const meta = { topic: "t", partitionMetadata: Array.from({ length: PARTITIONS }, (_, p) => ({ partitionId: p, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] })) };
  for (let i = 0, filled = 0; filled < PARTITIONS; i++) {
    const k = `k${i}`;
    const p = partitioner({ ...meta, message: { key: k, value: null } });
    const list = by[p] as string[];
    if (list.length < KEYS_PER_PARTITION) {
      list.push(k);
      if (list.length === KEYS_PER_PARTITION) filled++;
    }
  }
  return by;
}

interface Dataset {
  readonly events: number;
  /** Per partition, the messages in order (the far-future flush event last). */
  readonly values: { key: string; value: string }[][];
  readonly windows: number;
}

/** Event i: key i mod K (K keys spread evenly over the partitions), event time BASE_TS + i ms. */
function dataset(events: number, windowMs: number): Dataset {
  const by = keysByPartition();
  const keys: { k: string; p: number }[] = [];
  for (let j = 0; j < KEYS_PER_PARTITION; j++) for (let p = 0; p < PARTITIONS; p++) keys.push({ k: by[p]![j]!, p });
  const values: { key: string; value: string }[][] = Array.from({ length: PARTITIONS }, () => []);
  const last = new Map<string, number>();
  let windows = 0;
  for (let i = 0; i < events; i++) {
    const { k, p } = keys[i % keys.length]!;
    const ts = BASE_TS + i;
    values[p]!.push({ key: k, value: JSON.stringify({ k, ts, v: i % 100 }) });
    const w = Math.floor(ts / windowMs);
    if (last.get(k) !== w) {
      last.set(k, w);
      windows++;
    }
  }
  for (let p = 0; p < PARTITIONS; p++) values[p]!.push({ key: by[p]![0]!, value: JSON.stringify({ k: by[p]![0], ts: FLUSH_TS, v: 0 }) });
  return { events, values, windows };
}

class Bench {
  readonly brokers = env("GRESS_KAFKA_BROKERS").split(",");
  readonly client: "kafkajs" | "platformatic" = process.env.GRESS_KAFKA_CLIENT === "kafkajs" ? "kafkajs" : "platformatic";
  readonly kafka = new Kafka({ brokers: this.brokers, clientId: "bench-scale", logLevel: logLevel.NOTHING });
  readonly admin = this.kafka.admin();
  readonly tag = `${process.pid}-${Date.now().toString(36)}`;
  #seq = 0;
  readonly topics: string[] = [];
  readonly dirs: string[] = [];

  name(what: string): string {
    return `bench-scale-${what}-${this.tag}-${++this.#seq}`;
  }

  dir(): string {
    const d = mkdtempSync(join(tmpdir(), "gress-bench-scale-"));
    this.dirs.push(d);
    return d;
  }

  async topic(name: string, partitions: number): Promise<string> {
    await this.admin.createTopics({ topics: [{ topic: name, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
    this.topics.push(name);
    return name;
  }

  /**
   * Writes `values[p]` to partition p: the first message of each partition committed at once, the rest in one
   * transaction left open; returns its commit. The first messages make every partition one with data to read
   * when the job is assigned it, so that the Kafka source announces every partition's split and no partition
   * read first can make the others late (it announces only partitions whose end offset, the last stable offset
   * under read_committed, is past the position).
   */
  async gatedInput(topic: string, values: Dataset["values"]): Promise<{ commit: () => Promise<void>; ms: number }> {
    const t0 = performance.now();
    const producer = this.kafka.producer({ transactionalId: `${topic}-gate`, maxInFlightRequests: 1, idempotent: true, transactionTimeout: 600_000 });
    await producer.connect();
    const send = (txn: { sendBatch: Transaction["sendBatch"] }, from: number, to: number): ReturnType<Transaction["sendBatch"]> =>
      txn.sendBatch({ topicMessages: [{ topic, messages: values.flatMap((v, partition) => v.slice(from, to).map((m) => ({ partition, key: m.key, value: m.value }))) }] });
    const primer = await producer.transaction();
    await send(primer, 0, 1);
    await primer.commit();
    const txn = await producer.transaction();
    const chunk = 4000;
    const longest = Math.max(...values.map((v) => v.length));
    for (let i = 1; i < longest; i += chunk) await send(txn, i, i + chunk);
    return {
      ms: performance.now() - t0,
      commit: async () => {
        await txn.commit();
        await producer.disconnect();
      },
    };
  }

  /** Counts the committed window results on `topic` (read_committed) and sums their counts. */
  async reader(topic: string): Promise<{ count: () => number; sum: () => number; lastAt: () => number; stop: () => Promise<void> }> {
    const consumer = this.kafka.consumer({ groupId: this.name("reader"), readUncommitted: false, maxWaitTimeInMs: 50 });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let n = 0;
    let sum = 0;
    let lastAt = 0;
    let joined!: () => void;
    const ready = new Promise<void>((r) => (joined = r));
    consumer.on(consumer.events.GROUP_JOIN, () => joined());
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) sum += (JSON.parse(m.value?.toString() ?? "{}") as { value: number }).value;
        n += batch.messages.length;
        lastAt = Date.now();
      },
    });
    await ready;
    return { count: () => n, sum: () => sum, lastAt: () => lastAt, stop: () => consumer.disconnect() };
  }

  async groupStable(groupId: string, members: number): Promise<boolean> {
    const { groups } = await this.admin.describeGroups([groupId]);
    return groups[0]?.state === "Stable" && groups[0].members.length === members;
  }

  config(mode: ChildConfig["mode"], job: string, input: string, output: string, extra: Partial<ChildConfig> = {}): ChildConfig {
    return { mode, job, state: this.dir(), brokers: this.brokers, client: this.client, input, output, windowMs: WINDOW_MS, tapFirst: false, ...extra };
  }

  async cleanup(): Promise<void> {
    await this.admin.deleteTopics({ topics: this.topics.splice(0) }).catch(() => undefined);
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/**
 * "2 separate jobs" is the ceiling the machine gives two workers: two independent one-worker jobs (their own
 * groups, changelogs and input topics of 6 partitions, each with half of the same events), so no coordination
 * between them at all. Each has the 6 tasks a worker of the 2-worker mode has, so 2 workers / 2 separate jobs is
 * what the scale-out itself costs, and 2 separate jobs / 1 worker what the cores allow.
 */
type Mode = "single-process" | "1 worker" | "2 workers" | "2 separate jobs";

/** One throughput run: a gated input, the mode's processes settled in their group, then the commit. */
async function throughputRun(b: Bench, data: Dataset, mode: Mode): Promise<{ rate: number; ms: number; settleMs: number; cpu: CpuUse }> {
  const output = await b.topic(b.name("out"), PARTITIONS);
  const separate = mode === "2 separate jobs";
  const half = PARTITIONS / 2;
  // Per job: its name, input topic and the part of the data it reads.
  const jobs: { job: string; input: string; values: Dataset["values"] }[] = [];
  for (const values of separate ? [data.values.slice(0, half), data.values.slice(half)] : [data.values]) {
    const job = b.name("job");
    b.topics.push(`gress-${job}-0-changelog`);
    jobs.push({ job, input: await b.topic(b.name("in"), values.length), values });
  }
  const gates = [];
  for (const j of jobs) gates.push(await b.gatedInput(j.input, j.values));
  const reader = await b.reader(output);
  const started = Date.now();
  const only = jobs[0]!;
  const procs =
    mode === "single-process"
      ? [startChild("single", b.config("single", only.job, only.input, output))]
      : separate
        ? jobs.map((j, i) => startChild(`job-${i}`, b.config("worker", j.job, j.input, output)))
        : Array.from({ length: mode === "1 worker" ? 1 : 2 }, (_, i) => startChild(`worker-${i}`, b.config("worker", only.job, only.input, output)));
  try {
    if (mode === "single-process") {
      await until("the single-process job in its group", () => b.groupStable(`bench-scale-${only.job}`, 1), 60_000, procs);
    } else {
      const share = separate ? half : PARTITIONS / procs.length;
      let lastChange = Date.now();
      let lastLines = 0;
      const stable = async (): Promise<boolean> => {
        for (const j of jobs) if (!(await b.groupStable(`gress-${j.job}`, separate ? 1 : procs.length))) return false;
        return true;
      };
      await until(
        "the workers sharing the tasks",
        async () => {
          const lines = procs.reduce((n, p) => n + p.lines.length, 0);
          if (lines !== lastLines) {
            lastLines = lines;
            lastChange = Date.now();
          }
          return procs.every((p) => current(p).length === share) && Date.now() - lastChange > 1000 && (await stable());
        },
        90_000,
        procs,
      );
    }
    const settleMs = Date.now() - started;
    const broker = brokerPid();
    const cpu0 = cpuSnapshot(procs, broker);
    const t0 = Date.now();
    await Promise.all(gates.map((g) => g.commit()));
    await until("every window result", () => reader.count() >= data.windows, 300_000, procs);
    const ms = reader.lastAt() - t0;
    const cpu = cpuUsed(cpu0, cpuSnapshot(procs, broker));
    // Duplicates would show after the count is reached.
    await new Promise((r) => setTimeout(r, 1000));
    if (reader.count() !== data.windows || reader.sum() !== data.events) {
      throw new Error(`${mode}: ${reader.count()} window results summing to ${reader.sum()}, expected ${data.windows} summing to ${data.events}`);
    }
    if (process.env.GRESS_BENCH_SCALE_VERBOSE !== undefined) console.log(procs.map(logOf).join("\n"));
    return { rate: data.events / (ms / 1000), ms, settleMs, cpu };
  } finally {
    await stopAll(procs);
    await reader.stop();
    await b.cleanup();
  }
}

async function throughput(b: Bench, events: number, rounds: number): Promise<void> {
  const data = dataset(events, WINDOW_MS);
  console.log(
    `throughput: ${fmt(events)} events, ${PARTITIONS} partitions, ${PARTITIONS * KEYS_PER_PARTITION} keys, tumbling ${WINDOW_MS / 1000} s event-time windows → ${fmt(data.windows)} results; checkpoints every ${INTERVAL_MS} ms; client ${b.client}`,
  );
  const all: Mode[] = ["single-process", "1 worker", "2 workers", "2 separate jobs"];
  const modes = all.filter((m) => process.env.GRESS_BENCH_SCALE_MODES?.split(",").includes(m) ?? true);
  const rates = new Map<Mode, number[]>(modes.map((m) => [m, []]));
  // CPU microseconds per event by role, per round (where /proc could say).
  const cpus = new Map<Mode, { job: number[]; broker: number[]; bench: number[] }>(modes.map((m) => [m, { job: [], broker: [], bench: [] }]));
  for (let round = 1; round <= rounds; round++) {
    for (const mode of modes) {
      const load = loadavg()[0]!.toFixed(2);
      const r = await throughputRun(b, data, mode);
      rates.get(mode)!.push(r.rate);
      const perEvent = (s: number): number => (s * 1e6) / data.events;
      const c = cpus.get(mode)!;
      const parts: string[] = [];
      if (r.cpu.job !== undefined) {
        c.job.push(perEvent(r.cpu.job));
        parts.push(`job ${perEvent(r.cpu.job).toFixed(2)} µs/event (${((r.cpu.job / (r.ms / 1000)) * 100).toFixed(0)}% of a core)`);
      }
      if (r.cpu.broker !== undefined) {
        c.broker.push(perEvent(r.cpu.broker));
        parts.push(`broker ${perEvent(r.cpu.broker).toFixed(2)}`);
      }
      c.bench.push(perEvent(r.cpu.bench));
      parts.push(`bench reader ${perEvent(r.cpu.bench).toFixed(2)}`);
      console.log(`  round ${round} ${mode.padEnd(15)} ${fmt(r.rate).padStart(9)} ev/s  (${(r.ms / 1000).toFixed(2)} s from the commit to the last result; settled in ${(r.settleMs / 1000).toFixed(1)} s; load before ${load}); CPU ${parts.join(", ")}`);
    }
  }
  const m = (mode: Mode): number => median(rates.get(mode)!);
  for (const mode of modes) console.log(`scale ${mode.padEnd(15)} ${fmt(m(mode)).padStart(9)} ev/s (median of ${rounds})`);
  if (modes.length < all.length) return;
  const two = m("2 workers") / m("1 worker");
  const one = m("1 worker") / m("single-process");
  console.log(`scale: 2 workers / 1 worker = ${two.toFixed(2)}x (target >= 1.60x); 1 worker / single-process = ${one.toFixed(2)}x (target >= 1.00x)`);
  console.log(
    `scale: the machine's ceiling, 2 separate one-worker jobs / 1 worker = ${(m("2 separate jobs") / m("1 worker")).toFixed(2)}x; 2 workers / 2 separate jobs = ${(m("2 workers") / m("2 separate jobs")).toFixed(2)}x (what sharing one job costs)`,
  );
  // What the cores allow: with the CPU every event costs in the 2-worker runs (workers, broker and this reader
  // all share the machine's cores), no schedule can beat cores / cost. Measured, not assumed.
  const c2 = cpus.get("2 workers")!;
  if (c2.job.length === rounds && c2.broker.length === rounds) {
    const cost = median(c2.job) + median(c2.broker) + median(c2.bench);
    const cores = availableParallelism();
    const bound = (cores * 1e6) / cost;
    console.log(
      `scale: CPU per event with 2 workers: workers ${median(c2.job).toFixed(2)} µs, broker ${median(c2.broker).toFixed(2)} µs, bench reader ${median(c2.bench).toFixed(2)} µs (medians); ` +
        `on ${cores} cores that allows at most ${fmt(bound)} ev/s = ${(bound / m("1 worker")).toFixed(2)}x one worker's median`,
    );
  } else {
    console.log("scale: no CPU breakdown (it needs /proc and a broker on this machine)");
  }
}

/**
 * Rebalance pause: two workers keep up with input produced live (LIVE_PER_PARTITION events per partition every
 * 100 ms); one is killed with SIGKILL a few seconds in.
 */
async function rebalance(b: Bench, events: number): Promise<void> {
  const data = dataset(events, WINDOW_MS);
  const input = await b.topic(b.name("in"), PARTITIONS);
  const output = await b.topic(b.name("out"), PARTITIONS);
  const job = b.name("job");
  b.topics.push(`gress-${job}-0-changelog`);
  const reader = await b.reader(output);
  const extra = { tapFirst: true };
  const [a, victim] = [startChild("worker-A", b.config("worker", job, input, output, extra)), startChild("worker-B", b.config("worker", job, input, output, extra))] as [Proc, Proc];
  const procs = [a, victim];
  const producer = b.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  let producing: Promise<void> | undefined;
  try {
    await until("the workers sharing the tasks", async () => current(a).length === 6 && current(victim).length === 6 && (await b.groupStable(`gress-${job}`, 2)), 90_000, procs);
    await producer.connect();
    const longest = Math.max(...data.values.map((v) => v.length));
    const began = Date.now();
    producing = (async () => {
      for (let i = 0, tick = 1; i < longest; i += LIVE_PER_PARTITION, tick++) {
        await producer.sendBatch({
          topicMessages: [{ topic: input, messages: data.values.flatMap((v, partition) => v.slice(i, i + LIVE_PER_PARTITION).map((m) => ({ partition, key: m.key, value: m.value }))) }],
        });
        const wait = began + tick * 100 - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    })();
    const moved = current(victim);
    await new Promise((r) => setTimeout(r, 6000));
    const from = a.lines.length;
    const killedAt = Date.now();
    victim.child.kill("SIGKILL");
    await victim.exited;
    const after = (): { at: number; text: string }[] => a.lines.slice(from);
    const firstOf = (t: string): number | undefined => after().find((l) => l.text === `first record of task ${t}`)?.at;
    await until("the moved tasks processing on the survivor", () => moved.every((t) => firstOf(t) !== undefined), 120_000, [a]);
    const assigned = after().find((l) => l.text.includes("assignment") && moved.some((t) => l.text.includes(t)))?.at ?? Number.NaN;
    const lastStarted = Math.max(...moved.map((t) => after().find((l) => l.text.startsWith(`task ${t} started`))?.at ?? Number.NaN));
    const first = moved.map((t) => firstOf(t) as number);
    const lastFirst = Math.max(...first);
    const restores = after().filter((l) => / of "[^"]+": restored \d+ changelog records/.test(l.text) && moved.some((t) => l.text.startsWith(`task ${t} `)));
    console.log(
      `rebalance: 2 workers, ${PARTITIONS} tasks, input produced live at ${fmt(PARTITIONS * LIVE_PER_PARTITION * 10)} ev/s; session timeout ${SESSION_MS} ms (heartbeat ${Math.floor(SESSION_MS / 5)} ms); ` +
        `worker B (tasks ${moved.join(", ")}) killed with SIGKILL ${((killedAt - began) / 1000).toFixed(1)} s in`,
    );
    console.log(
      `scale rebalance pause: ${fmt(lastFirst - killedAt)} ms from the kill to the last moved task's first record on the survivor ` +
        `(detection ${fmt(assigned - killedAt)} ms to the new assignment; start ${fmt(lastStarted - assigned)} ms to the last moved task started; first record ${fmt(lastFirst - lastStarted)} ms after that); ` +
        `first moved task processing after ${fmt(Math.min(...first) - killedAt)} ms`,
    );
    for (const r of restores) console.log(`  survivor: ${r.text}`);
    await producing;
    await until("every window result", () => reader.count() >= data.windows, 300_000, [a]);
    await new Promise((r) => setTimeout(r, 1000));
    const ok = reader.count() === data.windows && reader.sum() === data.events;
    console.log(`rebalance run output: ${fmt(reader.count())} of ${fmt(data.windows)} window results, counts summing to ${fmt(reader.sum())} of ${fmt(data.events)} events: ${ok ? "exactly once" : "WRONG"}`);
    if (!ok) throw new Error(`rebalance run: wrong output:\n${logOf(a)}`);
  } finally {
    await producing?.catch(() => undefined);
    await producer.disconnect();
    await stopAll(procs);
    await reader.stop();
    await b.cleanup();
  }
}

/** State restore: a one-task job with one window per key; a second worker restores it into an empty directory. */
async function restore(b: Bench, keys: number): Promise<void> {
  const input = await b.topic(b.name("in"), 1);
  const output = await b.topic(b.name("out"), 1);
  const job = b.name("job");
  b.topics.push(`gress-${job}-0-changelog`);
  const producer = b.kafka.producer();
  await producer.connect();
  for (let i = 0; i < keys; i += 10_000) {
    await producer.send({ topic: input, messages: Array.from({ length: Math.min(10_000, keys - i) }, (_, j) => ({ partition: 0, value: JSON.stringify({ k: `r${i + j}`, ts: BASE_TS + i + j, v: 1 }) })) });
  }
  await producer.disconnect();
  const huge = 1_000_000_000_000; // no window fires: the state keeps one window per key
  // Rate-limited, with short checkpoints: a task's checkpoint sends its changelog records in one produce
  // request, which the broker refuses (MESSAGE_TOO_LARGE) above its max message size (1 MB by default).
  const builder = startChild("builder", b.config("worker", job, input, output, { windowMs: huge, rate: 12_000, intervalMs: 250 }));
  let restorer: Proc | undefined;
  try {
    await until(
      "the builder's checkpoints covering the input",
      async () => {
        const [t] = await b.admin.fetchOffsets({ groupId: `gress-${job}`, topics: [input] });
        return Number(t?.partitions[0]?.offset ?? -1) >= keys;
      },
      300_000,
      [builder],
    );
    await stopAll([builder]);
    restorer = startChild("restorer", b.config("worker", job, input, output, { windowMs: huge }));
    await until("the restore", () => restorer!.lines.some((l) => /^task 0_0 started/.test(l.text)), 300_000, [restorer]);
    const line = restorer.lines.find((l) => / of "[^"]+": restored \d+ changelog records/.test(l.text))?.text;
    const m = line === undefined ? null : /restored (\d+) changelog records .* in (\d+) ms, (\d+) records\/s \(first record after (\d+) ms\)/.exec(line);
    if (m === null) throw new Error(`no restore line in the restorer's log:\n${logOf(restorer)}`);
    const [n, ms, , firstMs] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
    console.log(`restore: one task, ${fmt(keys)} keys with an open window each, restored into an empty state directory`);
    console.log(`  restorer: ${line}`);
    console.log(
      `scale restore rate: ${fmt((n * 1000) / ms)} changelog records/s (${fmt(n)} records in ${fmt(ms)} ms); ${fmt((n * 1000) / Math.max(1, ms - firstMs))} records/s without the reader's join and first fetch (${fmt(firstMs)} ms)`,
    );
  } finally {
    await stopAll(restorer === undefined ? [builder] : [builder, restorer]);
    await b.cleanup();
  }
}

/** Runs the three parts. */
export async function run(): Promise<void> {
  // 4M events: a throughput run ends with the last checkpoint's commit (up to one 1-s interval) and a fetch,
  // about 1 s whatever the rate; with 1M events a 2-worker run lasted under 3 s, so that fixed second, not the
  // throughput, set the 2-worker/1-worker ratio (1.15x at 1M against 1.50x at 4M in the same hour, quiet machine).
  const events = Number(process.env.GRESS_BENCH_SCALE_EVENTS ?? 4_000_000);
  const liveEvents = Number(process.env.GRESS_BENCH_SCALE_LIVE_EVENTS ?? 1_000_000);
  const rounds = Number(process.env.GRESS_BENCH_SCALE_ROUNDS ?? 3);
  const only = process.env.GRESS_BENCH_SCALE_ONLY;
  const b = new Bench();
  await b.admin.connect();
  console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  try {
    if (only === undefined || only === "throughput") await throughput(b, events, rounds);
    if (only === undefined || only === "rebalance") await rebalance(b, liveEvents);
    if (only === undefined || only === "restore") await restore(b, 200_000);
  } finally {
    await b.cleanup();
    await b.admin.disconnect();
  }
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
}

if (process.argv[2] === "--scale-child") await child(JSON.parse(process.argv[3] ?? "{}") as ChildConfig);
