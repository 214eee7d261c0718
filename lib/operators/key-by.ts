import type { Observable } from "rxjs";
import { type Element, type Key, record, type StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import { type ChainableOperator, type Downstream, type OperatorBody, type OperatorInit, operate } from "../operate.ts";
import { handleUserError } from "./user-error.ts";

/**
 * Finds the key of a record by applying a key selector. A selector that throws or returns a key that is not a
 * string or a finite number sends the record to dead letters (or fails the job, with `onUserError: "fail"`)
 * and gives `undefined`.
 */
export interface KeyOf<T> {
  keyOf(record: StreamRecord<T>, downstream: Downstream<Element<never>>): Key | undefined;
}

/** keyBy's key selection; a class, so that `keyOf` is one function for every keyBy in every job. */
class KeySelection<T> implements KeyOf<T> {
  readonly #ctx: OperatorContext;
  readonly #selector: (value: T) => Key;
  constructor(ctx: OperatorContext, selector: (value: T) => Key) {
    this.#ctx = ctx;
    this.#selector = selector;
  }
  keyOf(e: StreamRecord<T>, downstream: Downstream<Element<never>>): Key | undefined {
    // The keyBy's metrics and dead letters are the same whether it runs as an operator or fused into the next.
    const m = this.#ctx.metrics;
    m.recordsIn++;
    let key: Key;
    try {
      key = this.#selector(e.value);
      if (typeof key !== "string" && !(typeof key === "number" && Number.isFinite(key))) {
        throw new TypeError(`key must be a string or a finite number, got ${key === null ? "null" : typeof key}`);
      }
    } catch (err) {
      handleUserError(this.#ctx, downstream, e, err);
      return undefined;
    }
    m.recordsOut++;
    return key;
  }
}

/** The keyBy operator, which also hands out its key selection for a keyed operator to apply itself. */
export interface KeyByOperator<T> extends ChainableOperator<Element<T>, Element<T>> {
  readonly keys: KeyOf<T>;
}

/**
 * A keyed operator (window, process) that can also apply a key selector itself instead of reading the key a
 * keyBy set on each record. A keyBy whose only consumer is such an operator is fused into it, as Flink's keyBy
 * is no operator of its own: records are then not copied just to carry their key.
 */
export interface KeyedOperator<I, O> extends ChainableOperator<Element<I>, Element<O>> {
  /** The operator's per-subscription init when it finds keys with `keys`. */
  keyedBy(keys: KeyOf<I>): OperatorInit<Element<I>, Element<O>>;
}

/**
 * Builds a {@link KeyedOperator} from a body factory. `keys` is undefined when the operator reads the key
 * that a keyBy set on the record (`record.key`).
 */
export function keyedOperator<I, O>(
  init: (downstream: Downstream<Element<O>>, keys: KeyOf<I> | undefined) => OperatorBody<Element<I>>,
): KeyedOperator<I, O> {
  const op = operate<Element<I>, Element<O>>((downstream) => init(downstream, undefined));
  return Object.assign(op, { keyedBy: (keys: KeyOf<I>) => (downstream: Downstream<Element<O>>) => init(downstream, keys) });
}

/** True if `op` can apply a key selector itself. */
export function isKeyedOperator<I, O>(op: (source: Observable<Element<I>>) => Observable<Element<O>>): op is KeyedOperator<I, O> {
  return typeof (op as Partial<KeyedOperator<I, O>>).keyedBy === "function";
}

/**
 * Sets each record's key to `selector(value)`. Keys must be strings or finite numbers, because they are
 * stored in state; a record whose key is anything else goes to dead letters with the reason.
 *
 * @example
 * ```ts
 * bids.keyBy((bid) => bid.auction)
 * ```
 * @param ctx the operator's context
 * @param selector extracts the key from a value
 * @returns an operator on element streams
 */
export function keyByElements<T>(ctx: OperatorContext, selector: (value: T) => Key): KeyByOperator<T> {
  const keys = new KeySelection(ctx, selector);
  const op = operate<Element<T>, Element<T>>((downstream) => ({
    // It emits a copy of each record with its key, and keeps none.
    records: "consume",
    next(e) {
      if (e.kind !== "record") return downstream.next(e);
      const key = keys.keyOf(e, downstream);
      if (key !== undefined) downstream.next(record(e.value, e.timestamp, key, e.split));
    },
  }));
  return Object.assign(op, { keys });
}

/**
 * The symbol under which a scale-out task's Job takes over `keyBy` (lib/scaleout/task.ts): the keyed stream
 * then comes through a repartition topic. Absent on every other job, so single-process keyBy is unchanged.
 */
export const SHUFFLE: unique symbol = Symbol.for("gress.scaleout.shuffle");
