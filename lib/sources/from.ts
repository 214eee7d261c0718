/**
 * Streams from plain JavaScript: an Observable, an iterable or an async iterable. Each becomes a source of
 * a job (a new job unless `job` is given), so the result has event time, watermarks and the whole operator
 * set.
 *
 * An Observable cannot be paused. While the job asks sources to hold back, its values wait in a buffer
 * bounded by `maxBuffered`; past that the job fails with a SourceError instead of growing without limit.
 *
 * @example
 * ```ts
 * const s = fromObservable(interval(100), { timestamp: () => Date.now() });
 * ```
 * @module
 */
import type { Observable, Subscription } from "rxjs";
import { SourceError } from "../errors.ts";
import { Job, type SourceOptions } from "../job.ts";
import { type Positions, type Source, type SourceContext, timestampOf } from "../source.ts";
import { declareTime, type Stream } from "../stream.ts";
import type { WatermarkStrategy } from "../watermarks.ts";

/**
 * Options shared by the `from*` constructors.
 *
 * @example
 * ```ts
 * import { type FromOptions, fromObservable, Job } from "gress";
 * import { Subject } from "rxjs";
 *
 * type Reading = { at: number; celsius: number };
 * const job = new Job();
 * const options: FromOptions<Reading> = { job, name: "sensor", timestamp: (r) => r.at, maxBuffered: 10_000 };
 * const readings = new Subject<Reading>();
 * const stream = fromObservable(readings, options);
 * ```
 */
export interface FromOptions<T> {
  /** The job the stream belongs to. Default: a new job. */
  readonly job?: Job;
  /** Source name (metrics, checkpoints). */
  readonly name?: string;
  /** Event time of a value. Default: the processing time at which it arrives. */
  readonly timestamp?: (value: T) => number;
  /** Bound on values held while paused (Observables only). Default 65 536. */
  readonly maxBuffered?: number;
  /** Event time and watermarks generated in the source (see `SourceOptions.watermarks`). */
  readonly watermarks?: WatermarkStrategy<T>;
}

/** The job's source options that follow from `options`. */
function sourceOptions<T>(options: FromOptions<T>): SourceOptions<T> {
  return options.watermarks === undefined ? {} : { watermarks: options.watermarks };
}

let counter = 0;

/** A stream whose values a `timestamp` function stamps carries event time (without watermarks, until its end). */
function timed<T>(stream: Stream<T>, stamp: ((value: T) => number) | undefined): Stream<T> {
  return stamp === undefined ? stream : declareTime(stream, "event");
}

/** Emits `value` with the time `stamp` gives it (a bad one is reported, and the value skipped), or the arrival time. */
function emitStamped<T>(ctx: SourceContext<T>, value: T, stamp: ((value: T) => number) | undefined, name: string): void {
  if (ctx.ended) return;
  if (stamp === undefined) {
    ctx.emit(value, ctx.clock.now(), name);
    return;
  }
  const ts = timestampOf(ctx, value, stamp, undefined);
  if (ts !== undefined) ctx.emit(value, ts, name);
}

/**
 * A stream of the values of an Observable; it ends when the Observable completes.
 *
 * @example
 * ```ts
 * import { fromObservable, Job, sinkFn } from "gress";
 * import { interval, take } from "rxjs";
 *
 * const job = new Job();
 * fromObservable(interval(10).pipe(take(3)), { job, name: "ticks" })
 *   .map((i) => `tick ${i}`)
 *   .sinkTo(sinkFn("print", (s) => console.log(s)));
 * await job.run(); // ends when the Observable completes
 * ```
 */
export function fromObservable<T>(observable: Observable<T>, options: FromOptions<T> = {}): Stream<T> {
  const name = options.name ?? `observable-${++counter}`;
  const maxBuffered = options.maxBuffered ?? 65_536;
  const stamp = options.timestamp;
  let subscription: Subscription | undefined;
  let ctxRef: SourceContext<T> | undefined;
  let paused = false;
  let completed = false;
  const held: T[] = [];
  const deliver = (ctx: SourceContext<T>, value: T): void => emitStamped(ctx, value, stamp, name);
  const source: Source<T> = {
    name,
    open(ctx) {
      ctxRef = ctx;
      subscription = observable.subscribe({
        next(value) {
          if (!paused) return deliver(ctx, value);
          if (held.length >= maxBuffered) {
            subscription?.unsubscribe();
            return ctx.fail(
              new SourceError(`source "${name}" cannot pause and held ${maxBuffered} values while downstream was busy; raise maxBuffered or slow the input`),
            );
          }
          held.push(value);
        },
        error: (err: unknown) => ctx.fail(new SourceError(`source "${name}" failed: ${String(err)}`, { cause: err })),
        complete() {
          completed = true;
          if (held.length === 0) ctx.end();
        },
      });
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      const ctx = ctxRef;
      if (ctx === undefined) return;
      while (held.length > 0 && !paused) deliver(ctx, held.shift() as T);
      if (completed && held.length === 0) ctx.end();
    },
    close() {
      subscription?.unsubscribe();
    },
  };
  return timed((options.job ?? new Job()).source(source, sourceOptions(options)), stamp);
}

/**
 * A bounded stream of an iterable's values.
 *
 * @example
 * ```ts
 * import { fromIterable, monotonic } from "gress";
 *
 * const readings = fromIterable([{ at: 0, v: 1 }, { at: 1_000, v: 2 }], {
 *   name: "readings",
 *   watermarks: monotonic({ timestamp: (r) => r.at }),
 * });
 * console.log(await readings.map((r) => r.v).collect()); // [1, 2]
 * ```
 */
export function fromIterable<T>(values: Iterable<T>, options: Omit<FromOptions<T>, "maxBuffered"> = {}): Stream<T> {
  const job = options.job ?? new Job();
  const stamp = options.timestamp;
  return job.fromIterable(values, {
    name: options.name ?? `iterable-${++counter}`,
    ...(stamp ? { timestamp: (v: T) => stamp(v) } : {}),
    ...sourceOptions(options),
  });
}

/**
 * A stream of an async iterable's values, pulled one at a time, so pausing simply stops pulling.
 *
 * @example
 * ```ts
 * import { fromAsyncIterable } from "gress";
 *
 * async function* lines(): AsyncGenerator<string> {
 *   yield "first";
 *   yield "second";
 * }
 * // Read only as fast as the job goes: the next value is pulled when the job is not paused.
 * console.log(await fromAsyncIterable(lines()).map((l) => l.toUpperCase()).collect()); // ["FIRST", "SECOND"]
 * ```
 */
export function fromAsyncIterable<T>(values: AsyncIterable<T>, options: Omit<FromOptions<T>, "maxBuffered"> = {}): Stream<T> {
  const name = options.name ?? `async-iterable-${++counter}`;
  const stamp = options.timestamp;
  let paused = false;
  let closed = false;
  let wake: (() => void) | undefined;
  let index = 0;
  const source: Source<T> = {
    name,
    async open(ctx, from?: Positions) {
      const skip = typeof from?.[name] === "number" ? (from[name] as number) : 0;
      const iterator = values[Symbol.asyncIterator]();
      try {
        for (;;) {
          while (paused && !closed) await new Promise<void>((r) => (wake = r));
          if (closed || ctx.ended) return;
          const step = await iterator.next();
          if (step.done === true) return ctx.end();
          if (index++ < skip) continue;
          emitStamped(ctx, step.value, stamp, name);
        }
      } catch (err) {
        ctx.fail(new SourceError(`source "${name}" failed: ${String(err)}`, { cause: err }));
      } finally {
        // Stopped early (closed, or the job ended): let the iterable release what it holds.
        if (closed || ctx.ended) await iterator.return?.();
      }
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      wake?.();
    },
    positions: () => ({ [name]: index }),
    close() {
      closed = true;
      wake?.();
    },
  };
  return timed((options.job ?? new Job()).source(source, sourceOptions(options)), stamp);
}
