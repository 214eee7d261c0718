/**
 * Gress's window operator against the reference model (tests/support/window-model.ts): the window results
 * and the late side output must be equal as multisets, over random inputs of 1–20,000 records with
 * out-of-order and late data, watermarks that stall, jump and go backwards, and processing time moving on.
 *
 * Both bodies of the window operator are covered: the aligned fast path (tumbling or sliding windows, default
 * trigger, no early firing — see `windowElements`) and the general path (sessions, global windows, custom
 * triggers, early firings, and tumbling/sliding windows with an explicit event-time or count trigger). The
 * restore tests cut the input at random points and continue on a new job restored from the state there —
 * a memory-backend snapshot, or LMDB committed, closed and reopened: the concatenated output must still be
 * the model's.
 *
 * Inputs are generated from a seed (a small PRNG), the seed and sizes by fast-check with a fixed seed, so a
 * run is reproducible: a failure prints the scenario and the first differences.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  countTrigger,
  eventTimeTrigger,
  global,
  LATE_DATA,
  LmdbStateBackend,
  MemoryStateBackend,
  processingTimeTrigger,
  type Stream,
  session,
  sliding,
  type Trigger,
  tumbling,
  type WindowAssigner,
  type WindowOptions,
  type WindowResult,
} from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { tempDirs } from "../support/temp.ts";
import { type Fingerprint, type ModelSpec, resultId, type Step, windowModel } from "../support/window-model.ts";

interface Ev {
  readonly key: string;
  readonly id: number;
  readonly gap: number;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same input on every runtime. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const int = (rnd: () => number, min: number, max: number): number => min + Math.floor(rnd() * (max - min + 1));

type Path = "aligned" | "general";

/** A random windowing for `path`. */
function randomSpec(rnd: () => number, path: Path): ModelSpec {
  // Small sizes often, so that records fall on window edges.
  const size = rnd() < 0.4 ? int(rnd, 1, 8) : int(rnd, 5, 200);
  const lateness = rnd() < 0.3 ? 0 : int(rnd, 0, size * 3);
  const offset = rnd() < 0.6 ? 0 : int(rnd, -size, size);
  const timeAssigner = (): ModelSpec["assigner"] =>
    rnd() < 0.5 ? { kind: "tumbling", size, offset } : { kind: "sliding", size, slide: int(rnd, 1, size), offset };
  if (path === "aligned") return { assigner: timeAssigner(), trigger: { kind: "default" }, latenessMs: lateness };
  const early = (): NonNullable<ModelSpec["early"]> => {
    const e = rnd();
    if (e < 0.4) return { everyCount: int(rnd, 1, 6) };
    if (e < 0.75) return { everyMs: int(rnd, 1, 50) };
    return { everyCount: int(rnd, 1, 6), everyMs: int(rnd, 1, 50) };
  };
  switch (int(rnd, 0, 8)) {
    case 0:
      return { assigner: timeAssigner(), trigger: { kind: "eventTime" }, latenessMs: lateness };
    case 1:
      return { assigner: timeAssigner(), trigger: { kind: "default" }, latenessMs: lateness, early: early() };
    case 2:
      return { assigner: { kind: "session" }, trigger: { kind: "default" }, latenessMs: lateness, ...(rnd() < 0.5 ? { early: early() } : {}) };
    case 3:
      return { assigner: { kind: "session" }, trigger: { kind: "eventTime" }, latenessMs: lateness };
    case 4:
      return { assigner: { kind: "global" }, trigger: { kind: "count", n: int(rnd, 1, 7), purge: rnd() < 0.6 }, latenessMs: 0 };
    case 5:
      return { assigner: { kind: "global" }, trigger: { kind: "processingTime", intervalMs: int(rnd, 1, 60) }, latenessMs: 0 };
    case 6:
      return { assigner: { kind: "session" }, trigger: { kind: "count", n: int(rnd, 1, 6), purge: rnd() < 0.5 }, latenessMs: lateness };
    case 7:
      return { assigner: { kind: "session" }, trigger: { kind: "processingTime", intervalMs: int(rnd, 1, 60) }, latenessMs: lateness };
    default:
      return { assigner: timeAssigner(), trigger: { kind: "count", n: int(rnd, 1, 5), purge: rnd() < 0.5 }, latenessMs: lateness };
  }
}

/**
 * A random input of `n` records over a few keys: event time moves forward with out-of-order records within a
 * bound, some records far behind (late, or late beyond the allowed lateness), watermarks now and then (the
 * bounded-out-of-orderness watermark, sometimes one that jumps ahead or goes backwards), processing time
 * moving on, and usually a final watermark at +∞.
 */
function randomSteps(rnd: () => number, n: number, spec: ModelSpec): Step[] {
  const scale = spec.assigner.kind === "tumbling" || spec.assigner.kind === "sliding" ? spec.assigner.size : int(rnd, 5, 100);
  const keys = int(rnd, 1, 8);
  const maxGap = int(rnd, 0, Math.max(1, Math.ceil(scale / 2)));
  const bound = int(rnd, 0, scale * 2);
  const lateShare = rnd() < 0.2 ? 0 : rnd() * 0.25;
  const wmEvery = int(rnd, 1, 25);
  const timeShare = rnd() * 0.3;
  const fixedGap = rnd() < 0.5 ? int(rnd, 1, scale) : undefined;
  let cursor = int(rnd, -500, 500);
  let maxSeen = Number.NEGATIVE_INFINITY;
  let wm = Number.NEGATIVE_INFINITY;
  const steps: Step[] = [];
  for (let id = 0; id < n; id++) {
    cursor += int(rnd, 0, maxGap);
    const back = rnd() < lateShare ? bound + int(rnd, 0, scale * 4 + spec.latenessMs) : int(rnd, 0, bound);
    const ts = cursor - back;
    if (ts > maxSeen) maxSeen = ts;
    const gap = fixedGap ?? int(rnd, 1, scale);
    steps.push({ kind: "record", key: `k${int(rnd, 0, keys - 1)}`, ts, id, gap });
    if (rnd() < 1 / wmEvery) {
      const kind = rnd();
      // Mostly the bounded-out-of-orderness watermark; now and then one behind it or NaN (both ignored), or
      // one ahead of it.
      const t =
        kind < 0.8 ? maxSeen - bound - 1 : kind < 0.87 ? wm - int(rnd, 0, scale) : kind < 0.9 ? Number.NaN : maxSeen + int(rnd, 0, scale);
      steps.push({ kind: "watermark", t });
      if (t > wm) wm = t;
    }
    if (rnd() < timeShare) steps.push({ kind: "time", ms: int(rnd, 1, 70) });
  }
  if (rnd() < 0.8) steps.push({ kind: "watermark", t: Number.POSITIVE_INFINITY });
  return steps;
}

const fingerprint = {
  create: (): Fingerprint => ({ n: 0, sum: 0, sq: 0 }),
  add: (a: Fingerprint, e: Ev): Fingerprint => ({ n: a.n + 1, sum: a.sum + e.id, sq: a.sq + e.id * e.id }),
  merge: (a: Fingerprint, b: Fingerprint): Fingerprint => ({ n: a.n + b.n, sum: a.sum + b.sum, sq: a.sq + b.sq }),
  result: (a: Fingerprint): Fingerprint => a,
};

function gressWindowing(spec: ModelSpec): { assigner: WindowAssigner<Ev>; options: WindowOptions<Ev> } {
  const a = spec.assigner;
  const assigner: WindowAssigner<Ev> =
    a.kind === "tumbling"
      ? tumbling(a.size, { offsetMs: a.offset })
      : a.kind === "sliding"
        ? sliding(a.size, a.slide, { offsetMs: a.offset })
        : a.kind === "session"
          ? session<Ev>({ gapOf: (e) => e.gap })
          : global();
  const t = spec.trigger;
  const trigger: Trigger<Ev> | undefined =
    t.kind === "eventTime"
      ? eventTimeTrigger()
      : t.kind === "count"
        ? countTrigger(t.n, { purge: t.purge })
        : t.kind === "processingTime"
          ? processingTimeTrigger(t.intervalMs)
          : undefined;
  const options: WindowOptions<Ev> = {
    ...(spec.latenessMs > 0 ? { allowedLatenessMs: spec.latenessMs } : {}),
    ...(trigger !== undefined ? { trigger } : {}),
    ...(spec.early !== undefined ? { early: spec.early } : {}),
  };
  return { assigner, options };
}

function gressPipeline(spec: ModelSpec): (s: Stream<Ev>) => Stream<WindowResult<string, Fingerprint>> {
  const { assigner, options } = gressWindowing(spec);
  return (s) =>
    s
      .keyBy((e) => e.key)
      .window(assigner, options)
      .aggregateWith(fingerprint);
}

type Driver = TestDriver<Ev, WindowResult<string, Fingerprint>>;
interface GressOutput {
  readonly results: string[];
  readonly late: number[];
}

/** Plays steps into a driver and appends what came out to `out`. */
function play(d: Driver, steps: readonly Step[], out: GressOutput): void {
  for (const step of steps) {
    if (step.kind === "record") d.pipeInput({ key: step.key, id: step.id, gap: step.gap }, step.ts);
    else if (step.kind === "watermark") d.advanceWatermark(step.t);
    else d.advanceProcessingTime(step.ms);
  }
  for (const r of d.readOutput()) out.results.push(resultId(r));
  for (const e of d.readSideOutput(LATE_DATA)) out.late.push((e as Ev).id);
}

/**
 * Runs `steps` through Gress, restoring into a new job (from a snapshot of the memory state) at each of `cuts`.
 * @returns the result ids and the late record ids, in emission order
 */
function runGress(spec: ModelSpec, steps: readonly Step[], cuts: readonly number[]): GressOutput {
  const pipeline = gressPipeline(spec);
  const out: GressOutput = { results: [], late: [] };
  let state: MemoryStateBackend | undefined;
  let startTime = 0;
  const bounds = [0, ...cuts, steps.length];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const d: Driver = new TestDriver(pipeline, { startTime, ...(state ? { state } : {}) });
    play(d, steps.slice(bounds[i], bounds[i + 1]), out);
    state = new MemoryStateBackend();
    state.restore(d.job.state.snapshot());
    startTime = d.clock.now();
    d.close();
  }
  return out;
}

/**
 * The same with the LMDB backend: at each cut the state is committed and flushed, the backend closed, and the
 * next job opens the directory again — so every window structure also goes through LMDB's encoding.
 */
async function runGressLmdb(spec: ModelSpec, steps: readonly Step[], cuts: readonly number[], dir: string): Promise<GressOutput> {
  const pipeline = gressPipeline(spec);
  const out: GressOutput = { results: [], late: [] };
  let startTime = 0;
  const bounds = [0, ...cuts, steps.length];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const state = new LmdbStateBackend({ path: dir, mapSize: 64 * 1024 * 1024 });
    const d: Driver = new TestDriver(pipeline, { startTime, state });
    play(d, steps.slice(bounds[i], bounds[i + 1]), out);
    await state.commit(state.capture(), () => {});
    await state.flushed();
    startTime = d.clock.now();
    d.close();
    await state.close();
  }
  return out;
}

/** The differences between two multisets, at most `limit` each way. */
function multisetDiff(expected: readonly string[], actual: readonly string[], limit = 8): { missing: string[]; extra: string[] } {
  const counts = new Map<string, number>();
  for (const e of expected) counts.set(e, (counts.get(e) ?? 0) + 1);
  const extra: string[] = [];
  for (const a of actual) {
    const c = counts.get(a) ?? 0;
    if (c > 0) counts.set(a, c - 1);
    else if (extra.length < limit) extra.push(a);
  }
  const missing = [...counts].flatMap(([e, c]) => Array<string>(c).fill(e)).slice(0, limit);
  return { missing, extra };
}

const describeSpec = (spec: ModelSpec): string => JSON.stringify(spec);

interface Scenario {
  readonly spec: ModelSpec;
  readonly steps: Step[];
  readonly cuts: number[];
  readonly where: string;
}

/** The generated scenario of `seed`: windowing, input, and up to `cutCount` restore points. */
function scenarioOf(path: Path, seed: number, n: number, cutCount: number): Scenario {
  const rnd = prng(seed);
  const spec = randomSpec(rnd, path);
  const steps = randomSteps(rnd, n, spec);
  // The everyMs marks (which windows got records since the last tick) live in memory only, and a restored
  // job starts its ticks anew: a restore may move early firings. Cuts are left out for those windowings.
  const canCut = spec.early?.everyMs === undefined;
  const cuts = canCut ? [...new Set(Array.from({ length: cutCount }, () => int(rnd, 1, steps.length)))].sort((a, b) => a - b) : [];
  return { spec, steps, cuts, where: `seed ${seed}, ${n} records, ${describeSpec(spec)}, cuts [${cuts.join(", ")}]` };
}

/** Asserts that Gress's output equals the model's, as multisets. */
function assertModel(sc: Scenario, gress: GressOutput): void {
  const model = windowModel(sc.spec, sc.steps);
  const results = multisetDiff(model.results.map(resultId), gress.results);
  assert.deepEqual(results, { missing: [], extra: [] }, `window results differ from the model (${sc.where})`);
  assert.equal(gress.results.length, model.results.length, sc.where);
  const late = multisetDiff(model.late.map(String), gress.late.map(String));
  assert.deepEqual(late, { missing: [], extra: [] }, `late side output differs from the model (${sc.where})`);
}

/** Compares Gress with the model on one generated scenario (memory state, snapshots at the cuts). */
function check(path: Path, seed: number, n: number, cutCount: number): void {
  const sc = scenarioOf(path, seed, n, cutCount);
  assertModel(sc, runGress(sc.spec, sc.steps, sc.cuts));
}

const temp = tempDirs("gress-window-model-");

const scenario = (maxRecords: number): fc.Arbitrary<{ seed: number; n: number }> =>
  fc.record({ seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }), n: fc.integer({ min: 1, max: maxRecords }) });

for (const path of ["aligned", "general"] as const) {
  describe(`window reference model: the ${path} path`, () => {
    it(`small inputs (1–300 records) give the model's results and late records`, () => {
      fc.assert(
        fc.property(scenario(300), ({ seed, n }) => check(path, seed, n, 0)),
        { numRuns: 300, includeErrorInReport: true, seed: path === "aligned" ? 1904 : 1905 },
      );
    });

    it("large inputs (20,000 records) give the model's results and late records", () => {
      for (const seed of [11, 12, 13, 14]) check(path, seed * (path === "aligned" ? 1 : 7), 20_000, 0);
    });

    it("restored from snapshots at random cuts, the job still gives the model's results", () => {
      fc.assert(
        fc.property(scenario(400), fc.integer({ min: 1, max: 4 }), ({ seed, n }, cuts) => check(path, seed, n, cuts)),
        { numRuns: 150, includeErrorInReport: true, seed: path === "aligned" ? 2904 : 2905 },
      );
      check(path, 99, 5_000, 3);
    });

    it("restored from LMDB at random cuts (committed, closed, reopened), the job still gives the model's results", async () => {
      await fc.assert(
        fc.asyncProperty(scenario(300), fc.integer({ min: 1, max: 3 }), async ({ seed, n }, cuts) => {
          const sc = scenarioOf(path, seed, n, cuts);
          assertModel(sc, await runGressLmdb(sc.spec, sc.steps, sc.cuts, temp()));
        }),
        { numRuns: 30, includeErrorInReport: true, seed: path === "aligned" ? 3904 : 3905 },
      );
      const sc = scenarioOf(path, 98, 5_000, 3);
      assertModel(sc, await runGressLmdb(sc.spec, sc.steps, sc.cuts, temp()));
    });
  });
}

describe("window reference model: found by it", () => {
  it("a session that grows with each record still fires early every N records (the merged window keeps the early counts)", () => {
    const spec: ModelSpec = { assigner: { kind: "session" }, trigger: { kind: "default" }, latenessMs: 0, early: { everyCount: 3 } };
    const steps: Step[] = [0, 5, 10, 15, 20, 25].map((ts, id) => ({ kind: "record", key: "a", ts, id, gap: 10 }));
    const model = windowModel(spec, steps);
    assert.deepEqual(
      model.results.map((r) => [r.start, r.end, r.value.n, r.timing]),
      [
        [0, 20, 3, "early"],
        [0, 35, 6, "early"],
      ],
    );
    assert.deepEqual(runGress(spec, steps, []).results, model.results.map(resultId));
  });

  it("session windows with a count or processing-time trigger carry the trigger's state over when they merge (Trigger.onMerge)", () => {
    // In order, each record extends the session: every record merges the session into a new, larger one.
    const records: Step[] = [0, 5, 10, 15, 20, 25].flatMap((ts, id): Step[] => [
      { kind: "record", key: "a", ts, id, gap: 10 },
      { kind: "time", ms: 4 },
    ]);
    const count: ModelSpec = { assigner: { kind: "session" }, trigger: { kind: "count", n: 3, purge: false }, latenessMs: 0 };
    const byCount = windowModel(count, records);
    assert.deepEqual(
      byCount.results.map((r) => [r.start, r.end, r.value.n, r.timing]),
      [
        [0, 20, 3, "early"],
        [0, 35, 6, "early"],
      ],
    );
    assert.deepEqual(runGress(count, records, []).results, byCount.results.map(resultId));
    // The first record starts a 10 ms round; the session keeps growing, and still fires at 10 ms.
    const timed: ModelSpec = { assigner: { kind: "session" }, trigger: { kind: "processingTime", intervalMs: 10 }, latenessMs: 0 };
    const byTime = windowModel(timed, records);
    assert.deepEqual(
      byTime.results.map((r) => [r.start, r.end, r.value.n, r.timing]),
      [
        [0, 20, 3, "early"],
        [0, 35, 3, "early"],
      ],
    );
    assert.deepEqual(runGress(timed, records, []).results, byTime.results.map(resultId));
  });

  it("a NaN watermark is ignored by the general path too (it stopped every later window from firing)", () => {
    const spec: ModelSpec = { assigner: { kind: "session" }, trigger: { kind: "default" }, latenessMs: 0 };
    const steps: Step[] = [
      { kind: "record", key: "a", ts: 1, id: 0, gap: 10 },
      { kind: "watermark", t: Number.NaN },
      { kind: "record", key: "a", ts: 5, id: 1, gap: 10 },
      { kind: "watermark", t: 100 },
    ];
    const model = windowModel(spec, steps);
    assert.deepEqual(
      model.results.map((r) => [r.start, r.end, r.value.n, r.timing]),
      [[1, 15, 2, "on-time"]],
    );
    assert.deepEqual(runGress(spec, steps, []).results, model.results.map(resultId));
  });
});
