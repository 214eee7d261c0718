/**
 * The crash-point property: a pipeline is exactly-once when its committed output, after any crashes and
 * recoveries, equals the output of a failure-free run, as multisets.
 *
 * {@link checkExactlyOnce} runs the pipeline in one process, on virtual time, with checkpoints on a temporary
 * LMDB state directory and a sink that keeps two-phase-commit semantics ({@link transactionalMemorySink}, or
 * the user's own {@link InspectableSink}). It runs it once without failures, then again with crashes injected
 * at the points of a random {@link CrashSchedule}; after each crash the job is built anew (the `build`
 * function is called again, as a restarted process would) and recovers from the last completed checkpoint.
 *
 * A crash is not a graceful failure: the crashed run's sink writes, pre-commits and commits after the crash
 * point are dropped (its process is dead), its uncommitted state is gone, and only what the LMDB transaction
 * of a completed checkpoint wrote and what the sink's external system holds (committed and pre-committed
 * transactions) survive. Crash points:
 *
 * - `records` — before the n-th record of that run (between two records);
 * - `checkpoint` — during the n-th checkpoint of that run: the sinks pre-committed, the state captured, its
 *   LMDB transaction not written (a process killed inside that transaction leaves the same);
 * - `pre-commit` — after the n-th checkpoint is durable, the sink has pre-committed but not committed it;
 * - `commit` — after the sink committed the n-th checkpoint, before the sources are acknowledged;
 * - `recovery` — while the run recovers: right after the sink committed the restored checkpoint's pending
 *   transaction (so the next recovery commits it again), or, with nothing to commit, as the sources open.
 *
 * Checkpoints are taken after every `checkpointEvery` input records (part of the schedule), by the job's own
 * checkpoint coordinator, so where they fall is reproducible from the seed. A pipeline with several inputs
 * (`multiInput(names, build)`) reads one replayable source per input; its input is then one arrival order of
 * `Tagged` records across the inputs.
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { VirtualClock } from "../clock.ts";
import { Job } from "../job.ts";
import type { CommitAborted, Sink, SinkContext } from "../sink.ts";
import type { Positions, Source, SourceContext } from "../source.ts";
import { LmdbStateBackend, type LmdbStateOptions } from "../state/lmdb.ts";
import type { Stream } from "../stream.ts";
import type { Timestamped } from "./arbitraries.ts";
import { compareValues, printedAs, short } from "./compare.ts";
import type { MultiInputPipeline } from "./laws.ts";
import { formatEvents } from "./marbles.ts";

/**
 * A sink whose external system a test can read: what is committed (visible to readers) so far. It lives for
 * one property run, across the crashes and recoveries of that run, as an external system would.
 *
 * @example
 * ```ts
 * import type { Sink } from "gress";
 * import type { InspectableSink } from "gress/testing";
 *
 * // A user sink with two-phase commit, and what a reader of its table would see.
 * function ledgerSink(): InspectableSink<number> {
 *   const visible: number[] = [];
 *   const prepared = new Map<number, number[]>();
 *   let open: number[] = [];
 *   const sink: Sink<number> = {
 *     name: "ledger",
 *     open() { open = []; },
 *     write(v) { open.push(v); },
 *     async preCommit(id) { prepared.set(id, open); open = []; return id; },
 *     async commit(id) { visible.push(...(prepared.get(id) ?? [])); prepared.delete(id); },
 *     async abort(id) { prepared.delete(id); },
 *   };
 *   return { ...sink, committed: () => [...visible] };
 * }
 * ```
 */
export interface InspectableSink<T> extends Sink<T> {
  /** The values committed so far, in commit order. */
  committed(): T[];
}

/**
 * The in-memory transactional sink: the test double of a two-phase-commit sink (it is what the Kafka and file
 * sinks do, with an array as the external system). Writes go into an open transaction; `preCommit` seals it
 * as a prepared transaction, which survives a crash and stays invisible; `commit` makes a prepared
 * transaction visible (idempotent: a commit of one already committed does nothing); `abort` drops it; a
 * prepared transaction whose checkpoint never completed is never made visible. `close` drops the open
 * transaction (what a crash loses). Without checkpoints, `flush` commits the open transaction at the end.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { transactionalMemorySink } from "gress/testing";
 *
 * const sink = transactionalMemorySink<number>("out");
 * const job = new Job();
 * job.fromIterable([1, 2, 3]).sinkTo(sink);
 * await job.run();
 * console.log(sink.committed()); // [1, 2, 3]
 * ```
 */
export function transactionalMemorySink<T>(name = "memory"): InspectableSink<T> {
  return new TransactionalMemorySink<T>(name);
}

class TransactionalMemorySink<T> implements InspectableSink<T> {
  readonly name: string;
  readonly #visible: T[] = [];
  readonly #prepared = new Map<number, T[]>();
  readonly #done = new Set<number>();
  #open: T[] = [];
  #checkpointed = false;
  constructor(name: string) {
    this.name = name;
  }
  open(ctx?: SinkContext): void {
    this.#open = [];
    this.#checkpointed = ctx?.checkpointIntervalMs !== undefined;
  }
  write(value: T): void {
    this.#open.push(value);
  }
  async preCommit(checkpointId: number): Promise<unknown> {
    this.#prepared.set(checkpointId, this.#open);
    this.#open = [];
    return { transaction: checkpointId };
  }
  async commit(checkpointId: number): Promise<void> {
    if (this.#done.has(checkpointId)) return;
    const txn = this.#prepared.get(checkpointId);
    if (txn === undefined) throw new Error(`sink "${this.name}": commit of transaction ${checkpointId}, which was never prepared`);
    this.#visible.push(...txn);
    this.#prepared.delete(checkpointId);
    this.#done.add(checkpointId);
  }
  async abort(checkpointId: number): Promise<void> {
    this.#prepared.delete(checkpointId);
  }
  flush(): void {
    if (this.#checkpointed) return;
    this.#visible.push(...this.#open);
    this.#open = [];
  }
  close(): void {
    this.#open = [];
  }
  committed(): T[] {
    return [...this.#visible];
  }
}

/**
 * One crash: where it happens in the run it is armed in (see the module comment). `n` counts from 1 within
 * that run: the n-th record, or the n-th checkpoint.
 *
 * @example
 * ```ts
 * import type { CrashPoint } from "gress/testing";
 *
 * const crashes: CrashPoint[] = [{ at: "records", n: 3 }, { at: "recovery" }, { at: "pre-commit", n: 1 }];
 * ```
 */
export type CrashPoint =
  | { readonly at: "records"; readonly n: number }
  | { readonly at: "checkpoint" | "pre-commit" | "commit"; readonly n: number }
  | { readonly at: "recovery" };

/**
 * The crashes of one property run, one per run of the job (the first crash in the first run, the second in
 * the run that recovers from it, ...; a crash whose point a run never reaches leaves that run to complete),
 * and the checkpoint interval in records.
 *
 * @example
 * ```ts
 * import type { CrashSchedule } from "gress/testing";
 *
 * const schedule: CrashSchedule = { checkpointEvery: 2, crashes: [{ at: "checkpoint", n: 2 }, { at: "recovery" }] };
 * ```
 */
export interface CrashSchedule {
  readonly checkpointEvery: number;
  readonly crashes: readonly CrashPoint[];
}

/**
 * Options of {@link checkExactlyOnce}.
 *
 * @example
 * ```ts
 * import { type ExactlyOnceOptions, transactionalMemorySink } from "gress/testing";
 *
 * const options: ExactlyOnceOptions<string> = { sink: () => transactionalMemorySink("alerts"), maxCrashes: 2, msPerRecord: 100 };
 * ```
 */
export interface ExactlyOnceOptions<O> {
  /** A new sink (a new external system) for each property run. Default: {@link transactionalMemorySink}. */
  readonly sink?: () => InspectableSink<O>;
  /** Most crashes per property run. Default 3. */
  readonly maxCrashes?: number;
  /** Largest checkpoint interval in records that schedules use. Default 5. */
  readonly maxCheckpointEvery?: number;
  /** Fixed schedules to check instead of random ones (each still shrinks in the input). */
  readonly schedules?: readonly CrashSchedule[];
  /** Processing time between two input records, on the virtual clock. Default 1. */
  readonly msPerRecord?: number;
  /** Options of the temporary LMDB state. Default: a 64 MiB map, durability "process". */
  readonly lmdb?: Omit<LmdbStateOptions, "path">;
  /** How an output value is printed in the report (values are compared by canonical JSON). Default: short JSON. */
  readonly show?: (value: O) => string;
}

/**
 * What {@link runWithCrashes} saw: the output committed in the end, and where each crash happened.
 *
 * @example
 * ```ts
 * import type { CrashRun } from "gress/testing";
 *
 * const run: CrashRun<string> = { committed: ["c1=5"], crashes: ["before input record 2 (c1@100)"] };
 * ```
 */
export interface CrashRun<O> {
  readonly committed: O[];
  readonly crashes: string[];
}

/** Thrown at a crash point; marks the run as crashed. */
class SimulatedCrash extends Error {
  constructor(where: string) {
    super(`simulated crash ${where}`);
    this.name = "SimulatedCrash";
  }
}

/** One run (process) of the job: its armed crash point, and whether it died. */
class Incarnation {
  readonly crash: CrashPoint | undefined;
  dead: string | undefined;
  records = 0;
  /** Checkpoint transactions written, and checkpoints the sink was asked to commit, in this run. */
  snapshots = 0;
  commits = 0;
  /** The sources opened: recovery is over. */
  opened = false;
  constructor(crash: CrashPoint | undefined) {
    this.crash = crash;
  }
  /** Crashes here if the armed point is `at` (and its n-th hit is `n`). */
  maybe(at: CrashPoint["at"], n: number, where: string): void {
    const c = this.crash;
    if (this.dead !== undefined || c === undefined || c.at !== at) return;
    if (c.at !== "recovery" && c.n !== n) return;
    this.dead = where;
    throw new SimulatedCrash(where);
  }
}

/**
 * LMDB state whose checkpoint transaction can crash. A process killed inside the transaction leaves nothing
 * of it; an exception thrown inside an lmdb-js transaction does not abort it (what was put is committed), so
 * the crash is taken before the transaction begins, which leaves LMDB as the killed process would.
 */
class CrashableLmdb extends LmdbStateBackend {
  beforeCommit: (() => void) | undefined;
  override commit(...args: Parameters<LmdbStateBackend["commit"]>): Promise<void> {
    try {
      this.beforeCommit?.();
    } catch (err) {
      return Promise.reject(err);
    }
    return super.commit(...args);
  }
}

/**
 * Replays the input in its one arrival order, one record per turn, through one source per input (a single
 * input is named "input"), checkpointing every N records. A source's position is the number of its input's
 * records emitted; checkpoints are taken between records, so the positions of a checkpoint always describe a
 * prefix of the arrival order, and the replay resumes after it.
 */
class Replay<I> {
  readonly #events: readonly Timestamped<I>[];
  readonly #route: (e: Timestamped<I>) => [input: string, value: unknown];
  readonly #names: readonly string[];
  readonly #life: Incarnation;
  readonly #every: number;
  readonly #msPerRecord: number;
  readonly #clock: VirtualClock;
  readonly #opened = new Map<string, { ctx: SourceContext<unknown>; from: number }>();
  readonly emitted = new Map<string, number>();
  #job: Job | undefined;
  #closed = false;
  #resume: (() => void) | undefined;
  constructor(
    events: readonly Timestamped<I>[],
    route: (e: Timestamped<I>) => [string, unknown],
    names: readonly string[],
    life: Incarnation,
    every: number,
    msPerRecord: number,
    clock: VirtualClock,
  ) {
    this.#events = events;
    this.#route = route;
    this.#names = names;
    this.#life = life;
    this.#every = every;
    this.#msPerRecord = msPerRecord;
    this.#clock = clock;
  }
  attach(job: Job): void {
    this.#job = job;
  }
  /** A source opened (from its restored position): once all have, the replay runs. */
  open(name: string, ctx: SourceContext<unknown>, from: number): void {
    this.#opened.set(name, { ctx, from });
    this.emitted.set(name, from);
    this.#closed = false;
    if (this.#opened.size === this.#names.length) void this.#pump();
  }
  async #pump(): Promise<void> {
    const life = this.#life;
    const ctxs = new Map([...this.#opened].map(([name, o]) => [name, o.ctx]));
    const any = ctxs.values().next().value!;
    const ended = (): boolean => this.#closed || [...ctxs.values()].some((c) => c.ended);
    try {
      // The arrival order resumes after the prefix the restored positions describe.
      let index = [...this.#opened.values()].reduce((n, o) => n + o.from, 0);
      const seen = new Map<string, number>();
      for (const e of this.#events.slice(0, index)) {
        const input = this.#route(e)[0];
        seen.set(input, (seen.get(input) ?? 0) + 1);
      }
      for (const [name, o] of this.#opened) {
        if ((seen.get(name) ?? 0) !== o.from) throw new Error(`checkExactlyOnce: restored positions do not describe a prefix of the input (input "${name}" at ${o.from})`);
      }
      // Nothing was committed in recovery (or the crash armed for it did not come there): it happens as the
      // sources open, still before any record flows.
      life.opened = true;
      life.maybe("recovery", 0, "during recovery (as the sources opened)");
      while (index < this.#events.length) {
        await Promise.resolve();
        if (ended()) return;
        if ([...ctxs.values()].some((c) => c.paused)) await new Promise<void>((r) => (this.#resume = r));
        if (ended()) return;
        const e = this.#events[index]!;
        const [input, value] = this.#route(e);
        const ctx = ctxs.get(input)!;
        life.maybe("records", life.records + 1, `before input record ${index + 1} (${formatEvents([e])})`);
        life.records++;
        this.#clock.advanceTo(index * this.#msPerRecord);
        index++;
        this.emitted.set(input, (this.emitted.get(input) ?? 0) + 1);
        ctx.emit(value, e.timestamp);
        if (index % this.#every === 0 && index < this.#events.length) await this.#job!.checkpoints!.trigger(false);
      }
      if (!this.#closed) for (const c of ctxs.values()) c.end();
    } catch (err) {
      any.fail(err);
    }
  }
  resume(): void {
    this.#resume?.();
    this.#resume = undefined;
  }
  close(): void {
    this.#closed = true;
    this.#opened.clear();
    this.resume();
  }
}

/** The source of one input of a {@link Replay}. */
class ReplayInput implements Source<unknown> {
  readonly name: string;
  readonly #replay: Replay<unknown>;
  constructor(name: string, replay: Replay<unknown>) {
    this.name = name;
    this.#replay = replay;
  }
  open(ctx: SourceContext<unknown>, from?: Positions): void {
    const at = from?.[this.name];
    this.#replay.open(this.name, ctx, typeof at === "number" ? at : 0);
  }
  pause(): void {}
  resume(): void {
    this.#replay.resume();
  }
  positions(): Positions {
    return { [this.name]: this.#replay.emitted.get(this.name) ?? 0 };
  }
  close(): void {
    this.#replay.close();
  }
}

/** The user's sink as one run sees it: crash points around its 2PC calls; dead after a crash. */
class CrashingSink<O> implements Sink<O> {
  readonly name: string;
  readonly #inner: Sink<O>;
  readonly #life: Incarnation;
  constructor(inner: Sink<O>, life: Incarnation) {
    this.#inner = inner;
    this.name = inner.name;
    this.#life = life;
  }
  open(ctx?: SinkContext): void | Promise<void> {
    return this.#inner.open?.(ctx);
  }
  write(value: O, record: Parameters<Sink<O>["write"]>[1]): void | Promise<void> {
    if (this.#life.dead !== undefined) return;
    return this.#inner.write(value, record);
  }
  async preCommit(checkpointId: number): Promise<unknown> {
    if (this.#life.dead !== undefined) return new Promise(() => {});
    return this.#inner.preCommit?.(checkpointId);
  }
  // biome-ignore lint/suspicious/noConfusingVoidType: the Sink contract's own return type
  async commit(checkpointId: number, handle: unknown): Promise<void | CommitAborted> {
    const life = this.#life;
    if (life.dead !== undefined) throw new SimulatedCrash(life.dead);
    if (!life.opened) {
      const result = await this.#inner.commit?.(checkpointId, handle);
      life.maybe("recovery", 0, `during recovery (after committing checkpoint ${checkpointId} again)`);
      return result;
    }
    const n = ++life.commits;
    life.maybe("pre-commit", n, `after the sink pre-committed checkpoint ${n} of the run (durable, not committed)`);
    const result = await this.#inner.commit?.(checkpointId, handle);
    life.maybe("commit", n, `after the sink committed checkpoint ${n} of the run`);
    return result;
  }
  async abort(checkpointId: number, handle: unknown): Promise<void> {
    if (this.#life.dead !== undefined) return;
    return this.#inner.abort?.(checkpointId, handle);
  }
  flush(): void | Promise<void> {
    if (this.#life.dead !== undefined) return;
    return this.#inner.flush?.();
  }
  close(): void | Promise<void> {
    return this.#inner.close?.();
  }
  get preCommitExpires(): boolean {
    return this.#inner.preCommitExpires === true;
  }
}

/**
 * Runs a pipeline over `events` to completion through the crashes of `schedule`, as one property run of
 * {@link checkExactlyOnce} does (a fresh temporary LMDB state directory, removed at the end, and a fresh
 * sink), and returns what was committed. Use it to look at a counterexample's output, or to chart it.
 *
 * @example
 * ```ts
 * import { runWithCrashes } from "gress/testing";
 *
 * const input = [1, 2, 3, 4].map((n) => ({ value: n, timestamp: n * 1_000 }));
 * const run = await runWithCrashes((s) => s.map((n: number) => n * 10), input, { checkpointEvery: 2, crashes: [{ at: "pre-commit", n: 1 }] });
 * console.log(run.committed, run.crashes); // [10, 20, 30, 40] ["after the sink pre-committed checkpoint 1 of the run (durable, not committed)"]
 * ```
 */
export async function runWithCrashes<I, O>(
  build: ((input: Stream<I>) => Stream<O>) | MultiInputPipeline<I, O>,
  events: readonly Timestamped<I>[],
  schedule: CrashSchedule,
  options: ExactlyOnceOptions<O> = {},
): Promise<CrashRun<O>> {
  const names = typeof build === "function" ? ["input"] : build.inputs;
  const route = (e: Timestamped<I>): [string, unknown] => {
    if (typeof build === "function") return ["input", e.value];
    const r = e.value as { input?: unknown; value?: unknown } | null;
    if (r === null || typeof r !== "object" || typeof r.input !== "string" || !names.includes(r.input)) {
      throw new TypeError(`a multi-input record must be { input, value } with input one of ${names.map((n) => `"${n}"`).join(", ")}; got ${short(r)}`);
    }
    return [r.input, r.value];
  };
  for (const e of events) route(e);
  const dir = mkdtempSync(join(tmpdir(), "gress-exactly-once-"));
  const sink = (options.sink ?? (() => transactionalMemorySink<O>()))();
  const crashes: string[] = [];
  try {
    for (let run = 0; ; run++) {
      if (run > schedule.crashes.length) throw new Error("checkExactlyOnce: the job crashed more often than the schedule says");
      const life = new Incarnation(schedule.crashes[run]);
      const state = new CrashableLmdb({ mapSize: 64 * 1024 * 1024, durability: "process", ...options.lmdb, path: join(dir, "state") });
      const clock = new VirtualClock(0);
      let job: Job;
      try {
        job = new Job({ name: "exactly-once-check", clock, state, checkpoints: { intervalMs: Number.MAX_SAFE_INTEGER / 4, log: () => {} } });
      } catch (err) {
        await state.close();
        throw err;
      }
      state.beforeCommit = () => {
        const n = ++life.snapshots;
        life.maybe("checkpoint", n, `during checkpoint ${n} of the run (its state transaction not written)`);
      };
      const replay = new Replay<I>(events, route, names, life, schedule.checkpointEvery, options.msPerRecord ?? 1, clock);
      replay.attach(job);
      const streams = new Map(names.map((name) => [name, job.source(new ReplayInput(name, replay as Replay<unknown>))]));
      const output =
        typeof build === "function"
          ? build(streams.get("input") as Stream<I>)
          : build.build({ input: (name: string) => streams.get(name) ?? unknownInput(name, names) } as never);
      output.sinkTo(new CrashingSink(sink, life));
      let failure: unknown;
      try {
        await job.run();
      } catch (err) {
        failure = err;
      } finally {
        await state.close();
      }
      if (life.dead !== undefined) {
        crashes.push(life.dead);
        continue;
      }
      if (failure !== undefined) throw failure;
      return { committed: sink.committed(), crashes };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Throws a TypeError naming the first option that cannot work. */
function validateOptions<O>(options: ExactlyOnceOptions<O>): void {
  const positiveInt = (v: unknown): boolean => typeof v === "number" && Number.isInteger(v) && v >= 1;
  if (options.maxCrashes !== undefined && !positiveInt(options.maxCrashes)) throw new TypeError(`checkExactlyOnce: maxCrashes must be an integer ≥ 1, got ${options.maxCrashes}`);
  if (options.maxCheckpointEvery !== undefined && !positiveInt(options.maxCheckpointEvery)) {
    throw new TypeError(`checkExactlyOnce: maxCheckpointEvery must be an integer ≥ 1, got ${options.maxCheckpointEvery}`);
  }
  if (options.msPerRecord !== undefined && !(Number.isFinite(options.msPerRecord) && options.msPerRecord >= 0)) {
    throw new TypeError(`checkExactlyOnce: msPerRecord must be a finite number ≥ 0, got ${options.msPerRecord}`);
  }
  if (options.schedules === undefined) return;
  if (options.schedules.length === 0) throw new TypeError("checkExactlyOnce: schedules is empty; leave it out for random schedules");
  options.schedules.forEach((s, i) => {
    if (!positiveInt(s.checkpointEvery)) throw new TypeError(`checkExactlyOnce: schedules[${i}].checkpointEvery must be an integer ≥ 1, got ${s.checkpointEvery}`);
    s.crashes.forEach((c, j) => {
      const ok = c.at === "recovery" || (["records", "checkpoint", "pre-commit", "commit"].includes(c.at) && positiveInt((c as { n: number }).n));
      if (!ok) throw new TypeError(`checkExactlyOnce: schedules[${i}].crashes[${j}] is not a crash point: ${JSON.stringify(c)} (at: records | checkpoint | pre-commit | commit with n ≥ 1, or recovery)`);
    });
  });
}

function describeCrash(c: CrashPoint): string {
  return c.at === "recovery" ? "recovery" : `${c.at}#${c.n}`;
}

/**
 * Arbitrary crash schedules: up to `maxCrashes` crash points (the n-th record or checkpoint, n up to `records`),
 * shrinking towards fewer and earlier crashes. Printed short, as `every 2: records#3 → recovery`.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { crashSchedules } from "gress/testing";
 *
 * // Look at a few schedules for an input of 20 records.
 * console.log(fc.sample(crashSchedules(20, { maxCrashes: 2 }), 3).map(String));
 * ```
 */
export function crashSchedules(records: number, options: { maxCrashes?: number; maxCheckpointEvery?: number } = {}): fc.Arbitrary<CrashSchedule> {
  const maxEvery = Math.max(1, options.maxCheckpointEvery ?? 5);
  const point: fc.Arbitrary<CrashPoint> = fc.oneof(
    fc.integer({ min: 1, max: Math.max(1, records) }).map((n): CrashPoint => ({ at: "records", n })),
    // A run takes at most one checkpoint per record (and a final one).
    fc.record({ at: fc.constantFrom("checkpoint" as const, "pre-commit" as const, "commit" as const), n: fc.integer({ min: 1, max: Math.max(1, records + 1) }) }),
    fc.constant<CrashPoint>({ at: "recovery" }),
  );
  return fc
    .record({ checkpointEvery: fc.integer({ min: 1, max: maxEvery }), crashes: fc.array(point, { minLength: 1, maxLength: Math.max(1, options.maxCrashes ?? 3) }) })
    .map((s) => printedAs(s, () => `every ${s.checkpointEvery}: ${s.crashes.map(describeCrash).join(" → ")}`));
}

/**
 * The crash-point property of a pipeline: for every input (an arbitrary, or one fixed input) and every crash
 * schedule, the output committed after crashes and recoveries equals the output of a failure-free run, as a
 * multiset. Use it with `fc.assert` (await it: the property is asynchronous); fast-check prints the seed and
 * the shrunk input and schedule when it fails, and the error says which outputs are missing or doubled and
 * where the crashes were.
 *
 * The pipeline is built anew for each run of the job, so state kept outside the state backend (a variable in
 * `build`, or outside it) shows up as a difference. The sink is the user's part: the check adds it. Output
 * values are compared by their canonical JSON. `build` may also be a `multiInput(names, build)` pipeline, with
 * `Tagged` input records.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import type { ProcessFunction } from "gress";
 * import { checkExactlyOnce, timestampedEvents } from "gress/testing";
 *
 * type Tx = { card: string; amount: number };
 * // Running total per card, kept in keyed state: exactly-once across crashes.
 * const total: ProcessFunction<Tx, string, string> = {
 *   processElement(tx, ctx) {
 *     const sum = ctx.state.value<number>("sum");
 *     const next = (sum.value() ?? 0) + tx.amount;
 *     sum.update(next);
 *     ctx.emit(`${tx.card}=${next}`);
 *   },
 * };
 * const txs = timestampedEvents(fc.record({ card: fc.constantFrom("c1", "c2"), amount: fc.integer({ min: 1, max: 9 }) }), { maxLength: 12 });
 * await fc.assert(checkExactlyOnce((s) => s.keyBy((t: Tx) => t.card).process(total), txs), { numRuns: 20, seed: 42 });
 * ```
 */
export function checkExactlyOnce<I, O>(
  build: ((input: Stream<I>) => Stream<O>) | MultiInputPipeline<I, O>,
  input: fc.Arbitrary<Timestamped<I>[]> | readonly Timestamped<I>[],
  options: ExactlyOnceOptions<O> = {},
): fc.IAsyncPropertyWithHooks<[Timestamped<I>[], CrashSchedule]> {
  validateOptions(options);
  const fixed = Array.isArray(input) ? (input as readonly Timestamped<I>[]) : undefined;
  const inputs = (fixed !== undefined ? fc.constant([...fixed]) : (input as fc.Arbitrary<Timestamped<I>[]>)).map((evs) =>
    printedAs([...evs], () => formatEvents(evs)),
  );
  // Independent of the input, so that both shrink on their own; a crash point a run never reaches leaves it
  // to complete.
  const schedules =
    options.schedules === undefined
      ? crashSchedules(fixed?.length ?? 20, options)
      : fc.constantFrom(...options.schedules).map((s) => printedAs({ ...s }, () => `every ${s.checkpointEvery}: ${s.crashes.map(describeCrash).join(" → ")}`));
  return fc.asyncProperty(
    inputs,
    schedules,
    async (evs, schedule) => {
      const reference = await runWithCrashes(build, evs, { checkpointEvery: schedule.checkpointEvery, crashes: [] }, options);
      const crashed = await runWithCrashes(build, evs, schedule, options);
      const diff = compareValues(reference.committed, crashed.committed, "the failure-free run", "the run with crashes", options.show);
      if (diff === undefined) return;
      throw new Error(
        `not exactly-once: after ${crashed.crashes.length} crash(es) the committed output differs from the failure-free run\n` +
          `  crashes: ${crashed.crashes.join("; then ") || "none was reached"}\n${diff}`,
      );
    },
  );
}

function unknownInput(name: string, names: readonly string[]): never {
  throw new TypeError(`no input "${name}": the inputs are ${names.map((n) => `"${n}"`).join(", ")}`);
}
