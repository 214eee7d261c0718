/**
 * Time laws of a pipeline, as fast-check properties on the {@link TestDriver}'s virtual time:
 *
 * - {@link checkOrderInsensitive}: any arrival order within the out-of-orderness bound gives the same results
 *   as event-time order;
 * - {@link checkWatermarkSchedule}: results depend on the watermarks' values, not on when they arrive — any
 *   schedule of watermarks that makes no record late gives the results of a run with no watermark until the
 *   end;
 * - {@link checkLateness}: a record past the allowed lateness of every window it belongs to comes out of the
 *   late side output, and the results are those of the same run without it.
 *
 * Each returns a property for `fc.assert` (or {@link assertCheck}); results are compared as multisets of
 * (value, timestamp) by canonical JSON. Counterexamples print in the notation of `events()`: `a@1 b@3`.
 * @module
 */
import fc from "fast-check";
import { LATE_DATA, type OutputTag } from "../element.ts";
import type { Stream } from "../stream.ts";
import { maxTimestamp, type WindowAssigner, windowStart } from "../windows/assigners.ts";
import type { Timestamped } from "./arbitraries.ts";
import { compareValues, printedAs, short } from "./compare.ts";
import { formatEvents } from "./marbles.ts";
import { MultiInputTestDriver, TestDriver } from "./test-driver.ts";

/**
 * Runs a property from gress/testing (or any fast-check property) with `fc.assert`, asking fast-check to put
 * the check's explanation (which outputs differ, where the crashes were) into its report, next to the seed
 * and the shrunk counterexample. Rejects when the property fails; resolves when it holds. `fc.assert` works
 * too: the explanation is then the error's `cause`.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { tumbling } from "gress";
 * import { assertCheck, checkOrderInsensitive, timestampedEvents } from "gress/testing";
 *
 * const clicks = timestampedEvents(fc.constantFrom("ann", "bob"), { maxLength: 30 });
 * await assertCheck(checkOrderInsensitive((s) => s.keyBy((u: string) => u).window(tumbling(1_000)).count(), clicks, { boundMs: 500 }), { seed: 7 });
 * ```
 */
export async function assertCheck<Ts extends unknown[]>(property: fc.IRawProperty<Ts>, params: fc.Parameters<Ts> = {}): Promise<void> {
  await fc.assert(property, { includeErrorInReport: true, ...params });
}

/** One step of a driver run: a record, or the watermark moving to a value. */
type Step<I> = { readonly record: Timestamped<I> } | { readonly watermark: number };

/** An output record as the laws compare it. */
interface Out<O> {
  readonly value: O;
  readonly timestamp: number;
}

/**
 * A record of one of several named inputs, as the laws take them for a {@link multiInput} pipeline.
 *
 * @example
 * ```ts
 * import type { Tagged } from "gress/testing";
 *
 * type Inputs = { tx: { card: string; amount: number }; limits: number };
 * const r: Tagged<Inputs> = { input: "limits", value: 100 };
 * ```
 */
export type Tagged<I extends Record<string, unknown>> = TagEach<I, keyof I & string>;

/** One {@link Tagged} record per input name (a distributive conditional type). */
type TagEach<I, Name> = Name extends keyof I ? { readonly input: Name; readonly value: I[Name] } : never;

/**
 * A pipeline with several named inputs, for the laws: made by {@link multiInput}.
 *
 * @example
 * ```ts
 * import type { MultiInputPipeline, Tagged } from "gress/testing";
 *
 * type Inputs = { clicks: string; views: string };
 * declare const both: MultiInputPipeline<Tagged<Inputs>, number>;
 * console.log(both.inputs); // ["clicks", "views"]
 * ```
 */
export interface MultiInputPipeline<T, O> {
  readonly inputs: readonly string[];
  /** Builds a new driver for one run; the laws push records to the input each names. */
  readonly driver: () => MultiInputTestDriver<Record<string, unknown>, O>;
  /** The pipeline on its inputs (a driver, or the sources of a job in checkExactlyOnce). */
  readonly build: (inputs: PipelineInputs<Record<string, unknown>>) => Stream<O>;
  /** Phantom field that carries the record type; never set. */
  readonly __records?: T;
}

/**
 * Makes a pipeline with several named inputs checkable by the time laws ({@link checkOrderInsensitive},
 * {@link checkWatermarkSchedule}, {@link checkLateness}, on a {@link MultiInputTestDriver}) and by
 * checkExactlyOnce (one replayable source per input). Their events are then {@link Tagged} records — each
 * names its input — in one arrival order across the inputs; every watermark a law moves is moved on every
 * input.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { tumbling } from "gress";
 * import { checkOrderInsensitive, multiInput, type Tagged, timestampedEvents } from "gress/testing";
 *
 * type Inputs = { clicks: string; views: string };
 * const both = multiInput<Inputs, number>(["clicks", "views"], (d) =>
 *   d.input("clicks").union(d.input("views")).keyBy(() => "all").window(tumbling(1_000)).count().map((w) => w.value),
 * );
 * const tagged = fc.oneof(
 *   fc.constantFrom("ann", "bob").map((value): Tagged<Inputs> => ({ input: "clicks", value })),
 *   fc.constantFrom("/a", "/b").map((value): Tagged<Inputs> => ({ input: "views", value })),
 * );
 * fc.assert(checkOrderInsensitive(both, timestampedEvents(tagged, { maxLength: 20 }), { boundMs: 500 }), { seed: 2 });
 * ```
 */
export function multiInput<I extends Record<string, unknown>, O>(
  inputs: readonly (keyof I & string)[],
  build: (inputs: PipelineInputs<I>) => Stream<O>,
): MultiInputPipeline<Tagged<I>, O> {
  if (inputs.length === 0) throw new TypeError("multiInput: give at least one input name");
  if (new Set(inputs).size !== inputs.length) throw new TypeError(`multiInput: an input is named twice in ${inputs.map((n) => `"${n}"`).join(", ")}`);
  return {
    inputs,
    driver: () => new MultiInputTestDriver<I, O>(inputs, build) as unknown as MultiInputTestDriver<Record<string, unknown>, O>,
    build: build as unknown as (inputs: PipelineInputs<Record<string, unknown>>) => Stream<O>,
  };
}

/**
 * The inputs a {@link multiInput} pipeline reads: a MultiInputTestDriver in the time laws, the job's sources
 * in checkExactlyOnce.
 *
 * @example
 * ```ts
 * import type { Stream } from "gress";
 * import type { PipelineInputs } from "gress/testing";
 *
 * type Inputs = { clicks: string; views: string };
 * const both = (d: PipelineInputs<Inputs>): Stream<string> => d.input("clicks").union(d.input("views"));
 * ```
 */
export interface PipelineInputs<I extends Record<string, unknown>> {
  /** The stream of input `name`. */
  input<Name extends keyof I & string>(name: Name): Stream<I[Name]>;
}

/** What the laws take as the pipeline: a function of one input, or a {@link multiInput} pipeline. */
type Pipeline<I, O> = ((input: Stream<I>) => Stream<O>) | MultiInputPipeline<I, O>;

/** Plays steps into a fresh driver, ends the input(s), and returns the output and the side output `tag`. */
function play<I, O>(build: Pipeline<I, O>, steps: readonly Step<I>[], tag?: OutputTag<unknown>): { out: Out<O>[]; side: unknown[] } {
  if (typeof build !== "function") return playMulti(build, steps, tag);
  const d = new TestDriver<I, O>(build);
  try {
    for (const s of steps) {
      if ("record" in s) d.pipeInput(s.record.value, s.record.timestamp);
      else d.advanceWatermark(s.watermark);
    }
    d.endInput();
    const out = d.readOutputRecords().map((r) => ({ value: r.value, timestamp: r.timestamp }));
    return { out, side: tag === undefined ? [] : d.readSideOutput(tag) };
  } finally {
    d.close();
  }
}

function playMulti<I, O>(build: MultiInputPipeline<I, O>, steps: readonly Step<I>[], tag?: OutputTag<unknown>): { out: Out<O>[]; side: unknown[] } {
  const d = build.driver();
  try {
    for (const s of steps) {
      if ("record" in s) {
        const r = s.record.value as { input?: unknown; value?: unknown } | null;
        if (r === null || typeof r !== "object" || typeof r.input !== "string" || !build.inputs.includes(r.input)) {
          throw new TypeError(`a multi-input record must be { input, value } with input one of ${build.inputs.map((n) => `"${n}"`).join(", ")}; got ${short(r)}`);
        }
        d.pipeInput(r.input, r.value, s.record.timestamp);
      } else for (const name of build.inputs) d.advanceWatermark(name, s.watermark);
    }
    d.endInput();
    const out = d.readOutputRecords().map((r) => ({ value: r.value, timestamp: r.timestamp }));
    const side = tag === undefined ? [] : d.readSideOutput(tag);
    return { out, side };
  } finally {
    d.close();
  }
}

/** Steps with a bounded-out-of-orderness watermark after each record: the largest timestamp − bound − 1. */
function withBoundedWatermarks<I>(records: readonly Timestamped<I>[], boundMs: number): Step<I>[] {
  const steps: Step<I>[] = [];
  let max = Number.NEGATIVE_INFINITY;
  let wm = Number.NEGATIVE_INFINITY;
  for (const r of records) {
    steps.push({ record: r });
    max = Math.max(max, r.timestamp);
    if (max - boundMs - 1 > wm) {
      wm = max - boundMs - 1;
      steps.push({ watermark: wm });
    }
  }
  return steps;
}

const showOut =
  <O>(show: (value: O) => string) =>
  (o: Out<O>): string =>
    `${show(o.value)}@${o.timestamp}`;

function fail(what: string, diff: string): never {
  throw new Error(`${what}\n${diff}`);
}

/**
 * Options of {@link checkOrderInsensitive}.
 *
 * @example
 * ```ts
 * import type { OrderInsensitiveOptions } from "gress/testing";
 *
 * // Events may arrive up to 2 s late; the check moves the watermark (largest timestamp − 2 s − 1).
 * const options: OrderInsensitiveOptions<string> = { boundMs: 2_000, watermarks: "driver" };
 * ```
 */
export interface OrderInsensitiveOptions<O> {
  /** The out-of-orderness bound: arrivals are reordered by at most this much. */
  readonly boundMs: number;
  /**
   * `driver` (default): after each record the check moves the watermark to the largest timestamp so far −
   * boundMs − 1, as `boundedOutOfOrderness(boundMs)` would. `pipeline`: the pipeline makes its own
   * watermarks (a `withTimestamps(...)` in it); the check only ends the input.
   */
  readonly watermarks?: "driver" | "pipeline";
  /** How an output value is printed in a counterexample. Default: short JSON. */
  readonly show?: (value: O) => string;
}

/** Event time order, stable: the reference arrival order of the order law. */
const inEventTimeOrder = <I>(events: readonly Timestamped<I>[]): Timestamped<I>[] => [...events].sort((a, b) => a.timestamp - b.timestamp);

/** Delays each event by its delay (0 past the list) and sorts by timestamp + delay: disorder ≤ max delay. */
function delayed<I>(sorted: readonly Timestamped<I>[], delays: readonly number[]): Timestamped<I>[] {
  return sorted
    .map((e, i) => ({ e, at: e.timestamp + (delays[i] ?? 0), i }))
    .sort((a, b) => a.at - b.at || a.i - b.i)
    .map(({ e }) => e);
}

/**
 * The order law: for every input (its event-time order) and every arrival order that is at most `boundMs`
 * out of order, the pipeline gives the same results. Catches windows and aggregations that depend on arrival
 * order (a "first"/"last" taken in arrival order, a list not sorted by time, a counter numbering arrivals).
 * The counterexample shows both orders.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { tumbling } from "gress";
 * import { checkOrderInsensitive, timestampedEvents } from "gress/testing";
 *
 * type Click = { user: string };
 * const clicks = timestampedEvents(fc.record({ user: fc.constantFrom("ann", "bob") }), { maxLength: 40, maxGapMs: 300 });
 * const perUser = (s: import("gress").Stream<Click>) => s.keyBy((c) => c.user).window(tumbling(1_000)).count();
 * fc.assert(checkOrderInsensitive(perUser, clicks, { boundMs: 500 }), { seed: 1, numRuns: 100 });
 * ```
 */
export function checkOrderInsensitive<I, O>(
  build: ((input: Stream<I>) => Stream<O>) | MultiInputPipeline<I, O>,
  events: fc.Arbitrary<Timestamped<I>[]>,
  options: OrderInsensitiveOptions<O>,
): fc.IPropertyWithHooks<[Timestamped<I>[], number[]]> {
  const bound = options.boundMs;
  if (!(Number.isFinite(bound) && bound >= 0)) throw new TypeError(`checkOrderInsensitive: boundMs must be a finite number ≥ 0, got ${bound}`);
  const show = showOut(options.show ?? short);
  const stepsOf = (records: readonly Timestamped<I>[]): Step<I>[] =>
    options.watermarks === "pipeline" ? records.map((record) => ({ record })) : withBoundedWatermarks(records, bound);
  const sorted = events.map((evs) => {
    const s = inEventTimeOrder(evs);
    return printedAs(s, () => formatEvents(s));
  });
  const delays = fc.array(fc.integer({ min: 0, max: bound }), { maxLength: 200 });
  return fc.property(sorted, delays, (inOrder, ds) => {
    const arrival = delayed(inOrder, ds);
    const expected = play(build, stepsOf(inOrder)).out;
    const actual = play(build, stepsOf(arrival)).out;
    const diff = compareValues(expected, actual, "event-time order", "the reordered arrival", show);
    if (diff !== undefined) {
      fail(`the results depend on arrival order (within ${bound} ms)\n  event-time order: ${formatEvents(inOrder)}\n  arrival order:    ${formatEvents(arrival)}`, diff);
    }
  });
}

/**
 * Options of {@link checkWatermarkSchedule}.
 *
 * @example
 * ```ts
 * import type { WatermarkScheduleOptions } from "gress/testing";
 *
 * const options: WatermarkScheduleOptions<number> = { show: (n) => `#${n}` };
 * ```
 */
export interface WatermarkScheduleOptions<O> {
  /** How an output value is printed in a counterexample. Default: short JSON. */
  readonly show?: (value: O) => string;
}

/**
 * Puts watermarks between the records: after record i, the watermark may move (never back) towards the
 * smallest timestamp still to come − 1, so that no record becomes late. `fractions[i]` (0-1000, or null for
 * none) says how far.
 */
function scheduleWatermarks<I>(records: readonly Timestamped<I>[], fractions: readonly (number | null)[]): Step<I>[] {
  const steps: Step<I>[] = [];
  // suffixMin[i]: the smallest timestamp from record i on.
  const suffixMin: number[] = new Array(records.length + 1).fill(Number.POSITIVE_INFINITY);
  for (let i = records.length - 1; i >= 0; i--) suffixMin[i] = Math.min(records[i]!.timestamp, suffixMin[i + 1]!);
  const last = records.reduce((m, r) => Math.max(m, r.timestamp), 0);
  let wm = Number.NEGATIVE_INFINITY;
  records.forEach((r, i) => {
    steps.push({ record: r });
    const f = fractions[i];
    if (f === null || f === undefined) return;
    const ceiling = i + 1 < records.length ? suffixMin[i + 1]! - 1 : last + 1;
    const floor = wm === Number.NEGATIVE_INFINITY ? Math.min(ceiling, suffixMin[0]! - 1) : wm;
    if (ceiling <= wm) return;
    wm = Math.max(wm, Math.round(floor + ((ceiling - floor) * f) / 1000));
    steps.push({ watermark: wm });
  });
  return steps;
}

const describeSteps = <I>(steps: readonly Step<I>[]): string =>
  steps.map((s) => ("record" in s ? formatEvents([s.record]) : `W${s.watermark}`)).join(" ");

/**
 * The watermark law: for every input (in the arrival order the arbitrary gives) and every schedule of
 * watermarks that makes no record late, the results equal those of a run whose only watermark is the final
 * one. Catches logic that reads the watermark's arrival (a timer set from `currentWatermark`, results that
 * count "what arrived so far" when a timer fires). The counterexample shows the schedule in the notation
 * of `events()`: `a@1 W3 b@5`.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { sliding } from "gress";
 * import { checkWatermarkSchedule, timestampedEvents } from "gress/testing";
 *
 * const readings = timestampedEvents(fc.integer({ min: 0, max: 100 }), { maxLength: 30, maxDisorderMs: 2_000 });
 * fc.assert(checkWatermarkSchedule((s) => s.keyBy(() => "all").window(sliding(2_000, 1_000)).count(), readings), { seed: 3 });
 * ```
 */
export function checkWatermarkSchedule<I, O>(
  build: ((input: Stream<I>) => Stream<O>) | MultiInputPipeline<I, O>,
  events: fc.Arbitrary<Timestamped<I>[]>,
  options: WatermarkScheduleOptions<O> = {},
): fc.IPropertyWithHooks<[Timestamped<I>[], (number | null)[]]> {
  const show = showOut(options.show ?? short);
  const inputs = events.map((evs) => printedAs([...evs], () => formatEvents(evs)));
  const fractions = fc.array(fc.option(fc.integer({ min: 0, max: 1000 }), { nil: null, freq: 2 }), { maxLength: 200 });
  return fc.property(inputs, fractions, (records, fs) => {
    const scheduled = scheduleWatermarks(records, fs);
    const expected = play(build, records.map((record) => ({ record }))).out;
    const actual = play(build, scheduled).out;
    const diff = compareValues(expected, actual, "the run with only the final watermark", "the run with this schedule", show);
    if (diff !== undefined) {
      fail(`the results depend on when watermarks arrive (none makes a record late)\n  schedule: ${describeSteps(scheduled)}`, diff);
    }
  });
}

/**
 * Options of {@link checkLateness}.
 *
 * @example
 * ```ts
 * import { tumbling } from "gress";
 * import type { LatenessOptions } from "gress/testing";
 *
 * // The pipeline's windows: 1 s tumbling, 500 ms allowed lateness; watermarks trail by 200 ms.
 * const options: LatenessOptions<string, number> = { windows: tumbling(1_000), allowedLatenessMs: 500, watermarkLagMs: 200 };
 * ```
 */
export interface LatenessOptions<I, O> {
  /** The pipeline's window assigner (tumbling or sliding): lateness is relative to the windows' ends. */
  readonly windows: WindowAssigner<I>;
  /** The allowed lateness the pipeline promises. */
  readonly allowedLatenessMs: number;
  /** The side output late records must come out of. Default LATE_DATA. */
  readonly lateTag?: OutputTag<unknown>;
  /** After each record the watermark moves to the largest timestamp − watermarkLagMs − 1. Default 0. */
  readonly watermarkLagMs?: number;
  /** How an output value is printed in a counterexample. Default: short JSON. */
  readonly show?: (value: O) => string;
}

/** The windows (start, end) of a tumbling or sliding assigner that hold `ts`. */
function windowsOf(assigner: WindowAssigner<unknown>, ts: number): { start: number; end: number }[] {
  if (assigner.kind !== "tumbling" && assigner.kind !== "sliding") throw new TypeError(`checkLateness: windows must be tumbling or sliding, got ${assigner.kind}`);
  const slide = assigner.kind === "sliding" ? assigner.slide : assigner.size;
  const out: { start: number; end: number }[] = [];
  for (let start = windowStart(ts, slide, assigner.offset); start > ts - assigner.size; start -= slide) out.push({ start, end: start + assigner.size });
  return out;
}

/**
 * The lateness law: with the watermark trailing the largest timestamp by `watermarkLagMs`, a record that
 * arrives when every window it belongs to is past its allowed lateness (window end − 1 + allowedLatenessMs
 * at or before the watermark) comes out of the late side output, each exactly once, and the results equal
 * those of the same run without those records. Records within the allowed lateness may update results.
 * Catches a pipeline whose windows keep data longer than it promises, and hand-written lateness handling
 * that lets late records into results.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { tumbling } from "gress";
 * import { checkLateness, timestampedEvents } from "gress/testing";
 *
 * const events = timestampedEvents(fc.constantFrom("a", "b"), { maxLength: 30, maxGapMs: 400, maxDisorderMs: 3_000 });
 * const counts = (s: import("gress").Stream<string>) => s.keyBy((x) => x).window(tumbling(1_000), { allowedLatenessMs: 500 }).count();
 * fc.assert(checkLateness(counts, events, { windows: tumbling(1_000), allowedLatenessMs: 500 }), { seed: 5 });
 * ```
 */
export function checkLateness<I, O>(
  build: ((input: Stream<I>) => Stream<O>) | MultiInputPipeline<I, O>,
  events: fc.Arbitrary<Timestamped<I>[]>,
  options: LatenessOptions<I, O>,
): fc.IPropertyWithHooks<[Timestamped<I>[]]> {
  const lateness = options.allowedLatenessMs;
  const lag = options.watermarkLagMs ?? 0;
  if (!(Number.isFinite(lateness) && lateness >= 0)) throw new TypeError(`checkLateness: allowedLatenessMs must be a finite number ≥ 0, got ${lateness}`);
  if (!(Number.isFinite(lag) && lag >= 0)) throw new TypeError(`checkLateness: watermarkLagMs must be a finite number ≥ 0, got ${lag}`);
  windowsOf(options.windows as WindowAssigner<unknown>, 0);
  const tag = options.lateTag ?? LATE_DATA;
  const show = showOut(options.show ?? short);
  const inputs = events.map((evs) => printedAs([...evs], () => formatEvents(evs)));
  return fc.property(inputs, (records) => {
    const steps = withBoundedWatermarks(records, lag);
    const tooLate: Timestamped<I>[] = [];
    const kept: Step<I>[] = [];
    let wm = Number.NEGATIVE_INFINITY;
    for (const s of steps) {
      if ("watermark" in s) wm = s.watermark;
      else if (windowsOf(options.windows as WindowAssigner<unknown>, s.record.timestamp).every((w) => maxTimestamp(w) + lateness <= wm)) {
        tooLate.push(s.record);
        continue;
      }
      kept.push(s);
    }
    const all = play(build, steps, tag);
    const late = compareValues(
      // A multi-input pipeline's late output holds the values as they were pushed, without their input's name.
      tooLate.map((r) => (typeof build === "function" ? r.value : (r.value as { value: unknown }).value)),
      all.side,
      "the records past the allowed lateness",
      `side output "${tag.id}"`,
    );
    if (late !== undefined) fail(`the late side output is not exactly the records past the allowed lateness (${lateness} ms)\n  input: ${describeSteps(steps)}`, late);
    const without = play(build, kept).out;
    const diff = compareValues(without, all.out, "the run without the late records", "the run with them", show);
    if (diff !== undefined) fail(`records past the allowed lateness (${lateness} ms) changed the results\n  input: ${describeSteps(steps)}`, diff);
  });
}
