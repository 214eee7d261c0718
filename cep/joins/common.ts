/**
 * What the three joins share. Two inputs are merged with `union` after tagging each value with its side,
 * so records keep their keys and timestamps and the watermark is the minimum of both inputs' watermarks
 * (an ended input counts as +∞) — the rule of lib/operators/union.ts for every two-input operator.
 * @module
 */
import { Observable } from "rxjs";
import { z } from "zod";
import { type Element, type Key, MIN_WATERMARK, record, sideRecord } from "../../lib/element.ts";
import type { OperatorContext } from "../../lib/operator-context.ts";
import { handleUserError } from "../../lib/operators/user-error.ts";
import type { KeyedStream, Stream } from "../../lib/stream.ts";

/**
 * A value tagged with the input it came from: 0 = left, 1 = right.
 *
 * @example
 * ```ts
 * import type { Sided } from "gress/cep";
 *
 * // The two inputs of a join merged into one stream, each value tagged with its side (0: left, 1: right).
 * const describe = (s: Sided<{ order: string }, { payment: string }>): string => (s.side === 0 ? `order ${s.value.order}` : `payment ${s.value.payment}`);
 * ```
 */
export type Sided<L, R> = { readonly side: 0; readonly value: L } | { readonly side: 1; readonly value: R };

/**
 * A joined pair, the default output of the joins.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { intervalJoin, type Joined } from "gress/cep";
 *
 * const views = fromIterable([{ ad: "a1", at: 0 }], { timestamp: (v) => v.at }).keyBy((v) => v.ad);
 * const clicks = fromIterable([{ ad: "a1", at: 2_000 }], { timestamp: (c) => c.at }).keyBy((c) => c.ad);
 * // The default output of the joins: the two records of a pair.
 * intervalJoin(views, clicks, { lowerMs: 0, upperMs: 10_000 }).sinkTo(
 *   sinkFn("pairs", (j: Joined<{ ad: string; at: number }, { ad: string; at: number }>) => console.log(j.left.ad, j.right.at - j.left.at)),
 * );
 * ```
 */
export interface Joined<L, R> {
  readonly left: L;
  readonly right: R;
}

/** Merges two keyed streams into one stream of tagged values. */
export function sides<L, R, K extends Key>(left: KeyedStream<L, K>, right: KeyedStream<R, K>): Stream<Sided<L, R>> {
  const l = left.map((value): Sided<L, R> => ({ side: 0, value }));
  const r = right.map((value): Sided<L, R> => ({ side: 1, value }));
  return l.union(r);
}

/** Options every join takes. */
export const joinOptionsShape: { uid: z.ZodOptional<z.ZodString>; lateTag: z.ZodOptional<z.ZodString> } = {
  uid: z.string().optional(),
  lateTag: z.string().min(1).optional(),
};

/** How a join's body reports results and late records. */
export interface JoinOutput<O> {
  emit(value: O, timestamp: number, key: Key): void;
  late(value: unknown, timestamp: number, reason: string): void;
}

/** The per-subscription logic of a join: one call per record, one per watermark advance. */
export interface JoinBody<L, R> {
  record(key: Key, value: Sided<L, R>, timestamp: number): void;
  advance(watermark: number): void;
}

/**
 * The operator shell every join shares: keyed-input check, user errors to dead letters, a watermark that
 * only moves forward and is stored in the operator's `watermark` table, control elements passed through.
 * `init` runs once per subscription and gets the current watermark through `watermark()`.
 */
export function joinElements<L, R, O>(
  ctx: OperatorContext,
  lateTag: string,
  init: (out: JoinOutput<O>, watermark: () => number) => JoinBody<L, R>,
): (source: Observable<Element<Sided<L, R>>>) => Observable<Element<O>> {
  const wmState = ctx.state.table<number>(ctx.id, "watermark");
  const m = ctx.metrics;
  return (source) =>
    new Observable<Element<O>>((downstream) => {
      let wm = wmState.get("", "") ?? MIN_WATERMARK;
      const body = init(
        {
          emit(value, timestamp, key) {
            m.recordsOut++;
            downstream.next(record(value, timestamp, key));
          },
          late(value, timestamp, reason) {
            m.lateRecords++;
            downstream.next(sideRecord(lateTag, value, timestamp, `${ctx.id}: ${reason}`));
          },
        },
        () => wm,
      );
      const subscription = source.subscribe({
        next(e) {
          try {
            if (e.kind === "record") {
              m.recordsIn++;
              if (e.key === undefined) throw new TypeError(`join "${ctx.id}" needs keyed inputs`);
              try {
                body.record(e.key, e.value, e.timestamp);
              } catch (err) {
                handleUserError(ctx, downstream, e, err);
              }
              return;
            }
            if (e.kind === "watermark" && e.timestamp > wm) {
              wm = e.timestamp;
              m.watermark = wm;
              wmState.put("", "", wm);
              body.advance(wm);
            }
            downstream.next(e);
          } catch (err) {
            downstream.error(err);
          }
        },
        error: (err) => downstream.error(err),
        complete: () => downstream.complete(),
      });
      return () => subscription.unsubscribe();
    });
}
