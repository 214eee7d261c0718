import { type Key, MIN_WATERMARK, type OutputTag, record, sideRecord, type StreamRecord } from "../element.ts";
import { UserFunctionError } from "../errors.ts";
import type { OperatorContext } from "../operator-context.ts";
import {
  type Expirable,
  type KeyContext,
  type ListState,
  listState,
  type MapState,
  mapState,
  type StateOptions,
  type ValueState,
  valueState,
} from "../state/keyed.ts";
import { TimerService, type Timer } from "../timers.ts";
import { type KeyedOperator, keyedOperator } from "./key-by.ts";
import { handleUserError } from "./user-error.ts";

/**
 * Keyed state available to a process function, scoped to the current key.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 *
 * // Value, map and list state of the current key, created on first use by name.
 * const profiles = fromIterable([{ user: "ann", page: "/a" }])
 *   .keyBy((v) => v.user)
 *   .process<number>({
 *     processElement(v, ctx) {
 *       const visits = ctx.state.map<string, number>("visits");
 *       visits.put(v.page, (visits.get(v.page) ?? 0) + 1);
 *       const recent = ctx.state.list<string>("recent");
 *       recent.add(v.page);
 *       ctx.emit(visits.keys().length);
 *     },
 *   });
 * ```
 */
export interface KeyedStateAccess {
  value<S>(name: string, options?: StateOptions): ValueState<S>;
  map<MK extends string | number, MV>(name: string, options?: StateOptions): MapState<MK, MV>;
  list<S>(name: string, options?: StateOptions): ListState<S>;
}

/**
 * Timers of the current key.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 *
 * // A processing-time timeout per key, moved on each record (the old timer is deleted).
 * const idle = fromIterable([{ device: "d1" }])
 *   .keyBy((r) => r.device)
 *   .process<string>({
 *     processElement(_r, ctx) {
 *       const due = ctx.state.value<number>("due");
 *       const old = due.value();
 *       if (old !== undefined) ctx.timers.deleteProcessingTime(old);
 *       const next = ctx.currentProcessingTime + 60_000;
 *       ctx.timers.registerProcessingTime(next);
 *       due.update(next);
 *     },
 *     onTimer(_time, _domain, ctx) {
 *       ctx.emit(`${ctx.key} silent for a minute`);
 *     },
 *   });
 * ```
 */
export interface TimerAccess {
  registerEventTime(time: number): void;
  deleteEventTime(time: number): void;
  registerProcessingTime(time: number): void;
  deleteProcessingTime(time: number): void;
}

/**
 * What a process function sees for each record or timer.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 *
 * // What a process function sees: key, timestamp, watermark, state, timers, and emit/output.
 * const delayed = fromIterable([{ id: "a", at: 1_000 }], { timestamp: (e) => e.at })
 *   .keyBy((e) => e.id)
 *   .process<string>({
 *     processElement(e, ctx) {
 *       ctx.timers.registerEventTime(ctx.timestamp + 5_000);
 *     },
 *     onTimer(time, domain, ctx) {
 *       ctx.emit(`${ctx.key}: ${domain} timer at ${time} (watermark ${ctx.currentWatermark})`);
 *     },
 *   });
 * ```
 */
export interface ProcessContext<K extends Key, O> {
  readonly key: K;
  /** Timestamp of the current record, or the firing time of the current timer. */
  readonly timestamp: number;
  readonly currentWatermark: number;
  readonly currentProcessingTime: number;
  readonly state: KeyedStateAccess;
  readonly timers: TimerAccess;
  /** Emits a value, by default with the current timestamp. */
  emit(value: O, timestamp?: number): void;
  /** Emits a value to a side output. */
  output<S>(tag: OutputTag<S>, value: S, reason?: string): void;
}

/**
 * A keyed process function, like Flink's KeyedProcessFunction.
 *
 * @example
 * ```ts
 * import { fromIterable, type ProcessFunction } from "gress";
 *
 * type Reading = { sensor: string; celsius: number };
 * // Emits a reading when it differs from the sensor's last one by more than 5 degrees.
 * const jumps: ProcessFunction<Reading, string, Reading> = {
 *   processElement(r, ctx) {
 *     const last = ctx.state.value<number>("last");
 *     const before = last.value();
 *     if (before !== undefined && Math.abs(r.celsius - before) > 5) ctx.emit(r);
 *     last.update(r.celsius);
 *   },
 * };
 * const alerts = fromIterable<Reading>([{ sensor: "s", celsius: 20 }, { sensor: "s", celsius: 30 }]).keyBy((r) => r.sensor).process(jumps);
 * ```
 */
export interface ProcessFunction<T, K extends Key, O> {
  processElement(value: T, ctx: ProcessContext<K, O>): void;
  onTimer?(time: number, domain: "event" | "processing", ctx: ProcessContext<K, O>): void;
}

/**
 * Runs a user process function per record with keyed state and event-time/processing-time timers.
 * State handles are created on first use by name and kept; they always read the current key's state.
 * Event-time timers fire when the watermark passes them, before the watermark is forwarded.
 *
 * @example
 * ```ts
 * keyed.process({
 *   processElement(v, ctx) {
 *     const n = ctx.state.value<number>("n");
 *     n.update((n.value() ?? 0) + 1);
 *     ctx.timers.registerEventTime(ctx.timestamp + 60_000);
 *   },
 *   onTimer(t, _d, ctx) { ctx.emit(ctx.state.value<number>("n").value() ?? 0) },
 * })
 * ```
 * @param ctx the operator's context
 * @param fn the process function
 * @returns an operator on keyed element streams
 */
export function processElements<T, K extends Key, O>(
  ctx: OperatorContext,
  fn: ProcessFunction<T, K, O>,
): KeyedOperator<T, O> {
  const m = ctx.metrics;
  const wmState = ctx.state.table<number>(ctx.id, "watermark");
  return keyedOperator<T, O>((downstream, keys) => {
    const timers = new TimerService(ctx.state, ctx.id, ctx.clock);
    let wm = wmState.get("", "") ?? MIN_WATERMARK;
    let timestamp = 0;
    // Event time of the last record or event-time timer handled (a processing-time timer keeps it). State
    // TTL in event time reads max(watermark, this), so an entry written before the first watermark gets
    // a finite write time instead of −∞ (which would make it expire at once).
    let eventTimestamp = MIN_WATERMARK;
    // The watermark up to which event-time timers have fired: the one TTL reads. A watermark moves event time
    // to its timers' times one by one (in time order), and to itself only after them, so a timer due at a
    // watermark sees the state as it was at the timer's time, not as TTL leaves it at the watermark.
    let firedUpTo = wm;
    let closed = false;
    const keyCtx: KeyContext = {
      currentKey: undefined,
      namespace: "",
      eventTime: () => Math.max(eventTimestamp, firedUpTo),
      processingTime: () => ctx.clock.now(),
    };
    const handles = new Map<string, unknown>();
    const expirables: Expirable[] = [];
    const handle = <H extends Expirable>(kind: string, name: string, make: () => H): H => {
      const id = `${kind}:${name}`;
      let h = handles.get(id) as H | undefined;
      if (h === undefined) {
        h = make();
        handles.set(id, h);
        expirables.push(h);
      }
      return h;
    };
    const state: KeyedStateAccess = {
      value: <S>(name: string, options?: StateOptions) => handle("v", name, () => valueState<S>(ctx.state.table(ctx.id, `v:${name}`), keyCtx, options)),
      map: <MK extends string | number, MV>(name: string, options?: StateOptions) => handle("m", name, () => mapState<MK, MV>(ctx.state.table(ctx.id, `m:${name}`), keyCtx, options)),
      list: <S>(name: string, options?: StateOptions) => handle("l", name, () => listState<S>(ctx.state.table(ctx.id, `l:${name}`), keyCtx, options)),
    };
    const currentKey = (): Key => keyCtx.currentKey as Key;
    const timerAccess: TimerAccess = {
      registerEventTime: (t) => timers.registerEventTime(currentKey(), "", t),
      deleteEventTime: (t) => timers.deleteEventTime(currentKey(), "", t),
      registerProcessingTime: (t) => timers.registerProcessingTime(currentKey(), "", t),
      deleteProcessingTime: (t) => timers.deleteProcessingTime(currentKey(), "", t),
    };
    const pctx: ProcessContext<K, O> = {
      get key() {
        return keyCtx.currentKey as K;
      },
      get timestamp() {
        return timestamp;
      },
      get currentWatermark() {
        return wm;
      },
      get currentProcessingTime() {
        return ctx.clock.now();
      },
      state,
      timers: timerAccess,
      emit(value, ts) {
        m.recordsOut++;
        downstream.next(record(value, ts ?? timestamp, keyCtx.currentKey));
      },
      output(tag, value, reason) {
        downstream.next(sideRecord(tag.id, value, timestamp, reason ?? ctx.id));
      },
    };
    const fire = (t: Timer, domain: "event" | "processing"): void => {
      keyCtx.currentKey = t.key;
      timestamp = t.time;
      if (domain === "event") eventTimestamp = t.time;
      try {
        fn.onTimer?.(t.time, domain, pctx);
      } catch (err) {
        // No record to dead-letter: a failing timer fails the job, naming the operator.
        const message = err instanceof Error ? err.message : String(err);
        throw new UserFunctionError(`onTimer of operator "${ctx.id}" threw: ${message}`, { cause: err, details: { operator: ctx.id } });
      }
    };
    timers.onProcessingTime((due) => {
      if (closed) return;
      try {
        for (const t of due) fire(t, "processing");
      } catch (err) {
        downstream.error(err);
      }
    });
    const onRecord = (e: StreamRecord<T>): void => {
      // Fused with the keyBy before it, the operator applies the key selector itself; a record without a
      // valid key went to dead letters there.
      const key = keys === undefined ? e.key : keys.keyOf(e, downstream);
      if (key === undefined && keys !== undefined) return;
      m.recordsIn++;
      if (key === undefined) throw new TypeError(`process operator "${ctx.id}" needs a keyed stream`);
      keyCtx.currentKey = key;
      timestamp = e.timestamp;
      eventTimestamp = e.timestamp;
      try {
        fn.processElement(e.value, pctx);
      } catch (err) {
        handleUserError(ctx, downstream, e, err);
      }
    };
    return {
      // The process function sees the value, and the context the key and timestamp: no record object is kept.
      records: "consume",
      next(e) {
        switch (e.kind) {
          case "record":
            return onRecord(e);
          case "watermark":
            // Not later than the current one (or NaN): nothing to do, as in the window operator.
            if (!(e.timestamp > wm)) return;
            wm = e.timestamp;
            m.watermark = wm;
            wmState.put("", "", wm);
            for (let due = timers.dueEventTimers(wm); due.length > 0; due = timers.dueEventTimers(wm)) {
              for (const t of due) fire(t, "event");
            }
            firedUpTo = wm;
            return downstream.next(e);
          default:
            return downstream.next(e);
        }
      },
      teardown() {
        closed = true;
        timers.close();
      },
    };
  });
}
