import type { Observable } from "rxjs";
import type { Element } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { operate } from "../operate.ts";
import { handleUserError } from "./user-error.ts";

/**
 * Keeps the records whose value satisfies `predicate`; control elements always pass.
 *
 * @example
 * ```ts
 * stream.filter((ride) => ride.kind === "request")
 * ```
 * @param ctx the operator's context
 * @param predicate the test for each value
 * @returns an operator on element streams
 */
export function filterElements<T>(
  ctx: OperatorContext,
  predicate: (value: T) => boolean,
): (source: Observable<Element<T>>) => Observable<Element<T>> {
  const m = ctx.metrics;
  return operate<Element<T>, Element<T>>((downstream) => ({
    next(e) {
      if (e.kind !== "record") return downstream.next(e);
      m.recordsIn++;
      let keep: boolean;
      try {
        keep = predicate(e.value);
      } catch (err) {
        return handleUserError(ctx, downstream, e, err);
      }
      if (!keep) return;
      m.recordsOut++;
      downstream.next(e);
    },
  }));
}
