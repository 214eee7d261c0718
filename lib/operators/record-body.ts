import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../job.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { Downstream, OperatorBody } from "../operate.ts";
import { handleUserError } from "./user-error.ts";

/**
 * The body of a stateless operator that applies a user function to each record's value (map, filter,
 * flatMap, tap): control elements pass through, a throwing user function is handled by the job's policy.
 *
 * These bodies are classes rather than closures made per subscription: V8 inlines by function, so one `next`
 * shared by every instance in every job stays inlinable where per-instance closures would not.
 */
export abstract class RecordBody<I, O> implements OperatorBody<Element<I>> {
  protected readonly ctx: OperatorContext;
  protected readonly metrics: OperatorMetrics;
  protected readonly downstream: Downstream<Element<O>>;

  constructor(ctx: OperatorContext, downstream: Downstream<Element<O>>) {
    this.ctx = ctx;
    this.metrics = ctx.metrics;
    this.downstream = downstream;
  }

  next(e: Element<I>): void {
    if (e.kind !== "record") {
      this.downstream.next(e);
      return;
    }
    this.metrics.recordsIn++;
    this.record(e);
  }

  /** Handles one record; a user function that throws is reported with {@link fail}. */
  protected abstract record(e: StreamRecord<I>): void;

  /** The user function threw on `e`: dead letters, or a failed job with `onUserError: "fail"`. */
  protected fail(e: StreamRecord<I>, err: unknown): void {
    handleUserError(this.ctx, this.downstream, e, err);
  }
}
