/**
 * Per-split watermark generation with periodic emission: the mechanism behind both places a
 * {@link WatermarkStrategy} can run, the `withTimestamps` operator and a source declared with `watermarks`
 * (as Flink's `fromSource(source, watermarkStrategy)`).
 *
 * One generator runs per split. The emitted watermark is the minimum over the splits that are not idle, it
 * never goes backwards, and with every split idle it holds. Emission is checked every `everyRecords` records
 * and every `everyMs` of processing time (or `heartbeatMs`, if shorter).
 * @module
 */
import type { CancelTimer, Clock } from "./clock.ts";
import { type Element, MAX_WATERMARK, MIN_WATERMARK, watermark } from "./element.ts";
import type { OperatorMetrics } from "./metrics.ts";
import type { Downstream } from "./operate.ts";
import type { WatermarkGenerator, WatermarkStrategy } from "./watermarks.ts";

interface SplitState {
  readonly generator: WatermarkGenerator;
  /** Processing time at which the split was last seen active (updated at each emission check). */
  lastActive: number;
  /** A record arrived since the last emission check. Avoids reading the clock per record. */
  seen: boolean;
}

/**
 * Watermarks of one stream. The owner calls {@link SplitWatermarks.observe} with each record's split and
 * event time before it forwards the record, and {@link SplitWatermarks.forwarded} after, so that a watermark
 * the record causes follows it. A class rather than closures: its methods are then one function in every job,
 * which V8 keeps inlining into the owner's per-record path.
 */
export class SplitWatermarks {
  readonly #strategy: WatermarkStrategy<never>;
  readonly #clock: Clock;
  readonly #metrics: OperatorMetrics;
  readonly #downstream: Downstream<Element<never>>;
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
  #stopped = false;

  /**
   * Starts the periodic emission check on `clock`.
   * @param strategy the generators, emission periods, idleness and heartbeat
   * @param clock processing time
   * @param metrics the owner's metrics: its `watermark` gauge follows every emission
   * @param downstream where the watermarks go
   */
  constructor(strategy: WatermarkStrategy<never>, clock: Clock, metrics: OperatorMetrics, downstream: Downstream<Element<never>>) {
    this.#strategy = strategy;
    this.#clock = clock;
    this.#metrics = metrics;
    this.#downstream = downstream;
    this.#everyRecords = strategy.everyRecords;
    this.#lastRecordAt = clock.now();
    this.#schedule();
  }

  /** A record of `split` with event time `timestamp` is about to be forwarded. */
  observe(split: string, timestamp: number): void {
    let s = this.#lastState;
    if (split !== this.#lastSplit || s === undefined) {
      // The split we leave had the previous record; if that came after the last check, it was active since.
      if (s !== undefined && this.#sinceEmit > 0) s.seen = true;
      s = this.#splits.get(split) ?? this.#addSplit(split, true);
      s.seen = true;
      this.#lastSplit = split;
      this.#lastState = s;
    }
    s.generator.onEvent(timestamp);
  }

  /** The record just observed was forwarded: emits the merged watermark if its record count is due. */
  forwarded(): void {
    if (++this.#sinceEmit >= this.#everyRecords) this.#emitMerged();
  }

  /** Splits that will deliver: each holds the watermark back until it delivers or turns idle. */
  announce(splits: readonly string[]): void {
    for (const split of splits) {
      if (!this.#splits.has(split)) this.#addSplit(split, false);
    }
  }

  /** The input is complete: emits the final watermark and stops. */
  finish(): void {
    this.#emit(MAX_WATERMARK);
    this.stop();
  }

  /** Stops the periodic check; nothing more is emitted. */
  stop(): void {
    this.#stopped = true;
    this.#cancelTick?.();
    this.#cancelTick = undefined;
  }

  #addSplit(split: string, seen: boolean): SplitState {
    const s: SplitState = { generator: this.#strategy.generator(), lastActive: this.#clock.now(), seen };
    this.#splits.set(split, s);
    this.#metrics.splits.set(split, s.generator); // gress_split_watermark_seconds
    this.#splitList.push(s);
    return s;
  }
  #emit(w: number): void {
    if (w <= this.#emitted || this.#stopped) return;
    this.#emitted = w;
    this.#metrics.watermark = w;
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
      if (this.#stopped) return;
      this.#emitMerged();
      this.#schedule();
    });
  }
}
