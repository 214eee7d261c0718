import type { Observable } from "rxjs";
import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import { operate } from "../operate.ts";
import { PassingBody } from "./record-body.ts";

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
  return operate<Element<T>, Element<T>>((downstream) => new FilterBody(ctx, downstream, predicate));
}

class FilterBody<T> extends PassingBody<T, (value: T) => boolean> {
  protected record(e: StreamRecord<T>): void {
    let keep: boolean;
    try {
      keep = this.fn(e.value);
    } catch (err) {
      this.fail(e, err);
      return;
    }
    if (!keep) return;
    this.metrics.recordsOut++;
    this.downstream.next(e);
  }
}
