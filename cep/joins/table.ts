/**
 * Stream–table join in event time (a temporal join): each record of the stream is joined with the value the
 * table had for its key *at the record's timestamp* — the latest version from the changelog stream with a
 * timestamp at or before it. Stream records wait in keyed state until the watermark (the minimum of both
 * inputs') passes them, so a table update that arrives a little late is still seen. Table versions older
 * than the newest one at or before the watermark can never be used again and are deleted; so are stream
 * records once joined. A changelog record for which `isDelete` holds removes the key's value.
 *
 * `mode: "inner"` (default) drops records with no table value; `"left"` emits them with `right: undefined`.
 * @module
 */
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { type Key, LATE_DATA } from "../../lib/element.ts";
import type { KeyedStream, Stream } from "../../lib/stream.ts";
import { TimeHeap } from "../heap.ts";
import { joinElements, joinOptionsShape, sides } from "./common.ts";

/**
 * Options of {@link tableJoin}.
 *
 * @example
 * ```ts
 * import type { TableJoinOptions } from "gress/cep";
 *
 * type Rate = { currency: string; perEuro: number | null };
 * // Keep records without a rate (right: undefined), and treat a null rate as a deletion.
 * const options: TableJoinOptions<Rate> = { mode: "left", isDelete: (r) => r.perEuro === null, uid: "fx" };
 * ```
 */
export interface TableJoinOptions<U> {
  readonly uid?: string;
  readonly lateTag?: string;
  /** "inner" (default) or "left". */
  readonly mode?: "inner" | "left";
  /** A changelog record that deletes the key's value (a tombstone). */
  readonly isDelete?: (row: U) => boolean;
}

/**
 * A stream record joined with the table value valid at its timestamp.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { tableJoin, type TableJoined } from "gress/cep";
 *
 * type Payment = { currency: string; amount: number; at: number };
 * type Rate = { currency: string; perEuro: number; at: number };
 * const payments = fromIterable<Payment>([{ currency: "USD", amount: 10, at: 5_000 }], { timestamp: (p) => p.at });
 * const rates = fromIterable<Rate>([{ currency: "USD", perEuro: 1.1, at: 0 }], { timestamp: (r) => r.at });
 * tableJoin(payments.keyBy((p) => p.currency), rates.keyBy((r) => r.currency)).sinkTo(
 *   sinkFn("euros", (j: TableJoined<Payment, Rate>) => console.log(j.left.amount / (j.right?.perEuro ?? 1))),
 * );
 * ```
 */
export interface TableJoined<T, U> {
  readonly left: T;
  readonly right: U | undefined;
}

const schema = z.strictObject({ ...joinOptionsShape, mode: z.enum(["inner", "left"]).optional(), isDelete: z.function().optional() });

/**
 * Joins a keyed stream with the latest value per key of a changelog stream.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { tableJoin } from "gress/cep";
 *
 * type Tx = { user: string; amount: number; at: number };
 * type Profile = { user: string; country: string; at: number };
 * const tx = fromIterable<Tx>([{ user: "ann", amount: 5, at: 2_000 }, { user: "bob", amount: 7, at: 2_000 }], { timestamp: (t) => t.at });
 * const profiles = fromIterable<Profile>([{ user: "ann", country: "FR", at: 1_000 }], { timestamp: (p) => p.at });
 * // Each transaction with the profile valid at its time; "left" keeps bob's, with right: undefined.
 * tableJoin(tx.keyBy((t) => t.user), profiles.keyBy((p) => p.user), { mode: "left" })
 *   .sinkTo(sinkFn("enriched", (j) => console.log(j.left.user, j.right?.country))); // ann FR · bob undefined
 * await tx.job.run();
 * ```
 * @param stream the records to enrich
 * @param changelog the table's changelog, keyed like the stream
 * @param options mode, tombstones, uid
 * @returns each record with the table value valid at its timestamp
 */
export function tableJoin<T, U, K extends Key>(stream: KeyedStream<T, K>, changelog: KeyedStream<U, K>, options: TableJoinOptions<U> = {}): Stream<TableJoined<T, U>> {
  const o = validate(schema, options, "tableJoin");
  const ctx = stream.job.operator("tableJoin", o.uid);
  const lateTag = o.lateTag ?? LATE_DATA.id;
  const left = (o.mode ?? "inner") === "left";
  const isDelete = options.isDelete;
  // versions: (key, version timestamp) → value, or null for a deletion
  const versions = ctx.state.table<U | null>(ctx.id, "versions");
  const buffered = ctx.state.table<T[]>(ctx.id, "buffer");
  const m = ctx.metrics;
  const sortedVersions = (k: Key): [number, U | null][] =>
    [...versions.entriesOf(k)].map(([ns, v]): [number, U | null] => [ns as number, v]).sort((a, b) => a[0] - b[0]);
  /** Deletes the versions of `k` older than its newest version at or before `w`. */
  const compact = (k: Key, w: number): void => {
    const vs = sortedVersions(k);
    let newest = -1;
    for (let i = 0; i < vs.length; i++) if (vs[i]![0] <= w) newest = i;
    for (let i = 0; i < newest; i++) versions.delete(k, vs[i]![0]);
    // A deletion that is the newest usable version is itself dropped: no value is the same as none.
    if (newest >= 0 && vs[newest]![1] === null) versions.delete(k, vs[newest]![0]);
  };
  const op = joinElements<T, U, TableJoined<T, U>>(ctx, lateTag, (out, watermark) => {
    const due = new TimeHeap();
    for (const [k, ns] of buffered.entries()) due.push(ns as number, k);
    return {
      record(k, s, ts) {
        if (s.side === 1) {
          versions.put(k, ts, isDelete?.(s.value) === true ? null : s.value);
          compact(k, watermark());
        } else if (ts <= watermark()) {
          out.late(s.value, ts, `late: timestamp ${ts} is at or behind the watermark ${watermark()}`);
        } else {
          const list = buffered.get(k, ts) ?? [];
          list.push(s.value);
          buffered.put(k, ts, list);
          due.push(ts, k);
        }
        m.buffered = versions.size + buffered.size;
      },
      advance(w) {
        while (due.size > 0 && due.peekTime() <= w) {
          const k = due.pop()!;
          const times: number[] = [];
          for (const [ns] of buffered.entriesOf(k)) if ((ns as number) <= w) times.push(ns as number);
          if (times.length === 0) continue;
          const vs = sortedVersions(k);
          for (const ts of times.sort((a, b) => a - b)) {
            let row: U | null | undefined;
            for (const [vts, v] of vs) if (vts <= ts) row = v;
            for (const value of buffered.get(k, ts) ?? []) {
              if ((row === undefined || row === null) && !left) continue;
              out.emit({ left: value, right: row ?? undefined }, ts, k);
            }
            buffered.delete(k, ts);
          }
          compact(k, w);
        }
        m.buffered = versions.size + buffered.size;
      },
    };
  });
  return sides(stream, changelog).transform(op);
}
