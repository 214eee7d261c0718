/**
 * The elements that flow through a stream: records, plus the in-band control elements that travel in order
 * with them (watermarks, checkpoint barriers, end-of-stream) and side-output records (late data, dead
 * letters). Keeping control elements in band, as Flink does, makes results deterministic: a window fires
 * exactly between the same two records on every run.
 *
 * Users never see these envelopes unless they ask for them: `map`, `filter` and friends take plain values.
 * @module
 */

/**
 * Key of a keyed stream. Keys are stored in state, so they must be serialisable scalars.
 *
 * @example
 * ```ts
 * import { fromIterable, type Key } from "gress";
 *
 * // Keys are stored in state, so they are strings or finite numbers; build composite keys as strings.
 * const keyOf = (o: { shop: string; day: number }): Key => `${o.shop}/${o.day}`;
 * const perShopDay = fromIterable([{ shop: "s1", day: 3 }]).keyBy(keyOf);
 * ```
 */
export type Key = string | number;

/**
 * A data record: the user's value, its event time in epoch ms, and the key once the stream is keyed.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 *
 * // The envelopes: value, event time, key and split of each record.
 * fromIterable(["a"], { timestamp: () => 42 }).records().subscribe((r) => console.log(r.value, r.timestamp, r.key, r.split));
 * ```
 */
export interface StreamRecord<T> {
  readonly kind: "record";
  readonly value: T;
  readonly timestamp: number;
  readonly key: Key | undefined;
  /** The source split (Kafka partition, NATS stream, ...) the record came from, for per-split watermarks. */
  readonly split: string | undefined;
}

/**
 * Event time has reached `timestamp`: no more records with timestamp ≤ it are expected.
 *
 * @example
 * ```ts
 * import { type Element, fromIterable, type Watermark } from "gress";
 *
 * // The watermarks of a stream, as its elements.
 * fromIterable([1, 2], { timestamp: (x) => x * 1_000 }).elements.subscribe((e: Element<number>) => {
 *   if (e.kind === "watermark") console.log("event time now", (e satisfies Watermark).timestamp);
 * });
 * ```
 */
export interface Watermark {
  readonly kind: "watermark";
  readonly timestamp: number;
}

/**
 * A checkpoint barrier: everything before it belongs to checkpoint `checkpointId`.
 *
 * @example
 * ```ts
 * import type { Barrier, Element } from "gress";
 *
 * // A checkpoint barrier: everything before it belongs to checkpoint `checkpointId`.
 * const checkpointOf = (e: Element<unknown>): number | undefined => (e.kind === "barrier" ? (e satisfies Barrier).checkpointId : undefined);
 * ```
 */
export interface Barrier {
  readonly kind: "barrier";
  readonly checkpointId: number;
}

/**
 * The input is exhausted. Followed by nothing; operators flush and complete.
 *
 * @example
 * ```ts
 * import type { Element, EndOfStream } from "gress";
 *
 * const ended = (e: Element<unknown>): e is EndOfStream => e.kind === "end";
 * ```
 */
export interface EndOfStream {
  readonly kind: "end";
}

/**
 * A source announces the splits it reads (the partitions it was assigned) before their first records, so that
 * per-split watermarking holds the watermark back for a split that has not delivered yet, as Flink does.
 *
 * @example
 * ```ts
 * import type { Element, SplitsAnnouncement } from "gress";
 *
 * // A source announces the splits (partitions) it reads before their first records.
 * const splitsOf = (e: Element<unknown>): readonly string[] => (e.kind === "splits" ? (e satisfies SplitsAnnouncement).splits : []);
 * ```
 */
export interface SplitsAnnouncement {
  readonly kind: "splits";
  readonly splits: readonly string[];
}

/**
 * A record routed to a named side output (late data, dead letters), with the reason it went there.
 *
 * @example
 * ```ts
 * import { DEAD_LETTERS, fromIterable, type SideRecord } from "gress";
 *
 * const parsed = fromIterable(["1", "x"]).map((s) => { if (Number.isNaN(Number(s))) throw new Error("NaN"); return Number(s); });
 * // A side record keeps the value, its time and the reason it was routed there.
 * parsed.sideRecords(DEAD_LETTERS).subscribe((r: SideRecord) => console.log(r.tag, r.value, r.reason));
 * ```
 */
export interface SideRecord {
  readonly kind: "side";
  readonly tag: string;
  readonly value: unknown;
  readonly timestamp: number;
  readonly reason: string;
}

/**
 * Anything that flows through a stream of `T`.
 *
 * @example
 * ```ts
 * import { type Element, fromIterable } from "gress";
 * import { tap } from "rxjs";
 *
 * // Everything that travels in a stream, in order: records and the control elements between them.
 * const logged = fromIterable([1, 2]).transform(tap((e: Element<number>) => console.log(e.kind)));
 * ```
 */
export type Element<T> = StreamRecord<T> | Watermark | Barrier | EndOfStream | SideRecord | SplitsAnnouncement;

/**
 * A non-record element, passed through by stateless operators unchanged.
 *
 * @example
 * ```ts
 * import type { ControlElement, Element } from "gress";
 *
 * // Everything but records: stateless operators pass these on unchanged.
 * const isControl = <T>(e: Element<T>): e is ControlElement => e.kind !== "record";
 * ```
 */
export type ControlElement = Watermark | Barrier | EndOfStream | SideRecord | SplitsAnnouncement;

/*
 * Every operator reads `kind` and then the fields of every element it gets, so the hidden classes (V8
 * "maps") that elements come in matter. With records in one hidden class and control elements in others, a
 * process that had run a few different pipelines ran records through `withTimestamps` and `filter` ten times
 * slower (about 200–600 ns instead of 25–35 ns per record); with one hidden class for every element, the same
 * process kept normal speed. We did not pin down the mechanism inside V8, so we keep the fix simple and
 * total: every element, whatever its kind, has the same fields in the same order, the fields of the other
 * kinds being undefined, and is built by one of the functions below. The types still show each kind only its
 * own fields.
 */

/** The one shape of every element. */
interface Shape {
  readonly kind: Element<unknown>["kind"];
  readonly value: unknown;
  readonly timestamp: number | undefined;
  readonly key: Key | undefined;
  readonly split: string | undefined;
  readonly tag: string | undefined;
  readonly reason: string | undefined;
  readonly checkpointId: number | undefined;
  readonly splits: readonly string[] | undefined;
}

function element(
  kind: Shape["kind"],
  value: unknown,
  timestamp: number | undefined,
  key: Key | undefined,
  split: string | undefined,
  tag: string | undefined,
  reason: string | undefined,
  checkpointId: number | undefined,
  splits: readonly string[] | undefined,
): Shape {
  return { kind, value, timestamp, key, split, tag, reason, checkpointId, splits };
}

/**
 * Builds a record. Build records only with this function, so that they keep the one element shape.
 *
 * @example
 * ```ts
 * import { type Element, fromIterable, record } from "gress";
 * import { map } from "rxjs";
 *
 * // Build records with record() (one shape for every element); pass the other elements on unchanged.
 * const upper = fromIterable(["a", "b"]).transform(
 *   map((e: Element<string>): Element<string> => (e.kind === "record" ? record(e.value.toUpperCase(), e.timestamp, e.key) : e)),
 * );
 * ```
 */
export function record<T>(value: T, timestamp: number, key?: Key, split?: string): StreamRecord<T> {
  return element("record", value, timestamp, key, split, undefined, undefined, undefined, undefined) as StreamRecord<T>;
}

/**
 * Builds a watermark.
 *
 * @example
 * ```ts
 * import { type Element, fromIterable, record, watermark } from "gress";
 * import { concatMap, from } from "rxjs";
 *
 * // An operator that closes event time after each record: it emits the record and a watermark just before it.
 * const eager = fromIterable([{ at: 1_000 }]).transform(
 *   concatMap((e: Element<{ at: number }>) => (e.kind === "record" ? from([record(e.value, e.value.at, e.key), watermark(e.value.at - 1)]) : from([e]))),
 * );
 * ```
 */
export function watermark(timestamp: number): Watermark {
  return element("watermark", undefined, timestamp, undefined, undefined, undefined, undefined, undefined, undefined) as Watermark;
}

/**
 * Builds a checkpoint barrier.
 *
 * @example
 * ```ts
 * import { barrier } from "gress";
 *
 * // Built by the job when a checkpoint starts; tests of custom operators can feed one in.
 * const b = barrier(7);
 * console.log(b.kind, b.checkpointId); // barrier 7
 * ```
 */
export function barrier(checkpointId: number): Barrier {
  return element("barrier", undefined, undefined, undefined, undefined, undefined, undefined, checkpointId, undefined) as Barrier;
}

/**
 * Builds a split announcement.
 *
 * @example
 * ```ts
 * import { splitsAnnouncement } from "gress";
 *
 * const a = splitsAnnouncement(["orders-0", "orders-1"]);
 * console.log(a.kind, a.splits); // splits ["orders-0", "orders-1"]
 * ```
 */
export function splitsAnnouncement(splits: readonly string[]): SplitsAnnouncement {
  return element("splits", undefined, undefined, undefined, undefined, undefined, undefined, undefined, [...splits]) as SplitsAnnouncement;
}

/**
 * Builds a side-output record.
 *
 * @example
 * ```ts
 * import { DEAD_LETTERS, type Element, fromIterable, record, sideRecord } from "gress";
 * import { map } from "rxjs";
 *
 * // A custom operator that routes values it cannot handle to dead letters, with the reason.
 * const positive = fromIterable([3, -1]).transform(
 *   map((e: Element<number>): Element<number> =>
 *     e.kind === "record" && e.value < 0 ? sideRecord(DEAD_LETTERS.id, e.value, e.timestamp, "negative") : e.kind === "record" ? record(e.value, e.timestamp, e.key) : e,
 *   ),
 * );
 * ```
 */
export function sideRecord(tag: string, value: unknown, timestamp: number, reason: string): SideRecord {
  return element("side", value, timestamp, undefined, undefined, tag, reason, undefined, undefined) as SideRecord;
}

/**
 * The single end-of-stream element.
 *
 * @example
 * ```ts
 * import { END, type Element } from "gress";
 *
 * // The last element of a bounded stream; a custom operator flushes what it holds when it sees it.
 * const isEnd = (e: Element<unknown>): boolean => e === END || e.kind === "end";
 * ```
 */
export const END: EndOfStream = element("end", undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined) as EndOfStream;

/**
 * The watermark that closes all of event time, emitted at the end of a bounded input.
 *
 * @example
 * ```ts
 * import { MAX_WATERMARK } from "gress";
 * import { TestDriver } from "gress/testing";
 *
 * // The end of event time: every window and event-time timer fires.
 * const driver = new TestDriver<number, number>((s) => s);
 * driver.advanceWatermark(MAX_WATERMARK);
 * ```
 */
export const MAX_WATERMARK: number = Number.POSITIVE_INFINITY;

/**
 * The watermark before any record was seen.
 *
 * @example
 * ```ts
 * import { MIN_WATERMARK } from "gress";
 * import { TestDriver } from "gress/testing";
 *
 * // Event time before any watermark: -Infinity.
 * const driver = new TestDriver<number, number>((s) => s);
 * console.log(driver.readWatermarks().length === 0, MIN_WATERMARK); // true -Infinity
 * ```
 */
export const MIN_WATERMARK: number = Number.NEGATIVE_INFINITY;

/**
 * A typed handle for a side output. The type parameter is the type of the values routed there.
 *
 * @example
 * ```ts
 * import { type OutputTag, outputTag } from "gress";
 *
 * type Suspicious = { user: string; reason: string };
 * // A typed side output: values sent to it with ctx.output(tag, value) come out of stream.sideOutput(tag).
 * const SUSPICIOUS: OutputTag<Suspicious> = outputTag("suspicious");
 * ```
 */
export interface OutputTag<T> {
  readonly id: string;
  /** Phantom field that carries the value type; never set. */
  readonly __type?: T;
}

/**
 * Creates a side-output tag.
 *
 * @example
 * ```ts
 * import { fromIterable, outputTag, sinkFn } from "gress";
 *
 * const SMALL = outputTag<number>("small");
 * const orders = fromIterable([5, 500]).keyBy(() => "all").process<number>({
 *   processElement(total, ctx) {
 *     if (total < 10) ctx.output(SMALL, total, "below 10");
 *     else ctx.emit(total);
 *   },
 * });
 * orders.sideOutput(SMALL).sinkTo(sinkFn("small", (n) => console.log("small order", n)));
 * orders.sinkTo(sinkFn("orders", (n) => console.log("order", n)));
 * await orders.job.run(); // small order 5 · order 500
 * ```
 */
export function outputTag<T>(id: string): OutputTag<T> {
  return { id };
}

/**
 * The tag to which windows route records that arrive after their allowed lateness.
 *
 * @example
 * ```ts
 * import { boundedOutOfOrderness, fromIterable, LATE_DATA, sinkFn, tumbling } from "gress";
 *
 * const counts = fromIterable([{ at: 0 }, { at: 120_000 }, { at: 1_000 }])
 *   .withTimestamps(boundedOutOfOrderness(0, { timestamp: (e) => e.at, everyRecords: 1 })) // a watermark after each record
 *   .keyBy(() => "all")
 *   .window(tumbling(60_000))
 *   .count();
 * // The record at 1 000 arrives after its window closed: it goes to the late side output.
 * counts.sideOutput(LATE_DATA).sinkTo(sinkFn("late", (e) => console.warn("late", e)));
 * counts.sinkTo(sinkFn("counts", (w) => console.log(w.start, w.value)));
 * await counts.job.run(); // 0 1 · late { at: 1000 } · 120000 1
 * ```
 */
export const LATE_DATA: OutputTag<unknown> = outputTag("late");

/**
 * The tag to which sources and operators route bad input, with the reason.
 *
 * @example
 * ```ts
 * import { DEAD_LETTERS, fromIterable, sinkFn } from "gress";
 *
 * const parsed = fromIterable(['{"ok":1}', "not json"]).map((line) => JSON.parse(line) as { ok: number });
 * // The line that made JSON.parse throw, with the reason; the job goes on.
 * parsed.sideRecords(DEAD_LETTERS).subscribe((r) => console.warn(r.reason, r.value));
 * ```
 */
export const DEAD_LETTERS: OutputTag<unknown> = outputTag("dead-letter");
