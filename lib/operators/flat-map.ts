import type { Observable } from "rxjs";
import type { Element } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { operate } from "../operate.ts";
import { handleUserError } from "./user-error.ts";

/**
 * Replaces every record by zero or more records, one per value of the iterable `project` returns. The
 * new records keep the original's timestamp and key.
 *
 * @example
 * ```ts
 * lines.flatMap((line) => line.split(" "))
 * ```
 * @param ctx the operator's context
 * @param project returns the values that replace one value
 * @returns an operator on element streams
 */
export function flatMapElements<I, O>(
  ctx: OperatorContext,
  project: (value: I) => Iterable<O>,
): (source: Observable<Element<I>>) => Observable<Element<O>> {
  const m = ctx.metrics;
  return operate<Element<I>, Element<O>>((downstream) => ({
    next(e) {
      if (e.kind !== "record") return downstream.next(e);
      m.recordsIn++;
      let values: O[];
      try {
        // Materialised first so a generator that throws halfway emits nothing for this record.
        values = Array.from(project(e.value));
      } catch (err) {
        return handleUserError(ctx, downstream, e, err);
      }
      for (const value of values) {
        m.recordsOut++;
        downstream.next({ kind: "record", value, timestamp: e.timestamp, key: e.key, split: e.split });
      }
    },
  }));
}
