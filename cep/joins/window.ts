/**
 * Window join: pairs the left and right records of the same key that fall into the same event-time window
 * (tumbling or sliding), emitted when the watermark passes the window's end, like Flink's window join. Each
 * window's records live in keyed state (namespace = window start) and are deleted when the window fires.
 * A record whose every window has already fired is late and goes to the late side output.
 * @module
 */
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { type Key, LATE_DATA } from "../../lib/element.ts";
import { ConfigError } from "../../lib/errors.ts";
import type { KeyedStream, Stream } from "../../lib/stream.ts";
import { type WindowAssigner, windowStart } from "../../lib/windows/assigners.ts";
import { TimeHeap } from "../heap.ts";
import { type Joined, joinElements, joinOptionsShape, sides } from "./common.ts";

/**
 * Options of {@link windowJoin}.
 *
 * @example
 * ```ts
 * import { fromIterable, tumbling } from "gress";
 * import { windowJoin, type WindowJoinOptions } from "gress/cep";
 *
 * const options: WindowJoinOptions = { uid: "ad-clicks", lateTag: "late-ad-events" };
 * const views = fromIterable([{ ad: "a1", at: 0 }], { timestamp: (v) => v.at }).keyBy((v) => v.ad);
 * const clicks = fromIterable([{ ad: "a1", at: 5_000 }], { timestamp: (c) => c.at }).keyBy((c) => c.ad);
 * const pairs = windowJoin(views, clicks, tumbling(60_000), options);
 * ```
 */
export interface WindowJoinOptions {
  readonly uid?: string;
  /** Side output for late records. Default "late". */
  readonly lateTag?: string;
}

/**
 * A joined pair with the window it was found in.
 *
 * @example
 * ```ts
 * import type { WindowJoined } from "gress/cep";
 *
 * type View = { ad: string };
 * type Click = { ad: string };
 * // A pair with the bounds of the window both records fell into.
 * const show = (j: WindowJoined<View, Click>): string => `${j.left.ad} clicked in [${j.start}, ${j.end})`;
 * ```
 */
export interface WindowJoined<L, R> extends Joined<L, R> {
  readonly start: number;
  readonly end: number;
}

/**
 * Joins two keyed streams per window.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn, tumbling } from "gress";
 * import { windowJoin } from "gress/cep";
 *
 * const clicks = fromIterable([{ ad: "a1", at: 30_000 }], { timestamp: (c) => c.at });
 * const views = fromIterable([{ ad: "a1", at: 10_000 }], { timestamp: (v) => v.at });
 * // Every (click, view) pair of the same ad in the same minute.
 * windowJoin(clicks.keyBy((c) => c.ad), views.keyBy((v) => v.ad), tumbling(60_000))
 *   .sinkTo(sinkFn("pairs", (j) => console.log(j.left.ad, j.start, j.end))); // a1 0 60000
 * await clicks.job.run();
 * ```
 * @param left left input
 * @param right right input, keyed like the left
 * @param assigner tumbling or sliding windows
 * @param options uid, late tag
 * @returns every (left, right) pair of each window, with the window bounds
 */
export function windowJoin<L, R, K extends Key>(
  left: KeyedStream<L, K>,
  right: KeyedStream<R, K>,
  assigner: WindowAssigner<unknown>,
  options: WindowJoinOptions = {},
): Stream<WindowJoined<L, R>> {
  const o = validate(z.strictObject(joinOptionsShape), options, "windowJoin");
  if (assigner.kind !== "tumbling" && assigner.kind !== "sliding") {
    throw new ConfigError(`windowJoin supports tumbling and sliding windows, got ${assigner.kind}`, [
      { path: ["assigner"], code: "invalid_value", message: "expected tumbling or sliding windows" },
    ]);
  }
  const size = assigner.size;
  const slide = assigner.kind === "sliding" ? assigner.slide : assigner.size;
  const offset = assigner.offset;
  const ctx = left.job.operator("windowJoin", o.uid);
  const lateTag = o.lateTag ?? LATE_DATA.id;
  const lefts = ctx.state.table<L[]>(ctx.id, "left");
  const rights = ctx.state.table<R[]>(ctx.id, "right");
  const m = ctx.metrics;
  const op = joinElements<L, R, WindowJoined<L, R>>(ctx, lateTag, (out, watermark) => {
    const fire = new TimeHeap();
    for (const [k, ns] of lefts.entries()) fire.push((ns as number) + size - 1, k);
    for (const [k, ns] of rights.entries()) fire.push((ns as number) + size - 1, k);
    return {
      record(k, s, ts) {
        let placed = false;
        for (let start = windowStart(ts, slide, offset); start > ts - size; start -= slide) {
          if (start + size - 1 <= watermark()) continue;
          placed = true;
          if (s.side === 0) {
            const list = lefts.get(k, start) ?? [];
            list.push(s.value);
            lefts.put(k, start, list);
          } else {
            const list = rights.get(k, start) ?? [];
            list.push(s.value);
            rights.put(k, start, list);
          }
          fire.push(start + size - 1, k);
        }
        m.buffered = lefts.size + rights.size;
        if (!placed) out.late(s.value, ts, `late: every window of timestamp ${ts} has fired (watermark ${watermark()})`);
      },
      advance(w) {
        while (fire.size > 0 && fire.peekTime() <= w) {
          const k = fire.pop()!;
          const starts = new Set<number>();
          for (const [ns] of lefts.entriesOf(k)) if ((ns as number) + size - 1 <= w) starts.add(ns as number);
          for (const [ns] of rights.entriesOf(k)) if ((ns as number) + size - 1 <= w) starts.add(ns as number);
          for (const start of [...starts].sort((a, b) => a - b)) {
            const rs = rights.get(k, start) ?? [];
            for (const l of lefts.get(k, start) ?? []) for (const r of rs) out.emit({ left: l, right: r, start, end: start + size }, start + size - 1, k);
            lefts.delete(k, start);
            rights.delete(k, start);
          }
        }
        m.buffered = lefts.size + rights.size;
      },
    };
  });
  return sides(left, right).transform(op);
}
