/**
 * TestDriver runs a pipeline on virtual time, like Kafka Streams' TopologyTestDriver. You push records with
 * explicit timestamps, move the watermark and processing time by hand, and read what came out — main output
 * and side outputs — synchronously. Nothing depends on the wall clock or on scheduling.
 *
 * @example
 * ```ts
 * const driver = new TestDriver<Bid, WindowResult<number, number>>((bids) =>
 *   bids.keyBy((b) => b.auction).window(tumbling(10)).count());
 * driver.pipeInput(bid, 3);
 * driver.advanceWatermark(10);
 * driver.readOutput(); // [{ key, start: 0, end: 10, value: 1, timing: "on-time" }]
 * ```
 * @module
 */
import { Subject, type Subscription } from "rxjs";
import { VirtualClock } from "../clock.ts";
import { END, type Element, type Key, type OutputTag, record, type SideRecord, splitsAnnouncement, type StreamRecord, watermark } from "../element.ts";
import { Job } from "../job.ts";
import type { UserErrorPolicy } from "../operator-context.ts";
import type { StateBackend } from "../state/backend.ts";
import { declareTime, Stream } from "../stream.ts";

/**
 * Options of a TestDriver.
 *
 * @example
 * ```ts
 * import { TestDriver, type TestDriverOptions } from "gress/testing";
 *
 * // Fail the test on the first throwing user function instead of routing the record to dead letters.
 * const options: TestDriverOptions = { onUserError: "fail" };
 * const driver = new TestDriver<number, number>((s) => s.map((x) => x * 2), options);
 * ```
 */
export interface TestDriverOptions {
  /** Initial processing time. Default 0. */
  readonly startTime?: number;
  /** State backend. Default: memory. */
  readonly state?: StateBackend;
  readonly onUserError?: UserErrorPolicy;
  readonly name?: string;
}

/** The job of a driver: named "test" unless given, on the driver's virtual clock. */
function driverJob(clock: VirtualClock, options: TestDriverOptions): Job {
  return new Job({
    name: options.name ?? "test",
    clock,
    ...(options.state ? { state: options.state } : {}),
    ...(options.onUserError ? { onUserError: options.onUserError } : {}),
  });
}

/** What every driver does with its pipeline's output: collects it, to be read (and removed) by the test. */
abstract class OutputCollector<O> {
  readonly clock: VirtualClock;
  readonly job: Job;
  readonly #output: StreamRecord<O>[] = [];
  readonly #side: SideRecord[] = [];
  readonly #watermarks: number[] = [];
  #subscription: Subscription | undefined;
  #error: unknown;
  #completed = false;

  constructor(options: TestDriverOptions) {
    this.clock = new VirtualClock(options.startTime ?? 0);
    this.job = driverJob(this.clock, options);
  }

  /** Subscribes the pipeline's output. */
  protected collect(output: Stream<O>): void {
    this.#subscription = output.elements.subscribe({
      next: (e) => {
        if (e.kind === "record") this.#output.push(e);
        else if (e.kind === "side") this.#side.push(e);
        else if (e.kind === "watermark") this.#watermarks.push(e.timestamp);
      },
      error: (err: unknown) => {
        this.#error = err;
      },
      complete: () => {
        this.#completed = true;
      },
    });
  }

  /** Pushes `element` into `input`, rethrowing a failure of the pipeline. */
  protected push<I>(input: Subject<Element<I>>, element: Element<I>): void {
    this.throwIfFailed();
    input.next(element);
    this.throwIfFailed();
  }

  /** Ends `input`: a final watermark closes every event-time window of it, then end-of-stream. */
  protected end<I>(input: Subject<Element<I>>): void {
    input.next(watermark(Number.POSITIVE_INFINITY));
    input.next(END);
    input.complete();
    this.throwIfFailed();
  }

  /** Moves processing time forward by `ms`, firing processing-time timers on the way. */
  advanceProcessingTime(ms: number): this {
    this.clock.advance(ms);
    this.throwIfFailed();
    return this;
  }

  /** Returns and removes the values emitted so far. */
  readOutput(): O[] {
    return this.readOutputRecords().map((r) => r.value);
  }

  /**
   * Returns and removes the records (with timestamps and keys) emitted so far, as plain objects with just the
   * record fields, ready for deep comparison. (Inside a job, every element also carries the other kinds'
   * fields, unset; see element.ts.)
   */
  readOutputRecords(): StreamRecord<O>[] {
    return this.#output.splice(0).map((r) => ({ kind: "record", value: r.value, timestamp: r.timestamp, key: r.key, split: r.split }));
  }

  /** Returns and removes the values routed to side output `tag`. */
  readSideOutput<S>(tag: OutputTag<S>): S[] {
    return this.readSideRecords(tag).map((r) => r.value as S);
  }

  /** Returns and removes the side records of `tag`, with the reason each was routed there. */
  readSideRecords(tag: OutputTag<unknown>): SideRecord[] {
    const taken: SideRecord[] = [];
    for (let i = 0; i < this.#side.length; ) {
      if (this.#side[i]!.tag === tag.id) taken.push(...this.#side.splice(i, 1));
      else i++;
    }
    return taken.map((r) => ({ kind: "side", tag: r.tag, value: r.value, timestamp: r.timestamp, reason: r.reason }));
  }

  /** Watermarks that reached the output, in order. */
  readWatermarks(): number[] {
    return this.#watermarks.splice(0);
  }

  /** True once the output completed. */
  get completed(): boolean {
    return this.#completed;
  }

  /** Unsubscribes the pipeline. */
  close(): void {
    this.#subscription?.unsubscribe();
  }

  protected throwIfFailed(): void {
    if (this.#error !== undefined) throw this.#error;
  }
}

/** A driver's input: records and watermarks the test pushes, with event time declared (the test moves it). */
function driverInput<I>(job: Job, input: Subject<Element<I>>): Stream<I> {
  return declareTime(new Stream<I>(job, input.asObservable()), "event");
}

/**
 * Drives a pipeline `(input) => output` on virtual time.
 *
 * @example
 * ```ts
 * import { tumbling, type WindowResult } from "gress";
 * import { TestDriver } from "gress/testing";
 *
 * const driver = new TestDriver<{ user: string }, WindowResult<string, number>>((clicks) =>
 *   clicks.keyBy((c) => c.user).window(tumbling(10_000)).count(),
 * );
 * driver.pipeInput({ user: "ann" }, 1_000).pipeInput({ user: "ann" }, 4_000).advanceWatermark(9_999);
 * console.log(driver.readOutput()); // [{ key: "ann", start: 0, end: 10000, value: 2, timing: "on-time" }]
 * ```
 */
export class TestDriver<I, O> extends OutputCollector<O> {
  readonly #input = new Subject<Element<I>>();

  constructor(pipeline: (input: Stream<I>) => Stream<O>, options: TestDriverOptions = {}) {
    super(options);
    // The test gives every record its event time and moves the watermark itself.
    this.collect(pipeline(driverInput(this.job, this.#input)));
  }

  /** Pushes a record with event time `timestamp` (and optionally a key and split). */
  pipeInput(value: I, timestamp: number, options: { key?: Key; split?: string } = {}): this {
    this.push(this.#input, record(value, timestamp, options.key, options.split));
    return this;
  }

  /** Pushes many values, each with its timestamp. */
  pipeInputs(values: Iterable<readonly [I, number]>): this {
    for (const [v, ts] of values) this.pipeInput(v, ts);
    return this;
  }

  /** Announces source splits, as a partitioned source does before their first records. */
  announceSplits(splits: readonly string[]): this {
    this.push(this.#input, splitsAnnouncement(splits));
    return this;
  }

  /** Moves the input watermark to `timestamp`: event-time timers and windows up to it fire. */
  advanceWatermark(timestamp: number): this {
    this.push(this.#input, watermark(timestamp));
    return this;
  }

  /** Ends the input: a final watermark closes every event-time window, then end-of-stream. */
  endInput(): this {
    this.end(this.#input);
    return this;
  }
}

/**
 * Drives a pipeline with several named inputs, each with its own records and watermark, on virtual time: for
 * connected streams, broadcast state, joins and unions. A two-input operator's watermark is the minimum of its
 * inputs', so a test moves each input's watermark on its own (`advanceWatermark("tx", t)`), as each source
 * would. The output is read as with {@link TestDriver}.
 *
 * @example
 * ```ts
 * import { broadcastState } from "gress";
 * import { MultiInputTestDriver } from "gress/testing";
 *
 * type Tx = { card: string; amount: number };
 * const limit = broadcastState<string, number>("limit");
 * const driver = new MultiInputTestDriver<{ tx: Tx; limits: number }, string>(["tx", "limits"], (d) =>
 *   d.input("tx").keyBy((t) => t.card).connect(d.input("limits").broadcast(limit)).process<string>({
 *     processElement(t, ctx) {
 *       if (t.amount > (ctx.getBroadcastState(limit).get("max") ?? Number.POSITIVE_INFINITY)) ctx.emit(`${t.card} over`);
 *     },
 *     processBroadcastElement(max, ctx) {
 *       ctx.getBroadcastState(limit).put("max", max);
 *     },
 *   }),
 * );
 * driver.pipeInput("limits", 100, 0).pipeInput("tx", { card: "c1", amount: 250 }, 5).advanceWatermark("tx", 10);
 * console.log(driver.readOutput()); // ["c1 over"]
 * ```
 */
export class MultiInputTestDriver<I extends Record<string, unknown>, O> extends OutputCollector<O> {
  readonly #inputs = new Map<string, Subject<Element<unknown>>>();
  readonly #ended = new Set<string>();
  #streams = new Map<string, Stream<unknown>>();

  constructor(names: readonly (keyof I & string)[], pipeline: (driver: MultiInputTestDriver<I, O>) => Stream<O>, options: TestDriverOptions = {}) {
    super(options);
    const streams = new Map<string, Stream<unknown>>();
    for (const name of names) {
      if (this.#inputs.has(name)) throw new TypeError(`input "${name}" is named twice`);
      const subject = new Subject<Element<unknown>>();
      this.#inputs.set(name, subject);
      streams.set(name, driverInput(this.job, subject));
    }
    this.#streams = streams;
    this.collect(pipeline(this));
  }

  /** The stream of input `name`, for the pipeline to read. */
  input<Name extends keyof I & string>(name: Name): Stream<I[Name]> {
    const stream = this.#streams.get(name);
    if (stream === undefined) throw new TypeError(`no input "${name}": the inputs are ${[...this.#streams.keys()].map((n) => `"${n}"`).join(", ")}`);
    return stream as Stream<I[Name]>;
  }

  /** Pushes a record with event time `timestamp` into input `name` (and optionally a key and split). */
  pipeInput<Name extends keyof I & string>(name: Name, value: I[Name], timestamp: number, options: { key?: Key; split?: string } = {}): this {
    this.push(this.#input(name), record(value, timestamp, options.key, options.split));
    return this;
  }

  /** Moves the watermark of input `name` to `timestamp`. */
  advanceWatermark(name: keyof I & string, timestamp: number): this {
    this.push(this.#input(name), watermark(timestamp));
    return this;
  }

  /** Ends input `name` (a final watermark, then end-of-stream), or every input not ended yet. */
  endInput(name?: keyof I & string): this {
    for (const n of name === undefined ? [...this.#inputs.keys()] : [name]) {
      const subject = this.#input(n);
      if (this.#ended.has(n)) continue;
      this.#ended.add(n);
      this.end(subject);
    }
    return this;
  }

  #input(name: string): Subject<Element<unknown>> {
    const subject = this.#inputs.get(name);
    if (subject === undefined) throw new TypeError(`no input "${name}": the inputs are ${[...this.#inputs.keys()].map((n) => `"${n}"`).join(", ")}`);
    return subject;
  }
}
