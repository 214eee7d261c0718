import type { Observable } from "rxjs";
import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import { type Downstream, operate } from "../operate.ts";
import { RecordOutput } from "../record-output.ts";
import { RecordBody } from "./record-body.ts";

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

class FlatMapBody<I, O> extends RecordBody<I, O> {
  readonly #project: (value: I) => Iterable<O>;
  readonly #out: RecordOutput<O>;
  constructor(ctx: OperatorContext, downstream: Downstream<Element<O>>, project: (value: I) => Iterable<O>) {
    super(ctx, downstream);
    this.#project = project;
    this.#out = new RecordOutput(downstream);
  }
  /** It emits new records, and keeps none. */
  get records(): "consume" {
    return "consume";
  }
  protected record(e: StreamRecord<I>): void {
    let values: O[];
    try {
      // Materialised first so a generator that throws halfway emits nothing for this record.
      values = Array.from(this.#project(e.value));
    } catch (err) {
      this.fail(e, err);
      return;
    }
    for (const value of values) {
      this.metrics.recordsOut++;
      this.#out.send(value, e.timestamp, e.key, e.split);
    }
  }
}
