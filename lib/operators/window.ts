import type { Downstream } from "../operate.ts";
import { z } from "zod";
import type { Aggregator } from "../aggregate.ts";
import type { CancelTimer } from "../clock.ts";
import { validate } from "../config.ts";
import { type Element, type Key, LATE_DATA, MIN_WATERMARK, record, sideRecord, type StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import { type Timer, TimerHeap, TimerService } from "../timers.ts";
import { GLOBAL_WINDOW, maxTimestamp, type Window, type WindowAssigner, windowStart } from "../windows/assigners.ts";
import type { Trigger, TriggerContext, TriggerResult } from "../windows/triggers.ts";
import { ConfigError } from "../errors.ts";
import { AlignedWindows } from "./aligned-windows.ts";
import type { FireTiming, WindowResult } from "./window-result.ts";
import { type KeyedOperator, keyedOperator } from "./key-by.ts";
import { handleUserError } from "./user-error.ts";

export type { FireTiming, WindowResult } from "./window-result.ts";

const windowOptionsSchema = z.strictObject({
  allowedLatenessMs: z.number().nonnegative().optional(),
  lateTag: z.string().min(1).optional(),
  time: z.enum(["event", "processing"]).optional(),
  trigger: z.custom<Trigger<unknown>>((t) => typeof (t as Trigger<unknown>)?.onElement === "function", "a Trigger").optional(),
  early: z
    .strictObject({ everyCount: z.number().int().positive().optional(), everyMs: z.number().positive().finite().optional() })
    .optional(),
});

/**
 * Options of a windowed aggregation.
 *
 * @example
 * ```ts
 * import { fromIterable, tumbling, type WindowOptions } from "gress";
 *
 * type Click = { page: string; at: number };
 * // Accept records up to 1 minute late (each re-fires the window), and emit early results every 100 records.
 * const options: WindowOptions<Click> = { allowedLatenessMs: 60_000, early: { everyCount: 100 } };
 * const counts = fromIterable<Click>([], { timestamp: (c) => c.at }).keyBy((c) => c.page).window(tumbling(300_000), options).count();
 * ```
 */
export interface WindowOptions<T> {
  /** Keep windows this long after they close; late records within it re-fire an updated result. Default 0. */
  readonly allowedLatenessMs?: number;
  /** Side output for records past the allowed lateness. Default LATE_DATA ("late"). */
  readonly lateTag?: string;
  /**
   * `event` (default): windows by the records' event time, closed by watermarks; the input needs event time
   * (`withTimestamps`, or a source with watermarks or timestamps), else the window is a ConfigError.
   * `processing`: windows by the time each record reaches the window (the job's clock), closed as that clock
   * passes their end.
   */
  readonly time?: "event" | "processing";
  /** Replaces the default event-time trigger. Required for global windows. */
  readonly trigger?: Trigger<T>;
  /** Early (speculative) results before the window closes: every N records and/or every T ms. */
  readonly early?: { readonly everyCount?: number; readonly everyMs?: number };
}

type Sessions = [start: number, end: number][];

/**
 * Keyed event-time windows with incremental aggregation, allowed lateness, late side output, early firings
 * and custom triggers — Flink's WindowOperator. Each (key, window) holds one accumulator in keyed state
 * (namespace = window start); timers at the window's last timestamp and at its cleanup time live in the
 * operator's timer service, so both survive a restore.
 *
 * A record is late for a window when the window's cleanup time (end − 1 + allowed lateness) is at or before
 * the watermark. A record that is late for every window it belongs to goes to the late side output and is
 * counted; none is dropped silently.
 *
 * @param ctx the operator's context
 * @param assigner which windows a record belongs to
 * @param agg the incremental aggregation
 * @param options lateness, trigger, early firing
 * @returns an operator from keyed records to window results
 */
export function windowElements<T, A, R>(
  ctx: OperatorContext,
  assigner: WindowAssigner<T>,
  agg: Aggregator<T, A, R>,
  options: WindowOptions<T> = {},
): KeyedOperator<T, WindowResult<Key, R>> {
  validate(windowOptionsSchema, options, "window");
  const m = ctx.metrics;
  const lateness = options.allowedLatenessMs ?? 0;
  const lateTag = options.lateTag ?? LATE_DATA.id;
  const trigger = options.trigger;
  const everyCount = options.early?.everyCount;
  const everyMs = options.early?.everyMs;
  // A window needs its own cleanup timer unless the default trigger's firing timer already is one (no
  // lateness). With a custom trigger there may be no event-time timer at all, and the window would never go.
  const ownCleanupTimer = lateness > 0 || trigger !== undefined;
  if (assigner.kind === "global" && trigger === undefined) {
    throw new ConfigError(`invalid options for window "${ctx.id}": window.trigger: a global window needs a trigger`, [
      { path: ["window", "trigger"], code: "required", message: "a global window needs a trigger" },
    ]);
  }
  // A record of a tumbling window touches one window, and a whole window is fired and dropped at once: its
  // accumulators are best kept together by window. A record of a sliding window touches several windows of
  // one key, and sessions work per key: those are best kept together by key.
  const accs = ctx.state.table<A>(ctx.id, "acc", { layout: assigner.kind === "tumbling" ? "namespace" : "key" });
  const sessions = ctx.state.table<Sessions>(ctx.id, "sessions");
  const triggerState = ctx.state.table<unknown>(ctx.id, "trigger");
  const earlyCounts = ctx.state.table<number>(ctx.id, "early");
  const wmState = ctx.state.table<number>(ctx.id, "watermark");

  // The common case, tumbling or sliding windows with the default trigger and no early firing, takes a fast
  // path: these windows are aligned, every key's window [start, end) fires at the same watermark, so the
  // operator keeps, per window, the keys that have an accumulator in it and fires the window in one pass,
  // instead of a timer per key and window.
  if ((assigner.kind === "tumbling" || assigner.kind === "sliding") && trigger === undefined && everyCount === undefined && everyMs === undefined) {
    const slide = assigner.kind === "sliding" ? assigner.slide : assigner.size;
    const config = { ctx, agg, accs, wmState, size: assigner.size, slide, offset: assigner.offset, lateness, lateTag };
    return keyedOperator<T, WindowResult<Key, R>>((downstream, keys) => new AlignedWindows(config, downstream, keys));
  }

  return keyedOperator<T, WindowResult<Key, R>>((downstream, keys) => {
    const timers = new TimerService(ctx.state, ctx.id, ctx.clock);
    // With the default trigger (here: sessions, or early firings), a window's two event-time timers (its last
    // timestamp, and its cleanup time when there is lateness) follow from the window itself. They are kept in
    // an in-memory heap and rebuilt from the accumulators after a restore, instead of being written to state:
    // that saves several state operations per window and key. A popped timer is checked against the live
    // window, so a timer of a session that has since merged into a larger one is ignored.
    // Each in-memory timer remembers the end of the window it was set for, to recognise stale ones.
    const ownTimers = trigger === undefined ? new TimerHeap<Timer & { readonly end: number }>() : undefined;
    const registerWindowTimer = (key: Key, start: number, end: number, time: number): void => {
      if (ownTimers === undefined) timers.registerEventTime(key, start, time);
      else ownTimers.push({ time, key, namespace: start, end });
    };
    const deleteWindowTimer = (key: Key, start: number, time: number): void => {
      if (ownTimers === undefined) timers.deleteEventTime(key, start, time);
    };
    const dueWindowTimers = (upTo: number): Timer[] => {
      if (ownTimers === undefined) return timers.dueEventTimers(upTo);
      const due: Timer[] = [];
      for (let t = ownTimers.peek(); t !== undefined && t.time <= upTo; t = ownTimers.peek()) due.push(ownTimers.pop()!);
      return due;
    };
    let wm = wmState.get("", "") ?? MIN_WATERMARK;
    const dirty = new Map<Key, Set<number>>();
    const rebuildOwnTimers = (): void => {
      if (ownTimers === undefined) return;
      for (const [key, start] of accs.entries()) {
        const w = windowOf(key, start as number);
        if (w === undefined || assigner.kind === "global") continue;
        if (maxTimestamp(w) > wm) registerWindowTimer(key, w.start, w.end, maxTimestamp(w));
        if (lateness > 0) registerWindowTimer(key, w.start, w.end, maxTimestamp(w) + lateness);
      }
    };
    let cancelEarly: CancelTimer | undefined;
    let closed = false;

    const cleanupTime = (w: Window): number =>
      assigner.kind === "global" ? Number.POSITIVE_INFINITY : maxTimestamp(w) + lateness;
    const windowOf = (key: Key, start: number): Window | undefined => {
      switch (assigner.kind) {
        case "tumbling":
        case "sliding":
          return { start, end: start + assigner.size };
        case "global":
          return GLOBAL_WINDOW;
        case "session": {
          const s = sessions.get(key, "")?.find(([st]) => st === start);
          return s === undefined ? undefined : { start: s[0], end: s[1] };
        }
      }
    };

    const emit = (key: Key, w: Window, timing: FireTiming): void => {
      const acc = accs.get(key, w.start);
      if (acc === undefined) return;
      m.recordsOut++;
      const value: WindowResult<Key, R> = { key, start: w.start, end: w.end, value: agg.result(acc), timing };
      downstream.next(record(value, maxTimestamp(w), key));
    };
    const triggerCtx = (key: Key, w: Window): TriggerContext => ({
      currentWatermark: wm,
      currentProcessingTime: ctx.clock.now(),
      registerEventTimeTimer: (t) => timers.registerEventTime(key, w.start, t),
      registerProcessingTimeTimer: (t) => timers.registerProcessingTime(key, w.start, t),
      deleteEventTimeTimer: (t) => timers.deleteEventTime(key, w.start, t),
      deleteProcessingTimeTimer: (t) => timers.deleteProcessingTime(key, w.start, t),
      getState: <S>(name: string) => triggerState.get(key, `${w.start}|${name}`) as S | undefined,
      setState: (name, v) => triggerState.put(key, `${w.start}|${name}`, v),
      clearState: (name) => triggerState.delete(key, `${w.start}|${name}`),
    });
    /** Drops a window's accumulator, timers and trigger state for good. */
    // Called from the cleanup timer, which the timer service has already removed: only the window's other
    // timer (the firing time, when lateness > 0) still needs deleting. This runs once per window per key,
    // so it matters for throughput.
    const purgeWindow = (key: Key, w: Window): void => {
      accs.delete(key, w.start);
      if (everyCount !== undefined) earlyCounts.delete(key, w.start);
      if (everyMs !== undefined) dirty.get(key)?.delete(w.start);
      if (trigger !== undefined) trigger.clear(w, triggerCtx(key, w));
      else if (lateness > 0) deleteWindowTimer(key, w.start, maxTimestamp(w));
      if (assigner.kind === "session") {
        const list = (sessions.get(key, "") ?? []).filter(([s]) => s !== w.start);
        if (list.length === 0) sessions.delete(key, "");
        else sessions.put(key, "", list);
      }
    };
    const apply = (key: Key, w: Window, result: TriggerResult, timing: FireTiming): void => {
      if (result === "fire" || result === "fire_and_purge") emit(key, w, timing);
      if (result === "purge" || result === "fire_and_purge") {
        accs.delete(key, w.start);
        earlyCounts.delete(key, w.start);
      }
    };
    const timingNow = (w: Window): FireTiming =>
      assigner.kind === "global" ? "on-time" : maxTimestamp(w) <= wm ? "late" : "early";

    /**
     * Folds a record into window [start, end) (already merged for sessions), seeded by `seed` if given.
     * `folded` is the accumulator with the record already added, when the caller had to compute it first.
     */
    const addToWindow = (rec: StreamRecord<T>, key: Key, start: number, end: number, seed: A | undefined, folded?: A): void => {
      const existing = seed ?? accs.get(key, start);
      const acc = folded ?? agg.add(existing ?? agg.create(), rec.value);
      accs.put(key, start, acc);
      const last = end - 1;
      if (existing === undefined && assigner.kind !== "global") {
        // A window that is already past its end (a late record within the lateness) fires "late" below,
        // not again from an on-time timer, as with Flink's EventTimeTrigger.
        if (trigger === undefined && last > wm) registerWindowTimer(key, start, end, last);
        if (ownCleanupTimer) registerWindowTimer(key, start, end, last + lateness);
      }
      if (trigger !== undefined) {
        const w = { start, end };
        apply(key, w, trigger.onElement(rec.value, rec.timestamp, w, triggerCtx(key, w)), timingNow(w));
      } else if (last <= wm) {
        emit(key, { start, end }, "late");
        return;
      }
      if (everyCount !== undefined && last > wm) {
        const n = (earlyCounts.get(key, start) ?? 0) + 1;
        if (n >= everyCount) {
          earlyCounts.delete(key, start);
          emit(key, { start, end }, "early");
        } else earlyCounts.put(key, start, n);
      }
      if (everyMs !== undefined) {
        let set = dirty.get(key);
        if (set === undefined) dirty.set(key, (set = new Set()));
        set.add(start);
      }
    };

    // Late for good: the window's cleanup time (end − 1 + lateness) has passed. Global windows never are.
    const isLate = (end: number): boolean => assigner.kind !== "global" && end - 1 + lateness <= wm;

    const processRecord = (rec: StreamRecord<T>, key: Key | undefined): void => {
      if (key === undefined) throw new TypeError(`window operator "${ctx.id}" needs a keyed stream`);
      const ts = rec.timestamp;
      if (!Number.isFinite(ts)) throw new TypeError(`record timestamp must be a finite number, got ${ts}`);
      let placed = false;
      switch (assigner.kind) {
        case "tumbling": {
          const start = windowStart(ts, assigner.size, assigner.offset);
          const end = start + assigner.size;
          if (!isLate(end)) {
            addToWindow(rec, key, start, end, undefined);
            placed = true;
          }
          break;
        }
        case "sliding": {
          const last = windowStart(ts, assigner.slide, assigner.offset);
          for (let start = last; start > ts - assigner.size; start -= assigner.slide) {
            const end = start + assigner.size;
            if (isLate(end)) continue;
            addToWindow(rec, key, start, end, undefined);
            placed = true;
          }
          break;
        }
        case "global":
          addToWindow(rec, key, GLOBAL_WINDOW.start, GLOBAL_WINDOW.end, undefined);
          placed = true;
          break;
        case "session": {
          const gap = assigner.gapOf(rec.value);
          if (!(gap > 0) || !Number.isFinite(gap)) throw new RangeError(`session gap must be a positive finite number, got ${gap}`);
          const list = sessions.get(key, "") ?? [];
          let start = ts;
          let end = ts + gap;
          const overlapping: Sessions = [];
          const rest: Sessions = [];
          for (const s of list) {
            // Windows that touch are merged, as in Flink: [0,10) and [10,20) form one session.
            if (s[0] <= end && s[1] >= start) overlapping.push(s);
            else rest.push(s);
          }
          for (const [s, e] of overlapping) {
            if (s < start) start = s;
            if (e > end) end = e;
          }
          if (isLate(end)) break;
          let seed: A | undefined;
          for (const [s] of overlapping) {
            const acc = accs.get(key, s);
            if (acc !== undefined) seed = seed === undefined ? acc : agg.merge(seed, acc);
          }
          // Fold the record in before any state changes: a throwing aggregate leaves the sessions as they were.
          const folded = agg.add(seed ?? agg.create(), rec.value);
          // The trigger state of the windows it absorbs, read before they are cleared, for Trigger.onMerge.
          let mergedStates: Map<string, unknown[]> | undefined;
          if (trigger?.onMerge !== undefined && overlapping.some(([s, e]) => s !== start || e !== end)) {
            mergedStates = new Map();
            const absorbed = new Set(overlapping.filter(([s, e]) => s !== start || e !== end).map(([s]) => String(s)));
            for (const [ns, v] of triggerState.entriesOf(key)) {
              const bar = String(ns).indexOf("|");
              if (!absorbed.has(String(ns).slice(0, bar))) continue;
              const name = String(ns).slice(bar + 1);
              mergedStates.set(name, [...(mergedStates.get(name) ?? []), v]);
            }
          }
          // The merged window carries on the early-firing counts of the windows it absorbs, as Flink's
          // CountTrigger.onMerge does: a session that grows with each record still fires every N records.
          let earlyCarried = 0;
          for (const [s, e] of overlapping) {
            if (s !== start || e !== end) {
              if (everyCount !== undefined) earlyCarried += earlyCounts.get(key, s) ?? 0;
              // The old window's timers and state move to the merged window.
              accs.delete(key, s);
              earlyCounts.delete(key, s);
              dirty.get(key)?.delete(s);
              deleteWindowTimer(key, s, e - 1);
              deleteWindowTimer(key, s, e - 1 + lateness);
              if (trigger !== undefined) trigger.clear({ start: s, end: e }, triggerCtx(key, { start: s, end: e }));
            }
          }
          const isNew = !overlapping.some(([s, e]) => s === start && e === end);
          rest.push([start, end]);
          sessions.put(key, "", rest);
          if (earlyCarried > 0) earlyCounts.put(key, start, earlyCarried);
          if (mergedStates !== undefined) {
            const states = mergedStates;
            const w = { start, end };
            trigger?.onMerge?.(w, { ...triggerCtx(key, w), mergedStates: <S>(name: string) => (states.get(name) ?? []) as S[] });
          }
          if (isNew && seed !== undefined) {
            // A merged window is new to the timers even though its accumulator is not.
            if (trigger === undefined && end - 1 > wm) registerWindowTimer(key, start, end, end - 1);
            if (ownCleanupTimer) registerWindowTimer(key, start, end, end - 1 + lateness);
          }
          addToWindow(rec, key, start, end, seed, folded);
          placed = true;
          break;
        }
      }
      if (!placed) {
        m.lateRecords++;
        downstream.next(sideRecord(lateTag, rec.value, ts, `late: watermark ${wm} passed the window's allowed lateness`));
      }
      m.buffered = accs.size;
    };

    const fireTimer = (t: Timer, domain: "event" | "processing"): void => {
      const w = windowOf(t.key, t.namespace as number);
      if (w === undefined) return;
      // An in-memory timer of a window that has since been merged or purged is stale.
      if (ownTimers !== undefined && ((t as Timer & { end?: number }).end !== w.end || accs.get(t.key, w.start) === undefined)) return;
      if (trigger !== undefined) {
        const c = triggerCtx(t.key, w);
        const result = domain === "event" ? trigger.onEventTime(t.time, w, c) : trigger.onProcessingTime(t.time, w, c);
        apply(t.key, w, result, domain === "event" && t.time === maxTimestamp(w) ? "on-time" : timingNow(w));
      } else if (domain === "event" && t.time === maxTimestamp(w)) {
        emit(t.key, w, "on-time");
      }
      if (domain === "event" && t.time >= cleanupTime(w)) purgeWindow(t.key, w);
    };

    timers.onProcessingTime((due) => {
      if (closed) return;
      try {
        for (const t of due) fireTimer(t, "processing");
        m.buffered = accs.size;
      } catch (err) {
        downstream.error(err);
      }
    });
    if (everyMs !== undefined) {
      const tick = (): void => {
        cancelEarly = ctx.clock.setTimer(ctx.clock.now() + everyMs, () => {
          if (closed) return;
          const batch = [...dirty];
          dirty.clear();
          for (const [key, starts] of batch) {
            for (const start of starts) {
              const w = windowOf(key, start);
              if (w !== undefined && maxTimestamp(w) > wm) emit(key, w, "early");
            }
          }
          tick();
        });
      };
      tick();
    }

    const onElement = (e: Element<T>, down: Downstream<Element<WindowResult<Key, R>>>): void => {
      switch (e.kind) {
        case "record": {
          // Fused with the keyBy before it, the operator applies the key selector itself; a record without a
          // valid key went to dead letters there.
          const key = keys === undefined ? e.key : keys.keyOf(e, down);
          if (key === undefined && keys !== undefined) return;
          m.recordsIn++;
          try {
            processRecord(e, key);
          } catch (err) {
            handleUserError(ctx, down, e, err);
          }
          return;
        }
        case "watermark": {
          // Not later than the current one (or NaN): nothing to do, as in the aligned window body.
          if (!(e.timestamp > wm)) return;
          wm = e.timestamp;
          m.watermark = wm;
          wmState.put("", "", wm);
          // Timers may register further due timers (a trigger's own), so drain until none is due.
          for (let due = dueWindowTimers(wm); due.length > 0; due = dueWindowTimers(wm)) {
            for (const t of due) fireTimer(t, "event");
          }
          m.buffered = accs.size;
          down.next(e);
          return;
        }
        default:
          down.next(e);
      }
    };

    // After a restore the accumulators are back but the in-memory timers are not: derive them.
    rebuildOwnTimers();
    return {
      // It keeps values in accumulators (and hands triggers a value and a timestamp), emits new records, and
      // keeps no record object.
      records: "consume",
      next(e) {
        onElement(e, downstream);
      },
      teardown() {
        closed = true;
        cancelEarly?.();
        timers.close();
      },
    };
  });
}
