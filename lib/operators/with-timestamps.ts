import type { Observable } from "rxjs";
import { type Element, MAX_WATERMARK, record, type StreamRecord } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import type { OperatorMetrics } from "../metrics.ts";
import { type Downstream, type OperatorBody, operate } from "../operate.ts";
import { SplitWatermarks } from "../split-watermarks.ts";
import { eventTime, type WatermarkStrategy } from "../watermarks.ts";
import { handleUserError } from "./user-error.ts";

/**
 * Assigns event time and generates watermarks with `strategy` (see {@link SplitWatermarks}): one generator
 * per source split, merged by minimum over the splits that are not idle, never going backwards. Upstream
 * watermarks are replaced, except the final one that closes a bounded input.
 *
 * @example
 * ```ts
 * bids.withTimestamps(boundedOutOfOrderness(2_000, { timestamp: (b) => b.dateTime }))
 * ```
 * @param ctx the operator's context (clock, metrics)
 * @param strategy how to read timestamps and derive watermarks
 * @returns an operator on element streams
 */
export function withTimestampsElements<T>(
  ctx: OperatorContext,
  strategy: WatermarkStrategy<T>,
): (source: Observable<Element<T>>) => Observable<Element<T>> {
  return operate<Element<T>, Element<T>>((downstream) => new TimestampAssigner(ctx, strategy, downstream));
}

/**
 * The operator's body for one subscription. A class rather than closures: its `next` is then one function in
 * every job, which V8 keeps inlining into the chain before it.
 */
class TimestampAssigner<T> implements OperatorBody<Element<T>> {
  readonly #ctx: OperatorContext;
  readonly #m: OperatorMetrics;
  readonly #strategy: WatermarkStrategy<T>;
  readonly #downstream: Downstream<Element<T>>;
  readonly #watermarks: SplitWatermarks;

  constructor(ctx: OperatorContext, strategy: WatermarkStrategy<T>, downstream: Downstream<Element<T>>) {
    this.#ctx = ctx;
    this.#m = ctx.metrics;
    this.#strategy = strategy;
    this.#downstream = downstream;
    this.#watermarks = new SplitWatermarks(strategy, ctx.clock, ctx.metrics, downstream);
  }

  next(e: Element<T>): void {
    if (e.kind === "record") {
      this.#onRecord(e);
      return;
    }
    if (e.kind === "watermark") {
      // Upstream watermarks are replaced, except the final one that closes a bounded input.
      if (e.timestamp === MAX_WATERMARK) this.#watermarks.finish();
      return;
    }
    // An announced split holds the watermark back until it delivers or turns idle.
    if (e.kind === "splits") this.#watermarks.announce(e.splits);
    this.#downstream.next(e);
  }
  teardown(): void {
    this.#watermarks.stop();
  }
  /** It passes records on (unchanged when their timestamp stays), and keeps none. */
  get records(): "forward" {
    return "forward";
  }

  #onRecord(e: StreamRecord<T>): void {
    const m = this.#m;
    m.recordsIn++;
    const ts = eventTime(this.#strategy, e.value, e.timestamp);
    if (typeof ts !== "number") {
      handleUserError(this.#ctx, this.#downstream, e, ts.error);
      return;
    }
    this.#watermarks.observe(e.split ?? "", ts);
    m.recordsOut++;
    this.#downstream.next(ts === e.timestamp ? e : record(e.value, ts, e.key, e.split));
    this.#watermarks.forwarded();
  }
}
