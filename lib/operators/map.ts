import type { Observable } from "rxjs";
import type { Element } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { operate } from "../operate.ts";
import { handleUserError } from "./user-error.ts";

/**
 * Applies `project` to the value of every record; control elements pass through unchanged.
 *
 * @example
 * ```ts
 * stream.map((bid) => ({ ...bid, price: bid.price * 0.9 }))
 * ```
 * @param ctx the operator's context (metrics, error policy)
 * @param project the function applied to each value
 * @returns an operator on element streams
 */
export function mapElements<I, O>(
  ctx: OperatorContext,
  project: (value: I) => O,
): (source: Observable<Element<I>>) => Observable<Element<O>> {
  const m = ctx.metrics;
  return operate<Element<I>, Element<O>>((downstream) => ({
    next(e) {
      if (e.kind !== "record") return downstream.next(e);
      m.recordsIn++;
      let value: O;
      try {
        value = project(e.value);
      } catch (err) {
        return handleUserError(ctx, downstream, e, err);
      }
      m.recordsOut++;
      downstream.next({ kind: "record", value, timestamp: e.timestamp, key: e.key, split: e.split });
    },
  }));
}
