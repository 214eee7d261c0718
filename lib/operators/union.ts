import { Observable } from "rxjs";
import { END, type Element, MIN_WATERMARK, watermark } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";

/**
 * Merges several streams of the same type. Records interleave as they arrive; the output watermark is the
 * minimum of the inputs' watermarks (an input that has ended counts as +∞), and end-of-stream is emitted
 * once, after every input has ended.
 *
 * @example
 * ```ts
 * eu.union(us, asia)
 * ```
 * @param ctx the operator's context
 * @param inputs the streams to merge
 * @returns the merged element stream
 */
export function unionElements<T>(ctx: OperatorContext, inputs: readonly Observable<Element<T>>[]): Observable<Element<T>> {
  const m = ctx.metrics;
  return new Observable<Element<T>>((downstream) => {
    const marks = inputs.map(() => MIN_WATERMARK);
    const ended = inputs.map(() => false);
    let emitted = MIN_WATERMARK;
    let open = inputs.length;
    const advance = (): void => {
      let min = Number.POSITIVE_INFINITY;
      for (const w of marks) if (w < min) min = w;
      if (min > emitted) {
        emitted = min;
        m.watermark = min;
        downstream.next(watermark(min));
      }
    };
    const subs = inputs.map((input, i) =>
      input.subscribe({
        next(e) {
          switch (e.kind) {
            case "record":
              m.recordsIn++;
              m.recordsOut++;
              return downstream.next(e);
            case "watermark":
              if (e.timestamp > marks[i]!) {
                marks[i] = e.timestamp;
                advance();
              }
              return;
            case "end":
              if (ended[i]) return;
              ended[i] = true;
              marks[i] = Number.POSITIVE_INFINITY;
              advance();
              return;
            default:
              return downstream.next(e);
          }
        },
        error: (err) => downstream.error(err),
        complete() {
          if (--open === 0) {
            if (!ended.every(Boolean)) {
              // An input completed without end-of-stream (a plain Observable): treat it as ended.
              marks.fill(Number.POSITIVE_INFINITY);
              advance();
            }
            downstream.next(END);
            downstream.complete();
          }
        },
      }),
    );
    return () => {
      for (const s of subs) s.unsubscribe();
    };
  });
}
