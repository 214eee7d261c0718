import type { Observable } from "rxjs";
import type { Element, Key } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { operate } from "../operate.ts";
import { handleUserError } from "./user-error.ts";

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
export function keyByElements<T>(
  ctx: OperatorContext,
  selector: (value: T) => Key,
): (source: Observable<Element<T>>) => Observable<Element<T>> {
  const m = ctx.metrics;
  return operate<Element<T>, Element<T>>((downstream) => ({
    next(e) {
      if (e.kind !== "record") return downstream.next(e);
      m.recordsIn++;
      let key: Key;
      try {
        key = selector(e.value);
        if (typeof key !== "string" && !(typeof key === "number" && Number.isFinite(key))) {
          throw new TypeError(`key must be a string or a finite number, got ${key === null ? "null" : typeof key}`);
        }
      } catch (err) {
        return handleUserError(ctx, downstream, e, err);
      }
      m.recordsOut++;
      downstream.next({ kind: "record", value: e.value, timestamp: e.timestamp, key, split: e.split });
    },
  }));
}
