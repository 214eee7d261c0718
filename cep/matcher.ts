/**
 * The pattern-matching operator. It runs a compiled pattern per key (or once, globally, on a stream that is
 * not keyed) and emits one stream of {@link PatternResult}s: completed matches (`kind: "match"`) and
 * partial matches whose time bound passed (`kind: "timeout"`). Both are first-class values on the main
 * output, so a user handles a missing step the same way as a match — `results.filter(isTimeout)` — instead
 * of fishing in a side channel. Absences ("A not followed by B within 5 min") complete as matches when the
 * watermark passes the bound.
 *
 * In event time (default) records wait in a per-key buffer, sorted by timestamp, until the watermark passes
 * them, so the NFA sees every key's events in event-time order whatever the arrival order; a record at or
 * behind the watermark is late and goes to the late side output. In processing time a record is matched on
 * arrival, stamped with the clock, and timeouts fire on clock timers.
 *
 * All state is keyed state of the operator: `pending` (the sort buffer), `partials` (partial matches and
 * held completed matches per key), `events` and `nodes` (the shared buffer), `watermark`. A key's entries are
 * deleted as soon as nothing can use them. The heaps that find due keys are rebuilt from the tables on start.
 * @module
 */
import type { Observable } from "rxjs";
import { operate } from "../lib/operate.ts";
import { z } from "zod";
import { validate } from "../lib/config.ts";
import { type Element, type Key, LATE_DATA, MAX_WATERMARK, MIN_WATERMARK, type OutputTag, outputTag, record, sideRecord, type StreamRecord } from "../lib/element.ts";
import type { OperatorContext } from "../lib/operator-context.ts";
import { handleUserError } from "../lib/operators/user-error.ts";
import type { Stream } from "../lib/stream.ts";
import { compile, type Nfa } from "./compile.ts";
import { TimeHeap } from "./heap.ts";
import { emptyKeyState, type KeyNfaState, type LimitPolicy, NfaRunner } from "./nfa.ts";
import type { Pattern } from "./pattern.ts";
import { type MatchedEvent, SharedBuffer, type StoredEvent, type StoredNode } from "./shared-buffer.ts";

/**
 * The events of a match, by step name. Steps that matched nothing (optional ones) have empty lists.
 *
 * @example
 * ```ts
 * import type { MatchEvents } from "gress/cep";
 *
 * type Tx = { amount: number };
 * // Per step name, the events it matched (an optional step that matched nothing has []).
 * const total = (events: MatchEvents<Tx, "small" | "large">): number => [...events.small, ...events.large].reduce((s, t) => s + t.amount, 0);
 * ```
 */
export type MatchEvents<E, S extends string> = { readonly [K in S]: E[] };

/**
 * A completed match. `end` is the timestamp of its last event (or the time an absence became certain).
 *
 * @example
 * ```ts
 * import type { Match } from "gress/cep";
 *
 * type Tx = { card: string; amount: number };
 * // events holds, per step name, the events that step matched.
 * function describe(m: Match<Tx, "small" | "large">): string {
 *   return `${m.key}: ${m.events.small.length} small, then ${m.events.large[0]?.amount} (${m.start}..${m.end})`;
 * }
 * ```
 */
export interface Match<E, S extends string> {
  readonly kind: "match";
  readonly key: Key | undefined;
  readonly events: MatchEvents<E, S>;
  readonly start: number;
  readonly end: number;
}

/**
 * A partial match whose time bound passed before it completed.
 *
 * @example
 * ```ts
 * import type { Timeout } from "gress/cep";
 *
 * type Step = { user: string; page: string };
 * // A funnel that stopped part-way: which steps were reached before the time ran out.
 * function reached(t: Timeout<Step, "landing" | "cart" | "checkout">): string[] {
 *   return (["landing", "cart", "checkout"] as const).filter((s) => t.events[s].length > 0);
 * }
 * ```
 */
export interface Timeout<E, S extends string> {
  readonly kind: "timeout";
  readonly key: Key | undefined;
  readonly events: MatchEvents<E, S>;
  readonly start: number;
  readonly timeoutAt: number;
}

/**
 * What the matcher emits.
 *
 * @example
 * ```ts
 * import type { PatternResult } from "gress/cep";
 *
 * function label(r: PatternResult<{ id: string }, "a" | "b">): string {
 *   return r.kind === "match" ? `match ${r.start}..${r.end}` : `timeout at ${r.timeoutAt}`;
 * }
 * ```
 */
export type PatternResult<E, S extends string> = Match<E, S> | Timeout<E, S>;

/**
 * True for completed matches.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { isMatch, match, pattern } from "gress/cep";
 *
 * const events = fromIterable([{ k: "a", v: 1 }, { k: "a", v: 2 }], { timestamp: (e) => e.v });
 * match(events.keyBy((e) => e.k), pattern<{ k: string; v: number }>().begin("one").where((e) => e.v === 1).next("two"))
 *   .filter(isMatch)
 *   .sinkTo(sinkFn("matches", (m) => console.log(m.events.one, m.events.two)));
 * ```
 */
export function isMatch<E, S extends string>(r: PatternResult<E, S>): r is Match<E, S> {
  return r.kind === "match";
}
/**
 * True for timed-out partial matches.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { isTimeout, match, pattern } from "gress/cep";
 *
 * type Order = { id: string; kind: "placed" | "paid"; at: number };
 * const orders = fromIterable<Order>([{ id: "o1", kind: "placed", at: 0 }, { id: "o2", kind: "placed", at: 1_000 }, { id: "o2", kind: "paid", at: 2_000 }], { timestamp: (o) => o.at });
 * const paidInTime = pattern<Order>().begin("placed").where((o) => o.kind === "placed").followedBy("paid").where((o) => o.kind === "paid").within(60_000);
 * // Orders not paid within a minute: the partial matches that timed out.
 * match(orders.keyBy((o) => o.id), paidInTime)
 *   .filter(isTimeout)
 *   .sinkTo(sinkFn("unpaid", (t) => console.log("unpaid", t.key, "at", t.timeoutAt))); // unpaid o1 at 60000
 * await orders.job.run();
 * ```
 */
export function isTimeout<E, S extends string>(r: PatternResult<E, S>): r is Timeout<E, S> {
  return r.kind === "timeout";
}

/**
 * A partial match dropped because its key reached `maxPartialMatches` (policy "drop-oldest"/"reject-new").
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { CEP_OVERFLOW, type DroppedPartialMatch, match, pattern } from "gress/cep";
 *
 * const results = match(fromIterable([{ k: "a" }]).keyBy((e) => e.k), pattern<{ k: string }>().begin("x").followedByAny("y"), { maxPartialMatches: 100 });
 * results.sideOutput(CEP_OVERFLOW).sinkTo(sinkFn("overflow", (d: DroppedPartialMatch) => console.warn(d.key, Object.keys(d.events))));
 * ```
 */
export interface DroppedPartialMatch {
  readonly key: Key | undefined;
  readonly events: Readonly<Record<string, unknown[]>>;
}

/**
 * Side output of partial matches dropped at the per-key limit.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { CEP_OVERFLOW, match, pattern } from "gress/cep";
 *
 * const events = fromIterable([1, 2, 3, 4].map((v) => ({ k: "a", v })), { timestamp: (e) => e.v });
 * const results = match(events.keyBy((e) => e.k), pattern<{ k: string; v: number }>().begin("x").followedByAny("y"), { maxPartialMatches: 2 });
 * // The partial matches dropped at the limit (onLimit "drop-oldest", the default), per key.
 * results.sideOutput(CEP_OVERFLOW).sinkTo(sinkFn("overflow", (d) => console.warn("dropped for", d.key)));
 * ```
 */
export const CEP_OVERFLOW: OutputTag<DroppedPartialMatch> = outputTag("cep-overflow");

/**
 * Options of {@link match}.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { match, type MatchOptions, pattern } from "gress/cep";
 *
 * // Match on arrival order (no event-time sorting), at most 1 000 partial matches per key, failing past that.
 * const options: MatchOptions = { uid: "alerts-v2", time: "processing", maxPartialMatches: 1_000, onLimit: "fail" };
 * const events = fromIterable([{ k: "a", v: 1 }]);
 * const results = match(events.keyBy((e) => e.k), pattern<{ k: string; v: number }>().begin("x"), options);
 * // In event time, records of a key with the same timestamp can be put in order: here the lower v first.
 * const ordered = match(events.keyBy((e) => e.k), pattern<{ k: string; v: number }>().begin("x"), { comparator: (a, b) => a.v - b.v });
 * ```
 */
export interface MatchOptions<E = unknown> {
  /** Stable operator id for the matcher's state. */
  readonly uid?: string;
  /** "event" (default): sort by event time, time out on watermarks. "processing": match on arrival. */
  readonly time?: "event" | "processing";
  /** Bound on partial matches per key. Default 10 000. */
  readonly maxPartialMatches?: number;
  /** At the bound: drop the oldest partial match (default), refuse the newest, or fail the job. */
  readonly onLimit?: LimitPolicy;
  /** Side output for late records. Default "late". */
  readonly lateTag?: string;
  /**
   * Orders records of a key with equal timestamps before they are matched (event time only), like
   * FlinkCEP's EventComparator: a negative result puts `a` first. Records it ranks equal keep their arrival
   * order. A comparator that throws is a user error on the record (dead-lettered or failing the job).
   */
  comparator?(a: E, b: E): number;
}

const optionsSchema = z.strictObject({
  uid: z.string().optional(),
  time: z.enum(["event", "processing"]).optional(),
  maxPartialMatches: z.number().int().positive().optional(),
  onLimit: z.enum(["drop-oldest", "reject-new", "fail"]).optional(),
  lateTag: z.string().min(1).optional(),
  comparator: z.custom<(a: unknown, b: unknown) => number>((f) => typeof f === "function", "a function (a, b) => number").optional(),
})
  .refine((o) => o.comparator === undefined || o.time !== "processing", {
    message: 'a comparator orders records with equal event timestamps; it cannot be used with time: "processing", which matches records on arrival',
    path: ["comparator"],
  });

// The key under which a stream that is not keyed is matched.
const GLOBAL: Key = "\u0000global";

/**
 * Matches `pattern` on `input`, per key if the stream is keyed, else globally.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { isMatch, match, pattern } from "gress/cep";
 *
 * type Tx = { card: string; amount: number; at: number };
 * const tx = fromIterable<Tx>([{ card: "c1", amount: 1, at: 0 }, { card: "c1", amount: 900, at: 60_000 }], { timestamp: (t) => t.at });
 * const results = match(tx.keyBy((t) => t.card), pattern<Tx>().begin("a").where((t) => t.amount < 2).followedBy("b").where((t) => t.amount > 500).within(600_000));
 * console.log(await results.filter(isMatch).map((m) => m.events.b[0]?.amount).collect()); // [900]
 * ```
 * @param input the (keyed) stream
 * @param pattern the pattern
 * @param options time mode, limits, uid
 * @returns completed and timed-out matches
 */
export function match<E, S extends string>(input: Stream<E>, pattern: Pattern<E, S, string>, options: MatchOptions<NoInfer<E>> = {}): Stream<PatternResult<E, S>> {
  const o = validate(optionsSchema, options, "match");
  const ctx = input.job.operator("cep", o.uid);
  return input.transform(matchElements<E, S>(ctx, pattern, options));
}

/**
 * The matcher as an element operator (see {@link match}).
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { matchElements, pattern } from "gress/cep";
 *
 * // The matcher as an element operator, for building your own stream API on top (match() does this).
 * const input = fromIterable([{ k: "a", v: 1 }]).keyBy((e) => e.k);
 * const results = input.transform(matchElements(input.job.operator("cep", "my-matcher"), pattern<{ k: string; v: number }>().begin("x")));
 * ```
 */
export function matchElements<E, S extends string>(
  ctx: OperatorContext,
  pattern: Pattern<E, S, string>,
  options: MatchOptions<NoInfer<E>> = {},
): (source: Observable<Element<E>>) => Observable<Element<PatternResult<E, S>>> {
  const nfa: Nfa = compile(pattern.spec, pattern.conditions);
  const eventTime = (options.time ?? "event") === "event";
  const limit = options.maxPartialMatches ?? 10_000;
  const policy = options.onLimit ?? "drop-oldest";
  const lateTag = options.lateTag ?? LATE_DATA.id;
  const comparator = options.comparator;
  const m = ctx.metrics;
  // A CEP operator: /metrics exports its partial matches (gress_cep_partial_matches) and timeouts.
  m.partialMatches = 0;
  const partials = ctx.state.table<KeyNfaState>(ctx.id, "partials");
  // Per key: timestamps and values of the records the watermark has not passed yet, sorted by timestamp.
  const pending = ctx.state.table<{ t: number[]; v: E[] }>(ctx.id, "pending");
  const events = ctx.state.table<StoredEvent>(ctx.id, "events");
  const nodes = ctx.state.table<StoredNode>(ctx.id, "nodes");
  const wmState = ctx.state.table<number>(ctx.id, "watermark");
  const stepNames = nfa.stepNames;
  const toEvents = (matched: MatchedEvent[]): MatchEvents<E, S> => {
    const out: Record<string, E[]> = {};
    for (const n of stepNames) out[n] = [];
    for (const e of matched) out[stepNames[e.step]!]!.push(e.value as E);
    return out as MatchEvents<E, S>;
  };
  const userKey = (k: Key): Key | undefined => (k === GLOBAL ? undefined : k);

  return operate<Element<E>, Element<PatternResult<E, S>>>((downstream) => {
    let wm = wmState.get("", "") ?? MIN_WATERMARK;
    let conditionError: unknown;
    const emit = (value: PatternResult<E, S>, timestamp: number, key: Key): void => {
      m.recordsOut++;
      downstream.next(record(value, timestamp, userKey(key)));
    };
    const runner = new NfaRunner(
      nfa,
      new SharedBuffer(events, nodes),
      {
        match: (key, matched, ts) =>
          emit({ kind: "match", key: userKey(key), events: toEvents(matched), start: matched[0]?.timestamp ?? ts, end: ts }, ts, key),
        timeout: (key, matched, at) => {
          m.timeouts++;
          emit({ kind: "timeout", key: userKey(key), events: toEvents(matched), start: matched[0]?.timestamp ?? at, timeoutAt: at }, at, key);
        },
        dropped: (key, matched) => {
          const value: DroppedPartialMatch = { key: userKey(key), events: toEvents(matched) };
          downstream.next(sideRecord(CEP_OVERFLOW.id, value, matched[matched.length - 1]?.timestamp ?? 0, `${ctx.id}: key reached maxPartialMatches=${limit}`));
        },
        conditionError: (err) => {
          conditionError = err;
        },
      },
      limit,
      policy,
    );
    const pendingHeap = new TimeHeap();
    const timeoutHeap = new TimeHeap();
    const scheduled = new Map<Key, number>();
    let partialCount = 0;
    let pendingCount = 0;
    let cancelTimer: (() => void) | undefined;
    let armedAt = Number.POSITIVE_INFINITY;
    let closed = false;

    const gauge = (): void => {
      m.buffered = partialCount + pendingCount + events.size;
      m.partialMatches = partialCount;
    };
    const schedule = (k: Key, ks: KeyNfaState): void => {
      const d = runner.nextDeadline(ks);
      if (d === Number.POSITIVE_INFINITY || d >= (scheduled.get(k) ?? Number.POSITIVE_INFINITY)) return;
      scheduled.set(k, d);
      timeoutHeap.push(d, k);
    };
    const save = (k: Key, ks: KeyNfaState, existed: boolean, before: number): void => {
      partialCount += ks.p.length - before;
      if (ks.p.length === 0 && ks.c.length === 0) {
        if (existed) partials.delete(k, "");
        return;
      }
      partials.put(k, "", ks);
      schedule(k, ks);
    };
    // A key without state is processed on a scratch state, which is kept only if the event started something.
    let scratch = emptyKeyState();
    const processEvent = (k: Key, value: E, ts: number): void => {
      const stored = partials.get(k, "");
      const ks = stored ?? scratch;
      const before = ks.p.length;
      conditionError = undefined;
      const ok = runner.processEvent(k, ks, value, ts);
      if (stored === undefined && (ks.p.length > 0 || ks.c.length > 0)) scratch = emptyKeyState();
      save(k, ks, stored !== undefined, before);
      if (!ok) handleUserError(ctx, downstream, record(value, ts, userKey(k)), conditionError);
    };
    const advance = (k: Key, time: number): void => {
      const ks = partials.get(k, "");
      if (ks === undefined) return;
      const before = ks.p.length;
      runner.advanceTime(k, ks, time);
      save(k, ks, true, before);
    };
    const drainTimeouts = (time: number): void => {
      while (timeoutHeap.size > 0 && timeoutHeap.peekTime() <= time) {
        const t = timeoutHeap.peekTime();
        const k = timeoutHeap.pop()!;
        if (scheduled.get(k) !== t) continue;
        scheduled.delete(k);
        advance(k, time);
      }
    };
    const flushAll = (): void => {
      for (const [k, , ks] of [...partials.entries()]) {
        runner.flush(k, ks);
        partials.delete(k, "");
      }
      partialCount = 0;
      scheduled.clear();
      timeoutHeap.clear();
    };
    const onWatermark = (w: number): void => {
      if (w <= wm) return;
      wm = w;
      m.watermark = w;
      wmState.put("", "", w);
      while (pendingHeap.size > 0 && pendingHeap.peekTime() <= w) {
        const k = pendingHeap.pop()!;
        const buf = pending.get(k, "");
        if (buf === undefined) continue;
        const { t, v } = buf;
        let i = 0;
        while (i < t.length && t[i]! <= w) {
          processEvent(k, v[i]!, t[i]!);
          i++;
        }
        pendingCount -= i;
        if (i === t.length) pending.delete(k, "");
        else {
          if (i > 0) {
            t.splice(0, i);
            v.splice(0, i);
            pending.put(k, "", buf);
          }
          pendingHeap.push(t[0]!, k);
        }
      }
      drainTimeouts(w);
      if (w === MAX_WATERMARK) flushAll();
      gauge();
    };
    const arm = (): void => {
      const next = timeoutHeap.peekTime();
      if (next >= armedAt) return;
      cancelTimer?.();
      armedAt = next;
      cancelTimer = ctx.clock.setTimer(next, () => {
        cancelTimer = undefined;
        armedAt = Number.POSITIVE_INFINITY;
        if (closed) return;
        try {
          drainTimeouts(ctx.clock.now());
          gauge();
          arm();
        } catch (err) {
          downstream.error(err);
        }
      });
    };
    const onRecord = (e: StreamRecord<E>): void => {
      m.recordsIn++;
      const k = e.key ?? GLOBAL;
      if (!eventTime) {
        processEvent(k, e.value, ctx.clock.now());
        arm();
        gauge();
        return;
      }
      const ts = e.timestamp;
      if (ts <= wm) {
        m.lateRecords++;
        downstream.next(sideRecord(lateTag, e.value, ts, `late: timestamp ${ts} is at or behind the watermark ${wm} of pattern operator "${ctx.id}"`));
        return;
      }
      let buf = pending.get(k, "");
      if (buf === undefined) {
        buf = { t: [ts], v: [e.value] };
        pendingHeap.push(ts, k);
      } else {
        // Keep the buffer sorted by timestamp, then by the comparator, stable (arrival order) for ties.
        const { t, v } = buf;
        let i = t.length;
        while (i > 0 && t[i - 1]! > ts) i--;
        if (comparator !== undefined && i > 0 && t[i - 1] === ts) {
          try {
            while (i > 0 && t[i - 1] === ts && comparator(v[i - 1]!, e.value) > 0) i--;
          } catch (err) {
            handleUserError(ctx, downstream, record(e.value, ts, userKey(k)), err);
            return;
          }
        }
        if (i === t.length) {
          t.push(ts);
          v.push(e.value);
        } else {
          t.splice(i, 0, ts);
          v.splice(i, 0, e.value);
        }
        if (i === 0) pendingHeap.push(ts, k);
      }
      pending.put(k, "", buf);
      pendingCount++;
    };

    // Rebuild the in-memory indexes from state (a fresh start, or a restore).
    for (const [k, , buf] of pending.entries()) {
      if (buf.t.length > 0) pendingHeap.push(buf.t[0]!, k);
      pendingCount += buf.t.length;
    }
    for (const [k, , ks] of partials.entries()) {
      partialCount += ks.p.length;
      schedule(k, ks);
    }
    if (!eventTime) arm();

    return {
      next(e) {
        switch (e.kind) {
          case "record":
            return onRecord(e);
          case "watermark":
            if (eventTime) onWatermark(e.timestamp);
            return downstream.next(e);
          case "end":
            if (eventTime) onWatermark(MAX_WATERMARK);
            else {
              drainTimeouts(ctx.clock.now());
              flushAll();
            }
            gauge();
            return downstream.next(e);
          default:
            return downstream.next(e);
        }
      },
      teardown() {
        closed = true;
        cancelTimer?.();
      },
    };
  });
}
