import type { Observable } from "rxjs";
import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import { operate } from "../operate.ts";
import { PassingBody } from "./record-body.ts";

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
  return operate<Element<T>, Element<T>>((downstream) => new TapBody(ctx, downstream, effect));
}

class TapBody<T> extends PassingBody<T, (value: T) => void> {
  protected record(e: StreamRecord<T>): void {
    try {
      this.fn(e.value);
    } catch (err) {
      this.fail(e, err);
      return;
    }
    this.metrics.recordsOut++;
    this.downstream.next(e);
  }
}
