/**
 * The typed pattern builder. A pattern is a sequence of named steps joined by a contiguity (`next` strict,
 * `followedBy` relaxed, `followedByAny` non-deterministic relaxed, `notNext`/`notFollowedBy` negative), each
 * step with a condition and an optional quantifier — FlinkCEP's Pattern API. The builder tracks the step
 * names in its type, so iterative conditions and the match result are typed: `{ [step]: Event[] }`.
 *
 * A pattern is also plain data ({@link PatternSpec}): `toJSON()` gives it and `Pattern.fromJSON(spec,
 * registry)` rebuilds it. Conditions serialise in one of two ways: field comparisons
 * (`{ field: "amount", op: "<", value: 2 }`), which are data themselves, or named predicates
 * (`named("isSmall", fn)`), which serialise by name and are looked up in a registry when read back. An
 * inline function has no name and makes `toJSON()` throw a PatternError naming the step.
 *
 * @example
 * ```ts
 * const p = pattern<Tx>()
 *   .begin("small").where((t) => t.amount < 2).times(3)
 *   .followedBy("large").where((t, ctx) => t.amount > 10 * ctx.eventsFor("small").length)
 *   .within(10 * 60_000);
 * ```
 * @module
 */
import { PatternError } from "../lib/errors.ts";

/**
 * How a step relates to the events before it.
 *
 * @example
 * ```ts
 * import type { Contiguity } from "gress/cep";
 *
 * // strict: next(); relaxed: followedBy(); any: followedByAny().
 * const contiguities: Contiguity[] = ["strict", "relaxed", "any"];
 * ```
 */
export type Contiguity = "strict" | "relaxed" | "any";
/**
 * How a step is joined to the previous one: a contiguity, or a negative step.
 *
 * @example
 * ```ts
 * import { pattern, type StepKind } from "gress/cep";
 *
 * const kinds: StepKind[] = pattern<{ ok: boolean }>()
 *   .begin("a").where({ field: "ok", op: "==", value: true })
 *   .notFollowedBy("b").where({ field: "ok", op: "==", value: false })
 *   .followedBy("c").where({ field: "ok", op: "==", value: true })
 *   .toJSON().steps.map((s) => s.kind); // ["relaxed", "notFollowedBy", "relaxed"] (begin() starts with a relaxed step)
 * ```
 */
export type StepKind = Contiguity | "notNext" | "notFollowedBy";

/**
 * Comparison operators of a field condition.
 *
 * @example
 * ```ts
 * import type { FieldCondition, FieldOp } from "gress/cep";
 *
 * const op: FieldOp = "in";
 * const premium: FieldCondition = { field: "tier", op, value: ["gold", "platinum"] };
 * ```
 */
export type FieldOp = "==" | "!=" | "<" | "<=" | ">" | ">=" | "in";

/**
 * A condition as data.
 *
 * @example
 * ```ts
 * import type { ConditionSpec } from "gress/cep";
 *
 * // Conditions as data: fields, named functions, and their combinations.
 * const suspicious: ConditionSpec = { and: [{ field: "amount", op: ">", value: 1_000 }, { not: { fn: "trustedMerchant" } }] };
 * ```
 */
export type ConditionSpec =
  | { readonly fn: string }
  | { readonly field: string; readonly op: FieldOp; readonly value: unknown }
  | { readonly and: readonly ConditionSpec[] }
  | { readonly or: readonly ConditionSpec[] }
  | { readonly not: ConditionSpec };

/**
 * A step's quantifier: how many events it takes and how they relate to each other.
 *
 * @example
 * ```ts
 * import type { QuantifierSpec } from "gress/cep";
 *
 * // times(2, 4).greedy().consecutive() as data.
 * const q: QuantifierSpec = { min: 2, max: 4, optional: false, greedy: true, inner: "strict" };
 * ```
 */
export interface QuantifierSpec {
  readonly min: number;
  /** null: unbounded (oneOrMore, timesOrMore). */
  readonly max: number | null;
  readonly optional: boolean;
  readonly greedy: boolean;
  /** Contiguity between the events of a looping step: relaxed by default, `consecutive()`, `allowCombinations()`. */
  readonly inner: Contiguity;
}

/**
 * One step of a pattern.
 *
 * @example
 * ```ts
 * import { pattern, type StepSpec } from "gress/cep";
 *
 * const steps: readonly StepSpec[] = pattern<{ v: number }>().begin("a").where({ field: "v", op: ">", value: 0 }).oneOrMore().toJSON().steps;
 * console.log(steps[0]?.quantifier); // { min: 1, max: null, optional: false, greedy: false, inner: "relaxed" }
 * ```
 */
export interface StepSpec {
  readonly name: string;
  readonly kind: StepKind;
  readonly where?: ConditionSpec;
  readonly until?: ConditionSpec;
  readonly quantifier: QuantifierSpec;
  /** Longest time (ms) from the previous matched event to an event of this step. */
  readonly within?: number;
  /** A group step: a nested sequence of steps, matched as a unit. */
  readonly group?: readonly StepSpec[];
}

/**
 * After-match skip strategy, as in FlinkCEP.
 *
 * @example
 * ```ts
 * import { type SkipStrategy, skip } from "gress/cep";
 *
 * const strategies: SkipStrategy[] = [skip.noSkip(), skip.skipToNext(), skip.skipPastLastEvent(), skip.skipToFirst("b"), skip.skipToLast("b")];
 * console.log(strategies.map((s) => s.kind));
 * ```
 */
export type SkipStrategy =
  | { readonly kind: "noSkip" }
  | { readonly kind: "skipToNext" }
  | { readonly kind: "skipPastLastEvent" }
  | { readonly kind: "skipToFirst"; readonly step: string }
  | { readonly kind: "skipToLast"; readonly step: string };

/**
 * A whole pattern as plain data.
 *
 * @example
 * ```ts
 * import { Pattern, type PatternSpec } from "gress/cep";
 *
 * // A pattern written as data (e.g. loaded from a config store): orders of 500 or more, then a cancellation.
 * const spec: PatternSpec = {
 *   version: 1,
 *   steps: [
 *     { name: "large", kind: "strict", where: { field: "total", op: ">=", value: 500 }, quantifier: { min: 1, max: 1, optional: false, greedy: false, inner: "relaxed" } },
 *     { name: "cancel", kind: "relaxed", where: { field: "status", op: "==", value: "cancelled" }, quantifier: { min: 1, max: 1, optional: false, greedy: false, inner: "relaxed" } },
 *   ],
 *   within: 3_600_000,
 *   skip: { kind: "noSkip" },
 * };
 * const p = Pattern.fromJSON<{ total: number; status: string }>(spec);
 * ```
 */
export interface PatternSpec {
  readonly version: 1;
  readonly steps: readonly StepSpec[];
  /** Longest time (ms) from the first to the last event of a match. */
  readonly within?: number;
  readonly skip: SkipStrategy;
}

/**
 * What an iterative condition sees besides the event: the events matched so far, by step.
 *
 * @example
 * ```ts
 * import { pattern } from "gress/cep";
 *
 * type Tick = { price: number };
 * // An iterative condition: each "up" tick must be above every tick the step accepted before it.
 * const rising = pattern<Tick>()
 *   .begin("up")
 *   .where((t, ctx) => ctx.eventsFor("up").every((u) => u.price < t.price))
 *   .timesOrMore(3);
 * ```
 */
export interface ConditionContext<E, S extends string> {
  /** Events already accepted by `step` in this partial match, in order. */
  eventsFor(step: S): readonly E[];
  /** Event time of the event being tested. */
  readonly timestamp: number;
}

/**
 * A predicate on an event, optionally looking at the partial match (an iterative condition).
 *
 * @example
 * ```ts
 * import { type Condition, pattern } from "gress/cep";
 *
 * type Tx = { amount: number };
 * // A condition may look at the events matched so far (here: each one larger than the step's previous one).
 * const growing: Condition<Tx, "up"> = (t, ctx) => t.amount > (ctx.eventsFor("up").at(-1)?.amount ?? 0);
 * const p = pattern<Tx>().begin("up").where(growing).timesOrMore(3);
 * ```
 */
export type Condition<E, S extends string = string> = (event: E, ctx: ConditionContext<E, S>) => boolean;

/**
 * A predicate with a name, so that the pattern serialises.
 *
 * @example
 * ```ts
 * import { type NamedCondition, named } from "gress/cep";
 *
 * const refund: NamedCondition<{ amount: number }> = named("refund", (t) => t.amount < 0);
 * console.log(refund.name); // "refund": how the pattern's JSON refers to it
 * ```
 */
export interface NamedCondition<E, S extends string = string> {
  readonly name: string;
  readonly test: Condition<E, S>;
}

/**
 * A field comparison, which is data. `field` may be a dotted path.
 *
 * @example
 * ```ts
 * import { type FieldCondition, pattern } from "gress/cep";
 *
 * type Order = { status: string; total: number };
 * // A condition as data: compared on a field, serialisable without a registry.
 * const large: FieldCondition = { field: "total", op: ">=", value: 500 };
 * const p = pattern<Order>().begin("large").where(large).followedBy("cancelled").where({ field: "status", op: "==", value: "cancelled" });
 * ```
 */
export interface FieldCondition {
  readonly field: string;
  readonly op: FieldOp;
  readonly value: unknown;
}

/**
 * Anything `where`, `or` and `until` accept.
 *
 * @example
 * ```ts
 * import { type ConditionInput, named, pattern } from "gress/cep";
 *
 * type Tx = { amount: number };
 * // Any of the three forms: a function, a named function, a field condition.
 * const inputs: ConditionInput<Tx, string>[] = [(t) => t.amount > 1, named("big", (t: Tx) => t.amount > 100), { field: "amount", op: "<", value: 0 }];
 * const p = pattern<Tx>().begin("a").where(inputs[0]!).or(inputs[2]!);
 * ```
 */
export type ConditionInput<E, S extends string> = Condition<E, S> | NamedCondition<E, S> | FieldCondition;

/**
 * Names a predicate so the pattern can be written to JSON and read back with a registry.
 *
 * @example
 * ```ts
 * import { named, pattern } from "gress/cep";
 *
 * type Reading = { celsius: number };
 * const hot = named("hot", (r: Reading) => r.celsius > 40);
 * // The step's condition is written to JSON by name: { fn: "hot" }.
 * console.log(JSON.stringify(pattern<Reading>().begin("h").where(hot).toJSON().steps[0]));
 * ```
 */
export function named<E, S extends string = string>(name: string, test: Condition<E, S>): NamedCondition<E, S> {
  if (!/^[A-Za-z_$][\w$.-]*$/.test(name)) throw new PatternError(`condition name "${name}" must be an identifier`);
  return { name, test };
}

/**
 * Predicates by name, for `Pattern.fromJSON`.
 *
 * @example
 * ```ts
 * import { type ConditionRegistry, Pattern } from "gress/cep";
 *
 * type Tx = { amount: number };
 * // The functions a stored pattern refers to by name.
 * const registry: ConditionRegistry<Tx> = { big: (t) => t.amount > 1_000, refund: (t) => t.amount < 0 };
 * const p = Pattern.fromJSON<Tx>(
 *   { version: 1, steps: [{ name: "b", kind: "strict", where: { fn: "big" }, quantifier: { min: 1, max: 1, optional: false, greedy: false, inner: "relaxed" } }], skip: { kind: "noSkip" } },
 *   registry,
 * );
 * ```
 */
export type ConditionRegistry<E> = Readonly<Record<string, Condition<E, string>>>;

/**
 * The skip strategies.
 *
 * @example
 * ```ts
 * import { pattern, skip } from "gress/cep";
 *
 * type Tick = { price: number };
 * // After a match, resume after its last event: no two matches share an event.
 * const p = pattern<Tick>()
 *   .begin("up").where((t, ctx) => ctx.eventsFor("up").every((u) => u.price < t.price)).oneOrMore().consecutive()
 *   .next("drop").where((t) => t.price < 10)
 *   .skip(skip.skipPastLastEvent());
 * ```
 */
export const skip: {
  noSkip(): SkipStrategy;
  skipToNext(): SkipStrategy;
  skipPastLastEvent(): SkipStrategy;
  skipToFirst(step: string): SkipStrategy;
  skipToLast(step: string): SkipStrategy;
} = {
  noSkip: () => ({ kind: "noSkip" }),
  skipToNext: () => ({ kind: "skipToNext" }),
  skipPastLastEvent: () => ({ kind: "skipPastLastEvent" }),
  skipToFirst: (step) => ({ kind: "skipToFirst", step }),
  skipToLast: (step) => ({ kind: "skipToLast", step }),
};

const SINGLE: QuantifierSpec = { min: 1, max: 1, optional: false, greedy: false, inner: "relaxed" };

interface Draft {
  readonly steps: readonly StepSpec[];
  readonly within?: number;
  readonly skip: SkipStrategy;
  /** Inline and named predicates referenced by `{ fn }` specs. */
  readonly fns: ReadonlyMap<string, Condition<unknown, string>>;
}

let inlineCounter = 0;
const INLINE = "λ";

/**
 * A pattern under construction. `E` is the event type, `S` the names of its (positive) steps, `C` the name
 * of the step being configured. Every method returns a new pattern; a pattern is immutable.
 *
 * @example
 * ```ts
 * import { named, Pattern, pattern } from "gress/cep";
 *
 * type Tx = { amount: number };
 * // A pattern is plain data: with named conditions, it can be stored as JSON and read back.
 * const p = pattern<Tx>().begin("big").where(named("big", (t: Tx) => t.amount > 1_000)).oneOrMore().within(60_000);
 * const json = JSON.stringify(p.toJSON());
 * const again = Pattern.fromJSON<Tx>(JSON.parse(json), { big: (t) => t.amount > 1_000 });
 * ```
 */
export class Pattern<E, S extends string = never, C extends string = never> {
  readonly #d: Draft;

  constructor(draft: Draft = { steps: [], skip: { kind: "noSkip" }, fns: new Map() }) {
    this.#d = draft;
  }

  /** Rebuilds a pattern from its JSON form; named predicates are looked up in `registry`. */
  static fromJSON<E>(spec: unknown, registry: ConditionRegistry<E> = {}): Pattern<E, string, string> {
    const s = spec as PatternSpec;
    if (typeof s !== "object" || s === null || s.version !== 1 || !Array.isArray(s.steps)) {
      throw new PatternError("pattern JSON must be an object with version 1 and a steps array");
    }
    const fns = new Map<string, Condition<unknown, string>>();
    const visit = (c: ConditionSpec | undefined, where: string): void => {
      if (c === undefined) return;
      if ("fn" in c) {
        const f = registry[c.fn];
        if (typeof f !== "function") throw new PatternError(`${where}: condition "${c.fn}" is not in the registry`);
        fns.set(c.fn, f as Condition<unknown, string>);
      } else if ("and" in c) for (const x of c.and) visit(x, where);
      else if ("or" in c) for (const x of c.or) visit(x, where);
      else if ("not" in c) visit(c.not, where);
    };
    const walk = (steps: readonly StepSpec[]): void => {
      for (const st of steps) {
        visit(st.where, `step "${st.name}"`);
        visit(st.until, `step "${st.name}"`);
        if (st.group) walk(st.group);
      }
    };
    walk(s.steps);
    const p = new Pattern<E, string, string>({ steps: s.steps, ...(s.within !== undefined ? { within: s.within } : {}), skip: s.skip ?? { kind: "noSkip" }, fns });
    validatePattern(p.spec);
    return p;
  }

  /** The pattern as data (conditions by reference). Use toJSON() for a serialisable copy. */
  get spec(): PatternSpec {
    return { version: 1, steps: this.#d.steps, ...(this.#d.within !== undefined ? { within: this.#d.within } : {}), skip: this.#d.skip };
  }

  /** The predicates referenced by name from the spec. */
  get conditions(): ReadonlyMap<string, Condition<unknown, string>> {
    return this.#d.fns;
  }

  /** The serialisable form. Throws a PatternError if a step uses an inline (unnamed) function. */
  toJSON(): PatternSpec {
    const check = (c: ConditionSpec | undefined, step: string): void => {
      if (c === undefined) return;
      if ("fn" in c && c.fn.startsWith(INLINE)) {
        throw new PatternError(`step "${step}" uses an inline function condition; wrap it with named(name, fn) to serialise the pattern`);
      }
      if ("and" in c) for (const x of c.and) check(x, step);
      if ("or" in c) for (const x of c.or) check(x, step);
      if ("not" in c) check(c.not, step);
    };
    const walk = (steps: readonly StepSpec[]): void => {
      for (const st of steps) {
        check(st.where, st.name);
        check(st.until, st.name);
        if (st.group) walk(st.group);
      }
    };
    walk(this.#d.steps);
    return JSON.parse(JSON.stringify(this.spec)) as PatternSpec;
  }

  /** Starts the pattern with a step named `name` (or a group). */
  begin<N extends string>(name: N): Pattern<E, S | N, N>;
  begin<GS extends string>(group: Pattern<E, GS, string>): Pattern<E, S | GS, never>;
  begin(arg: string | Pattern<E, string, string>): Pattern<E, string, string> {
    if (this.#d.steps.length > 0) throw new PatternError("begin() may only start a pattern; use next/followedBy/followedByAny to add steps");
    return this.#add(arg, "relaxed");
  }
  /** Appends a step that must match the event directly after the previous match (strict contiguity). */
  next<N extends string>(name: N): Pattern<E, S | N, N>;
  next<GS extends string>(group: Pattern<E, GS, string>): Pattern<E, S | GS, never>;
  next(arg: string | Pattern<E, string, string>): Pattern<E, string, string> {
    return this.#add(arg, "strict");
  }
  /** Appends a step that skips non-matching events until the next matching one (relaxed contiguity). */
  followedBy<N extends string>(name: N): Pattern<E, S | N, N>;
  followedBy<GS extends string>(group: Pattern<E, GS, string>): Pattern<E, S | GS, never>;
  followedBy(arg: string | Pattern<E, string, string>): Pattern<E, string, string> {
    return this.#add(arg, "relaxed");
  }
  /** Appends a step that may skip matching events too, branching per candidate (non-deterministic relaxed). */
  followedByAny<N extends string>(name: N): Pattern<E, S | N, N>;
  followedByAny<GS extends string>(group: Pattern<E, GS, string>): Pattern<E, S | GS, never>;
  followedByAny(arg: string | Pattern<E, string, string>): Pattern<E, string, string> {
    return this.#add(arg, "any");
  }
  /** The event directly after the previous match must NOT satisfy this step's condition. */
  notNext<N extends string>(name: N): Pattern<E, S, N> {
    return this.#add(name, "notNext") as Pattern<E, S, N>;
  }
  /** No event between the previous and the next match may satisfy this step's condition (an absence). */
  notFollowedBy<N extends string>(name: N): Pattern<E, S, N> {
    return this.#add(name, "notFollowedBy") as Pattern<E, S, N>;
  }

  /** ANDs a condition onto the current step. Iterative conditions see the events matched so far. */
  where(cond: ConditionInput<E, S | C>): Pattern<E, S, C> {
    const c = this.#condition(cond);
    return this.#update((st) => ({ ...st, where: st.where === undefined ? c : { and: [st.where, c] } }), "where");
  }
  /** ORs a condition onto the current step's condition. */
  or(cond: ConditionInput<E, S | C>): Pattern<E, S, C> {
    const c = this.#condition(cond);
    return this.#update((st) => ({ ...st, where: st.where === undefined ? c : { or: [st.where, c] } }), "or");
  }
  /**
   * Stop condition of a looping step or group: once an event satisfies it, the loop takes no more events.
   * On a group, the event also ends an occurrence in progress (no step of the group takes or skips it).
   */
  until(cond: ConditionInput<E, S | C>): Pattern<E, S, C> {
    const c = this.#condition(cond);
    return this.#update((st) => ({ ...st, until: st.until === undefined ? c : { or: [st.until, c] } }), "until");
  }

  /** One or more events (a looping step). */
  oneOrMore(): Pattern<E, S, C> {
    return this.#quantify("oneOrMore", { min: 1, max: null });
  }
  /** At least `n` events. */
  timesOrMore(n: number): Pattern<E, S, C> {
    return this.#quantify("timesOrMore", { min: n, max: null });
  }
  /**
   * Exactly `n` events, or between `n` and `m`. `times(0, m)` is `times(1, m).optional()`, as in FlinkCEP:
   * the step takes up to `m` events or none.
   */
  times(n: number, m?: number): Pattern<E, S, C> {
    if (n === 0 && m !== undefined) {
      if (!Number.isInteger(m) || m < 1) throw new PatternError(`times: counts must be integers with 0 ≤ n ≤ m and m ≥ 1, got n=0, m=${m}`);
      const q = this.#quantify("times", { min: 1, max: m });
      return q.#update((st) => ({ ...st, quantifier: { ...st.quantifier, optional: true } }), "times");
    }
    if (n === 0) throw new PatternError("times(0): a step cannot take exactly 0 events; use times(0, m) or optional()");
    return this.#quantify("times", { min: n, max: m ?? n });
  }
  /** The step may match no event at all. */
  optional(): Pattern<E, S, C> {
    return this.#update((st) => {
      if (st.quantifier.optional) throw new PatternError(`step "${st.name}": optional() is given twice`);
      return { ...st, quantifier: { ...st.quantifier, optional: true } };
    }, "optional");
  }
  /** A looping step takes as many events as it can before the pattern moves on. */
  greedy(): Pattern<E, S, C> {
    return this.#update((st) => ({ ...st, quantifier: { ...st.quantifier, greedy: true } }), "greedy");
  }
  /** Strict contiguity between the events of a looping step. */
  consecutive(): Pattern<E, S, C> {
    return this.#inner("strict", "consecutive");
  }
  /** Non-deterministic relaxed contiguity between the events of a looping step. */
  allowCombinations(): Pattern<E, S, C> {
    return this.#inner("any", "allowCombinations");
  }

  /**
   * A time bound. `scope: "pattern"` (default) bounds the whole match, first to last event; `"step"` bounds
   * the time from the previous matched event to an event of the current step. On a `notFollowedBy` that ends
   * the pattern, `"step"` is how long the absence must last after the last matched event.
   */
  within(ms: number, scope: "pattern" | "step" = "pattern"): Pattern<E, S, C> {
    if (!Number.isFinite(ms) || ms <= 0) throw new PatternError(`within(${ms}): the time bound must be a positive number of ms`);
    if (scope === "step") {
      if (this.#d.steps.length <= 1) throw new PatternError("within(ms, \"step\") bounds the time since the previous step, so it cannot be used on the first step");
      return this.#update((st) => ({ ...st, within: ms }), "within");
    }
    return new Pattern({ ...this.#d, within: Math.min(ms, this.#d.within ?? Number.POSITIVE_INFINITY) });
  }
  /** The after-match skip strategy (default noSkip). */
  skip(strategy: SkipStrategy): Pattern<E, S, C> {
    return new Pattern({ ...this.#d, skip: strategy });
  }

  #add(arg: string | Pattern<E, string, string>, kind: StepKind): Pattern<E, string, string> {
    if (this.#d.steps.length === 0 && kind !== "relaxed") throw new PatternError("a pattern must start with begin()");
    let step: StepSpec;
    let fns = this.#d.fns;
    if (typeof arg === "string") {
      step = { name: arg, kind, quantifier: SINGLE };
    } else {
      const g = arg.#d;
      if (g.steps.length === 0) throw new PatternError("a group pattern must have at least one step");
      if (g.within !== undefined) throw new PatternError("within() belongs to the outer pattern, not to a group");
      const name = `(${g.steps.map((s) => s.name).join(" ")})`;
      step = { name, kind, quantifier: SINGLE, group: g.steps };
      fns = new Map([...fns, ...g.fns]);
    }
    return new Pattern({ ...this.#d, steps: [...this.#d.steps, step], fns });
  }

  #update(f: (st: StepSpec) => StepSpec, what: string): Pattern<E, S, C> {
    const steps = this.#d.steps;
    const last = steps[steps.length - 1];
    if (last === undefined) throw new PatternError(`${what}() needs a step: call begin() first`);
    return new Pattern({ ...this.#d, steps: [...steps.slice(0, -1), f(last)] });
  }

  #quantify(what: string, q: { min: number; max: number | null }): Pattern<E, S, C> {
    if (!Number.isInteger(q.min) || q.min < 1 || (q.max !== null && (!Number.isInteger(q.max) || q.max < q.min))) {
      throw new PatternError(`${what}: counts must be integers with 1 ≤ n ≤ m, got n=${q.min}, m=${q.max}`);
    }
    return this.#update((st) => {
      if (st.quantifier.min !== 1 || st.quantifier.max !== 1) throw new PatternError(`step "${st.name}" already has a quantifier; ${what}() cannot be added`);
      return { ...st, quantifier: { ...st.quantifier, min: q.min, max: q.max } };
    }, what);
  }

  #inner(inner: Contiguity, what: string): Pattern<E, S, C> {
    return this.#update((st) => {
      if (st.quantifier.min === 1 && st.quantifier.max === 1) throw new PatternError(`step "${st.name}": ${what}() applies to looping steps (oneOrMore, times, timesOrMore)`);
      return { ...st, quantifier: { ...st.quantifier, inner } };
    }, what);
  }

  #condition(cond: ConditionInput<E, string>): ConditionSpec {
    if (typeof cond === "function") {
      const name = `${INLINE}${++inlineCounter}`;
      (this.#d.fns as Map<string, Condition<unknown, string>>).set(name, cond as Condition<unknown, string>);
      return { fn: name };
    }
    if ("test" in cond) {
      const existing = this.#d.fns.get(cond.name);
      if (existing !== undefined && existing !== cond.test) throw new PatternError(`two different conditions are named "${cond.name}"`);
      (this.#d.fns as Map<string, Condition<unknown, string>>).set(cond.name, cond.test as Condition<unknown, string>);
      return { fn: cond.name };
    }
    const ops: readonly FieldOp[] = ["==", "!=", "<", "<=", ">", ">=", "in"];
    if (typeof cond.field !== "string" || !ops.includes(cond.op)) {
      throw new PatternError(`field condition needs a field name and one of ${ops.join(" ")}, got ${JSON.stringify(cond)}`);
    }
    if (cond.op === "in" && !Array.isArray(cond.value)) throw new PatternError(`field condition on "${cond.field}": "in" needs an array value`);
    return { field: cond.field, op: cond.op, value: cond.value };
  }
}

/**
 * Starts a pattern over events of type `E`.
 *
 * @example
 * ```ts
 * import { pattern } from "gress/cep";
 *
 * type Login = { user: string; ok: boolean; at: number };
 * // Three failed logins in a row, then a successful one, within 5 minutes.
 * const bruteForce = pattern<Login>()
 *   .begin("failed").where((l) => !l.ok).times(3).consecutive()
 *   .next("success").where((l) => l.ok)
 *   .within(5 * 60_000);
 * ```
 */
export function pattern<E>(): Pattern<E> {
  return new Pattern<E>();
}

/** Whether a step can complete without taking an event: optional, negative, or a group of such steps. */
function takesNoEvent(st: StepSpec): boolean {
  if (st.quantifier.optional || st.kind === "notNext" || st.kind === "notFollowedBy") return true;
  return st.group !== undefined && st.group.every(takesNoEvent);
}

/**
 * Checks the rules a pattern must follow and throws a PatternError naming the first broken one: unique
 * step names, negative steps neither first, quantified, optional nor preceded by an optional step, an
 * ending `notFollowedBy` only with `within`, greedy never on a group, `until` only on looping steps, a
 * repeated group with at least one step that must take an event, skip strategies naming a real step.
 *
 * @example
 * ```ts
 * import { PatternError } from "gress";
 * import { pattern, validatePattern } from "gress/cep";
 *
 * try {
 *   // A pattern that ends with notFollowedBy needs a time bound (within).
 *   validatePattern(pattern<{ a: number }>().begin("a").notFollowedBy("b").where({ field: "a", op: ">", value: 0 }).toJSON());
 * } catch (err) {
 *   if (err instanceof PatternError) console.error(err.message);
 * }
 * ```
 */
export function validatePattern(spec: PatternSpec): void {
  const names = new Set<string>();
  const positive = new Set<string>();
  const visit = (steps: readonly StepSpec[], inGroup: boolean): void => {
    if (steps.length === 0) throw new PatternError("a pattern needs at least one step");
    steps.forEach((st, i) => {
      const q = st.quantifier;
      if (typeof st.name !== "string" || st.name.length === 0) throw new PatternError("every step needs a non-empty name");
      if (typeof q !== "object" || q === null || !Number.isInteger(q.min) || q.min < 1 || (q.max !== null && (!Number.isInteger(q.max) || q.max < q.min))) {
        // A spec read from JSON: times(0, m) is written { min: 1, max: m, optional: true }.
        throw new PatternError(`step "${st.name}": the quantifier needs integers 1 ≤ min ≤ max (max null: unbounded), got ${JSON.stringify(q)}`);
      }
      if (st.group === undefined) {
        if (names.has(st.name)) throw new PatternError(`step name "${st.name}" is used twice; names must be unique`);
        names.add(st.name);
      }
      const negative = st.kind === "notNext" || st.kind === "notFollowedBy";
      if (negative) {
        if (i === 0) throw new PatternError(`step "${st.name}": a pattern cannot start with ${st.kind}`);
        if (q.min !== 1 || q.max !== 1 || q.optional || q.greedy) throw new PatternError(`step "${st.name}": a negative step (${st.kind}) takes no quantifier`);
        if (st.group) throw new PatternError(`step "${st.name}": a negative step cannot be a group`);
        const prev = steps[i - 1]!;
        if (prev.quantifier.optional) throw new PatternError(`step "${st.name}": a negative step cannot follow an optional step ("${prev.name}")`);
        const trailingAbsence = i === steps.length - 1 && st.kind === "notFollowedBy" && !inGroup;
        if (i === steps.length - 1 && st.kind === "notFollowedBy" && (inGroup || (spec.within === undefined && st.within === undefined))) {
          throw new PatternError(
            `step "${st.name}": a pattern cannot end with notFollowedBy unless it has within() (of the pattern, or of this step: within(ms, "step")); without a time bound the absence never completes`,
          );
        }
        if (st.within !== undefined && !trailingAbsence) {
          // An absence in the middle lasts until the next step's event, so its time is bounded there.
          throw new PatternError(`step "${st.name}": a per-step within on a ${st.kind} step is only supported on a notFollowedBy that ends the pattern`);
        }
      } else if (st.group === undefined) positive.add(st.name);
      if (st.group) {
        if ((q.min !== 1 || q.max !== 1) && st.group.every(takesNoEvent)) {
          // Nothing stops an empty occurrence from repeating: the NFA would branch without bound on every event.
          throw new PatternError(
            `group ${st.name}: every step of a repeated group is optional, so an occurrence of the group could take no event; make a step of the group non-optional, or make the group itself optional()`,
          );
        }
        if (q.greedy) throw new PatternError(`group ${st.name}: greedy() is not supported on a group pattern`);
        visit(st.group, true);
      }
      if (q.greedy && q.max === 1 && q.min === 1) throw new PatternError(`step "${st.name}": greedy() applies to looping steps (oneOrMore, times, timesOrMore)`);
      if (st.until && q.max !== null) throw new PatternError(`step "${st.name}": until() applies to looping steps (oneOrMore, timesOrMore)`);
      if (st.within !== undefined && (i === 0 && !inGroup)) throw new PatternError(`step "${st.name}": a per-step within cannot be on the first step`);
    });
  };
  visit(spec.steps, false);
  if (spec.within !== undefined && !(spec.within > 0)) throw new PatternError(`within must be a positive number of ms, got ${spec.within}`);
  const sk = spec.skip;
  if ((sk.kind === "skipToFirst" || sk.kind === "skipToLast") && !positive.has(sk.step)) {
    throw new PatternError(`skip strategy ${sk.kind}("${sk.step}") names no step of the pattern`);
  }
}
