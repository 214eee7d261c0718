/**
 * Broadcast state, as Flink's broadcast state pattern: a low-volume stream (rules, thresholds, a model) is
 * broadcast and connected to a keyed stream. `processBroadcastElement` sees each broadcast value and may write
 * the broadcast state (named map states, given by {@link BroadcastStateDescriptor}s); `processElement` sees
 * each keyed value, with keyed state and timers as in a process function, and may only read the broadcast
 * state.
 *
 * Contract:
 * - Every instance of the operator receives every broadcast value, in the order of the broadcast stream, and
 *   keeps its own copy of the broadcast state. So `processBroadcastElement` must update it deterministically
 *   from the value alone (no keyed state, no processing time), or copies would differ. In one process there is
 *   one instance. In scale-out mode (one task per input partition, docs/SCALE-OUT.md) every task must read
 *   the whole broadcast input, every partition of it, outside the partition assignment of the keyed input, and
 *   a restored task restores its own copy; {@link isBroadcastPartitioned} marks such a stream for the planner.
 * - The broadcast state is keyed state of the operator (one table per descriptor under the operator's id), so
 *   checkpoints, savepoints and restores cover it with the keyed side's state and timers.
 * - Event time: the operator's watermark is the minimum of both inputs', as for any two-input operator. A
 *   broadcast stream without event time (rules read as they arrive) does not hold the keyed side back: its
 *   watermarks count as +∞.
 * - Order between the two inputs is arrival order; a keyed value that arrives before a rule does not see it.
 * @module
 */
import type { Key, OutputTag } from "../element.ts";
import { ConfigError } from "../errors.ts";
import type { OperatorContext } from "../operator-context.ts";
import { type KeyContext, type MapState, mapState } from "../state/keyed.ts";
import { callOnValue, type Tagged, timeAndOutput } from "./connect.ts";
import type { ProcessContext, ProcessFunction } from "./process.ts";

/**
 * Names a broadcast map state and its types, as Flink's MapStateDescriptor.
 *
 * @example
 * ```ts
 * import { broadcastState, type BroadcastStateDescriptor } from "gress";
 *
 * type Rule = { id: string; maxAmount: number };
 * const rules: BroadcastStateDescriptor<string, Rule> = broadcastState<string, Rule>("rules");
 * ```
 */
export interface BroadcastStateDescriptor<K extends string | number, V> {
  readonly name: string;
  /** Carries the types only. */
  readonly types?: { readonly key: K; readonly value: V };
}

/**
 * A descriptor of a broadcast map state named `name`.
 *
 * @example
 * ```ts
 * import { broadcastState, fromIterable } from "gress";
 *
 * const thresholds = broadcastState<string, number>("thresholds");
 * const broadcast = fromIterable([{ country: "NL", max: 500 }]).broadcast(thresholds);
 * ```
 * @param name the state's name, unique within the operator
 * @returns the descriptor
 */
export function broadcastState<K extends string | number, V>(name: string): BroadcastStateDescriptor<K, V> {
  if (typeof name !== "string" || !/^[A-Za-z0-9_.:-]+$/.test(name)) {
    throw new ConfigError(`broadcast state name "${String(name)}" may only contain letters, digits, '_', '.', ':' or '-'`, [
      { path: ["broadcastState", "name"], code: "invalid_format", message: "letters, digits, '_', '.', ':' or '-'" },
    ]);
  }
  return { name };
}

/**
 * The broadcast state as the keyed side sees it: read only.
 *
 * @example
 * ```ts
 * import type { ReadOnlyBroadcastState } from "gress";
 *
 * const limitFor = (limits: ReadOnlyBroadcastState<string, number>, country: string): number => limits.get(country) ?? Number.POSITIVE_INFINITY;
 * ```
 */
export interface ReadOnlyBroadcastState<K extends string | number, V> {
  get(key: K): V | undefined;
  has(key: K): boolean;
  entries(): [K, V][];
  keys(): K[];
}

/**
 * What `processElement` and `onTimer` of a keyed broadcast function see: a process context (key, keyed state,
 * timers, output) and the broadcast state, read only.
 *
 * @example
 * ```ts
 * import { broadcastState, type KeyedBroadcastContext } from "gress";
 *
 * const limits = broadcastState<string, number>("limits");
 * const over = (amount: number, ctx: KeyedBroadcastContext<string, string>): boolean => amount > (ctx.getBroadcastState(limits).get("default") ?? 100);
 * ```
 */
export interface KeyedBroadcastContext<K extends Key, O> extends ProcessContext<K, O> {
  getBroadcastState<BK extends string | number, BV>(descriptor: BroadcastStateDescriptor<BK, BV>): ReadOnlyBroadcastState<BK, BV>;
}

/**
 * What `processBroadcastElement` sees: time, output, and the broadcast state to write. No key, no keyed
 * state, no timers: the broadcast value belongs to no key.
 *
 * @example
 * ```ts
 * import { type BroadcastContext, broadcastState } from "gress";
 *
 * const limits = broadcastState<string, number>("limits");
 * const apply = (rule: { country: string; max: number }, ctx: BroadcastContext<string>): void => {
 *   ctx.getBroadcastState(limits).put(rule.country, rule.max);
 *   ctx.emit(`limit of ${rule.country} is now ${rule.max}`);
 * };
 * ```
 */
export interface BroadcastContext<O> {
  readonly timestamp: number;
  readonly currentWatermark: number;
  readonly currentProcessingTime: number;
  getBroadcastState<BK extends string | number, BV>(descriptor: BroadcastStateDescriptor<BK, BV>): MapState<BK, BV>;
  emit(value: O, timestamp?: number): void;
  output<S>(tag: OutputTag<S>, value: S, reason?: string): void;
}

/**
 * A function over a keyed stream connected to a broadcast stream, like Flink's KeyedBroadcastProcessFunction.
 *
 * @example
 * ```ts
 * import { broadcastState, fromIterable, type KeyedBroadcastProcessFunction } from "gress";
 *
 * type Tx = { card: string; amount: number; at: number };
 * type Limit = { max: number };
 * const limit = broadcastState<string, number>("limit");
 * // Flags a transaction above the limit the rules stream set last.
 * const flag: KeyedBroadcastProcessFunction<Tx, string, Limit, string> = {
 *   processElement(tx, ctx) {
 *     const max = ctx.getBroadcastState(limit).get("max");
 *     if (max !== undefined && tx.amount > max) ctx.emit(`${ctx.key}: ${tx.amount} > ${max}`);
 *   },
 *   processBroadcastElement(rule, ctx) {
 *     ctx.getBroadcastState(limit).put("max", rule.max);
 *   },
 * };
 * const limits = fromIterable<Limit>([{ max: 100 }]).broadcast(limit);
 * const alerts = fromIterable<Tx>([{ card: "c1", amount: 250, at: 5 }], { timestamp: (t) => t.at }).keyBy((t) => t.card).connect(limits).process(flag);
 * ```
 */
export interface KeyedBroadcastProcessFunction<T, K extends Key, R, O> {
  processElement(value: T, ctx: KeyedBroadcastContext<K, O>): void;
  processBroadcastElement(value: R, ctx: BroadcastContext<O>): void;
  onTimer?(time: number, domain: "event" | "processing", ctx: KeyedBroadcastContext<K, O>): void;
}

/** The key the broadcast input's records carry inside the operator; a keyed value never sees it. */
export const BROADCAST_KEY = "\u0000broadcast";

/** Marks a stream made by `broadcast()`: every task of a scaled-out job must read all of it. */
const BROADCAST = Symbol.for("gress.broadcast");

/**
 * True for a stream made by `broadcast()`: its every value goes to every instance of the operator it feeds.
 *
 * @example
 * ```ts
 * import { broadcastState, fromIterable, isBroadcastPartitioned } from "gress";
 *
 * const rules = fromIterable([{ max: 1 }]).broadcast(broadcastState<string, number>("rules"));
 * console.log(isBroadcastPartitioned(rules)); // true
 * ```
 */
export function isBroadcastPartitioned(stream: object): boolean {
  return (stream as { [BROADCAST]?: boolean })[BROADCAST] === true;
}

/** Marks `stream` as broadcast (see {@link isBroadcastPartitioned}). */
export function markBroadcast<S extends object>(stream: S): S {
  Object.defineProperty(stream, BROADCAST, { value: true });
  return stream;
}

/**
 * The process function that runs a keyed broadcast function on the tagged records of both inputs (input 2 is
 * the broadcast one), with the broadcast state in the operator's tables `broadcast:<name>`.
 */
export function keyedBroadcastProcess<T, K extends Key, R, O>(
  ctx: OperatorContext,
  fn: KeyedBroadcastProcessFunction<T, K, R, O>,
  descriptors: readonly BroadcastStateDescriptor<string | number, unknown>[],
): ProcessFunction<Tagged<T, R>, K, O> {
  const names = new Set(descriptors.map((d) => d.name));
  // One map per descriptor, in a table of its own under a fixed key: the broadcast state is not per key.
  const keyCtx: KeyContext = { currentKey: "", namespace: "", eventTime: () => 0, processingTime: () => ctx.clock.now() };
  const maps = new Map<string, MapState<string | number, unknown>>();
  const stateOf = (d: BroadcastStateDescriptor<string | number, unknown>): MapState<string | number, unknown> => {
    if (!names.has(d?.name)) {
      throw new ConfigError(`operator "${ctx.id}" has no broadcast state "${String(d?.name)}": pass its descriptor to broadcast() (it has ${[...names].map((n) => `"${n}"`).join(", ")})`, [
        { path: ["broadcastState", "name"], code: "unknown", message: `no broadcast state "${String(d?.name)}"` },
      ]);
    }
    let m = maps.get(d.name);
    if (m === undefined) {
      m = mapState(ctx.state.table(ctx.id, `broadcast:${d.name}`), keyCtx);
      maps.set(d.name, m);
    }
    return m;
  };
  const readOnly = <BK extends string | number, BV>(d: BroadcastStateDescriptor<BK, BV>): ReadOnlyBroadcastState<BK, BV> => {
    const m = stateOf(d as BroadcastStateDescriptor<string | number, unknown>) as MapState<BK, BV>;
    return { get: (k) => m.get(k), has: (k) => m.has(k), entries: () => m.entries(), keys: () => m.keys() };
  };
  // The contexts wrap the process operator's context, which is one object per subscription.
  let keyedView: KeyedBroadcastContext<K, O> | undefined;
  let broadcastView: BroadcastContext<O> | undefined;
  let of: ProcessContext<K, O> | undefined;
  const views = (pctx: ProcessContext<K, O>): void => {
    if (of === pctx) return;
    of = pctx;
    keyedView = Object.assign(Object.create(pctx) as ProcessContext<K, O>, { getBroadcastState: readOnly });
    broadcastView = timeAndOutput<O, Pick<BroadcastContext<O>, "getBroadcastState">>(pctx, {
      getBroadcastState: <BK extends string | number, BV>(d: BroadcastStateDescriptor<BK, BV>) =>
        stateOf(d as BroadcastStateDescriptor<string | number, unknown>) as MapState<BK, BV>,
    });
  };
  const out: ProcessFunction<Tagged<T, R>, K, O> = {
    processElement(t, pctx) {
      views(pctx);
      if (t.input === 2) callOnValue(ctx, pctx, t.value, () => fn.processBroadcastElement(t.value as R, broadcastView!));
      else callOnValue(ctx, pctx, t.value, () => fn.processElement(t.value as T, keyedView!));
    },
  };
  const onTimer = fn.onTimer;
  if (onTimer === undefined) return out;
  return {
    ...out,
    onTimer(time, domain, pctx) {
      views(pctx);
      onTimer.call(fn, time, domain, keyedView!);
    },
  };
}
