import type { Observable } from "rxjs";
import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { type Downstream, operate } from "../operate.ts";
import { RecordBody } from "./record-body.ts";

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

class FilterBody<T> extends RecordBody<T, T> {
  readonly #predicate: (value: T) => boolean;
  constructor(ctx: OperatorContext, downstream: Downstream<Element<T>>, predicate: (value: T) => boolean) {
    super(ctx, downstream);
    this.#predicate = predicate;
  }
  /** It passes records on unchanged, and keeps none. */
  get records(): "forward" {
    return "forward";
  }
  protected record(e: StreamRecord<T>): void {
    let keep: boolean;
    try {
      keep = this.#predicate(e.value);
    } catch (err) {
      this.fail(e, err);
      return;
    }
    if (!keep) return;
    this.metrics.recordsOut++;
    this.downstream.next(e);
  }
}
