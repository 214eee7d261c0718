/**
 * Compiles a {@link PatternSpec} into an NFA, following FlinkCEP's construction. States are built backwards
 * from the final state; each state has edges of three kinds:
 *
 * - `take`: consume the event into the state's step and move to the target;
 * - `ignore`: skip the event and stay (or move to a state that may only continue the loop);
 * - `proceed`: an epsilon edge, followed with the same event.
 *
 * Contiguity becomes the ignore condition (strict: none; relaxed: "not this step's condition"; any: always),
 * optional steps add a proceed edge past them, loops a take edge to themselves, `greedy` forbids the next
 * state from touching an event the loop could take, `notNext` is a state whose proceed leads to a stop state,
 * and `notFollowedBy` adds stop edges to the states that wait after it — or, at the end of a pattern with a
 * time bound (the pattern's, or the step's own, from the last matched event), a pending state that completes
 * when the time bound passes. A looping group's `until` is and'ed, negated, into the take and ignore
 * conditions of every step inside it, as FlinkCEP does. A copied state keeps its ignore loop on itself.
 * @module
 */
import { PatternError } from "../lib/errors.ts";
import type { Condition, ConditionContext, ConditionSpec, Contiguity, PatternSpec, StepSpec } from "./pattern.ts";
import { validatePattern } from "./pattern.ts";

/**
 * A compiled condition; `null` on an edge means "always".
 *
 * @example
 * ```ts
 * import { type Cond, compileCondition } from "gress/cep";
 *
 * const negative: Cond = compileCondition({ field: "amount", op: "<", value: 0 }, new Map());
 * ```
 */
export type Cond = (event: unknown, ctx: ConditionContext<unknown, string>) => boolean;

/** Edge actions. */
export const TAKE = 0;
export const IGNORE = 1;
export const PROCEED = 2;

/** An NFA edge. */
export interface Edge {
  readonly action: 0 | 1 | 2;
  readonly source: NState;
  readonly target: NState;
  cond: Cond | null;
}

/** Kinds of NFA states. */
export type StateType = "start" | "normal" | "final" | "stop" | "pending";

/** An NFA state. `step` is the index of the step whose events it takes (−1 for internal states). */
export interface NState {
  readonly id: number;
  readonly name: string;
  readonly step: number;
  type: StateType;
  readonly edges: Edge[];
}

/**
 * The compiled pattern.
 *
 * @example
 * ```ts
 * import { compile, type Nfa, pattern } from "gress/cep";
 *
 * const nfa: Nfa = compile(pattern<{ v: number }>().begin("a").followedBy("b").within(1_000).toJSON(), new Map());
 * console.log(nfa.within); // 1000
 * ```
 */
export interface Nfa {
  readonly states: readonly NState[];
  readonly start: NState;
  /** Positive step names, by step index. */
  readonly stepNames: readonly string[];
  /** Per state id: the per-step within bound of the state's step, or Infinity. */
  readonly stepWithin: readonly number[];
  readonly within: number;
  readonly spec: PatternSpec;
}

/**
 * Turns a condition spec into a function.
 *
 * @example
 * ```ts
 * import { compileCondition } from "gress/cep";
 *
 * // A condition spec as a predicate (named functions come from the map).
 * const isBig = compileCondition({ field: "amount", op: ">", value: 100 }, new Map());
 * console.log(isBig({ amount: 150 }, { eventsFor: () => [], timestamp: 0 })); // true
 * ```
 */
export function compileCondition(spec: ConditionSpec, fns: ReadonlyMap<string, Condition<unknown, string>>): Cond {
  if ("fn" in spec) {
    const f = fns.get(spec.fn);
    if (f === undefined) throw new PatternError(`condition "${spec.fn}" is not defined`);
    return f;
  }
  if ("and" in spec) {
    const parts = spec.and.map((c) => compileCondition(c, fns));
    return (e, ctx) => parts.every((p) => p(e, ctx));
  }
  if ("or" in spec) {
    const parts = spec.or.map((c) => compileCondition(c, fns));
    return (e, ctx) => parts.some((p) => p(e, ctx));
  }
  if ("not" in spec) {
    const inner = compileCondition(spec.not, fns);
    return (e, ctx) => !inner(e, ctx);
  }
  const path = spec.field.split(".");
  const read = (e: unknown): unknown => {
    let v: unknown = e;
    for (const p of path) v = v === null || v === undefined ? undefined : (v as Record<string, unknown>)[p];
    return v;
  };
  const value = spec.value;
  switch (spec.op) {
    case "==":
      return (e) => read(e) === value;
    case "!=":
      return (e) => read(e) !== value;
    case "<":
      return (e) => (read(e) as number) < (value as number);
    case "<=":
      return (e) => (read(e) as number) <= (value as number);
    case ">":
      return (e) => (read(e) as number) > (value as number);
    case ">=":
      return (e) => (read(e) as number) >= (value as number);
    case "in": {
      const set = new Set(value as unknown[]);
      return (e) => set.has(read(e));
    }
  }
}

// Each negation made by `not`, mapped to the condition it negates: the runner evaluates a state's take
// condition once for the pair (take c, ignore not c) that relaxed contiguity gives almost every state.
const negations = new WeakMap<Cond, Cond>();
const not = (c: Cond | null): Cond | null => {
  if (c === null) return FALSE;
  const n: Cond = (e, ctx) => !c(e, ctx);
  negations.set(n, c);
  return n;
};

/** The condition that `c` negates, if `c` was made as a negation by the compiler. */
export function negationOf(c: Cond): Cond | undefined {
  return negations.get(c);
}
const and = (a: Cond | null, b: Cond | null): Cond | null => (a === null ? b : b === null ? a : (e, ctx) => a(e, ctx) && b(e, ctx));
const FALSE: Cond = () => false;

/**
 * Compiles a pattern to an NFA. Throws PatternError on an invalid pattern.
 *
 * @example
 * ```ts
 * import { compile, pattern } from "gress/cep";
 *
 * // The NFA a pattern runs as (what match() does inside): states, and per step its name and time bound.
 * const nfa = compile(pattern<{ v: number }>().begin("a").where({ field: "v", op: ">", value: 1 }).next("b").toJSON(), new Map());
 * console.log(nfa.stepNames, nfa.states.length);
 * ```
 */
export function compile(spec: PatternSpec, fns: ReadonlyMap<string, Condition<unknown, string>>): Nfa {
  validatePattern(spec);
  const states: NState[] = [];
  const stepNames: string[] = [];
  const stepWithinByStep: number[] = [];
  const newState = (name: string, step: number, type: StateType): NState => {
    const s: NState = { id: states.length, name, step, type, edges: [] };
    states.push(s);
    return s;
  };
  const edge = (from: NState, action: 0 | 1 | 2, to: NState, cond: Cond | null): void => {
    from.edges.push({ action, source: from, target: to, cond });
  };
  /**
   * Copies a state. An edge from the state to itself (its ignore loop) is an edge from the copy to the copy:
   * the copy must keep skipping events in its own state, not fall back into the original, which may carry
   * conditions the copy exists to avoid (a greedy loop's, or notFollowedBy stops). With `dropStops`, proceed
   * edges into stop states of those names are left out, and other proceed targets are copied the same way
   * (the guards apply transitively, through optional steps); `memo` keeps proceed cycles finite.
   */
  const copyState = (s: NState, dropStops?: ReadonlySet<string>, memo: Map<NState, NState> = new Map()): NState => {
    const done = memo.get(s);
    if (done !== undefined) return done;
    const copy = newState(s.name, s.step, s.type);
    memo.set(s, copy);
    for (const e of s.edges) {
      let target = e.target === s ? copy : e.target;
      if (dropStops !== undefined && e.action === PROCEED && e.target !== s) {
        if (e.target.type === "stop") {
          if (dropStops.has(e.target.name)) continue;
        } else target = copyState(e.target, dropStops, memo);
      }
      copy.edges.push({ action: e.action, source: copy, target, cond: e.cond });
    }
    return copy;
  };
  const pendingWithin = new Map<number, number>();
  const stopStates = new Map<string, NState>();
  const stopState = (name: string, cond: Cond | null): NState => {
    let s = stopStates.get(name);
    if (s === undefined) {
      s = newState(name, -1, "stop");
      edge(s, TAKE, s, cond);
      stopStates.set(name, s);
    }
    return s;
  };

  // Number the positive steps (including those inside groups) in order.
  const stepIndex = new Map<StepSpec, number>();
  const number = (steps: readonly StepSpec[]): void => {
    for (const st of steps) {
      if (st.group && st.within !== undefined) {
        // The time since the previous step is defined per event, and a group spans several events.
        throw new PatternError(
          `step "${st.name}": a per-step within cannot be set on a group; set it on a step inside the group, or use the pattern's within`,
        );
      }
      if (st.group) number(st.group);
      else if (st.kind !== "notNext" && st.kind !== "notFollowedBy") {
        stepIndex.set(st, stepNames.length);
        stepNames.push(st.name);
        stepWithinByStep.push(st.within ?? Number.POSITIVE_INFINITY);
      }
    }
  };
  number(spec.steps);
  const takeCond = (st: StepSpec): Cond | null => (st.where ? compileCondition(st.where, fns) : null);
  const untilCond = (st: StepSpec): Cond | null => (st.until ? compileCondition(st.until, fns) : null);
  const ignoreFor = (c: Contiguity, take: Cond | null): Cond | null => (c === "strict" ? FALSE : c === "relaxed" ? not(take) : null);

  const hasIgnore = (c: Cond | null): boolean => c !== FALSE;
  /** While a group's inner steps are converted: the until conditions of the groups around them, or'ed. */
  let groupStop: Cond | null = null;

  /** Converts a sequence of steps; `sink` is where the sequence leads. Returns its first state. */
  const sequence = (steps: readonly StepSpec[], sinkIn: NState, outerNext: StepSpec | undefined, firstKind: Contiguity | undefined): NState => {
    let sink = sinkIn;
    let following: StepSpec | undefined = outerNext;
    for (let i = steps.length - 1; i >= 0; i--) {
      const st = steps[i]!;
      const notsBefore = (): { cond: Cond | null; name: string }[] => {
        // notFollowedBy steps directly before this one (looking through optional steps) guard its states.
        const out: { cond: Cond | null; name: string }[] = [];
        for (let j = i - 1; j >= 0; j--) {
          const p = steps[j]!;
          if (p.kind === "notFollowedBy") out.push({ cond: takeCond(p), name: p.name });
          else if (!p.quantifier.optional) break;
        }
        return out;
      };
      const addStops = (s: NState): void => {
        for (const n of notsBefore()) edge(s, PROCEED, stopState(n.name, n.cond), n.cond);
      };
      const addLoopStop = (s: NState): void => {
        if (following?.kind === "notFollowedBy") {
          const c = takeCond(following);
          edge(s, PROCEED, stopState(following.name, c), c);
        }
      };
      if (st.kind === "notFollowedBy") {
        if (sink.type === "final") {
          const c = takeCond(st);
          const pending = newState(st.name, -1, "pending");
          // Its own within (from the last matched event) bounds the absence, like a step's.
          if (st.within !== undefined) pendingWithin.set(pending.id, st.within);
          edge(pending, PROCEED, stopState(st.name, c), c);
          edge(pending, IGNORE, pending, not(c));
          sink = pending;
        }
      } else if (st.kind === "notNext") {
        const c = takeCond(st);
        const nn = newState(st.name, -1, "normal");
        if (sink.type === "final") edge(nn, IGNORE, sink, not(c));
        else edge(nn, PROCEED, sink, not(c));
        edge(nn, PROCEED, stopState(st.name, c), c);
        sink = nn;
      } else {
        sink = convert(st, sink, i === 0 ? firstKind : (st.kind as Contiguity), addStops, addLoopStop, new Set(notsBefore().map((n) => n.name)));
      }
      following = st;
    }
    return sink;
  };

  /**
   * Converts one positive step. `contiguity` is how its first event relates to the previous step (undefined
   * for a first step, whose ignore edges the start computation never follows anyway).
   */
  const convert = (
    st: StepSpec,
    sink: NState,
    contiguity: Contiguity | undefined,
    addStops: (s: NState) => void,
    addLoopStop: (s: NState) => void,
    notNames: ReadonlySet<string>,
  ): NState => {
    const q = st.quantifier;
    const stepIdx = stepIndex.get(st) ?? -1;
    const until = untilCond(st);
    const rawTake = st.group ? null : takeCond(st);
    // Inside a group with until(), the until event ends the occurrence: no step of it takes or skips the event.
    const stop = st.group ? null : groupStop;
    const unlessStop = (c: Cond | null): Cond | null => (stop !== null && hasIgnore(c) ? and(c, not(stop)) : c);
    const take = unlessStop(until ? and(rawTake, not(until)) : rawTake);
    const firstIgnore = unlessStop(ignoreFor(contiguity ?? "relaxed", rawTake));
    const innerIgnoreRaw = ignoreFor(q.inner, rawTake);
    const innerIgnore = unlessStop(until && hasIgnore(innerIgnoreRaw) ? and(innerIgnoreRaw, not(until)) : innerIgnoreRaw);
    // Once an optional step takes an event, the notFollowedBy guards before it no longer apply.
    const dropNots = (s: NState): NState => (notNames.size > 0 && q.optional ? copyState(s, notNames) : s);
    const greedyOnto = (target: NState, loopTake: Cond | null): void => {
      for (const e of target.edges) e.cond = and(e.cond, not(loopTake));
    };

    const singleton = (next: NState, proceedTo: NState | undefined, ignore: Cond | null, optional: boolean): NState => {
      if (st.group) return groupOnce(next, proceedTo, optional, ignore);
      const s = newState(st.name, stepIdx, "normal");
      const takeSink = dropNots(next);
      edge(s, TAKE, takeSink, take);
      if (optional && proceedTo) {
        if (nonGreedySink !== undefined && until !== null) {
          // The until event ends a greedy loop: past it, the next step may see the event after all.
          edge(s, PROCEED, nonGreedySink, until);
          edge(s, PROCEED, proceedTo, not(until));
        } else edge(s, PROCEED, proceedTo, null);
      }
      if (hasIgnore(ignore)) {
        let ign = s;
        if (optional) {
          ign = newState(st.name, stepIdx, "normal");
          edge(ign, TAKE, takeSink, take);
          edge(ign, IGNORE, ign, ignore);
          addStops(ign);
        }
        edge(s, IGNORE, ign, ignore);
      }
      return s;
    };

    // A group occurrence: the inner sequence, entered with the group's contiguity.
    const groupOnce = (next: NState, proceedTo: NState | undefined, optional: boolean, _ignore: Cond | null): NState => {
      const inner = st.group!;
      const outerStop = groupStop;
      if (until !== null) groupStop = outerStop === null ? until : (e, ctx) => outerStop(e, ctx) || until(e, ctx);
      const first = sequence(inner, next, undefined, groupEntryKind);
      groupStop = outerStop;
      if (optional && proceedTo) {
        const entry = newState(st.name, -1, "normal");
        edge(entry, PROCEED, first, null);
        edge(entry, PROCEED, proceedTo, null);
        return entry;
      }
      return first;
    };
    let groupEntryKind: Contiguity = contiguity ?? "relaxed";
    let nonGreedySink: NState | undefined;

    const times = (next: NState, proceedTo: NState, from: number, to: number): NState => {
      let last = next;
      if (q.greedy && from !== to) greedyOnto(next, take);
      const innerKind = q.inner;
      groupEntryKind = innerKind;
      for (let k = from; k < to; k++) {
        last = singleton(last, proceedTo, innerIgnore, true);
        addLoopStop(last);
      }
      for (let k = 0; k < from - 1; k++) {
        last = singleton(last, undefined, innerIgnore, false);
        addLoopStop(last);
      }
      groupEntryKind = contiguity ?? "relaxed";
      return singleton(last, proceedTo, firstIgnore, q.optional);
    };

    let first: NState;
    if (q.max === null) {
      const loopSink = dropNots(sink);
      let loop: NState;
      if (st.group) {
        // Looping group: after an occurrence, either start another one (inner contiguity) or leave.
        const back = newState(st.name, -1, "normal");
        groupEntryKind = q.inner;
        const again = groupOnce(back, undefined, false, null);
        edge(back, PROCEED, again, null);
        edge(back, PROCEED, loopSink, null);
        loop = back;
      } else {
        loop = newState(st.name, stepIdx, "normal");
        if (q.greedy && until !== null) {
          nonGreedySink = copyState(loopSink);
          edge(loop, PROCEED, nonGreedySink, until);
          edge(loop, PROCEED, loopSink, not(until));
        } else edge(loop, PROCEED, loopSink, null);
        if (q.greedy) greedyOnto(loopSink, rawTake);
        edge(loop, TAKE, loop, take);
        addLoopStop(loop);
        if (hasIgnore(innerIgnore)) {
          const ign = newState(st.name, stepIdx, "normal");
          edge(ign, TAKE, loop, take);
          edge(ign, IGNORE, ign, innerIgnore);
          edge(loop, IGNORE, ign, innerIgnore);
          addLoopStop(ign);
        }
      }
      first = times(loop, sink, q.min, q.min);
    } else if (q.min !== 1 || q.max !== 1) {
      first = times(sink, sink, q.min, q.max);
    } else {
      first = singleton(sink, sink, firstIgnore, q.optional);
    }
    addStops(first);
    return first;
  };

  const final = newState("$final$", -1, "final");
  const start = sequence(spec.steps, final, undefined, undefined);
  start.type = "start";
  const stepWithin = states.map((s) => (s.step >= 0 ? stepWithinByStep[s.step]! : (pendingWithin.get(s.id) ?? Number.POSITIVE_INFINITY)));
  return { states, start, stepNames, stepWithin, within: spec.within ?? Number.POSITIVE_INFINITY, spec };
}
