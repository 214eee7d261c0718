/**
 * Runs a compiled {@link Nfa} for one key at a time, with FlinkCEP's semantics. The state of a key
 * ({@link KeyNfaState}) is plain data: its partial matches (each a state id, a shared-buffer node, the start
 * time and event, and the time of the last event), the completed matches held back by a skip strategy, and
 * counters, and the key's shared buffer. The caller keeps and stores it; the runner keeps only per-event
 * scratch (and one spare list, which it swaps with a key's list of partial matches instead of allocating one).
 *
 * Per event: first time out what the event's timestamp has expired, then advance every partial match and the
 * implicit start computation along the edges whose conditions hold (proceed edges are followed with the same
 * event), then hand completed matches to the after-match skip strategy.
 * @module
 */
import type { Key } from "../lib/element.ts";
import { StateError } from "../lib/errors.ts";
import { type Cond, type Edge, IGNORE, type Nfa, type NState, negationOf, PROCEED, TAKE } from "./compile.ts";
import type { ConditionContext, SkipStrategy } from "./pattern.ts";
import type { KeyBuffer, MatchedEvent, SharedBuffer } from "./shared-buffer.ts";

/** A partial match: NFA state, shared-buffer node, start timestamp and event seq, last event timestamp. */
export interface PartialMatch {
  s: number;
  n: number;
  st: number;
  ss: number;
  pt: number;
}

/** The NFA state of one key, its shared buffer included: plain data, stored in keyed state. */
export interface KeyNfaState extends KeyBuffer {
  /** Partial matches, ordered by (start timestamp, start event). */
  p: PartialMatch[];
  /** Completed matches held until no earlier partial match is alive (skip strategies other than noSkip). */
  c: PartialMatch[];
  /** Next event sequence number and node id. */
  seq: number;
  nid: number;
}

/**
 * What to do when a key reaches its limit of partial matches.
 *
 * @example
 * ```ts
 * import type { MatchOptions } from "gress/cep";
 *
 * // At maxPartialMatches per key: drop the oldest partial match, refuse new ones, or fail the job.
 * const strict: MatchOptions = { maxPartialMatches: 5_000, onLimit: "fail" };
 * ```
 */
export type LimitPolicy = "drop-oldest" | "reject-new" | "fail";

/** Callbacks through which the runner reports results: each gets the key's buffer and the result's last node. */
export interface NfaOutput {
  match(key: Key, buffer: KeyBuffer, node: number, timestamp: number): void;
  timeout(key: Key, buffer: KeyBuffer, node: number, timeoutAt: number): void;
  /** A partial match dropped at the per-key limit. */
  dropped(key: Key, buffer: KeyBuffer, node: number): void;
  /** A condition threw on the current event. */
  conditionError(error: unknown): void;
}

/** Creates an empty key state. */
export function emptyKeyState(): KeyNfaState {
  return { p: [], c: [], seq: 0, nid: 0, nb: 0, nh: 0, nn: 0, nq: [], ns: [], np: [], nr: [], eb: 0, eh: 0, en: 0, ev: [], et: [], er: [] };
}

const earlier = (a: PartialMatch, b: PartialMatch): number => a.st - b.st || a.ss - b.ss;

/** The NFA runtime of one operator. */
export class NfaRunner {
  readonly nfa: Nfa;
  readonly buffer: SharedBuffer;
  readonly #out: NfaOutput;
  readonly #limit: number;
  readonly #policy: LimitPolicy;
  readonly #skip: SkipStrategy;
  readonly #skipStep: number;
  readonly #states: readonly NState[];
  readonly #stepWithin: readonly number[];
  readonly #within: number;
  readonly #anyStepWithin: boolean;
  /** Per state id: whether the state has proceed (epsilon) edges. */
  readonly #proceeds: readonly boolean[];
  /** Per state id: c, if the state's edges are exactly (take c, ignore not c), else undefined. */
  readonly #pairs: readonly (Cond | undefined)[];
  /** Per state id: whether its second edge leads back to it (with #pairs: an ignore loop). */
  readonly #selfIgnore: readonly boolean[];
  // Per-event scratch, reused to keep the hot path allocation-free.
  #key: Key = "";
  #ks: KeyNfaState = emptyKeyState();
  #value: unknown;
  #ts = 0;
  #seq = -1;
  #failed = false;
  #stack: NState[] = [];
  readonly #edges: Edge[] = [];
  /** The list the next partial matches are written into (by index, `#n` of them), and the spare one. */
  #n = 0;
  #spare: PartialMatch[] = [];
  /** Per #advance: the partial matches the event made from one (by index, `#rn` of them). */
  readonly #res: PartialMatch[] = [];
  readonly #ctx: ConditionContext<unknown, string> & { node: number };

  constructor(nfa: Nfa, buffer: SharedBuffer, out: NfaOutput, limit: number, policy: LimitPolicy) {
    this.nfa = nfa;
    this.buffer = buffer;
    this.#out = out;
    this.#limit = limit;
    this.#policy = policy;
    this.#skip = nfa.spec.skip;
    this.#skipStep = "step" in this.#skip ? nfa.stepNames.indexOf(this.#skip.step) : -1;
    this.#states = nfa.states;
    this.#stepWithin = nfa.stepWithin;
    this.#within = nfa.within;
    this.#anyStepWithin = nfa.stepWithin.some((w) => w !== Number.POSITIVE_INFINITY);
    this.#proceeds = nfa.states.map((st) => st.edges.some((e) => e.action === PROCEED));
    this.#selfIgnore = nfa.states.map((st) => st.edges.length === 2 && st.edges[1]!.target === st && st.type !== "final");
    this.#pairs = nfa.states.map((st) => {
      const [take, ignore] = st.edges;
      const pair = st.edges.length === 2 && take!.action === TAKE && ignore!.action === IGNORE && take!.cond !== null && ignore!.cond !== null;
      return pair && negationOf(ignore!.cond!) === take!.cond ? take!.cond : undefined;
    });
    const self = this;
    const stepNames = nfa.stepNames;
    const ctx: ConditionContext<unknown, string> & { node: number } = {
      node: -1,
      // No `this`: a condition may destructure the context.
      eventsFor(step: string): readonly unknown[] {
        const idx = stepNames.indexOf(step);
        if (idx < 0 || ctx.node < 0) return [];
        return self.buffer.eventsOfStep(self.#ks, ctx.node, idx);
      },
      get timestamp() {
        return self.#ts;
      },
    };
    this.#ctx = ctx;
  }

  /** Earliest time at which a partial match of `ks` times out, or Infinity. */
  nextDeadline(ks: KeyNfaState): number {
    // Partial matches are ordered by start: without per-step bounds the first one is due first.
    if (!this.#anyStepWithin) return ks.p.length === 0 ? Number.POSITIVE_INFINITY : ks.p[0]!.st + this.#within;
    let d = Number.POSITIVE_INFINITY;
    for (const p of ks.p) {
      const a = p.st + this.#within;
      const b = p.pt + this.#stepWithin[p.s]!;
      if (a < d) d = a;
      if (b < d) d = b;
    }
    return d;
  }

  /** Times out the partial matches of `key` that `time` has expired. */
  advanceTime(key: Key, ks: KeyNfaState, time: number): void {
    if (ks.p.length === 0) return;
    this.#key = key;
    this.#ks = ks;
    let potential: PartialMatch[] | undefined;
    let kept: PartialMatch[] | undefined;
    if (!this.#anyStepWithin) {
      // Only the pattern's within: the list is ordered by start, so what expired is a prefix of it.
      const list = ks.p;
      let end = 0;
      while (end < list.length && time - list[end]!.st >= this.#within) end++;
      if (end === 0) return;
      for (let i = 0; i < end; i++) {
        const p = list[i]!;
        const deadline = p.st + this.#within;
        if (this.#states[p.s]!.type === "pending") (potential ??= []).push({ s: p.s, n: p.n, st: p.st, ss: p.ss, pt: deadline });
        else {
          this.#out.timeout(key, this.#ks, p.n, deadline);
          this.buffer.release(this.#ks, p.n);
        }
      }
      ks.p = list.slice(end);
      if (potential !== undefined || ks.c.length > 0) this.#completed(ks, potential ?? []);
      return;
    }
    for (let i = 0; i < ks.p.length; i++) {
      const p = ks.p[i]!;
      const byStep = this.#stepWithin[p.s]!;
      const first = this.#within !== Number.POSITIVE_INFINITY && time - p.st >= this.#within;
      const prev = byStep !== Number.POSITIVE_INFINITY && time - p.pt >= byStep;
      if (!first && !prev) {
        kept?.push(p);
        continue;
      }
      kept ??= ks.p.slice(0, i);
      // Both bounds may have passed by now: the match ended at the earlier one.
      const deadline = Math.min(first ? p.st + this.#within : Number.POSITIVE_INFINITY, prev ? p.pt + byStep : Number.POSITIVE_INFINITY);
      if (this.#states[p.s]!.type === "pending") {
        // An absence at the end of the pattern: the time bound passed without the forbidden event. The
        // match is stamped with the moment it became certain.
        (potential ??= []).push({ s: p.s, n: p.n, st: p.st, ss: p.ss, pt: deadline });
        continue;
      }
      this.#out.timeout(key, this.#ks, p.n, deadline);
      this.buffer.release(this.#ks, p.n);
    }
    if (kept === undefined) return;
    ks.p = kept;
    if (potential !== undefined || ks.c.length > 0) this.#completed(ks, potential ?? []);
  }

  /**
   * Processes one event of `key` (timeouts first). Returns false if a condition threw on it. `due`, if given,
   * is at most the key's {@link nextDeadline}: before it nothing can time out, and the timeout pass is skipped.
   */
  processEvent(key: Key, ks: KeyNfaState, value: unknown, ts: number, due: number = Number.NEGATIVE_INFINITY): boolean {
    if (ts >= due) this.advanceTime(key, ks, ts);
    this.#key = key;
    this.#ks = ks;
    this.#value = value;
    this.#ts = ts;
    this.#seq = -1;
    this.#failed = false;
    const old = ks.p;
    // The next list is filled by index into a spare array that this key's previous list then replaces (lists
    // are swapped between keys, never allocated per event); an empty list is simply reused.
    const next: PartialMatch[] = old.length === 0 ? old : this.#spare;
    this.#n = 0;
    let potential: PartialMatch[] | undefined;
    try {
      const pairs = this.#pairs;
      const ctx = this.#ctx;
      for (let i = 0; i < old.length; i++) {
        const p = old[i]!;
        // The commonest step, inline: a (take c, ignore not c) state whose ignore edge loops, and an event
        // that fails c, passes the partial match by unchanged. Anything else (c holds, or throws) goes the
        // general way, which evaluates c again.
        const pair = pairs[p.s];
        if (pair !== undefined && this.#selfIgnore[p.s]) {
          ctx.node = p.n;
          let r: unknown = true;
          try {
            r = pair(value, ctx);
          } catch {
            r = true;
          }
          if (!r) {
            this.#put(next, p);
            continue;
          }
        }
        potential = this.#advance(p, false, next, potential);
      }
      // The start computation, likewise: an event that fails the first step's condition starts nothing.
      const startPair = pairs[this.nfa.start.id];
      let starts = true;
      if (startPair !== undefined) {
        ctx.node = -1;
        try {
          starts = !!startPair(value, ctx);
        } catch {
          starts = true;
        }
      }
      if (starts) potential = this.#advance(undefined, true, next, potential);
      // Stale entries past the count are popped (setting length is a runtime call in V8).
      while (next.length > this.#n) next.pop();
      ks.p = next;
      if (next !== old) this.#spare = old;
      if (potential !== undefined || ks.c.length > 0) this.#completed(ks, potential ?? []);
      if (ks.p.length > this.#limit) this.#enforceLimit(key, ks);
    } finally {
      // The event was stored pinned by the first branch that took it (see #advance); now every branch has had it.
      if (this.#seq >= 0) this.buffer.unpinEvent(this.#ks, this.#seq);
    }
    return !this.#failed;
  }

  /** Drops every partial match of `key` and emits the completed ones it held back (end of input). */
  flush(key: Key, ks: KeyNfaState): void {
    this.#key = key;
    this.#ks = ks;
    for (const p of ks.p) this.buffer.release(this.#ks, p.n);
    ks.p = [];
    const held = ks.c;
    ks.c = [];
    for (const m of held) this.#emit(m, m.pt);
  }

  #test(cond: Cond | null, node: number): boolean {
    if (cond === null) return true;
    this.#ctx.node = node;
    try {
      return cond(this.#value, this.#ctx) === true;
    } catch (err) {
      if (!this.#failed) this.#out.conditionError(err);
      this.#failed = true;
      return false;
    }
  }

  /**
   * Finds the edges (take/ignore) enabled for `state`, following proceed edges: they are the first n entries
   * of `#edges`, n being the result. One list, reused (the caller is done with the previous decisions before
   * it asks for the next ones), and filled by index: truncating an array (`length = 0`) is a slow call in V8,
   * and this runs for every partial match on every event.
   */
  #decisions(state: NState, node: number): number {
    const edges = this.#edges;
    let n = 0;
    const pair = this.#pairs[state.id];
    if (pair !== undefined) {
      // c once instead of c and then not c; the same outcome, a throw (neither edge) included.
      this.#ctx.node = node;
      let r: unknown;
      try {
        r = pair(this.#value, this.#ctx);
      } catch (err) {
        if (!this.#failed) this.#out.conditionError(err);
        this.#failed = true;
        return 0;
      }
      if (r === true) edges[n++] = state.edges[0]!;
      else if (!r) edges[n++] = state.edges[1]!;
      return n;
    }
    // Common case first: a state without proceed edges needs no stack.
    if (!this.#proceeds[state.id]) {
      for (const e of state.edges) if (this.#test(e.cond, node)) edges[n++] = e;
      return n;
    }
    const stack = this.#stack;
    let top = 0;
    stack[top++] = state;
    let guard = 0;
    while (top > 0) {
      const s = stack[--top]!;
      for (const e of s.edges) {
        if (!this.#test(e.cond, node)) continue;
        if (e.action === PROCEED) {
          // Epsilon cycles (looping groups with optional inner steps) are cut after a bounded walk.
          if (++guard < 1024) stack[top++] = e.target;
        } else edges[n++] = e;
      }
    }
    return n;
  }

  #finalAfterProceed(state: NState, node: number): boolean {
    if (!this.#proceeds[state.id]) return false;
    const stack: NState[] = [state];
    let guard = 0;
    while (stack.length > 0) {
      const s = stack.pop()!;
      for (const e of s.edges) {
        if (e.action !== PROCEED || !this.#test(e.cond, node)) continue;
        if (e.target.type === "final") return true;
        if (++guard < 1024) stack.push(e.target);
      }
    }
    return false;
  }

  #advance(p: PartialMatch | undefined, isStart: boolean, next: PartialMatch[], potentialIn: PartialMatch[] | undefined): PartialMatch[] | undefined {
    let potential = potentialIn;
    const node = p === undefined ? -1 : p.n;
    const state = p === undefined ? this.nfa.start : this.#states[p.s]!;
    const count = this.#decisions(state, node);
    if (count === 0) {
      if (p !== undefined) this.buffer.release(this.#ks, node);
      return potential;
    }
    const enabled = this.#edges;
    // The common case under relaxed contiguity: the event only passes this partial match by. It keeps its
    // node (so its reference count is unchanged: no retain and release) and, if the state is the same, its
    // object.
    if (p !== undefined && count === 1 && enabled[0]!.action === IGNORE && enabled[0]!.target.type !== "final") {
      const target = enabled[0]!.target.id;
      this.#put(next, target === p.s ? p : { s: target, n: node, st: p.st, ss: p.ss, pt: p.pt });
      return potential;
    }
    // The start state of an event that starts nothing (its only enabled edge ignores it): done.
    if (isStart && count === 1 && enabled[0]!.action === IGNORE) return potential;
    const results = this.#res;
    let rn = 0;
    let discard = false;
    for (let i = 0; i < count; i++) {
      const e = enabled[i]!;
      if (e.action === IGNORE) {
        if (isStart) continue;
        this.buffer.retain(this.#ks, node);
        results[rn++] = { s: e.target.id, n: node, st: p!.st, ss: p!.ss, pt: p!.pt };
        continue;
      }
      if (e.target.type === "stop") {
        discard = true;
        continue;
      }
      if (this.#seq < 0) {
        this.#seq = this.#ks.seq++;
        this.buffer.putEvent(this.#ks, this.#seq, this.#value, this.#ts);
      }
      const id = this.#ks.nid++;
      this.buffer.addNode(this.#ks, id, this.#seq, e.source.step, node);
      const st = p === undefined ? this.#ts : p.st;
      const ss = p === undefined ? this.#seq : p.ss;
      results[rn++] = { s: e.target.id, n: id, st, ss, pt: this.#ts };
      if (e.target.type !== "final" && this.#finalAfterProceed(e.target, node)) {
        this.buffer.retain(this.#ks, id);
        results[rn++] = { s: -1, n: id, st, ss, pt: this.#ts };
      }
    }
    for (let i = 0; i < rn; i++) {
      const r = results[i]!;
      if (r.s === -1 || this.#states[r.s]!.type === "final") {
        (potential ??= []).push(r);
      } else if (discard) {
        this.buffer.release(this.#ks, r.n);
      } else {
        this.#put(next, r);
      }
    }
    if (p !== undefined) this.buffer.release(this.#ks, node);
    return potential;
  }

  #put(next: PartialMatch[], p: PartialMatch): void {
    if (this.#n < next.length) next[this.#n] = p;
    else next.push(p);
    this.#n++;
  }

  #completed(ks: KeyNfaState, potential: PartialMatch[]): void {
    if (this.#skip.kind === "noSkip") {
      for (const m of potential) this.#emit(m, m.pt);
      return;
    }
    for (const m of potential) {
      let i = ks.c.length;
      while (i > 0 && earlier(ks.c[i - 1]!, m) > 0) i--;
      ks.c.splice(i, 0, m);
    }
    // A match is released only when no partial match that started earlier is alive: that one could still
    // complete, and the skip strategy must see matches in start order.
    while (ks.c.length > 0 && (ks.p.length === 0 || earlier(ks.c[0]!, ks.p[0]!) <= 0)) {
      const m = ks.c.shift()!;
      const events = this.buffer.materialize(this.#ks, m.n);
      const pruneBelow = this.#pruningPoint(events);
      if (pruneBelow !== undefined) {
        ks.p = this.#prune(ks.p, pruneBelow);
        ks.c = this.#prune(ks.c, pruneBelow);
      }
      this.#out.match(this.#key, this.#ks, m.n, m.pt);
      this.buffer.release(this.#ks, m.n);
    }
  }

  /** Partial matches that start before this sequence number (exclusive bound) are discarded. */
  #pruningPoint(events: MatchedEvent[]): number | undefined {
    switch (this.#skip.kind) {
      case "noSkip":
        return undefined;
      case "skipToNext":
        return events[0]!.seq + 1;
      case "skipPastLastEvent":
        return events[events.length - 1]!.seq + 1;
      case "skipToFirst": {
        const e = events.find((x) => x.step === this.#skipStep);
        return e?.seq;
      }
      case "skipToLast": {
        let seq: number | undefined;
        for (const e of events) if (e.step === this.#skipStep) seq = e.seq;
        return seq;
      }
    }
  }

  #prune(list: PartialMatch[], below: number): PartialMatch[] {
    const out: PartialMatch[] = [];
    for (const p of list) {
      if (p.ss < below) this.buffer.release(this.#ks, p.n);
      else out.push(p);
    }
    return out;
  }

  #emit(m: PartialMatch, ts: number): void {
    this.#out.match(this.#key, this.#ks, m.n, ts);
    this.buffer.release(this.#ks, m.n);
  }

  #enforceLimit(key: Key, ks: KeyNfaState): void {
    const excess = ks.p.length - this.#limit;
    if (this.#policy === "fail") {
      throw new StateError(`CEP: key ${JSON.stringify(key)} has ${ks.p.length} partial matches, over the limit of ${this.#limit} (maxPartialMatches)`);
    }
    const dropped = this.#policy === "drop-oldest" ? ks.p.splice(0, excess) : ks.p.splice(ks.p.length - excess, excess);
    for (const p of dropped) {
      this.#out.dropped(key, this.#ks, p.n);
      this.buffer.release(this.#ks, p.n);
    }
  }
}
