// Fuzzes the CEP compiler with the patterns most likely to make the NFA branch without bound: optional steps
// inside repeated groups, nested groups and loops, negative steps, greedy and until. Every generated pattern
// must either be rejected with a PatternError, or compile to an NFA without a cycle of proceed (epsilon)
// edges and match a short input with a bounded number of partial matches (the matcher fails the job past
// maxPartialMatches). Before validatePattern rejected repeated groups that can take no event, `(a?)+ d`
// branched 1024-fold per event and exhausted the heap on five events.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { compile, match, type Pattern, type PatternResult, pattern } from "../../cep/index.ts";
import { PROCEED } from "../../cep/compile.ts";
import { isGressError } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Ev {
  readonly type: string;
}

type Kind = "strict" | "relaxed" | "any" | "notNext" | "notFollowedBy";
interface Quant {
  readonly q: "one" | "oneOrMore" | "times" | "timesRange" | "timesOrMore";
  readonly n: number;
  readonly optional: boolean;
  readonly greedy: boolean;
  readonly inner: "relaxed" | "strict" | "any";
  readonly until: string | undefined;
}
interface Step {
  readonly kind: Kind;
  readonly types: string[];
  readonly group: Step[] | undefined;
  readonly quant: Quant;
}

const TYPES = ["A", "B", "C"];
const quant: fc.Arbitrary<Quant> = fc.record({
  q: fc.constantFrom<Quant["q"]>("one", "one", "oneOrMore", "times", "timesRange", "timesOrMore"),
  n: fc.integer({ min: 1, max: 2 }),
  optional: fc.boolean(),
  greedy: fc.boolean(),
  inner: fc.constantFrom<Quant["inner"]>("relaxed", "strict", "any"),
  until: fc.option(fc.constantFrom(...TYPES), { nil: undefined, freq: 3 }),
});
const ONCE: Quant = { q: "one", n: 1, optional: false, greedy: false, inner: "relaxed", until: undefined };
const steps: fc.Memo<Step[]> = fc.memo((depth) =>
  fc.array(
    fc.record({
      kind: fc.constantFrom<Kind>("strict", "relaxed", "relaxed", "any", "notNext", "notFollowedBy"),
      types: fc.subarray(TYPES, { minLength: 1, maxLength: 2 }),
      group: depth > 1 ? fc.option(steps(depth - 1), { nil: undefined, freq: 2 }) : fc.constant(undefined),
      quant,
    }),
    { minLength: 1, maxLength: 3 },
  ),
);

/** Builds the pattern with the builder; the builder or the compiler may reject it (PatternError). */
function build(list: Step[], names: { n: number }): Pattern<Ev, string, string> {
  let p = pattern<Ev>() as unknown as Pattern<Ev, string, string>;
  list.forEach((s, i) => {
    const name = `s${names.n++}`;
    const arg = s.group !== undefined ? build(s.group, names) : name;
    if (i === 0) p = p.begin(arg as string);
    else if (s.kind === "notNext" || s.kind === "notFollowedBy") p = s.kind === "notNext" ? p.notNext(name) : p.notFollowedBy(name);
    else if (s.kind === "strict") p = p.next(arg as string);
    else if (s.kind === "relaxed") p = p.followedBy(arg as string);
    else p = p.followedByAny(arg as string);
    if (s.group === undefined || s.kind === "notNext" || s.kind === "notFollowedBy") p = p.where((e) => s.types.includes(e.type));
    // Negative steps take no quantifier: a few keep one, to check that it is rejected, not mis-compiled.
    const q = (s.kind === "notNext" || s.kind === "notFollowedBy") && !(s.quant.greedy && s.quant.optional) ? ONCE : s.quant;
    if (q.q === "oneOrMore") p = p.oneOrMore();
    else if (q.q === "times") p = p.times(q.n);
    else if (q.q === "timesRange") p = p.times(q.n, q.n + 1);
    else if (q.q === "timesOrMore") p = p.timesOrMore(q.n);
    if (q.q !== "one" && !(q.q === "times" && q.n === 1)) {
      if (q.inner === "strict") p = p.consecutive();
      if (q.inner === "any") p = p.allowCombinations();
      if (q.greedy && s.group === undefined) p = p.greedy();
    }
    if (q.until !== undefined && (q.q === "oneOrMore" || q.q === "timesOrMore")) p = p.until((e) => e.type === q.until);
    if (q.optional) p = p.optional();
  });
  return p;
}

/** Whether the NFA has a cycle of proceed edges (an event could be offered to the same state forever). */
function hasProceedCycle(states: readonly { id: number; edges: readonly { action: number; target: { id: number } }[] }[]): boolean {
  const colour = new Map<number, 1 | 2>();
  const byId = new Map(states.map((s) => [s.id, s]));
  const visit = (id: number): boolean => {
    colour.set(id, 1);
    for (const e of byId.get(id)!.edges) {
      if (e.action !== PROCEED) continue;
      const c = colour.get(e.target.id);
      if (c === 1 || (c === undefined && visit(e.target.id))) return true;
    }
    colour.set(id, 2);
    return false;
  };
  return states.some((s) => colour.get(s.id) === undefined && visit(s.id));
}

const LIMIT = 5_000;

describe("CEP compiler fuzz: optional steps in repeated groups, nested loops", () => {
  it("every pattern is rejected with a PatternError, or compiles without proceed cycles and runs in bounded partial matches", () => {
    let accepted = 0;
    let rejected = 0;
    fc.assert(
      fc.property(steps(3), fc.array(fc.constantFrom(...TYPES), { minLength: 1, maxLength: 6 }), fc.boolean(), (list, input, within) => {
        let p: Pattern<Ev, string, string>;
        try {
          p = build(list, { n: 0 });
          if (within) p = p.within(4);
          compile(p.spec, p.conditions);
        } catch (e) {
          assert.ok(isGressError(e, "ERR_PATTERN"), `not a PatternError: ${String(e)}`);
          rejected++;
          return;
        }
        accepted++;
        const nfa = compile(p.spec, p.conditions);
        assert.equal(hasProceedCycle(nfa.states), false, `proceed cycle in ${JSON.stringify(p.spec.steps.map((s) => s.name))}`);
        const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, p, { maxPartialMatches: LIMIT, onLimit: "fail" }));
        for (const [i, type] of input.entries()) d.pipeInput({ type }, i + 1);
        d.endInput();
        for (const r of d.readOutput()) assert.ok(Object.values(r.events).flat().length > 0, "a match or timeout without events");
      }),
      { numRuns: 500, seed: 1313 },
    );
    // The generator must exercise both outcomes, or the property says little.
    assert.ok(accepted > 50 && rejected > 50, `accepted ${accepted}, rejected ${rejected}`);
    console.log(`cep compiler fuzz: ${accepted} patterns accepted and run, ${rejected} rejected`);
  });

  it("(a?)+ followedBy d is rejected at compile time with a PatternError naming the group", () => {
    const g = pattern<Ev>().begin("x").where((e) => e.type === "A").optional();
    const p = pattern<Ev>().begin(g).oneOrMore().followedBy("d").where((e) => e.type === "D");
    assert.throws(
      () => compile(p.spec, p.conditions),
      (e: unknown) => isGressError(e, "ERR_PATTERN") && /group \(x\): every step of a repeated group is optional/.test((e as Error).message),
    );
    // Nested: ((a)?)+ and (a? !b)+ take no event per occurrence either; (a? c)+ does, and runs.
    const inner = pattern<Ev>().begin("y").where((e) => e.type === "A");
    const nested = pattern<Ev>().begin(pattern<Ev>().begin(inner).optional()).oneOrMore().followedBy("d2").where((e) => e.type === "D");
    assert.throws(() => compile(nested.spec, nested.conditions), (e: unknown) => isGressError(e, "ERR_PATTERN"));
    const ok = pattern<Ev>()
      .begin(
        pattern<Ev>()
          .begin("z")
          .where((e) => e.type === "A")
          .optional()
          .followedBy("c")
          .where((e) => e.type === "C"),
      )
      .oneOrMore()
      .followedBy("d3")
      .where((e) => e.type === "D");
    const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, ok, { maxPartialMatches: 100, onLimit: "fail" }));
    for (const [i, type] of ["A", "C", "A", "B", "C", "D"].entries()) d.pipeInput({ type }, i + 1);
    d.endInput();
    assert.ok(d.readOutput().length > 0);
  });
});
