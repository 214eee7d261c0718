import type { Observable } from "rxjs";
import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { type Downstream, operate } from "../operate.ts";
import { RecordOutput } from "../record-output.ts";
import { RecordBody } from "./record-body.ts";

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

class MapBody<I, O> extends RecordBody<I, O> {
  readonly #project: (value: I) => O;
  readonly #out: RecordOutput<O>;
  constructor(ctx: OperatorContext, downstream: Downstream<Element<O>>, project: (value: I) => O) {
    super(ctx, downstream);
    this.#project = project;
    this.#out = new RecordOutput(downstream);
  }
  /** It emits a new record per record, and keeps none. */
  get records(): "consume" {
    return "consume";
  }
  protected record(e: StreamRecord<I>): void {
    let value: O;
    try {
      value = this.#project(e.value);
    } catch (err) {
      this.fail(e, err);
      return;
    }
    this.metrics.recordsOut++;
    this.#out.send(value, e.timestamp, e.key, e.split);
  }
}
