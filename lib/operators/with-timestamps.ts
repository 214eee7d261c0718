import type { Observable } from "rxjs";
import type { CancelTimer } from "../clock.ts";
import { type Element, MAX_WATERMARK, MIN_WATERMARK, watermark } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { operate } from "../operate.ts";
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
  const m = ctx.metrics;
  const clock = ctx.clock;
  return operate<Element<T>, Element<T>>((downstream) => {
    const splits = new Map<string, SplitState>();
    // The split of the previous record and its state: consecutive records mostly come from one split.
    let lastSplit: string | undefined;
    let lastState: SplitState | undefined;
    let emitted = MIN_WATERMARK;
    let sinceEmit = 0;
    let lastRecordAt = clock.now();
    let seenAny = false;
    let cancelTick: CancelTimer | undefined;
    let done = false;

    const emit = (w: number): void => {
      if (w <= emitted) return;
      emitted = w;
      m.watermark = w;
      downstream.next(watermark(w));
    };
    const emitMerged = (): void => {
      sinceEmit = 0;
      const now = clock.now();
      if (seenAny) {
        lastRecordAt = now;
        seenAny = false;
      }
      let min = Number.POSITIVE_INFINITY;
      let active = 0;
      for (const s of splits.values()) {
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
      if (active > 0) emit(min);
      if (strategy.heartbeatMs !== undefined && now - lastRecordAt >= strategy.heartbeatMs) {
        emit(now - strategy.heartbeatDelayMs - 1);
      }
    };
    const schedule = (): void => {
      const period = Math.min(strategy.everyMs, strategy.heartbeatMs ?? Number.POSITIVE_INFINITY);
      cancelTick = clock.setTimer(clock.now() + period, () => {
        if (done) return;
        emitMerged();
        schedule();
      });
    };
    schedule();

    return {
      next(e) {
        if (e.kind === "watermark") {
          if (e.timestamp === MAX_WATERMARK) emit(MAX_WATERMARK);
          return;
        }
        if (e.kind === "splits") {
          // An announced split holds the watermark back until it delivers or turns idle.
          for (const split of e.splits) {
            if (!splits.has(split)) splits.set(split, { generator: strategy.generator(), lastActive: clock.now(), seen: false });
          }
          return downstream.next(e);
        }
        if (e.kind !== "record") return downstream.next(e);
        m.recordsIn++;
        let ts = e.timestamp;
        if (strategy.timestamp !== undefined) {
          try {
            ts = strategy.timestamp(e.value, e.timestamp);
            if (!Number.isFinite(ts)) throw new TypeError(`timestamp must be a finite number, got ${String(ts)}`);
          } catch (err) {
            return handleUserError(ctx, downstream, e, err);
          }
        }
        const split = e.split ?? "";
        let s = split === lastSplit ? lastState : splits.get(split);
        if (s === undefined) {
          s = { generator: strategy.generator(), lastActive: clock.now(), seen: true };
          splits.set(split, s);
        }
        lastSplit = split;
        lastState = s;
        s.seen = true;
        seenAny = true;
        s.generator.onEvent(ts);
        m.recordsOut++;
        downstream.next(ts === e.timestamp ? e : { kind: "record", value: e.value, timestamp: ts, key: e.key, split: e.split });
        if (++sinceEmit >= strategy.everyRecords) emitMerged();
      },
      teardown() {
        done = true;
        cancelTick?.();
      },
    };
  });
}
