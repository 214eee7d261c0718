/**
 * Event time on the page: a marble-like notation for test input, read the way RxJS marble tests are.
 *
 * `events("a@1 b@3 | W5 c@4 |")` is, in arrival order: record `a` at event time 1, record `b` at 3, a frame
 * boundary, the watermark 5, record `c` at 4 (late for a watermark of 5), another frame boundary. Tokens are
 * separated by white space:
 *
 * - `name@t` — a record at event time `t` (an integer, may be negative); its value is `values[name]` when a
 *   value map is given, else the name itself; `input:name@t` is a record of input `input`, for a
 *   {@link MultiInputTestDriver} (its value is `values["input:name"]`, else `values[name]`);
 * - `Wt` — the watermark moves to `t`; `input:Wt` moves only that input's, for a MultiInputTestDriver (a
 *   plain `Wt` moves the watermark of every input named in `playEvents`' `inputs` option);
 * - `+ms` — processing time moves forward by `ms`;
 * - `|` — a frame boundary: {@link playEvents} reads the output there, so a test can say what came out of
 *   each frame.
 *
 * A script drives a {@link TestDriver} ({@link playEvents}) and gives the records of the input to the
 * checks ({@link recordsOf}); {@link formatEvents} prints records back in the notation, which is how the
 * checks show counterexamples.
 * @module
 */
import type { Timestamped } from "./arbitraries.ts";
import { short } from "./compare.ts";
import { MultiInputTestDriver, type TestDriver } from "./test-driver.ts";

/**
 * One step of an event script.
 *
 * @example
 * ```ts
 * import { events, type EventStep } from "gress/testing";
 *
 * const steps: readonly EventStep<string>[] = events("a@1 W5 | +100");
 * // [{ kind: "record", name: "a", value: "a", timestamp: 1 }, { kind: "watermark", timestamp: 5 }, { kind: "frame" }, { kind: "time", ms: 100 }]
 * ```
 */
export type EventStep<T> =
  | { readonly kind: "record"; readonly name: string; readonly value: T; readonly timestamp: number }
  | { readonly kind: "watermark"; readonly timestamp: number; readonly input?: string }
  | { readonly kind: "time"; readonly ms: number }
  | { readonly kind: "frame" };

const RECORD = /^([^\s@|]+)@(-?\d+)$/;
const WATERMARK = /^(?:([^\s@|:]+):)?W(-?\d+)$/;
const TIME = /^\+(\d+)$/;

/**
 * Parses an event script (see the module comment). Throws a TypeError that names the token, its position and
 * what was expected for anything it cannot read, or for a name missing from `values`.
 *
 * @example
 * ```ts
 * import { events } from "gress/testing";
 *
 * // Names stand for themselves...
 * const letters = events("a@1 b@3 | W5 c@4 |");
 * // ...or for the values of a map, as in RxJS's cold("a-b", { a: 1, b: 2 }).
 * const bids = events("x@1000 y@2500 W3000", { x: { amount: 5 }, y: { amount: 70 } });
 * ```
 */
export function events<T = string>(script: string, values?: Readonly<Record<string, T>>): EventStep<T>[] {
  const steps: EventStep<T>[] = [];
  const tokens = script.split(/\s+/).filter((t) => t !== "");
  tokens.forEach((token, i) => {
    const where = `events(): token ${i + 1} "${token}"`;
    if (token === "|") {
      steps.push({ kind: "frame" });
      return;
    }
    const wm = WATERMARK.exec(token);
    if (wm !== null) {
      steps.push(wm[1] === undefined ? { kind: "watermark", timestamp: Number(wm[2]) } : { kind: "watermark", timestamp: Number(wm[2]), input: wm[1] });
      return;
    }
    const time = TIME.exec(token);
    if (time !== null) {
      steps.push({ kind: "time", ms: Number(time[1]) });
      return;
    }
    const rec = RECORD.exec(token);
    if (rec === null) throw new TypeError(`${where}: expected name@time (a@1), W<time> (W5), +<ms> (+100) or |`);
    const name = rec[1]!;
    const bare = name.slice(name.indexOf(":") + 1);
    let value: T;
    if (values === undefined) value = name as T;
    else if (Object.hasOwn(values, name)) value = values[name] as T;
    else if (Object.hasOwn(values, bare)) value = values[bare] as T;
    else throw new TypeError(`${where}: "${name}" is not in the value map (it has ${Object.keys(values).join(", ") || "no names"})`);
    steps.push({ kind: "record", name, value, timestamp: Number(rec[2]) });
  });
  return steps;
}

/**
 * The records of a script (or a string in the notation) in arrival order, as the checks take them.
 *
 * @example
 * ```ts
 * import { recordsOf } from "gress/testing";
 *
 * console.log(recordsOf("a@1 W5 b@3")); // [{ value: "a", timestamp: 1 }, { value: "b", timestamp: 3 }]
 * ```
 */
export function recordsOf<T = string>(script: string | readonly EventStep<T>[]): Timestamped<T>[] {
  const steps = typeof script === "string" ? (events(script) as EventStep<T>[]) : script;
  const out: Timestamped<T>[] = [];
  for (const s of steps) if (s.kind === "record") out.push({ value: s.value, timestamp: s.timestamp });
  return out;
}

/**
 * Prints records in the notation: `a@1 b@3`. A value that is not a string is printed as canonical JSON, or
 * as `name(value)` gives it.
 *
 * @example
 * ```ts
 * import { formatEvents } from "gress/testing";
 *
 * console.log(formatEvents([{ value: "a", timestamp: 1 }, { value: "b", timestamp: 3 }])); // "a@1 b@3"
 * console.log(formatEvents([{ value: { card: "c1" }, timestamp: 7 }], (t) => t.card)); // "c1@7"
 * ```
 */
export function formatEvents<T>(records: readonly Timestamped<T>[], name: (value: T) => string = short): string {
  return records.map((r) => `${name(r.value)}@${r.timestamp}`).join(" ");
}

/**
 * Plays a script into a TestDriver (or a MultiInputTestDriver: records written `input:name@t`, watermarks
 * `input:Wt`, or `Wt` for every input given in `options.inputs`): records with their event times,
 * watermarks, processing time. Returns the
 * output read at each frame boundary `|`, plus the output after the last boundary when steps follow it. It
 * does not end the input: call `driver.endInput()` for the final watermark and the end of the stream.
 *
 * @example
 * ```ts
 * import { tumbling, type WindowResult } from "gress";
 * import { events, playEvents, TestDriver } from "gress/testing";
 *
 * const driver = new TestDriver<string, WindowResult<string, number>>((s) => s.keyBy((x) => x).window(tumbling(5)).count());
 * const frames = playEvents(driver, events("a@1 a@3 | W4 | a@6 W9 |"));
 * // [[], [{ key: "a", start: 0, end: 5, value: 2, timing: "on-time" }], [{ key: "a", start: 5, end: 10, value: 1, timing: "on-time" }]]
 * ```
 */
export function playEvents<I, O>(
  driver: TestDriver<I, O> | MultiInputTestDriver<Record<string, unknown>, O>,
  script: readonly EventStep<I>[],
  options: { readonly inputs?: readonly string[] } = {},
): O[][] {
  const frames: O[][] = [];
  let open = false;
  for (const step of script) {
    if (step.kind === "frame") {
      frames.push(driver.readOutput());
      open = false;
      continue;
    }
    open = true;
    if (driver instanceof MultiInputTestDriver) playMulti(driver, step, options.inputs);
    else if (step.kind === "record") driver.pipeInput(step.value, step.timestamp);
    else if (step.kind === "watermark") driver.advanceWatermark(step.timestamp);
    else driver.advanceProcessingTime(step.ms);
  }
  if (open) frames.push(driver.readOutput());
  return frames;
}

/** One step into a multi-input driver: a record goes to the input its name gives (`input:name`). */
function playMulti<I>(driver: MultiInputTestDriver<Record<string, unknown>, unknown>, step: Exclude<EventStep<I>, { kind: "frame" }>, inputs: readonly string[] | undefined): void {
  if (step.kind === "time") driver.advanceProcessingTime(step.ms);
  else if (step.kind === "watermark") {
    if (step.input !== undefined) driver.advanceWatermark(step.input, step.timestamp);
    else if (inputs === undefined) throw new TypeError(`playEvents(): W${step.timestamp} names no input; write input:W${step.timestamp}, or give the inputs option to move every input's watermark`);
    else for (const name of inputs) driver.advanceWatermark(name, step.timestamp);
  } else {
    const colon = step.name.indexOf(":");
    if (colon < 0) throw new TypeError(`playEvents(): record "${step.name}@${step.timestamp}" names no input; write input:name@time for a MultiInputTestDriver`);
    driver.pipeInput(step.name.slice(0, colon), step.value, step.timestamp);
  }
}
