import type { Observable } from "rxjs";
import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import { operate } from "../operate.ts";
import { NewRecordsBody } from "./record-body.ts";

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
  return operate<Element<I>, Element<O>>((downstream) => new FlatMapBody(ctx, downstream, project));
}

class FlatMapBody<I, O> extends NewRecordsBody<I, O, (value: I) => Iterable<O>> {
  protected record(e: StreamRecord<I>): void {
    let values: O[];
    try {
      // Materialised first so a generator that throws halfway emits nothing for this record.
      values = Array.from(this.fn(e.value));
    } catch (err) {
      this.fail(e, err);
      return;
    }
    for (const value of values) {
      this.metrics.recordsOut++;
      this.out.send(value, e.timestamp, e.key, e.split);
    }
  }
}
