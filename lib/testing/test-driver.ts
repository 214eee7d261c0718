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
export class TestDriver<I, O> {
  readonly clock: VirtualClock;
  readonly job: Job;
  readonly #input = new Subject<Element<I>>();
  readonly #output: StreamRecord<O>[] = [];
  readonly #side: SideRecord[] = [];
  readonly #watermarks: number[] = [];
  readonly #subscription: Subscription;
  #error: unknown;
  #completed = false;

  constructor(pipeline: (input: Stream<I>) => Stream<O>, options: TestDriverOptions = {}) {
    this.clock = new VirtualClock(options.startTime ?? 0);
    this.job = new Job({
      name: options.name ?? "test",
      clock: this.clock,
      ...(options.state ? { state: options.state } : {}),
      ...(options.onUserError ? { onUserError: options.onUserError } : {}),
    });
    // The test gives every record its event time and moves the watermark itself.
    const output = pipeline(declareTime(new Stream<I>(this.job, this.#input.asObservable()), "event"));
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

  /** Pushes a record with event time `timestamp` (and optionally a key and split). */
  pipeInput(value: I, timestamp: number, options: { key?: Key; split?: string } = {}): this {
    this.#throwIfFailed();
    this.#input.next(record(value, timestamp, options.key, options.split));
    this.#throwIfFailed();
    return this;
  }

  /** Pushes many values, each with its timestamp. */
  pipeInputs(values: Iterable<readonly [I, number]>): this {
    for (const [v, ts] of values) this.pipeInput(v, ts);
    return this;
  }

  /** Announces source splits, as a partitioned source does before their first records. */
  announceSplits(splits: readonly string[]): this {
    this.#throwIfFailed();
    this.#input.next(splitsAnnouncement(splits));
    this.#throwIfFailed();
    return this;
  }

  /** Moves the input watermark to `timestamp`: event-time timers and windows up to it fire. */
  advanceWatermark(timestamp: number): this {
    this.#throwIfFailed();
    this.#input.next(watermark(timestamp));
    this.#throwIfFailed();
    return this;
  }

  /** Moves processing time forward by `ms`, firing processing-time timers on the way. */
  advanceProcessingTime(ms: number): this {
    this.clock.advance(ms);
    this.#throwIfFailed();
    return this;
  }

  /** Ends the input: a final watermark closes every event-time window, then end-of-stream. */
  endInput(): this {
    this.#input.next(watermark(Number.POSITIVE_INFINITY));
    this.#input.next(END);
    this.#input.complete();
    this.#throwIfFailed();
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
    this.#subscription.unsubscribe();
  }

  #throwIfFailed(): void {
    if (this.#error !== undefined) throw this.#error;
  }
}
