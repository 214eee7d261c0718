/**
 * Interval join: joins each left record `a` with every right record `b` of the same key such that
 * `a.ts + lowerMs <= b.ts <= a.ts + upperMs`, in event time, like Flink's interval join. Each side is kept
 * in keyed state (namespace = timestamp) only as long as a record of the other side could still match it:
 * a left record until the watermark reaches `a.ts + upperMs`, a right record until it reaches
 * `b.ts − lowerMs`. Records at or behind the watermark are late and go to the late side output.
 * A joined pair carries the larger of the two timestamps.
 * @module
 */
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { type Key, LATE_DATA } from "../../lib/element.ts";
import type { KeyedStream, Stream } from "../../lib/stream.ts";
import { TimeHeap } from "../heap.ts";
import { type Joined, joinElements, joinOptionsShape, sides } from "./common.ts";

/**
 * Options of {@link intervalJoin}.
 *
 * @example
 * ```ts
 * import type { IntervalJoinOptions } from "gress/cep";
 *
 * // A right record joins a left one if it is from 1 minute before to 5 minutes after it.
 * const within: IntervalJoinOptions = { lowerMs: -60_000, upperMs: 5 * 60_000, uid: "orders-payments", lateTag: "late-payments" };
 * ```
 */
export interface IntervalJoinOptions {
  /** Lower bound of `b.ts − a.ts` (may be negative). */
  readonly lowerMs: number;
  /** Upper bound of `b.ts − a.ts`; at least `lowerMs`. */
  readonly upperMs: number;
  readonly uid?: string;
  /** Side output for late records. Default "late". */
  readonly lateTag?: string;
}

const schema = z
  .strictObject({ lowerMs: z.number().finite(), upperMs: z.number().finite(), ...joinOptionsShape })
  .refine((o) => o.lowerMs <= o.upperMs, { message: "lowerMs must not exceed upperMs", path: ["upperMs"] });

/**
 * Joins two keyed streams on an event-time interval.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { intervalJoin } from "gress/cep";
 *
 * type Order = { id: string; customer: string; at: number };
 * type Payment = { order: string; customer: string; at: number };
 * const orders = fromIterable<Order>([{ id: "o1", customer: "ann", at: 0 }], { timestamp: (o) => o.at });
 * const payments = fromIterable<Payment>([{ order: "o1", customer: "ann", at: 120_000 }], { timestamp: (p) => p.at });
 * // Payments within 0..5 minutes after each order of the same customer, with the delay.
 * intervalJoin(orders.keyBy((o) => o.customer), payments.keyBy((p) => p.customer), { lowerMs: 0, upperMs: 300_000 }, (o, p) => ({
 *   order: o.id,
 *   delayMs: p.at - o.at,
 * })).sinkTo(sinkFn("paid", (x) => console.log(x))); // { order: "o1", delayMs: 120000 }
 * await orders.job.run();
 * ```
 * @param left left input
 * @param right right input, keyed like the left
 * @param options the interval and uid
 * @param join builds the output from a pair (default `{ left, right }`)
 * @returns the joined stream
 */
export function intervalJoin<L, R, K extends Key, O = Joined<L, R>>(
  left: KeyedStream<L, K>,
  right: KeyedStream<R, K>,
  options: IntervalJoinOptions,
  join: (left: L, right: R) => O = (l, r) => ({ left: l, right: r }) as O,
): Stream<O> {
  const o = validate(schema, options, "intervalJoin");
  const ctx = left.job.operator("intervalJoin", o.uid);
  const lower = o.lowerMs;
  const upper = o.upperMs;
  const lateTag = o.lateTag ?? LATE_DATA.id;
  const lefts = ctx.state.table<L[]>(ctx.id, "left");
  const rights = ctx.state.table<R[]>(ctx.id, "right");
  const m = ctx.metrics;
  const op = joinElements<L, R, O>(ctx, lateTag, (out, watermark) => {
    const cleanup = new TimeHeap();
    for (const [k, ns] of lefts.entries()) cleanup.push((ns as number) + upper, k);
    for (const [k, ns] of rights.entries()) cleanup.push((ns as number) - lower, k);
    return {
      record(k, s, ts) {
        if (ts <= watermark()) return out.late(s.value, ts, `late: timestamp ${ts} is at or behind the watermark ${watermark()}`);
        if (s.side === 0) {
          for (const [bts, bs] of rights.entriesOf(k)) {
            const b = bts as number;
            if (b >= ts + lower && b <= ts + upper) for (const r of bs) out.emit(join(s.value, r), Math.max(ts, b), k);
          }
          const list = lefts.get(k, ts) ?? [];
          list.push(s.value);
          lefts.put(k, ts, list);
          cleanup.push(ts + upper, k);
        } else {
          for (const [ats, as] of lefts.entriesOf(k)) {
            const a = ats as number;
            if (ts >= a + lower && ts <= a + upper) for (const l of as) out.emit(join(l, s.value), Math.max(ts, a), k);
          }
          const list = rights.get(k, ts) ?? [];
          list.push(s.value);
          rights.put(k, ts, list);
          cleanup.push(ts - lower, k);
        }
        m.buffered = lefts.size + rights.size;
      },
      advance(w) {
        while (cleanup.size > 0 && cleanup.peekTime() <= w) {
          const k = cleanup.pop()!;
          for (const [ns] of lefts.entriesOf(k)) if ((ns as number) + upper <= w) lefts.delete(k, ns);
          for (const [ns] of rights.entriesOf(k)) if ((ns as number) - lower <= w) rights.delete(k, ns);
        }
        m.buffered = lefts.size + rights.size;
      },
    };
  });
  return sides(left, right).transform(op);
}
