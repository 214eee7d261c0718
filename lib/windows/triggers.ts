/**
 * Triggers decide when a window emits. Time windows use the event-time trigger unless told otherwise: fire
 * when the watermark passes the window's end, and fire again for each late record within the allowed
 * lateness. A custom trigger sees every record and every timer it registered, as in Flink, and answers with
 * a {@link TriggerResult}.
 * @module
 */
import { z } from "zod";
import { validate } from "../config.ts";
import type { Window } from "./assigners.ts";
import { maxTimestamp } from "./assigners.ts";

/**
 * What a trigger asks the window to do. `purge` drops the window's accumulator.
 *
 * @example
 * ```ts
 * import type { TriggerResult } from "gress";
 *
 * // "fire" emits and keeps the accumulator, "purge" drops it, "fire_and_purge" does both.
 * const decide = (count: number): TriggerResult => (count >= 10 ? "fire_and_purge" : "continue");
 * ```
 */
export type TriggerResult = "continue" | "fire" | "purge" | "fire_and_purge";

/**
 * What a trigger can do and see, scoped to the current key and window.
 *
 * @example
 * ```ts
 * import type { Trigger } from "gress";
 *
 * // Fires every 3 records, keeping the count in the trigger's per-window state.
 * const everyThird: Trigger<unknown> = {
 *   name: "every-third",
 *   onElement(_value, _ts, _window, ctx) {
 *     const n = (ctx.getState<number>("n") ?? 0) + 1;
 *     ctx.setState("n", n % 3);
 *     return n === 3 ? "fire" : "continue";
 *   },
 *   onEventTime: () => "continue",
 *   onProcessingTime: () => "continue",
 *   clear: (_window, ctx) => ctx.clearState("n"),
 * };
 * ```
 */
export interface TriggerContext {
  readonly currentWatermark: number;
  readonly currentProcessingTime: number;
  registerEventTimeTimer(time: number): void;
  registerProcessingTimeTimer(time: number): void;
  deleteEventTimeTimer(time: number): void;
  deleteProcessingTimeTimer(time: number): void;
  /** Per-window, per-trigger state (counts, flags), stored in keyed state. */
  getState<S>(name: string): S | undefined;
  setState<S>(name: string, value: S): void;
  clearState(name: string): void;
}

/**
 * A custom trigger.
 *
 * @example
 * ```ts
 * import { fromIterable, global, type Trigger } from "gress";
 *
 * // Fires a key's window when a value above 100 arrives, and purges it.
 * const onSpike: Trigger<{ v: number }> = {
 *   name: "on-spike",
 *   onElement: (value) => (value.v > 100 ? "fire_and_purge" : "continue"),
 *   onEventTime: () => "continue",
 *   onProcessingTime: () => "continue",
 *   clear: () => {},
 * };
 * const batches = fromIterable([{ v: 1 }, { v: 200 }], { timestamp: () => 0 }).keyBy(() => "k").window(global(), { trigger: onSpike }).collectAll();
 * ```
 */
export interface Trigger<T> {
  readonly name: string;
  onElement(value: T, timestamp: number, window: Window, ctx: TriggerContext): TriggerResult;
  onEventTime(time: number, window: Window, ctx: TriggerContext): TriggerResult;
  onProcessingTime(time: number, window: Window, ctx: TriggerContext): TriggerResult;
  /** Called when the window is purged for good; release timers and state here. */
  clear(window: Window, ctx: TriggerContext): void;
  /**
   * Called when session windows merge into `window`, before the record that merged them is added, as
   * Flink's `Trigger.onMerge`: carry the merged windows' state over (`ctx.mergedStates`) and register the
   * timers the merged window needs. The merged windows are cleared before it is called. Without it, a
   * merged window starts with no trigger state, as a new one.
   */
  onMerge?(window: Window, ctx: TriggerMergeContext): void;
}

/**
 * What {@link Trigger.onMerge} sees: the context of the merged window, and the state of the windows merged
 * into it.
 *
 * @example
 * ```ts
 * import type { Trigger } from "gress";
 *
 * // Counts records per window; merged sessions add up their counts.
 * const counting: Trigger<unknown> = {
 *   name: "counting",
 *   onElement: (_v, _ts, _w, ctx) => {
 *     ctx.setState("n", (ctx.getState<number>("n") ?? 0) + 1);
 *     return "continue";
 *   },
 *   onEventTime: () => "continue",
 *   onProcessingTime: () => "continue",
 *   clear: (_w, ctx) => ctx.clearState("n"),
 *   onMerge: (_w, ctx) => ctx.setState("n", ctx.mergedStates<number>("n").reduce((a, b) => a + b, 0)),
 * };
 * ```
 */
export interface TriggerMergeContext extends TriggerContext {
  /** The values of state `name` in the windows merged into this one (those that had it). */
  mergedStates<S>(name: string): S[];
}

/**
 * Fires when the watermark passes the end of the window (and for late records within the lateness).
 *
 * @example
 * ```ts
 * import { eventTimeTrigger, fromIterable, tumbling } from "gress";
 *
 * // The default trigger of time windows, given explicitly: fire when the watermark passes the window's end.
 * const counts = fromIterable(["a"], { timestamp: () => 0 }).keyBy((x) => x).window(tumbling(1_000), { trigger: eventTimeTrigger() }).count();
 * ```
 */
export function eventTimeTrigger<T>(): Trigger<T> {
  return {
    name: "eventTime",
    onElement(_v, _ts, w, ctx) {
      if (maxTimestamp(w) <= ctx.currentWatermark) return "fire";
      ctx.registerEventTimeTimer(maxTimestamp(w));
      return "continue";
    },
    onEventTime: (time, w) => (time === maxTimestamp(w) ? "fire" : "continue"),
    onProcessingTime: () => "continue",
    clear(w, ctx) {
      ctx.deleteEventTimeTimer(maxTimestamp(w));
    },
  };
}

/**
 * Fires every `n` records; purges after firing unless `purge: false` (then the count restarts, data stays).
 *
 * @example
 * ```ts
 * import { countTrigger, fromIterable, global } from "gress";
 *
 * const events = fromIterable(["a", "a", "a", "a"], { timestamp: () => 0 });
 * // Fire every 2 records of a key; purge: the window starts empty again after each firing.
 * const batches = events.keyBy((e) => e).window(global(), { trigger: countTrigger(2, { purge: true }) }).count();
 * ```
 */
export function countTrigger<T>(n: number, options: { purge?: boolean } = {}): Trigger<T> {
  validate(z.number().int().positive(), n, "countTrigger.n");
  const purge = options.purge ?? true;
  return {
    name: "count",
    onElement(_v, _ts, _w, ctx) {
      const c = (ctx.getState<number>("count") ?? 0) + 1;
      if (c < n) {
        ctx.setState("count", c);
        return "continue";
      }
      ctx.clearState("count");
      return purge ? "fire_and_purge" : "fire";
    },
    onEventTime: () => "continue",
    onProcessingTime: () => "continue",
    clear(_w, ctx) {
      ctx.clearState("count");
    },
    // Merged sessions add up their counts, as Flink's CountTrigger does.
    onMerge(_w, ctx) {
      const c = ctx.mergedStates<number>("count").reduce((a, b) => a + b, 0);
      if (c > 0) ctx.setState("count", c);
    },
  };
}

/**
 * Fires `intervalMs` of processing time after the first record of each round; purges on firing.
 *
 * @example
 * ```ts
 * import { global, Job, processingTimeTrigger, rides } from "gress";
 *
 * const job = new Job();
 * // A running count per area, emitted every 10 seconds of processing time.
 * const running = job
 *   .source(rides({ count: 10_000 }))
 *   .keyBy((r) => r.area)
 *   .window(global(), { trigger: processingTimeTrigger(10_000) })
 *   .count();
 * ```
 */
export function processingTimeTrigger<T>(intervalMs: number): Trigger<T> {
  validate(z.number().positive().finite(), intervalMs, "processingTimeTrigger.intervalMs");
  return {
    name: "processingTime",
    onElement(_v, _ts, _w, ctx) {
      if (ctx.getState<number>("due") === undefined) {
        const due = ctx.currentProcessingTime + intervalMs;
        ctx.setState("due", due);
        ctx.registerProcessingTimeTimer(due);
      }
      return "continue";
    },
    onEventTime: () => "continue",
    onProcessingTime(_t, _w, ctx) {
      ctx.clearState("due");
      return "fire_and_purge";
    },
    clear(_w, ctx) {
      const due = ctx.getState<number>("due");
      if (due !== undefined) ctx.deleteProcessingTimeTimer(due);
      ctx.clearState("due");
    },
    // A merged session's round began with the earliest of the merged ones: it keeps that deadline.
    onMerge(_w, ctx) {
      const dues = ctx.mergedStates<number>("due");
      if (dues.length === 0) return;
      const due = Math.min(...dues);
      ctx.setState("due", due);
      ctx.registerProcessingTimeTimer(due);
    },
  };
}
