import type { Observable } from "rxjs";
import type { Element } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { operate } from "../operate.ts";
import { handleUserError } from "./user-error.ts";

/**
 * Calls `effect` with each value and passes the record on unchanged.
 *
 * @example
 * ```ts
 * stream.tap((bid) => console.log(bid))
 * ```
 * @param ctx the operator's context
 * @param effect called for each value; its return value is ignored
 * @returns an operator on element streams
 */
export function tapElements<T>(
  ctx: OperatorContext,
  effect: (value: T) => void,
): (source: Observable<Element<T>>) => Observable<Element<T>> {
  const m = ctx.metrics;
  return operate<Element<T>, Element<T>>((downstream) => ({
    next(e) {
      if (e.kind !== "record") return downstream.next(e);
      m.recordsIn++;
      try {
        effect(e.value);
      } catch (err) {
        return handleUserError(ctx, downstream, e, err);
      }
      m.recordsOut++;
      downstream.next(e);
    },
  }));
}
