/**
 * CEP laws, as fast-check properties:
 *
 * - {@link checkPatternAgainstReference}: a pattern finds exactly the matches that a brute-force matcher
 *   ({@link bruteForceMatches}) finds on random inputs, given the pattern's declarative meaning as a
 *   {@link ReferencePattern};
 * - {@link checkNoLeak}: once the watermark has passed the last event by the pattern's `within`, the matcher
 *   holds no state for any key.
 *
 * The brute-force matcher is the one Gress's own tests compare the NFA with. It enumerates every assignment of
 * events to steps that FlinkCEP's rules allow, with no skip strategy (`skip.noSkip()`, the default), and knows
 * contiguities (strict `next`, relaxed `followedBy`, non-deterministic relaxed `followedByAny`, and the same
 * inside loops: `consecutive`, default, `allowCombinations`), quantifiers, `optional` and `within`. It does not
 * model negation, greedy loops, groups, skip strategies or timeouts; compare only what it models.
 * @module
 */
import fc from "fast-check";
import { type Contiguity, match, type Pattern, type PatternResult, pattern } from "../../cep/index.ts";
import type { Key } from "../element.ts";
import type { Timestamped } from "./arbitraries.ts";
import { compareValues, printedAs, short } from "./compare.ts";
import { formatEvents } from "./marbles.ts";
import { TestDriver } from "./test-driver.ts";

/**
 * One step of a {@link ReferencePattern}.
 *
 * @example
 * ```ts
 * import type { ReferenceStep } from "gress/testing";
 *
 * type Tx = { amount: number };
 * // Two or more small transactions in a row (strictly consecutive), following the previous step relaxed.
 * const small: ReferenceStep<Tx> = { name: "small", where: (t) => t.amount < 2, contiguity: "relaxed", min: 2, max: null, inner: "strict" };
 * ```
 */
export interface ReferenceStep<E> {
  /** The step's name, as in the pattern. */
  readonly name: string;
  /** The step's condition. */
  readonly where: (event: E) => boolean;
  /** How the step's first event follows the previous step's last: strict (next), relaxed (followedBy, default), any (followedByAny). Ignored on the first step. */
  readonly contiguity?: Contiguity;
  /** Fewest events the step takes. Default 1. */
  readonly min?: number;
  /** Most events the step takes; null for no bound. Default: min. */
  readonly max?: number | null;
  /** The step may take no event. Default false. */
  readonly optional?: boolean;
  /** How a loop's events follow each other: strict (consecutive), relaxed (default), any (allowCombinations). */
  readonly inner?: Contiguity;
}

/**
 * The declarative meaning of a pattern, for {@link bruteForceMatches}.
 *
 * @example
 * ```ts
 * import type { ReferencePattern } from "gress/testing";
 *
 * type Ev = { type: string };
 * // "A followed by B within 10 ms".
 * const ab: ReferencePattern<Ev> = {
 *   steps: [{ name: "a", where: (e) => e.type === "A" }, { name: "b", where: (e) => e.type === "B" }],
 *   within: 10,
 * };
 * ```
 */
export interface ReferencePattern<E> {
  readonly steps: readonly ReferenceStep<E>[];
  /** A match's last event is less than this after its first. */
  readonly within?: number;
}

/**
 * One match of the brute-force matcher: the events it takes, in order, each with its step and its index in
 * the input.
 *
 * @example
 * ```ts
 * import type { ReferenceMatch } from "gress/testing";
 *
 * const m: ReferenceMatch = [{ step: "a", index: 0 }, { step: "b", index: 2 }];
 * ```
 */
export type ReferenceMatch = readonly { readonly step: string; readonly index: number }[];

/**
 * Every match of `reference` in `events` (in event-time order, with distinct timestamps), found by brute force:
 * a step's next event is, by contiguity — strict: the event right after the last one taken; relaxed: the
 * first later event that satisfies the step; any: every later event that satisfies it. A match may begin at
 * any event. An optional step may take nothing (the next step then follows the same last event). A match is
 * complete once every step has its minimum; with `within`, its last event is less than `within` after its
 * first. Exponential in the input: keep inputs short (a dozen events).
 *
 * @example
 * ```ts
 * import { bruteForceMatches } from "gress/testing";
 *
 * const evs = ["A", "C", "B", "B"].map((type, i) => ({ value: { type }, timestamp: i + 1 }));
 * const ab = { steps: [{ name: "a", where: (e: { type: string }) => e.type === "A" }, { name: "b", where: (e: { type: string }) => e.type === "B" }] };
 * console.log(bruteForceMatches(ab, evs)); // [[{ step: "a", index: 0 }, { step: "b", index: 2 }]]
 * ```
 */
export function bruteForceMatches<E>(reference: ReferencePattern<E>, events: readonly Timestamped<E>[]): ReferenceMatch[] {
  const steps = reference.steps;
  const within = reference.within;
  const out: ReferenceMatch[] = [];
  const n = steps.length;
  const ok = (i: number, k: number): boolean => steps[i]!.where(events[k]!.value);
  const candidates = (i: number, c: Contiguity, last: number): number[] => {
    if (last < 0) return events.map((_, k) => k).filter((k) => ok(i, k));
    if (c === "strict") return last + 1 < events.length && ok(i, last + 1) ? [last + 1] : [];
    const later: number[] = [];
    for (let k = last + 1; k < events.length; k++) if (ok(i, k)) later.push(k);
    return c === "relaxed" ? later.slice(0, 1) : later;
  };
  const visit = (i: number, cnt: number, last: number, path: ReferenceMatch, firstTs: number): void => {
    const s = steps[i]!;
    const min = s.min ?? 1;
    const max = s.max === undefined ? min : (s.max ?? Number.POSITIVE_INFINITY);
    if (cnt < max) {
      for (const k of candidates(i, cnt === 0 ? (s.contiguity ?? "relaxed") : (s.inner ?? "relaxed"), last)) {
        const ts = events[k]!.timestamp;
        const first = path.length === 0 ? ts : firstTs;
        if (within !== undefined && ts - first >= within) continue;
        visit(i, cnt + 1, k, [...path, { step: s.name, index: k }], first);
      }
    }
    if (cnt >= min || (cnt === 0 && s.optional === true)) {
      if (i + 1 === n) {
        if (path.length > 0) out.push(path);
      } else visit(i + 1, 0, last, path, firstTs);
    }
  };
  if (n > 0) visit(0, 0, -1, [], 0);
  return out;
}

/**
 * Builds the Gress pattern that a reference describes (begin/next/followedBy/followedByAny, where, times,
 * oneOrMore/timesOrMore, consecutive/allowCombinations, optional, within).
 *
 * @example
 * ```ts
 * import { patternFromReference } from "gress/testing";
 *
 * type Ev = { type: string };
 * const p = patternFromReference<Ev>({ steps: [{ name: "a", where: (e) => e.type === "A" }, { name: "b", where: (e) => e.type === "B", contiguity: "strict" }] });
 * // the same as pattern<Ev>().begin("a").where(...).next("b").where(...)
 * ```
 */
export function patternFromReference<E>(reference: ReferencePattern<E>): Pattern<E, string, string> {
  let p = pattern<E>() as unknown as Pattern<E, string, string>;
  reference.steps.forEach((s, i) => {
    const c = s.contiguity ?? "relaxed";
    p = i === 0 ? p.begin(s.name) : c === "strict" ? p.next(s.name) : c === "relaxed" ? p.followedBy(s.name) : p.followedByAny(s.name);
    p = p.where(s.where);
    const min = s.min ?? 1;
    const max = s.max === undefined ? min : s.max;
    if (max === null) p = min === 1 ? p.oneOrMore() : p.timesOrMore(min);
    else if (min !== 1 || max !== 1) p = p.times(min, max);
    if (max !== 1) {
      if (s.inner === "strict") p = p.consecutive();
      if (s.inner === "any") p = p.allowCombinations();
    }
    if (s.optional === true) p = p.optional();
  });
  if (reference.within !== undefined) p = p.within(reference.within);
  return p;
}

/**
 * Options of {@link checkPatternAgainstReference} and {@link checkNoLeak}.
 *
 * @example
 * ```ts
 * import type { PatternCheckOptions } from "gress/testing";
 *
 * const options: PatternCheckOptions<{ type: string }> = { maxLength: 10, maxGapMs: 3, show: (e) => e.type };
 * ```
 */
export interface PatternCheckOptions<E> {
  /** Most events per input. Default 10 (the reference is exponential). */
  readonly maxLength?: number;
  /** Largest step between consecutive timestamps (each step is at least 1). Default 3. */
  readonly maxGapMs?: number;
  /** How an event is printed in a counterexample and in matches. Default: short JSON. */
  readonly show?: (event: E) => string;
}

/** Inputs with strictly increasing timestamps, so that event-time order is the input order. */
function increasing<E>(values: fc.Arbitrary<E>, options: PatternCheckOptions<E>): fc.Arbitrary<Timestamped<E>[]> {
  const show = options.show ?? short;
  return fc.array(fc.tuple(values, fc.integer({ min: 1, max: Math.max(1, options.maxGapMs ?? 3) })), { maxLength: options.maxLength ?? 10 }).map((rows) => {
    let ts = 0;
    const evs = rows.map(([value, gap]) => ({ value, timestamp: (ts += gap) }));
    return printedAs(evs, () => formatEvents(evs, show));
  });
}

/**
 * The reference law: on random inputs built from `values` (strictly increasing timestamps, one key), the
 * pattern's matches equal the brute-force matcher's on `reference`, as multisets of "step:event" lists.
 * Catches a pattern that does not say what its author meant (a `followedBy` written for a `next`, a
 * `times(2)` missing `consecutive()`, a `within` off by one). Timeouts are not compared.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { pattern } from "gress/cep";
 * import { checkPatternAgainstReference } from "gress/testing";
 *
 * type Ev = { type: string };
 * const is = (t: string) => (e: Ev) => e.type === t;
 * const p = pattern<Ev>().begin("a").where(is("A")).next("b").where(is("B")).within(5);
 * const meaning = { steps: [{ name: "a", where: is("A") }, { name: "b", where: is("B"), contiguity: "strict" as const }], within: 5 };
 * fc.assert(checkPatternAgainstReference(p, meaning, fc.constantFrom("A", "B", "C").map((type) => ({ type }))), { seed: 9 });
 * ```
 */
export function checkPatternAgainstReference<E>(
  p: Pattern<E, string, string>,
  reference: ReferencePattern<E>,
  values: fc.Arbitrary<E>,
  options: PatternCheckOptions<E> = {},
): fc.IPropertyWithHooks<[Timestamped<E>[]]> {
  const show = options.show ?? short;
  const order = new Map(reference.steps.map((s, i) => [s.name, i]));
  return fc.property(increasing(values, options), (evs) => {
    const d = new TestDriver<E, PatternResult<E, string>>((s) => match(s, p));
    for (const e of evs) d.pipeInput(e.value, e.timestamp);
    d.endInput();
    const got = d
      .readOutput()
      .filter((r) => r.kind === "match")
      .map((r) =>
        Object.entries(r.events)
          .sort(([a], [b]) => (order.get(a) ?? Number.POSITIVE_INFINITY) - (order.get(b) ?? Number.POSITIVE_INFINITY))
          .flatMap(([step, list]) => (list as E[]).map((e) => `${step}:${show(e)}`))
          .join(" "),
      );
    d.close();
    const want = bruteForceMatches(reference, evs).map((m) => m.map(({ step, index }) => `${step}:${show(evs[index]!.value)}`).join(" "));
    const diff = compareValues(want, got, "the reference's matches", "the pattern's matches", (m) => m);
    if (diff !== undefined) throw new Error(`the pattern's matches differ from its reference's\n  input: ${formatEvents(evs, show)}\n${diff}`);
  });
}

/**
 * Options of {@link checkNoLeak}.
 *
 * @example
 * ```ts
 * import type { NoLeakOptions } from "gress/testing";
 *
 * type Tx = { card: string; amount: number };
 * const options: NoLeakOptions<Tx> = { keyBy: (t) => t.card, maxLength: 20 };
 * ```
 */
export interface NoLeakOptions<E> extends PatternCheckOptions<E> {
  /** Runs the pattern per key of this function. Default: one key. */
  readonly keyBy?: (event: E) => Key;
  /** How long after the last event the state must be gone. Default: the pattern's within (required without it). */
  readonly afterMs?: number;
  /** Watermarks trail the largest timestamp by this much (records within it are reordered). Default 0. */
  readonly watermarkLagMs?: number;
}

/**
 * The no-leak law: after any input, once the watermark is `afterMs` (default: the pattern's `within`) past
 * the last event, every state table of the matcher is empty — no partial match, buffered event,
 * shared-buffer node or timer is left behind for any key (only the operator's current watermark stays). Catches a pattern without `within` whose partial
 * matches can never end (their state grows with the input), and leaks in the matcher itself.
 *
 * @example
 * ```ts
 * import fc from "fast-check";
 * import { pattern } from "gress/cep";
 * import { checkNoLeak } from "gress/testing";
 *
 * type Tx = { card: string; amount: number };
 * const p = pattern<Tx>().begin("small").where((t) => t.amount < 2).oneOrMore().followedBy("large").where((t) => t.amount > 500).within(60_000);
 * const txs = fc.record({ card: fc.constantFrom("c1", "c2"), amount: fc.constantFrom(1, 50, 900) });
 * fc.assert(checkNoLeak(p, txs, { keyBy: (t) => t.card, maxGapMs: 20_000 }), { seed: 4 });
 * ```
 */
export function checkNoLeak<E>(p: Pattern<E, string, string>, values: fc.Arbitrary<E>, options: NoLeakOptions<E> = {}): fc.IPropertyWithHooks<[Timestamped<E>[]]> {
  const after = options.afterMs ?? p.spec.within;
  if (after === undefined) throw new TypeError("checkNoLeak: the pattern has no within(); give afterMs, how long after the last event its state must be gone");
  const lag = options.watermarkLagMs ?? 0;
  const keyBy = options.keyBy ?? (() => "all");
  const uid = "no-leak";
  return fc.property(increasing(values, options), (evs) => {
    const d = new TestDriver<E, PatternResult<E, string>>((s) => match(s.keyBy(keyBy), p, { uid }));
    let last = 0;
    for (const e of evs) {
      d.pipeInput(e.value, e.timestamp);
      last = Math.max(last, e.timestamp);
      d.advanceWatermark(last - lag - 1);
    }
    d.advanceWatermark(last + after + 1);
    // The operator's own watermark (table "watermark") is not state of any key or match: it always stays.
    const left = Object.entries(d.job.state.snapshot().tables).filter(([id, rows]) => id.startsWith(`${uid}/`) && id !== `${uid}/watermark` && rows.length > 0);
    d.close();
    if (left.length > 0) {
      const show = options.show ?? short;
      throw new Error(
        `matcher state left ${after} ms after the last event\n  input: ${formatEvents(evs, show)}\n${left
          .map(([id, rows]) => `  table ${id.slice(uid.length + 1)}: ${rows.length} row(s), keys ${[...new Set(rows.map((r) => short(r[0])))].join(", ")}`)
          .join("\n")}`,
      );
    }
  });
}
