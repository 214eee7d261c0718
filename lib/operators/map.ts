import type { Observable } from "rxjs";
import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import { operate } from "../operate.ts";
import { NewRecordsBody } from "./record-body.ts";

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
  return operate<Element<I>, Element<O>>((downstream) => new MapBody(ctx, downstream, project));
}

class MapBody<I, O> extends NewRecordsBody<I, O, (value: I) => O> {
  protected record(e: StreamRecord<I>): void {
    let value: O;
    try {
      value = this.fn(e.value);
    } catch (err) {
      this.fail(e, err);
      return;
    }
    this.metrics.recordsOut++;
    this.out.send(value, e.timestamp, e.key, e.split);
  }
}
