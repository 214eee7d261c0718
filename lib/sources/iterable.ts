/**
 * The iterable source behind `job.fromIterable()`: a bounded source over the values of an iterable (an array
 * is read by index), emitting in batches, honouring pause/resume, replayable from a position (the index of
 * the next value), so that it takes part in checkpoints.
 * @module
 */
import { SourceError } from "../errors.ts";
import { runSoon } from "../runtime.ts";
import { type Positions, type Source, type SourceContext, timestampOf } from "../source.ts";

/** A source over an iterable, emitting in batches and honouring pause/resume. Position = index. */
export function iterableSource<T>(name: string, values: Iterable<T>, timestamp?: (value: T, index: number) => number): Source<T> {
  return new IterableSource(name, values, timestamp);
}

/** The iterable source; a class, so that its batch loop is one function across jobs (as SourceRun in job.ts is). */
class IterableSource<T> implements Source<T> {
  readonly name: string;
  readonly #values: Iterable<T>;
  readonly #timestamp: ((value: T, index: number) => number) | undefined;
  #iterator: Iterator<T> | undefined;
  #index = 0;
  #paused = false;
  #closed = false;
  #ctx: SourceContext<T> | undefined;
  // Emit a bounded batch per turn, so timers, checkpoints and pause requests get their turn too.
  readonly #pump = (): void => {
    const ctx = this.#ctx;
    if (ctx === undefined || this.#closed) return;
    const values = this.#values;
    let more: boolean;
    try {
      more = Array.isArray(values) ? this.#emitArrayBatch(ctx, values) : this.#iterator !== undefined && this.#emitBatch(ctx, this.#iterator);
    } catch (err) {
      // The iterable itself threw (a generator, a custom iterator): its input cannot go on.
      ctx.fail(new SourceError(`iterable source "${this.name}" failed at index ${this.#index}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      return;
    }
    if (more) runSoon(this.#pump);
  };

  constructor(name: string, values: Iterable<T>, timestamp: ((value: T, index: number) => number) | undefined) {
    this.name = name;
    this.#values = values;
    this.#timestamp = timestamp;
  }

  /** Emits up to one batch; true if there is more to emit on a later turn. */
  #emitBatch(ctx: SourceContext<T>, it: Iterator<T>): boolean {
    const timestamp = this.#timestamp;
    for (let n = 0; n < BATCH; n++) {
      if (this.#paused || this.#closed || ctx.ended) return false;
      const step = it.next();
      if (step.done === true) {
        ctx.end();
        return false;
      }
      const index = this.#index++;
      if (timestamp === undefined) ctx.emit(step.value, undefined, this.name);
      else {
        const ts = timestampOf(ctx, step.value, timestamp, index);
        if (ts !== undefined) ctx.emit(step.value, ts, this.name);
      }
    }
    return true;
  }
  /** The same for an array, read by index. */
  #emitArrayBatch(ctx: SourceContext<T>, array: readonly T[]): boolean {
    const timestamp = this.#timestamp;
    for (let n = 0; n < BATCH; n++) {
      if (this.#paused || this.#closed || ctx.ended) return false;
      const index = this.#index;
      if (index >= array.length) {
        ctx.end();
        return false;
      }
      const value = array[index] as T;
      this.#index = index + 1;
      if (timestamp === undefined) ctx.emit(value, undefined, this.name);
      else {
        const ts = timestampOf(ctx, value, timestamp, index);
        if (ts !== undefined) ctx.emit(value, ts, this.name);
      }
    }
    return true;
  }
  open(ctx: SourceContext<T>, from?: Positions): void {
    this.#ctx = ctx;
    // A job run again opens its source again, from the start (or the restored position).
    this.#closed = false;
    this.#paused = false;
    this.#index = 0;
    // Replay from a position: skip what was already emitted before the restore.
    const position = from?.[this.name];
    if (position !== undefined && (typeof position !== "number" || !Number.isInteger(position) || position < 0)) {
      throw new SourceError(`iterable source "${this.name}": position must be a non-negative integer, got ${JSON.stringify(position)}`);
    }
    const skip = position ?? 0;
    const values = this.#values;
    if (Array.isArray(values)) this.#index = Math.min(skip, values.length);
    else {
      try {
        const iterator = values[Symbol.iterator]();
        this.#iterator = iterator;
        while (this.#index < skip && iterator.next().done !== true) this.#index++;
      } catch (err) {
        throw new SourceError(`iterable source "${this.name}" failed at index ${this.#index}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
    this.#pump();
  }
  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    runSoon(this.#pump);
  }
  positions(): Positions {
    return { [this.name]: this.#index };
  }
  close(): void {
    this.#closed = true;
  }
}

/** Records per turn of the iterable source. */
const BATCH = 4096;
