/**
 * The fluent stream API. A {@link Stream} wraps an RxJS Observable of {@link Element}s; each method appends
 * one operator and returns a new stream. Users work with plain values — envelopes, watermarks and barriers
 * stay inside — and `toObservable()` hands plain values back to RxJS.
 *
 * A stream consumed by more than one downstream (two sinks, a side output and the main output) is shared,
 * so the pipeline upstream of it runs once, as a Flink job graph would.
 *
 * @example
 * ```ts
 * job.source(rides)
 *   .withTimestamps(boundedOutOfOrderness(5_000, { timestamp: (r) => r.at }))
 *   .filter((r) => r.kind === "request")
 *   .keyBy((r) => r.area)
 *   .window(tumbling(5 * 60_000))
 *   .count()
 *   .sinkTo(sinkFn("print", console.log));
 * ```
 * @module
 */
import { EMPTY, Observable, filter as rxFilter, map as rxMap, share, startWith } from "rxjs";
import { aggregate as customAggregate, avg, type Aggregator, collectAll, count, max, min, reduce, sum } from "./aggregate.ts";
import type { Element, Key, OutputTag, SideRecord, StreamRecord } from "./element.ts";
import { MAX_WATERMARK, record, watermark } from "./element.ts";
import type { JobContext, UserErrorPolicy } from "./operator-context.ts";
import { type AsyncCallContext, type AsyncOptions, asyncOperator, type KeyedAsyncOptions } from "./operators/async.ts";
import {
  BROADCAST_KEY,
  type BroadcastStateDescriptor,
  type KeyedBroadcastProcessFunction,
  keyedBroadcastProcess,
  markBroadcast,
} from "./operators/broadcast.ts";
import { type CoProcessFunction, type KeyedCoProcessFunction, keyedCoProcess, type Tagged, UNKEYED, unkeyedCoProcess } from "./operators/connect.ts";
import { filterElements } from "./operators/filter.ts";
import { flatMapElements } from "./operators/flat-map.ts";
import { isKeyedOperator, type KeyOf, keyByElements, SHUFFLE } from "./operators/key-by.ts";
import { mapElements } from "./operators/map.ts";
import { chain, isChainable, type OperatorInit } from "./operate.ts";
import { type ProcessFunction, processElements } from "./operators/process.ts";
import { sinkElements } from "./operators/sink.ts";
import { tapElements } from "./operators/tap.ts";
import { unionElements } from "./operators/union.ts";
import { type WindowOptions, type WindowResult, windowElements } from "./operators/window.ts";
import { withTimestampsElements } from "./operators/with-timestamps.ts";
import type { Sink } from "./sink.ts";
import { monotonic, validateStrategy, type WatermarkStrategy } from "./watermarks.ts";
import { ConfigError } from "./errors.ts";
import type { WindowAssigner } from "./windows/assigners.ts";

/**
 * Where the timestamps of a stream's records come from, as far as the pipeline says:
 * - `event`: the data's own time, with watermarks (`withTimestamps`, a source's `watermarks`), or explicit
 *   timestamps of a source (its `timestamp` option; the end of the input is then its one watermark), or a test
 *   that moves the watermark itself;
 * - `arrival`: a source without either, whose records carry the time they arrived (or what the source stamped
 *   them with) and get no watermark before the end of the input;
 * - `unknown`: a stream made by hand on raw elements, which may carry anything.
 * An event-time window on an `arrival` stream is refused (see WindowedStream), as Flink refuses an event-time
 * window without a watermark strategy.
 */
export type TimeDomain = "event" | "arrival" | "unknown";

/** Sets where a stream's timestamps come from (for sources and test drivers); returns the stream. */
export let declareTime: <S extends Stream<unknown>>(stream: S, time: TimeDomain) => S;
/** Where a stream's timestamps come from. */
export let timeOf: (stream: Stream<unknown>) => TimeDomain;

/** Combines the time domains of several inputs merged into one stream. */
export function mergedTime(times: readonly TimeDomain[]): TimeDomain {
  if (times.includes("arrival")) return "arrival";
  return times.every((t) => t === "event") ? "event" : "unknown";
}

/** A stream as one source and the operators chained onto it, first to last. */
interface Plan {
  readonly source: Observable<unknown>;
  readonly inits: readonly OperatorInit[];
}

/** The elements of a plan: its source, through its operators as one chain. */
function run<T>(plan: Plan): Observable<Element<T>> {
  return plan.inits.length === 0 ? (plan.source as Observable<Element<T>>) : chain(plan.source, plan.inits);
}

/**
 * Options of stateful operators.
 *
 * @example
 * ```ts
 * import { fromIterable, type OperatorOptions, tumbling } from "gress";
 *
 * // A uid keeps the operator's state across pipeline changes (as Flink's uid), e.g. when restoring a savepoint.
 * const options: OperatorOptions = { uid: "clicks-per-minute" };
 * const counts = fromIterable(["a", "b", "a"], { timestamp: () => 0 }).keyBy((x) => x).window(tumbling(60_000)).count(options);
 * ```
 */
export interface OperatorOptions {
  /** Stable id for the operator's state across pipeline changes (like Flink's uid). */
  readonly uid?: string;
}

/** A job that repartitions keyBys itself (a scale-out task, lib/scaleout/task.ts, under `SHUFFLE`). */
interface ShufflingJob {
  readonly [SHUFFLE]?: <T, K extends Key>(stream: Stream<T>, selector: (value: T) => K) => KeyedStream<T, K>;
}

/**
 * A stream of values of type T.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 *
 * const words = fromIterable(["a", "bb", "ccc"]);
 * const lengths = await words.map((w) => w.length).filter((n) => n > 1).collect(); // [2, 3]
 * ```
 */
export class Stream<T> {
  readonly job: JobContext;
  readonly #source: Observable<Element<T>>;
  // A stream made by a chainable operator (see operate.ts) is its parent plus that operator's init; the
  // operators run as one chain when the stream is subscribed, unless the parent has several consumers.
  #parent: Stream<unknown> | undefined;
  #init: OperatorInit | undefined;
  // Set on a stream made by keyBy: the key selection, for a keyed operator after it to apply itself. (Typed
  // for no element type, so that a Stream<T> stays assignable to a Stream<unknown>.)
  #keys: KeyOf<never> | undefined;
  // Set on a stream made by a keyed operator right after a keyBy: its init when it applies the key selection.
  #keyedInit: OperatorInit | undefined;
  #consumers = 0;
  #shared: Observable<Element<T>> | undefined;
  #time: TimeDomain = "unknown";

  static {
    declareTime = (stream, time) => {
      stream.#time = time;
      return stream;
    };
    timeOf = (stream) => stream.#time;
  }

  constructor(job: JobContext, elements: Observable<Element<T>>) {
    this.job = job;
    this.#source = elements;
  }

  /** The element stream. Shared once a second consumer exists, so upstream runs once. */
  get elements(): Observable<Element<T>> {
    return run<T>(this.#output());
  }

  /** This stream as one source and the operators chained onto it. */
  #plan(): Plan {
    const parent = this.#parent;
    if (parent === undefined || this.#init === undefined) return { source: this.#source, inits: [] };
    // A keyBy that feeds only this keyed operator is fused into it: the operator applies the key selection,
    // and records are not copied just to carry their key. Decided here, when the job runs, because a second
    // consumer of the keyBy may be added after this operator was.
    if (this.#keyedInit !== undefined && parent.#consumers === 1 && parent.#parent !== undefined) {
      const up = parent.#parent.#output();
      return { source: up.source, inits: [...up.inits, this.#keyedInit] };
    }
    const up = parent.#output();
    return { source: up.source, inits: [...up.inits, this.#init] };
  }

  /** What a consumer of this stream extends: its own plan, or the shared output when it has several consumers. */
  #output(): Plan {
    if (this.#consumers <= 1) return this.#plan();
    if (this.#shared === undefined) {
      this.#shared = run<T>(this.#plan()).pipe(share());
    }
    return { source: this.#shared, inits: [] };
  }

  /** Declares one more consumer and returns the elements it should subscribe to (lazily). */
  #consume(): Observable<Element<T>> {
    this.#consumers++;
    return new Observable<Element<T>>((subscriber) => this.elements.subscribe(subscriber));
  }

  /**
   * Applies `op` and wraps the result with `make`. An operator built with `operate()` joins this stream's
   * chain; any other RxJS operator is subscribed on its own.
   */
  #derive<O, S extends Stream<O>>(
    op: (source: Observable<Element<T>>) => Observable<Element<O>>,
    make: (job: JobContext, elements: Observable<Element<O>>) => S,
  ): S {
    if (!isChainable(op)) return declareTime(make(this.job, op(this.#consume())), this.#time);
    this.#consumers++;
    const child = make(this.job, EMPTY);
    child.#time = this.#time;
    child.#parent = this as Stream<unknown>;
    child.#init = op.init;
    if (this.#keys !== undefined && isKeyedOperator(op)) child.#keyedInit = op.keyedBy(this.#keys as KeyOf<T>);
    return child;
  }

  #then<O>(op: (source: Observable<Element<T>>) => Observable<Element<O>>): Stream<O> {
    return this.#derive(op, (job, elements) => new Stream<O>(job, elements));
  }

  /** Transforms each value. */
  map<O>(project: (value: T) => O): Stream<O> {
    return this.#then(mapElements(this.job.operator("map"), project));
  }

  /** Keeps the values that satisfy `predicate`. */
  filter<S extends T>(predicate: (value: T) => value is S): Stream<S>;
  filter(predicate: (value: T) => boolean): Stream<T>;
  filter(predicate: (value: T) => boolean): Stream<T> {
    return this.#then(filterElements(this.job.operator("filter"), predicate));
  }

  /** Replaces each value by zero or more values. */
  flatMap<O>(project: (value: T) => Iterable<O>): Stream<O> {
    return this.#then(flatMapElements(this.job.operator("flatMap"), project));
  }

  /**
   * Calls `fn` per value and emits what its promise resolves to: at most `concurrency` calls in flight, results
   * in input order or as they complete (never across a watermark), timeouts, retries, and exactly-once results
   * across checkpoints (see AsyncOptions and lib/operators/async.ts).
   */
  mapAsync<O>(fn: (value: T, call: AsyncCallContext) => PromiseLike<O> | O, options: AsyncOptions<T> = {}): Stream<O> {
    return this.#then(asyncOperator<T, O>(this.job, fn, options, "one", this instanceof KeyedStream));
  }

  /** As {@link mapAsync}, for zero or more results per value: `fn` resolves to an iterable of them. */
  flatMapAsync<O>(fn: (value: T, call: AsyncCallContext) => PromiseLike<Iterable<O>> | Iterable<O>, options: AsyncOptions<T> = {}): Stream<O> {
    return this.#then(asyncOperator<T, O>(this.job, fn, options, "many", this instanceof KeyedStream));
  }

  /** Runs a side effect per value. */
  tap(effect: (value: T) => void): Stream<T> {
    return this.#then(tapElements(this.job.operator("tap"), effect));
  }

  /** Merges streams of the same type; the watermark is the minimum of the inputs'. */
  union<U extends T>(...others: Stream<U>[]): Stream<T> {
    const inputs: Observable<Element<T>>[] = [this.#consume(), ...others.map((o) => o.#consume())];
    const merged = new Stream<T>(this.job, unionElements(this.job.operator("union"), inputs));
    merged.#time = mergedTime([this.#time, ...others.map((o) => o.#time)]);
    return merged;
  }

  /**
   * Connects this stream with another of any type, for a co-process function that sees both (Flink's
   * `connect`). The watermark is the minimum of both inputs'. Connect two KeyedStreams (or call `keyBy` on the
   * result) for keyed state and timers shared by both inputs.
   */
  connect<B>(other: Stream<B>): ConnectedStreams<T, B> {
    return new ConnectedStreams<T, B>(this, other);
  }

  /**
   * Broadcasts this stream: connected to a keyed stream, every value reaches every instance of the operator,
   * which keeps the broadcast state named by `descriptors` (see lib/operators/broadcast.ts).
   */
  broadcast(...descriptors: BroadcastStateDescriptor<string | number, unknown>[]): BroadcastStream<T> {
    if (descriptors.length === 0) {
      throw new ConfigError("broadcast() needs at least one broadcast state descriptor (broadcastState(name))", [
        { path: ["broadcast", "descriptors"], code: "too_small", message: "at least one descriptor" },
      ]);
    }
    return markBroadcast(new BroadcastStream<T>(this, descriptors));
  }

  /** Assigns event time and watermarks. */
  withTimestamps(strategy: WatermarkStrategy<T>): Stream<T> {
    const timed = this.#then(withTimestampsElements(this.job.operator("watermarks"), validateStrategy(strategy, "withTimestamps")));
    timed.#time = "event";
    return timed;
  }

  /**
   * Partitions the stream by key, for keyed state, windows and patterns. In a scale-out job (`runScaledOut`)
   * the records go through a repartition topic to the task that owns their key, unless `copartitioned: true`
   * declares that the input is already partitioned by this key (the keyBy then stays local, with no topic).
   * In single-process mode the option changes nothing.
   */
  keyBy<K extends Key>(selector: (value: T) => K, options: { readonly copartitioned?: boolean } = {}): KeyedStream<T, K> {
    const shuffle = (this.job as ShufflingJob)[SHUFFLE];
    if (shuffle !== undefined && options.copartitioned !== true) return shuffle(this, selector);
    const op = keyByElements(this.job.operator("keyBy"), selector);
    const keyed = this.#derive(op, (job, elements) => new KeyedStream<T, K>(job, elements));
    keyed.#keys = op.keys;
    return keyed;
  }

  /** The values routed to side output `tag` anywhere upstream (late data, dead letters, user outputs). */
  sideOutput<S>(tag: OutputTag<S>): Stream<S> {
    return this.#then((source) =>
      source.pipe(
        rxFilter((e): e is SideRecord => e.kind === "side" && e.tag === tag.id),
        rxMap((e) => record(e.value as S, e.timestamp)),
      ),
    );
  }

  /** Side output with the full side records, including the reason each value was routed there. */
  sideRecords(tag: OutputTag<unknown>): Observable<SideRecord> {
    return this.#consume().pipe(rxFilter((e): e is SideRecord => e.kind === "side" && e.tag === tag.id));
  }

  /**
   * Escape hatch: applies an operator to the stream's *elements* (`Element<T>`: records `{ kind: "record",
   * value, timestamp, key }`, and the watermarks, barriers and side records between them, to be let through
   * in order), not to plain values: for those use map/filter/flatMap/mapAsync, or `toObservable()`. An
   * operator that emits something other than an element (say `bufferCount(10)`, which emits arrays) fails the
   * job with a ConfigError that says so.
   */
  transform<O>(operator: (elements: Observable<Element<T>>) => Observable<Element<O>>): Stream<O> {
    if (isChainable(operator)) return this.#then(operator);
    return this.#then((elements) => operator(elements).pipe(rxMap(checkElement<O>)));
  }

  /** Escape hatch: the records with timestamp and key. */
  records(): Observable<StreamRecord<T>> {
    return this.#consume().pipe(rxFilter((e): e is StreamRecord<T> => e.kind === "record"));
  }

  /** The plain values, as an RxJS Observable. Subscribing runs the pipeline. */
  toObservable(): Observable<T> {
    return this.records().pipe(rxMap((r) => r.value));
  }

  /** Subscribes now and resolves with every value once the input ends. For bounded inputs and tests. */
  collect(): Promise<T[]> {
    return new Promise<T[]>((resolve, reject) => {
      const out: T[] = [];
      this.toObservable().subscribe({ next: (v) => out.push(v), error: reject, complete: () => resolve(out) });
    });
  }

  /**
   * Writes the stream to a sink when the job runs. At most `maxInFlight` writes are pending at once. A record
   * the sink cannot take (it cannot serialise or map it) goes to dead letters, or fails the job with
   * `onRecordError: "fail"` (default: the job's `onUserError`). Returns the sink's output: those dead
   * letters, as `sinkTo(...).sideOutput(DEAD_LETTERS)`.
   */
  sinkTo(sink: Sink<T>, options: { maxInFlight?: number; onRecordError?: UserErrorPolicy } = {}): Stream<never> {
    const op = sinkElements(this.job, sink, options.maxInFlight ?? this.job.maxInFlight, options.onRecordError ?? this.job.onUserError);
    // The sink is the last operator of this stream's chain; the job's runner is one consumer of its output.
    const tail = this.#derive(op, (job, elements) => new Stream<never>(job, elements));
    tail.#consumers++;
    this.job.register(() => tail.elements);
    return tail;
  }
}

/**
 * A stream partitioned by key.
 *
 * @example
 * ```ts
 * import { fromIterable, tumbling } from "gress";
 *
 * const clicks = fromIterable([{ user: "ann" }, { user: "bob" }, { user: "ann" }], { timestamp: () => 0 });
 * const perUser = clicks.keyBy((c) => c.user); // a KeyedStream<{ user: string }, string>
 * const counts = await perUser.window(tumbling(60_000)).count().collect();
 * // [{ key: "ann", start: 0, end: 60000, value: 2, timing: "on-time" }, { key: "bob", ..., value: 1, ... }]
 * ```
 */
export class KeyedStream<T, K extends Key> extends Stream<T> {
  /** Groups the keyed stream into windows. */
  window(assigner: WindowAssigner<T>, options: WindowOptions<T> = {}): WindowedStream<T, K> {
    return new WindowedStream<T, K>(this, assigner, options);
  }

  /** As Stream.mapAsync; `ordered: "per-key"` keeps each key's results in input order. */
  override mapAsync<O>(fn: (value: T, call: AsyncCallContext) => PromiseLike<O> | O, options: KeyedAsyncOptions<T> = {}): Stream<O> {
    return super.mapAsync(fn, options as AsyncOptions<T>);
  }

  /** As Stream.flatMapAsync; `ordered: "per-key"` keeps each key's results in input order. */
  override flatMapAsync<O>(fn: (value: T, call: AsyncCallContext) => PromiseLike<Iterable<O>> | Iterable<O>, options: KeyedAsyncOptions<T> = {}): Stream<O> {
    return super.flatMapAsync(fn, options as AsyncOptions<T>);
  }

  /** Runs a keyed process function with state and timers. */
  process<O>(fn: ProcessFunction<T, K, O>, options: OperatorOptions = {}): Stream<O> {
    return this.transform(processElements(this.job.operator("process", options.uid), fn));
  }

  /**
   * Connects this keyed stream with a keyed stream of the same key type (for a keyed co-process function:
   * state and timers per key, shared by both inputs), with a broadcast stream (for broadcast state), or with
   * any other stream (an unkeyed co-process function).
   */
  override connect<B>(other: KeyedStream<B, K>): KeyedConnectedStreams<T, B, K>;
  override connect<R>(other: BroadcastStream<R>): BroadcastConnectedStream<T, K, R>;
  override connect<B>(other: Stream<B>): ConnectedStreams<T, B>;
  override connect<B>(other: Stream<B> | BroadcastStream<B>): ConnectedStreams<T, B> | KeyedConnectedStreams<T, B, K> | BroadcastConnectedStream<T, K, B> {
    if (other instanceof BroadcastStream) return new BroadcastConnectedStream<T, K, B>(this, other);
    if (other instanceof KeyedStream) return new KeyedConnectedStreams<T, B, K>(this, other as KeyedStream<B, K>);
    return super.connect(other);
  }
}

/** `stream`'s values tagged as input `input` of a two-input operator (keys and timestamps kept). */
function tagged<A, B>(stream: Stream<A> | Stream<B>, input: 1 | 2): Stream<Tagged<A, B>> {
  return (stream as Stream<A | B>).map((value): Tagged<A, B> => ({ input, value }));
}

/** Both inputs tagged and merged by union: records interleave, the watermark is the minimum of both. */
function merged<A, B>(first: Stream<A>, second: Stream<B>): Stream<Tagged<A, B>> {
  return tagged<A, B>(first, 1).union(tagged<A, B>(second, 2));
}

/**
 * Two streams connected for a co-process function (Flink's ConnectedStreams). Without keys the function gets
 * no keyed state or timers; `keyBy` partitions both inputs by key for a keyed one.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 *
 * const temperatures = fromIterable([{ room: "r1", celsius: 31 }]);
 * const alarms = fromIterable([{ room: "r2", smoke: true }]);
 * const events = await temperatures
 *   .connect(alarms)
 *   .process<string>({
 *     processElement1: (t, ctx) => ctx.emit(`${t.room}: ${t.celsius} °C`),
 *     processElement2: (a, ctx) => ctx.emit(`${a.room}: smoke`),
 *   })
 *   .collect();
 * ```
 */
export class ConnectedStreams<A, B> {
  readonly #first: Stream<A>;
  readonly #second: Stream<B>;

  constructor(first: Stream<A>, second: Stream<B>) {
    this.#first = first;
    this.#second = second;
  }

  /** Runs `fn` on the values of both inputs: `processElement1` for this stream's, `processElement2` for the other's. */
  process<O>(fn: CoProcessFunction<A, B, O>, options: OperatorOptions = {}): Stream<O> {
    const job = this.#first.job;
    const ctx = job.operator("co-process", options.uid);
    // One internal key for every record: the process operator runs keyed, the function never sees the key.
    return merged(this.#first, this.#second)
      // Internal and constant: never a shuffle in a scale-out task (each task keeps its own share).
      .keyBy(() => UNKEYED, { copartitioned: true })
      .transform(processElements(ctx, unkeyedCoProcess(ctx, fn)));
  }

  /** Partitions both inputs by key (of the same type), for a keyed co-process function. */
  keyBy<K extends Key>(first: (value: A) => K, second: (value: B) => K): KeyedConnectedStreams<A, B, K> {
    return new KeyedConnectedStreams<A, B, K>(this.#first.keyBy(first), this.#second.keyBy(second));
  }
}

/**
 * Two keyed streams connected for a keyed co-process function (Flink's KeyedCoProcessFunction): state and
 * timers per key, shared by both inputs; one watermark, the minimum of both.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 *
 * type Order = { id: string; at: number };
 * type Payment = { order: string; at: number };
 * const orders = fromIterable<Order>([{ id: "o1", at: 0 }], { timestamp: (o) => o.at }).keyBy((o) => o.id);
 * const payments = fromIterable<Payment>([{ order: "o1", at: 4_000 }], { timestamp: (p) => p.at }).keyBy((p) => p.order);
 * // Time from order to payment, per order.
 * const latency = orders.connect(payments).process<number>({
 *   processElement1: (o, ctx) => ctx.state.value<number>("ordered").update(o.at),
 *   processElement2: (p, ctx) => ctx.emit(p.at - (ctx.state.value<number>("ordered").value() ?? p.at)),
 * });
 * ```
 */
export class KeyedConnectedStreams<A, B, K extends Key> {
  readonly #first: KeyedStream<A, K>;
  readonly #second: KeyedStream<B, K>;

  constructor(first: KeyedStream<A, K>, second: KeyedStream<B, K>) {
    this.#first = first;
    this.#second = second;
  }

  /** Runs `fn` per key on the values of both inputs, with keyed state and timers shared by both. */
  process<O>(fn: KeyedCoProcessFunction<A, B, K, O>, options: OperatorOptions = {}): Stream<O> {
    const ctx = this.#first.job.operator("co-process", options.uid);
    return merged(this.#first, this.#second).transform(processElements(ctx, keyedCoProcess(ctx, fn)));
  }
}

/**
 * A stream made by `broadcast(descriptors)`, to connect to a keyed stream: every value reaches every instance
 * of the operator, which keeps the named broadcast state.
 *
 * @example
 * ```ts
 * import { type BroadcastStream, broadcastState, fromIterable } from "gress";
 *
 * type Rule = { id: string; max: number };
 * const rules = broadcastState<string, Rule>("rules");
 * const broadcast: BroadcastStream<Rule> = fromIterable<Rule>([{ id: "r1", max: 100 }]).broadcast(rules);
 * ```
 */
export class BroadcastStream<R> {
  readonly stream: Stream<R>;
  readonly descriptors: readonly BroadcastStateDescriptor<string | number, unknown>[];

  constructor(stream: Stream<R>, descriptors: readonly BroadcastStateDescriptor<string | number, unknown>[]) {
    this.stream = stream;
    this.descriptors = descriptors;
  }
}

/**
 * A keyed stream connected to a broadcast stream (Flink's BroadcastConnectedStream), for a
 * {@link KeyedBroadcastProcessFunction}.
 *
 * @example
 * ```ts
 * import { broadcastState, fromIterable } from "gress";
 *
 * const threshold = broadcastState<string, number>("threshold");
 * const limits = fromIterable([50]).broadcast(threshold);
 * const readings = fromIterable([{ sensor: "s1", value: 70, at: 1 }], { timestamp: (r) => r.at }).keyBy((r) => r.sensor);
 * const alerts = readings.connect(limits).process<string>({
 *   processElement(r, ctx) {
 *     const max = ctx.getBroadcastState(threshold).get("max");
 *     if (max !== undefined && r.value > max) ctx.emit(`${ctx.key} above ${max}`);
 *   },
 *   processBroadcastElement(max, ctx) {
 *     ctx.getBroadcastState(threshold).put("max", max);
 *   },
 * });
 * ```
 */
export class BroadcastConnectedStream<T, K extends Key, R> {
  readonly #keyed: KeyedStream<T, K>;
  readonly #broadcast: BroadcastStream<R>;

  constructor(keyed: KeyedStream<T, K>, broadcast: BroadcastStream<R>) {
    this.#keyed = keyed;
    this.#broadcast = broadcast;
  }

  /** Runs `fn`: `processBroadcastElement` for each broadcast value, `processElement` per keyed value. */
  process<O>(fn: KeyedBroadcastProcessFunction<T, K, R, O>, options: OperatorOptions = {}): Stream<O> {
    const keyed = this.#keyed;
    const ctx = keyed.job.operator("broadcast-process", options.uid);
    let rules = tagged<T, R>(this.#broadcast.stream, 2);
    // A broadcast stream without event time (rules read as they come) must not hold the keyed side's event
    // time back: its watermark counts as +∞ from the start.
    if (timeOf(rules) === "arrival") {
      rules = declareTime(
        rules.transform((elements) => elements.pipe(rxFilter((e) => e.kind !== "watermark"), startWith(watermark(MAX_WATERMARK)))),
        "unknown",
      );
    }
    const both = tagged<T, R>(keyed, 1).union(rules.keyBy(() => BROADCAST_KEY, { copartitioned: true }));
    return declareTime(
      both.transform(processElements(ctx, keyedBroadcastProcess(ctx, fn, this.#broadcast.descriptors))),
      timeOf(keyed),
    );
  }
}

/**
 * A keyed stream grouped into windows, waiting for its aggregation.
 *
 * @example
 * ```ts
 * import { fromIterable, sliding } from "gress";
 *
 * const trades = fromIterable([{ symbol: "X", price: 10, at: 0 }, { symbol: "X", price: 12, at: 30_000 }], { timestamp: (t) => t.at });
 * // Average price over 1 minute, every 30 seconds.
 * const averages = await trades.keyBy((t) => t.symbol).window(sliding(60_000, 30_000)).avg((t) => t.price).collect();
 * ```
 */
export class WindowedStream<T, K extends Key> {
  readonly #input: KeyedStream<T, K>;
  readonly #assigner: WindowAssigner<T>;
  readonly #options: WindowOptions<T>;

  constructor(input: KeyedStream<T, K>, assigner: WindowAssigner<T>, options: WindowOptions<T>) {
    this.#input = input;
    this.#assigner = assigner;
    this.#options = options;
  }

  /** Aggregates each window incrementally with `agg`. */
  aggregate<A, R>(agg: Aggregator<T, A, R>, options: OperatorOptions = {}): Stream<WindowResult<K, R>> {
    const input = this.#input;
    const ctx = input.job.operator("window", options.uid);
    const op = windowElements(ctx, this.#assigner, agg, this.#options);
    if (this.#options.time === "processing") {
      // A processing-time window is an event-time window over the time each record reaches it: stamped with
      // the job's clock, with a heartbeat so that windows close on processing time when no record comes.
      const clock = input.job.clock;
      const arrival = monotonic<T>({ timestamp: () => clock.now(), heartbeatMs: PROCESSING_TIME_HEARTBEAT_MS });
      return input.withTimestamps(arrival).transform(op) as unknown as Stream<WindowResult<K, R>>;
    }
    // A global window fires by its trigger alone (a count, say): it needs no event time.
    if (timeOf(input) === "arrival" && this.#assigner.kind !== "global") throw withoutEventTime(ctx.id);
    return input.transform(op) as unknown as Stream<WindowResult<K, R>>;
  }
  /** Number of records per window. */
  count(options?: OperatorOptions): Stream<WindowResult<K, number>> {
    return this.aggregate(count<T>(), options);
  }
  /** Sum of a field per window. */
  sum(field: (value: T) => number, options?: OperatorOptions): Stream<WindowResult<K, number>> {
    return this.aggregate(sum(field), options);
  }
  /** Mean of a field per window. */
  avg(field: (value: T) => number, options?: OperatorOptions): Stream<WindowResult<K, number>> {
    return this.aggregate(avg(field), options);
  }
  /** Minimum of a field per window. */
  min(field: (value: T) => number, options?: OperatorOptions): Stream<WindowResult<K, number | undefined>> {
    return this.aggregate(min(field), options);
  }
  /** Maximum of a field per window. */
  max(field: (value: T) => number, options?: OperatorOptions): Stream<WindowResult<K, number | undefined>> {
    return this.aggregate(max(field), options);
  }
  /** Folds the values of each window with `combine`. */
  reduce(combine: (a: T, b: T) => T, options?: OperatorOptions): Stream<WindowResult<K, T | undefined>> {
    return this.aggregate(reduce(combine), options);
  }
  /** Every value of each window, as a list (memory grows with the window). */
  collectAll(options?: OperatorOptions): Stream<WindowResult<K, T[]>> {
    return this.aggregate(collectAll<T>(), options);
  }
  /** A custom aggregation given inline. */
  aggregateWith<A, R>(spec: Parameters<typeof customAggregate<T, A, R>>[0], options?: OperatorOptions): Stream<WindowResult<K, R>> {
    return this.aggregate(customAggregate(spec), options);
  }
}

const ELEMENT_KINDS: ReadonlySet<unknown> = new Set(["record", "watermark", "barrier", "end", "splits", "side"]);

/** `value` if it is an element; else the error of a transform() operator that emitted something else. */
function checkElement<O>(value: Element<O>): Element<O> {
  if (typeof value === "object" && value !== null && ELEMENT_KINDS.has((value as { kind?: unknown }).kind)) return value;
  const shown = Array.isArray(value) ? `an array (${value.length} items)` : typeof value === "object" ? JSON.stringify(value)?.slice(0, 80) : `${typeof value} ${String(value)}`;
  const message =
    `transform(): the operator emitted ${shown}, not an element. transform() operators get and emit elements ` +
    '(records { kind: "record", value, timestamp, key }, and the watermarks, barriers and side records between them); ' +
    "for an RxJS operator on plain values use map/filter/flatMap/mapAsync, or stream.toObservable().pipe(op)";
  throw new ConfigError(message, [{ path: ["transform"], code: "not_an_element", message: "the operator emitted a value that is not an element" }]);
}

/** How often a processing-time window's watermark follows the clock when no record arrives. */
const PROCESSING_TIME_HEARTBEAT_MS = 200;

/** The error of an event-time window whose input has no event time: what to add instead. */
function withoutEventTime(operator: string): ConfigError {
  const message =
    `window "${operator}" is an event-time window, but its input has no event time: its records carry the time they ` +
    "arrived and no watermark comes before the end of the input. Add .withTimestamps(strategy) before keyBy " +
    "(e.g. boundedOutOfOrderness(5_000, { timestamp: (e) => e.at })), give the source a watermark strategy " +
    '(job.source(source, { watermarks }), or the timestamp/watermarks option of fromIterable), or ask for a processing-time window: .window(assigner, { time: "processing" })';
  return new ConfigError(message, [{ path: ["window", "time"], code: "event-time-without-timestamps", message: "the input has no timestamps or watermarks" }]);
}
