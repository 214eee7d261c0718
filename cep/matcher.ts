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
 * State lives in memory while the operator runs, laid out so that the work per record does not depend on the
 * time bound or on how many records wait: per key, one plain object holds the partial matches, the completed
 * matches held back by a skip strategy and the shared buffer (`partials` table, one row per key); the records
 * the watermark has not passed wait in one operator-wide buffer (`pending` table, one row), appended to in
 * O(1) when they arrive in timestamp order and released from the front by the watermark. These objects are
 * the tables' values: a key's row is put when the key gets state and deleted as soon as nothing can use it,
 * and at every checkpoint barrier the rows changed since the last one are put again, so a backend that copies
 * values at a checkpoint (LMDB) captures exactly the state at the barrier. The `watermark` table holds the
 * operator's watermark. The timeout heap is rebuilt from the tables on start (after a restore too).
 * @module
 */
import type { Observable } from "rxjs";
import { operate } from "../lib/operate.ts";
import { z } from "zod";
import { validate } from "../lib/config.ts";
import { type Element, type Key, LATE_DATA, MAX_WATERMARK, MIN_WATERMARK, type OutputTag, outputTag, record, sideRecord, type StreamRecord } from "../lib/element.ts";
import type { OperatorContext } from "../lib/operator-context.ts";
import { StateError } from "../lib/errors.ts";
import { handleUserError } from "../lib/operators/user-error.ts";
import type { KeyedStream, Stream } from "../lib/stream.ts";
import { compile, type Nfa } from "./compile.ts";
import { TimeHeap } from "./heap.ts";
import { emptyKeyState, type KeyNfaState, type LimitPolicy, NfaRunner } from "./nfa.ts";
import type { Pattern } from "./pattern.ts";
import { type KeyBuffer, SharedBuffer } from "./shared-buffer.ts";

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
export interface Match<E, S extends string, K extends Key | undefined = Key | undefined> {
  readonly kind: "match";
  /** The key of the keyed stream the match came from (its type), undefined on a stream that is not keyed. */
  readonly key: K;
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
export interface Timeout<E, S extends string, K extends Key | undefined = Key | undefined> {
  readonly kind: "timeout";
  /** The key of the keyed stream the partial match came from, undefined on a stream that is not keyed. */
  readonly key: K;
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
export type PatternResult<E, S extends string, K extends Key | undefined = Key | undefined> = Match<E, S, K> | Timeout<E, S, K>;

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
export function isMatch<E, S extends string, K extends Key | undefined>(r: PatternResult<E, S, K>): r is Match<E, S, K> {
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
export function isTimeout<E, S extends string, K extends Key | undefined>(r: PatternResult<E, S, K>): r is Timeout<E, S, K> {
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
export function match<E, S extends string, K extends Key>(input: KeyedStream<E, K>, pattern: Pattern<E, S, string>, options?: MatchOptions<NoInfer<E>>): Stream<PatternResult<E, S, K>>;
export function match<E, S extends string>(input: Stream<E>, pattern: Pattern<E, S, string>, options?: MatchOptions<NoInfer<E>>): Stream<PatternResult<E, S>>;
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
  // Per key, the NFA state with its shared buffer (see the module comment: live objects, written at barriers).
  const partials = ctx.state.table<KeyNfaState>(ctx.id, "partials");
  // One row ("", ""): the records the watermark has not passed yet, present while there are any.
  const pendingState = ctx.state.table<PendingBuffer<E>>(ctx.id, "pending");
  const wmState = ctx.state.table<number>(ctx.id, "watermark");
  const stepNames = nfa.stepNames;
  const steps = stepNames.length;
  // The events object of a result; sets buffer.pathStart/pathEnd (see SharedBuffer.byStep).
  const toEvents = (buffer: SharedBuffer, b: KeyBuffer, node: number): MatchEvents<E, S> => {
    const lists = buffer.byStep(b, node, steps);
    const out: Record<string, unknown[]> = {};
    for (let i = 0; i < steps; i++) out[stepNames[i]!] = lists[i]!;
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
    const buffer = new SharedBuffer();
    const runner = new NfaRunner(
      nfa,
      buffer,
      {
        match: (key, b, node, ts) => {
          const events = toEvents(buffer, b, node);
          const start = buffer.pathStart;
          emit({ kind: "match", key: userKey(key), events, start: Number.isNaN(start) ? ts : start, end: ts }, ts, key);
        },
        timeout: (key, b, node, at) => {
          m.timeouts++;
          const events = toEvents(buffer, b, node);
          const start = buffer.pathStart;
          emit({ kind: "timeout", key: userKey(key), events, start: Number.isNaN(start) ? at : start, timeoutAt: at }, at, key);
        },
        dropped: (key, b, node) => {
          const value: DroppedPartialMatch = { key: userKey(key), events: toEvents(buffer, b, node) };
          const end = buffer.pathEnd;
          downstream.next(sideRecord(CEP_OVERFLOW.id, value, Number.isNaN(end) ? 0 : end, `${ctx.id}: key reached maxPartialMatches=${limit}`));
        },
        conditionError: (err) => {
          conditionError = err;
        },
      },
      limit,
      policy,
    );
    // The live NFA state of every key that has any; each is also the object stored in `partials`.
    const slots = new Map<Key, KeySlot>();
    // Slots changed since the last barrier: written to `partials` at the next one.
    let dirty: KeySlot[] = [];
    let epoch = 0;
    const pending: PendingBuffer<E> = pendingState.get("", "") ?? emptyPending<E>();
    let pendingDirty = false;
    const timeoutHeap = new TimeHeap();
    let partialCount = 0;
    let cancelTimer: (() => void) | undefined;
    let armedAt = Number.POSITIVE_INFINITY;
    let closed = false;

    const gauge = (): void => {
      m.buffered = partialCount + pendingSize(pending) + buffer.liveEvents;
      m.partialMatches = partialCount;
    };
    const schedule = (slot: KeySlot): void => {
      const d = runner.nextDeadline(slot.ks);
      if (d === Number.POSITIVE_INFINITY || d >= slot.due) return;
      slot.due = d;
      timeoutHeap.push(d, slot.key);
    };
    // After the runner changed a key's state: keep the slot (scheduled, marked dirty) or drop it when empty.
    const settle = (slot: KeySlot, before: number): void => {
      const ks = slot.ks;
      partialCount += ks.p.length - before;
      if (ks.p.length === 0 && ks.c.length === 0) {
        // The row goes at once; the slot stays (empty) for the key's next partial match, until a sweep.
        partials.delete(slot.key, "");
        slot.live = false;
        slot.due = Number.POSITIVE_INFINITY;
        if (++deadSlots > 1024 && 2 * deadSlots > slots.size) sweep();
        return;
      }
      if (slot.epoch !== epoch) {
        slot.epoch = epoch;
        dirty.push(slot);
        // Without checkpoints no barrier ever empties the list: drop the entries of keys that are gone.
        if (dirty.length > 1024 && dirty.length > 2 * (slots.size - deadSlots)) dirty = dirty.filter((x) => x.live);
      }
      schedule(slot);
    };
    let deadSlots = 0;
    const sweep = (): void => {
      for (const [k, slot] of slots) if (!slot.live) slots.delete(k);
      deadSlots = 0;
    };
    // A key without state is processed on a scratch state, which is kept only if the event started something.
    let scratch = emptyKeyState();
    const processEvent = (k: Key, value: E, ts: number): void => {
      conditionError = undefined;
      let ok: boolean;
      const slot = slots.get(k);
      if (slot?.live) {
        const before = slot.ks.p.length;
        // slot.due is at most the key's earliest deadline (it is only lowered between two timeout passes).
        ok = runner.processEvent(k, slot.ks, value, ts, slot.due);
        settle(slot, before);
      } else if (slot !== undefined) {
        // A key whose state emptied: its slot (and the arrays in it) is used again if the event starts something.
        const ks = slot.ks;
        ok = runner.processEvent(k, ks, value, ts);
        if (ks.p.length > 0 || ks.c.length > 0) {
          slot.live = true;
          slot.epoch = -1;
          deadSlots--;
          partials.put(k, "", ks);
          settle(slot, 0);
        }
      } else {
        const ks = scratch;
        ok = runner.processEvent(k, ks, value, ts);
        if (ks.p.length > 0 || ks.c.length > 0) {
          scratch = emptyKeyState();
          const created = new KeySlot(k, ks);
          slots.set(k, created);
          // Stored at once (a live reference: the memory backend sees every later change without a write).
          partials.put(k, "", ks);
          settle(created, 0);
        }
      }
      if (!ok) handleUserError(ctx, downstream, record(value, ts, userKey(k)), conditionError);
    };
    const drainTimeouts = (time: number): void => {
      while (timeoutHeap.size > 0 && timeoutHeap.peekTime() <= time) {
        const t = timeoutHeap.peekTime();
        const k = timeoutHeap.pop()!;
        const slot = slots.get(k);
        if (slot === undefined || !slot.live || slot.due !== t) continue;
        slot.due = Number.POSITIVE_INFINITY;
        const before = slot.ks.p.length;
        runner.advanceTime(k, slot.ks, time);
        settle(slot, before);
      }
    };
    const flushAll = (): void => {
      for (const slot of [...slots.values()]) {
        if (!slot.live) continue;
        runner.flush(slot.key, slot.ks);
        partials.delete(slot.key, "");
        slot.live = false;
      }
      slots.clear();
      deadSlots = 0;
      partialCount = 0;
      timeoutHeap.clear();
    };
    // Records of one key with one timestamp, put in the comparator's order (insertion in arrival order, as
    // FlinkCEP's priority queue does); a record the comparator throws on is a user error and is left out.
    const ordered = (keys: Key[], values: E[], ts: number): [Key[], E[]] => {
      const groups = new Map<Key, E[]>();
      for (let i = 0; i < keys.length; i++) {
        const v = values[i]!;
        let g = groups.get(keys[i]!);
        if (g === undefined) groups.set(keys[i]!, (g = []));
        let at = g.length;
        try {
          while (at > 0 && comparator!(g[at - 1]!, v) > 0) at--;
        } catch (err) {
          handleUserError(ctx, downstream, record(v, ts, userKey(keys[i]!)), err);
          continue;
        }
        g.splice(at, 0, v);
      }
      const ks: Key[] = [];
      const vs: E[] = [];
      for (const [k, g] of groups) {
        for (const v of g) {
          ks.push(k);
          vs.push(v);
        }
      }
      return [ks, vs];
    };
    const release = (w: number): void => {
      const p = pending;
      if (pendingSize(p) === 0) return;
      pendingDirty = true;
      while (p.h < p.e || p.ht.length > 0) {
        const ft = p.h < p.e ? p.t[p.h]! : Number.POSITIVE_INFINITY;
        const ht = p.ht.length > 0 ? p.ht[0]! : Number.POSITIVE_INFINITY;
        const fifo = p.h < p.e && (p.ht.length === 0 || ft <= ht);
        const ts = fifo ? ft : ht;
        if (ts > w) break;
        if (comparator !== undefined && sameTimeFollows(p, ts)) {
          // Several records at one timestamp: order them per key before any is matched.
          const keys: Key[] = [];
          const values: E[] = [];
          while (p.h < p.e && p.t[p.h] === ts) takeFifo(p, keys, values);
          while (p.ht.length > 0 && p.ht[0] === ts) takeHeap(p, keys, values);
          const [ok, ov] = ordered(keys, values, ts);
          for (let i = 0; i < ok.length; i++) processEvent(ok[i]!, ov[i]!, ts);
          continue;
        }
        if (fifo) {
          const i = p.h++;
          const v = p.v[i]!;
          p.v[i] = undefined as E; // released: let the value be collected
          processEvent(p.k[i]!, v, ts);
        } else {
          const k = p.hk[0]!;
          const v = p.hv[0]!;
          heapPop(p);
          processEvent(k, v, ts);
        }
      }
      if (pendingSize(p) === 0) {
        // Emptied: the row goes, the arrays stay for the next records (no regrowth after every watermark).
        p.h = 0;
        p.e = 0;
        pendingState.delete("", "");
      } else if (p.h >= 1024 && 2 * p.h >= p.e) {
        p.t.splice(0, p.h);
        p.k.splice(0, p.h);
        p.v.splice(0, p.h);
        p.e -= p.h;
        p.h = 0;
      }
    };
    const onWatermark = (w: number): void => {
      if (w <= wm) return;
      wm = w;
      m.watermark = w;
      wmState.put("", "", w);
      release(w);
      drainTimeouts(w);
      if (w === MAX_WATERMARK) flushAll();
      gauge();
    };
    // At a checkpoint barrier the state backend is about to capture: write what changed since the last one.
    const onBarrier = (): void => {
      for (const slot of dirty) if (slot.live) partials.put(slot.key, "", slot.ks);
      dirty = [];
      epoch++;
      if (pendingDirty && pendingSize(pending) > 0) pendingState.put("", "", pending);
      pendingDirty = false;
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
      const p = pending;
      if (pendingSize(p) === 0) pendingState.put("", "", p);
      pendingDirty = true;
      const n = p.e;
      if (n === p.h || p.t[n - 1]! <= ts) {
        // In order (the common case): append.
        if (n < p.t.length) {
          p.t[n] = ts;
          p.k[n] = k;
          p.v[n] = e.value;
        } else {
          p.t.push(ts);
          p.k.push(k);
          p.v.push(e.value);
        }
        p.e = n + 1;
      } else heapPush(p, ts, k, e.value);
    };

    // Rebuild the in-memory state from the tables (a fresh start, or a restore).
    for (const [k, , ks] of partials.entries()) {
      if (!Array.isArray(ks.nq) || typeof ks.nn !== "number") {
        throw new StateError(`CEP operator "${ctx.id}": the partial matches of key ${JSON.stringify(k)} are stored in an older layout that this version cannot read; drain the job (or start it without that state) before upgrading`);
      }
      const slot = new KeySlot(k, ks);
      slots.set(k, slot);
      partialCount += ks.p.length;
      for (let i = 0; i < ks.en; i++) if (ks.er[i]! > 0) buffer.liveEvents++;
      schedule(slot);
    }
    for (const [k, , p] of pendingState.entries()) {
      if (k === "" && Array.isArray(p.ht) && typeof p.e === "number") continue;
      throw new StateError(`CEP operator "${ctx.id}": its buffered records are stored in an older layout that this version cannot read; drain the job (or start it without that state) before upgrading`);
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
          case "barrier":
            onBarrier();
            return downstream.next(e);
          case "end":
            if (eventTime) onWatermark(MAX_WATERMARK);
            else {
              drainTimeouts(ctx.clock.now());
              flushAll();
            }
            onBarrier();
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

/** The in-memory handle of a key's NFA state. */
class KeySlot {
  readonly key: Key;
  readonly ks: KeyNfaState;
  /** The earliest timeout scheduled in the heap for this key (Infinity: none). */
  due = Number.POSITIVE_INFINITY;
  /** The epoch in which it was last put on the dirty list. */
  epoch = -1;
  /** False once the key's state is gone (a stale entry of the dirty list). */
  live = true;
  constructor(key: Key, ks: KeyNfaState) {
    this.key = key;
    this.ks = ks;
  }
}

/**
 * The records the watermark has not passed yet, of every key: plain data, stored as one row. Records that
 * arrive in timestamp order (the common case) are appended to a queue (`t`, `k`, `v` from index `h`); one
 * that arrives behind the queue's last timestamp goes into a min-heap on (timestamp, arrival number). A
 * watermark releases from the fronts of both. Ties go to the queue first: every record in the heap arrived
 * after every queued record with the same timestamp, so the order is (timestamp, arrival) per key.
 */
interface PendingBuffer<E> {
  h: number;
  /** End of the queue: the arrays are kept when it empties and refilled by index, so slots past it are stale. */
  e: number;
  t: number[];
  k: Key[];
  v: E[];
  ht: number[];
  hn: number[];
  hk: Key[];
  hv: E[];
  /** Arrival number of the next record put into the heap. */
  n: number;
}

function emptyPending<E>(): PendingBuffer<E> {
  return { h: 0, e: 0, t: [], k: [], v: [], ht: [], hn: [], hk: [], hv: [], n: 0 };
}

function pendingSize<E>(p: PendingBuffer<E>): number {
  return p.e - p.h + p.ht.length;
}

/** True if the next record to release at `ts` is followed by another at `ts` (in the queue or the heap). */
function sameTimeFollows<E>(p: PendingBuffer<E>, ts: number): boolean {
  let n = 0;
  if (p.h < p.e && p.t[p.h] === ts) n += p.h + 1 < p.e && p.t[p.h + 1] === ts ? 2 : 1;
  if (n < 2 && p.ht.length > 0 && p.ht[0] === ts) n += p.ht.length > 1 && (p.ht[1] === ts || p.ht[2] === ts) ? 2 : 1;
  return n >= 2;
}

function takeFifo<E>(p: PendingBuffer<E>, keys: Key[], values: E[]): void {
  const i = p.h++;
  keys.push(p.k[i]!);
  values.push(p.v[i]!);
  p.v[i] = undefined as E;
}

function takeHeap<E>(p: PendingBuffer<E>, keys: Key[], values: E[]): void {
  keys.push(p.hk[0]!);
  values.push(p.hv[0]!);
  heapPop(p);
}

const before = (p: PendingBuffer<unknown>, i: number, j: number): boolean => p.ht[i]! < p.ht[j]! || (p.ht[i] === p.ht[j] && p.hn[i]! < p.hn[j]!);

function heapSwap<E>(p: PendingBuffer<E>, i: number, j: number): void {
  const t = p.ht[i]!;
  p.ht[i] = p.ht[j]!;
  p.ht[j] = t;
  const n = p.hn[i]!;
  p.hn[i] = p.hn[j]!;
  p.hn[j] = n;
  const k = p.hk[i]!;
  p.hk[i] = p.hk[j]!;
  p.hk[j] = k;
  const v = p.hv[i]!;
  p.hv[i] = p.hv[j]!;
  p.hv[j] = v;
}

function heapPush<E>(p: PendingBuffer<E>, ts: number, k: Key, v: E): void {
  p.ht.push(ts);
  p.hn.push(p.n++);
  p.hk.push(k);
  p.hv.push(v);
  let i = p.ht.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(p, i, parent)) break;
    heapSwap(p, i, parent);
    i = parent;
  }
}

function heapPop<E>(p: PendingBuffer<E>): void {
  const last = p.ht.length - 1;
  heapSwap(p, 0, last);
  p.ht.pop();
  p.hn.pop();
  p.hk.pop();
  p.hv.pop();
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= last) break;
    const r = l + 1;
    const c = r < last && before(p, r, l) ? r : l;
    if (!before(p, c, i)) break;
    heapSwap(p, i, c);
    i = c;
  }
}
