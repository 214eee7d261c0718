/**
 * Two-input operators: co-process functions over connected streams, as Flink's `connect()` with a
 * CoProcessFunction / KeyedCoProcessFunction.
 *
 * The two inputs are merged by `union` after each value is tagged with its input (1 or 2), so records keep
 * their keys and timestamps, and the operator's watermark is the minimum of both inputs' watermarks (an ended
 * input counts as +∞). The merged stream runs through the keyed process operator (operators/process.ts), so a
 * keyed co-process function has exactly its state, timers, TTL, side outputs, checkpointing and error
 * handling: state and timers are shared by both inputs, per key. This module holds the function types and the
 * adapter from a co-process function to a process function; the stream classes are in stream.ts.
 *
 * Without keys (`a.connect(b)` of two plain streams) there is no keyed state and there are no timers, as in
 * Flink: the function gets a {@link CoProcessContext}. The records then all carry one internal key, which the
 * function never sees.
 * @module
 */
import { DEAD_LETTERS, type Element, type Key, type OutputTag, record } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import type { Downstream } from "../operate.ts";
import type { ProcessContext, ProcessFunction } from "./process.ts";
import { handleUserError } from "./user-error.ts";

/** A value of a connected stream, tagged with the input it came from. */
export interface Tagged<A, B> {
  readonly input: 1 | 2;
  readonly value: A | B;
}

/**
 * What a co-process function on unkeyed connected streams sees: time, and output. (Keyed state and timers need
 * keyed inputs: connect two KeyedStreams, or call `keyBy` on the connected streams.)
 *
 * @example
 * ```ts
 * import { type CoProcessContext, fromIterable } from "gress";
 *
 * const words = fromIterable(["a", "b"]);
 * const numbers = fromIterable([1, 2]);
 * const both = words.connect(numbers).process<string>({
 *   processElement1(w, ctx: CoProcessContext<string>) {
 *     ctx.emit(`word ${w} at ${ctx.timestamp}`);
 *   },
 *   processElement2(n, ctx) {
 *     ctx.emit(`number ${n}`);
 *   },
 * });
 * ```
 */
export interface CoProcessContext<O> {
  /** Timestamp of the current record. */
  readonly timestamp: number;
  /** The operator's watermark: the minimum of both inputs' watermarks. */
  readonly currentWatermark: number;
  readonly currentProcessingTime: number;
  /** Emits a value, by default with the current timestamp. */
  emit(value: O, timestamp?: number): void;
  /** Emits a value to a side output. */
  output<S>(tag: OutputTag<S>, value: S, reason?: string): void;
}

/**
 * A function over two unkeyed streams, like Flink's CoProcessFunction: one method per input.
 *
 * @example
 * ```ts
 * import { type CoProcessFunction, fromIterable } from "gress";
 *
 * type Order = { id: string; total: number };
 * type Refund = { order: string; amount: number };
 * // Money in and money out, as one stream of signed amounts.
 * const ledger: CoProcessFunction<Order, Refund, number> = {
 *   processElement1: (o, ctx) => ctx.emit(o.total),
 *   processElement2: (r, ctx) => ctx.emit(-r.amount),
 * };
 * const amounts = fromIterable<Order>([{ id: "o1", total: 30 }]).connect(fromIterable<Refund>([{ order: "o1", amount: 5 }])).process(ledger);
 * ```
 */
export interface CoProcessFunction<A, B, O> {
  processElement1(value: A, ctx: CoProcessContext<O>): void;
  processElement2(value: B, ctx: CoProcessContext<O>): void;
}

/**
 * A function over two keyed streams with the same key, like Flink's KeyedCoProcessFunction: one method per
 * input, keyed state and timers shared by both inputs per key, and one `onTimer`.
 *
 * @example
 * ```ts
 * import { fromIterable, type KeyedCoProcessFunction } from "gress";
 *
 * type Order = { id: string; at: number };
 * type Payment = { order: string; at: number };
 * // An order not paid within 10 s of event time goes to the output; a payment clears it.
 * const unpaid: KeyedCoProcessFunction<Order, Payment, string, string> = {
 *   processElement1(o, ctx) {
 *     ctx.state.value<boolean>("open").update(true);
 *     ctx.timers.registerEventTime(o.at + 10_000);
 *   },
 *   processElement2(_p, ctx) {
 *     ctx.state.value<boolean>("open").clear();
 *   },
 *   onTimer(_time, _domain, ctx) {
 *     if (ctx.state.value<boolean>("open").value() === true) ctx.emit(`order ${ctx.key} unpaid`);
 *   },
 * };
 * const orders = fromIterable<Order>([{ id: "o1", at: 0 }], { timestamp: (o) => o.at }).keyBy((o) => o.id);
 * const payments = fromIterable<Payment>([], { timestamp: (p) => p.at }).keyBy((p) => p.order);
 * const alerts = orders.connect(payments).process(unpaid);
 * ```
 */
export interface KeyedCoProcessFunction<A, B, K extends Key, O> {
  processElement1(value: A, ctx: ProcessContext<K, O>): void;
  processElement2(value: B, ctx: ProcessContext<K, O>): void;
  onTimer?(time: number, domain: "event" | "processing", ctx: ProcessContext<K, O>): void;
}

/** The key every record of unkeyed connected streams carries inside the operator. */
export const UNKEYED = "";

/**
 * Runs a user function on the value of a tagged record, sending the value itself (not its tag) to dead letters
 * when it throws, or failing the job under `onUserError: "fail"`, as the one-input operators do.
 */
export function callOnValue<V>(ctx: OperatorContext, pctx: { readonly timestamp: number; output<S>(tag: OutputTag<S>, value: S, reason?: string): void }, value: V, call: () => void): void {
  try {
    call();
  } catch (err) {
    // Failing: the process operator reports it (naming the operator) as for any process function.
    if (ctx.onUserError === "fail") throw err;
    const sideOutput: Downstream<Element<never>> = {
      next: (e) => {
        if (e.kind === "side") pctx.output(DEAD_LETTERS, e.value, e.reason);
      },
      error: () => {},
      complete: () => {},
    };
    handleUserError(ctx, sideOutput, record(value, pctx.timestamp), err);
  }
}

/** The process function that runs a keyed co-process function on the tagged records of both inputs. */
export function keyedCoProcess<A, B, K extends Key, O>(ctx: OperatorContext, fn: KeyedCoProcessFunction<A, B, K, O>): ProcessFunction<Tagged<A, B>, K, O> {
  const out: ProcessFunction<Tagged<A, B>, K, O> = {
    processElement(t, pctx) {
      callOnValue(ctx, pctx, t.value, () => (t.input === 1 ? fn.processElement1(t.value as A, pctx) : fn.processElement2(t.value as B, pctx)));
    },
  };
  const onTimer = fn.onTimer;
  return onTimer === undefined ? out : { ...out, onTimer: (time, domain, pctx) => onTimer.call(fn, time, domain, pctx) };
}

/**
 * A context with time and output only, read through to the process operator's context `pctx` (whose timestamp
 * moves with every record); `extra` adds members. It is what a function that belongs to no key sees: the
 * unkeyed co-process function, and the broadcast side of a broadcast function.
 */
export function timeAndOutput<O, E extends object = Record<never, never>>(pctx: ProcessContext<Key, O>, extra?: E): CoProcessContext<O> & E {
  const view: CoProcessContext<O> = {
    get timestamp() {
      return pctx.timestamp;
    },
    get currentWatermark() {
      return pctx.currentWatermark;
    },
    get currentProcessingTime() {
      return pctx.currentProcessingTime;
    },
    emit: (value, timestamp) => pctx.emit(value, timestamp),
    output: (tag, value, reason) => pctx.output(tag, value, reason),
  };
  return Object.assign(view, extra);
}

/** The process function that runs an unkeyed co-process function: its context shows no key, state or timers. */
export function unkeyedCoProcess<A, B, O>(ctx: OperatorContext, fn: CoProcessFunction<A, B, O>): ProcessFunction<Tagged<A, B>, Key, O> {
  let view: CoProcessContext<O> | undefined;
  let of: ProcessContext<Key, O> | undefined;
  const unkeyed = (pctx: ProcessContext<Key, O>): CoProcessContext<O> => {
    if (view === undefined || of !== pctx) {
      of = pctx;
      view = timeAndOutput(pctx);
    }
    return view;
  };
  return {
    processElement(t, pctx) {
      const c = unkeyed(pctx);
      callOnValue(ctx, pctx, t.value, () => (t.input === 1 ? fn.processElement1(t.value as A, c) : fn.processElement2(t.value as B, c)));
    },
  };
}
