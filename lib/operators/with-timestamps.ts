import type { Observable } from "rxjs";
import type { CancelTimer, Clock } from "../clock.ts";
import { type Element, MAX_WATERMARK, MIN_WATERMARK, record, type StreamRecord, watermark } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import type { OperatorMetrics } from "../metrics.ts";
import { type Downstream, type OperatorBody, operate } from "../operate.ts";
import type { WatermarkGenerator, WatermarkStrategy } from "../watermarks.ts";
import { handleUserError } from "./user-error.ts";

interface SplitState {
  readonly generator: WatermarkGenerator;
  /** Processing time at which the split was last seen active (updated at each emission check). */
  lastActive: number;
  /** A record arrived since the last emission check. Avoids reading the clock per record. */
  seen: boolean;
}

/**
 * Assigns event time and generates watermarks with `strategy`. One generator runs per source split; the
 * emitted watermark is the minimum over the splits that are not idle, and it never goes backwards. Upstream
 * watermarks are replaced, except the final one that closes a bounded input.
 *
 * @example
 * ```ts
 * bids.withTimestamps(boundedOutOfOrderness(2_000, { timestamp: (b) => b.dateTime }))
 * ```
 * @param ctx the operator's context (clock, metrics)
 * @param strategy how to read timestamps and derive watermarks
 * @returns an operator on element streams
 */
export function withTimestampsElements<T>(
  ctx: OperatorContext,
  strategy: WatermarkStrategy<T>,
): (source: Observable<Element<T>>) => Observable<Element<T>> {
  return operate<Element<T>, Element<T>>((downstream) => new TimestampAssigner(ctx, strategy, downstream));
}

/**
 * The operator's body for one subscription. A class rather than closures: its `next` is then one function in
 * every job, which V8 keeps inlining into the chain before it.
 */
class TimestampAssigner<T> implements OperatorBody<Element<T>> {
  readonly #ctx: OperatorContext;
  readonly #m: OperatorMetrics;
  readonly #clock: Clock;
  readonly #strategy: WatermarkStrategy<T>;
  readonly #downstream: Downstream<Element<T>>;
  readonly #splits = new Map<string, SplitState>();
  // The split states again, for the emission check to walk without an iterator.
  readonly #splitList: SplitState[] = [];
  // The split of the previous record and its state: consecutive records mostly come from one split. A split
  // is marked active when it becomes the current one, and the current one at each emission check.
  #lastSplit: string | undefined;
  #lastState: SplitState | undefined;
  #emitted = MIN_WATERMARK;
  /** Records since the last emission check. */
  #sinceEmit = 0;
  readonly #everyRecords: number;
  #lastRecordAt: number;
  #cancelTick: CancelTimer | undefined;
  #done = false;

  constructor(ctx: OperatorContext, strategy: WatermarkStrategy<T>, downstream: Downstream<Element<T>>) {
    this.#ctx = ctx;
    this.#m = ctx.metrics;
    this.#clock = ctx.clock;
    this.#strategy = strategy;
    this.#downstream = downstream;
    this.#everyRecords = strategy.everyRecords;
    this.#lastRecordAt = this.#clock.now();
    this.#schedule();
  }

  next(e: Element<T>): void {
    if (e.kind === "record") {
      this.#onRecord(e);
      return;
    }
    if (e.kind === "watermark") {
      if (e.timestamp === MAX_WATERMARK) this.#emit(MAX_WATERMARK);
      return;
    }
    if (e.kind === "splits") {
      // An announced split holds the watermark back until it delivers or turns idle.
      for (const split of e.splits) {
        if (!this.#splits.has(split)) this.#addSplit(split, false);
      }
    }
    this.#downstream.next(e);
  }
  teardown(): void {
    this.#done = true;
    this.#cancelTick?.();
  }

  #onRecord(e: StreamRecord<T>): void {
    const m = this.#m;
    const strategy = this.#strategy;
    m.recordsIn++;
    let ts = e.timestamp;
    if (strategy.timestamp !== undefined) {
      try {
        ts = strategy.timestamp(e.value, e.timestamp);
        if (!Number.isFinite(ts)) throw new TypeError(`timestamp must be a finite number, got ${String(ts)}`);
      } catch (err) {
        handleUserError(this.#ctx, this.#downstream, e, err);
        return;
      }
    }
    const split = e.split ?? "";
    let s = this.#lastState;
    if (split !== this.#lastSplit || s === undefined) {
      // The split we leave had the previous record; if that came after the last check, it was active since.
      if (s !== undefined && this.#sinceEmit > 0) s.seen = true;
      s = this.#splits.get(split) ?? this.#addSplit(split, true);
      s.seen = true;
      this.#lastSplit = split;
      this.#lastState = s;
    }
    s.generator.onEvent(ts);
    m.recordsOut++;
    this.#downstream.next(ts === e.timestamp ? e : record(e.value, ts, e.key, e.split));
    if (++this.#sinceEmit >= this.#everyRecords) this.#emitMerged();
  }
  #addSplit(split: string, seen: boolean): SplitState {
    const s: SplitState = { generator: this.#strategy.generator(), lastActive: this.#clock.now(), seen };
    this.#splits.set(split, s);
    this.#splitList.push(s);
    return s;
  }
  #emit(w: number): void {
    if (w <= this.#emitted) return;
    this.#emitted = w;
    this.#m.watermark = w;
    this.#downstream.next(watermark(w));
  }
  #emitMerged(): void {
    const strategy = this.#strategy;
    const now = this.#clock.now();
    // Records came since the last check: the current split had at least the last of them.
    if (this.#sinceEmit > 0) {
      this.#lastRecordAt = now;
      if (this.#lastState !== undefined) this.#lastState.seen = true;
    }
    this.#sinceEmit = 0;
    let min = Number.POSITIVE_INFINITY;
    let active = 0;
    for (const s of this.#splitList) {
      if (s.seen) {
        s.lastActive = now;
        s.seen = false;
      }
      if (strategy.idleTimeoutMs !== undefined && now - s.lastActive >= strategy.idleTimeoutMs) continue;
      active++;
      const w = s.generator.current();
      if (w < min) min = w;
    }
    // With every split idle the watermark holds: an idle stream must not race event time ahead.
    if (active > 0) this.#emit(min);
    if (strategy.heartbeatMs !== undefined && now - this.#lastRecordAt >= strategy.heartbeatMs) {
      this.#emit(now - strategy.heartbeatDelayMs - 1);
    }
  }
  #schedule(): void {
    const strategy = this.#strategy;
    const period = Math.min(strategy.everyMs, strategy.heartbeatMs ?? Number.POSITIVE_INFINITY);
    this.#cancelTick = this.#clock.setTimer(this.#clock.now() + period, () => {
      if (this.#done) return;
      this.#emitMerged();
      this.#schedule();
    });
  }
}
