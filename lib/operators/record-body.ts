import type { Element, StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { Downstream, OperatorBody } from "../operate.ts";
import { RecordOutput } from "../record-output.ts";
import { handleUserError } from "./user-error.ts";

/**
 * The body of a stateless operator that applies a user function to each record's value (map, filter,
 * flatMap, tap): control elements pass through, a throwing user function is handled by the job's policy.
 *
 * These bodies are classes rather than closures made per subscription: V8 inlines by function, so one `next`
 * shared by every instance in every job stays inlinable where per-instance closures would not.
 */
export abstract class RecordBody<I, O, F> implements OperatorBody<Element<I>> {
  protected readonly ctx: OperatorContext;
  protected readonly metrics: OperatorMetrics;
  protected readonly downstream: Downstream<Element<O>>;
  /** The user function. */
  protected readonly fn: F;

  constructor(ctx: OperatorContext, downstream: Downstream<Element<O>>, fn: F) {
    this.ctx = ctx;
    this.metrics = ctx.metrics;
    this.downstream = downstream;
    this.fn = fn;
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

/** A body that emits new records (map, flatMap), through a {@link RecordOutput}, and keeps none it is given. */
export abstract class NewRecordsBody<I, O, F> extends RecordBody<I, O, F> {
  protected readonly out: RecordOutput<O>;
  constructor(ctx: OperatorContext, downstream: Downstream<Element<O>>, fn: F) {
    super(ctx, downstream, fn);
    this.out = new RecordOutput(downstream);
  }
  get records(): "consume" {
    return "consume";
  }
}

/** A body that passes some records on unchanged (filter, tap) and keeps none. */
export abstract class PassingBody<T, F> extends RecordBody<T, T, F> {
  get records(): "forward" {
    return "forward";
  }
}
