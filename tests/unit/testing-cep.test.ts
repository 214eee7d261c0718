/**
 * gress/testing's CEP laws: checkPatternAgainstReference passes when a pattern means what its reference says
 * and catches one that does not, with a shrunk input; checkNoLeak passes on patterns with `within` and
 * catches one whose partial matches can never end. And the public brute-force matcher on hand-made cases.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { pattern, skip } from "../../cep/index.ts";
import {
  assertCheck,
  bruteForceMatches,
  checkNoLeak,
  checkPatternAgainstReference,
  patternFromReference,
  type ReferencePattern,
  recordsOf,
} from "../../lib/testing/index.ts";

interface Ev {
  readonly type: string;
}
const is =
  (t: string) =>
  (e: Ev): boolean =>
    e.type === t;
const evs = fc.constantFrom("A", "B", "C").map((type): Ev => ({ type }));
const show = (e: Ev): string => e.type;

/** "A, then B right after it, within 5 ms". */
const aNextB: ReferencePattern<Ev> = {
  steps: [
    { name: "a", where: is("A") },
    { name: "b", where: is("B"), contiguity: "strict" },
  ],
  within: 5,
};

describe("bruteForceMatches", () => {
  const input = (script: string) => recordsOf(script).map((r) => ({ value: { type: r.value }, timestamp: r.timestamp }));

  it("follows each contiguity: strict takes the next event, relaxed the first that fits, any every one that fits", () => {
    const three = input("A@1 C@2 B@3 B@4");
    const steps = (contiguity: "strict" | "relaxed" | "any") => ({ steps: [{ name: "a", where: is("A") }, { name: "b", where: is("B"), contiguity }] });
    assert.deepEqual(bruteForceMatches(steps("strict"), three), []);
    assert.deepEqual(bruteForceMatches(steps("relaxed"), three), [[{ step: "a", index: 0 }, { step: "b", index: 2 }]]);
    assert.deepEqual(bruteForceMatches(steps("any"), three), [
      [{ step: "a", index: 0 }, { step: "b", index: 2 }],
      [{ step: "a", index: 0 }, { step: "b", index: 3 }],
    ]);
  });

  it("loops, optional steps and within", () => {
    const loop: ReferencePattern<Ev> = { steps: [{ name: "a", where: is("A"), min: 2, max: null, inner: "strict" }, { name: "b", where: is("B") }] };
    assert.deepEqual(
      bruteForceMatches(loop, input("A@1 A@2 A@3 B@4")).map((m) => m.map((x) => x.index).join(",")),
      ["0,1,2,3", "0,1,3", "1,2,3"],
    );
    const optional: ReferencePattern<Ev> = { steps: [{ name: "a", where: is("A") }, { name: "c", where: is("C"), optional: true }, { name: "b", where: is("B") }] };
    assert.deepEqual(bruteForceMatches(optional, input("A@1 B@2")), [[{ step: "a", index: 0 }, { step: "b", index: 1 }]]);
    assert.deepEqual(bruteForceMatches({ ...aNextB, within: 2 }, input("A@1 B@3")), []);
    assert.equal(bruteForceMatches({ ...aNextB, within: 3 }, input("A@1 B@3")).length, 1);
  });
});

describe("checkPatternAgainstReference", () => {
  it("passes when the pattern means what the reference says (built by hand, and from the reference)", async () => {
    const p = pattern<Ev>().begin("a").where(is("A")).next("b").where(is("B")).within(5);
    await assertCheck(checkPatternAgainstReference(p, aNextB, evs, { show }), { numRuns: 200, seed: 1 });
    const loops: ReferencePattern<Ev> = {
      steps: [
        { name: "a", where: is("A"), min: 1, max: null, inner: "any" },
        { name: "c", where: is("C"), optional: true, contiguity: "any" },
        { name: "b", where: is("B"), min: 1, max: 2, contiguity: "relaxed", inner: "strict" },
      ],
      within: 6,
    };
    await assertCheck(checkPatternAgainstReference(patternFromReference(loops), loops, evs, { show }), { numRuns: 200, seed: 2 });
  });

  it("catches a pattern that differs from its reference (followedBy written for next), shrunk to a short input", () => {
    const wrong = pattern<Ev>().begin("a").where(is("A")).followedBy("b").where(is("B")).within(5);
    const details = fc.check(checkPatternAgainstReference(wrong, aNextB, evs, { show }), { numRuns: 200, seed: 3 });
    assert.equal(details.failed, true, "caught");
    const [input] = details.counterexample!;
    assert.equal(input.length, 3, `shrunk to three events, something between A and B: ${fc.stringify(details.counterexample)}`);
    assert.equal(input[0]!.value.type, "A");
    assert.equal(input[2]!.value.type, "B");
    const message = String((details.errorInstance as Error).message);
    assert.match(message, /the pattern's matches differ from its reference's\n {2}input: A@\d+ [AC]@\d+ B@\d+/);
    assert.match(message, /in the pattern's matches, not in the reference's matches:\n {4}a:A b:B/);
  });

  it("catches a within that is off by one against the reference", () => {
    const wrong = pattern<Ev>().begin("a").where(is("A")).next("b").where(is("B")).within(6);
    const details = fc.check(checkPatternAgainstReference(wrong, { ...aNextB, within: 5 }, evs, { show, maxGapMs: 6 }), { numRuns: 300, seed: 4 });
    assert.equal(details.failed, true, "caught");
    const [input] = details.counterexample!;
    assert.equal(input.length, 2, `shrunk to A then B: ${fc.stringify(details.counterexample)}`);
    assert.equal(input[1]!.timestamp - input[0]!.timestamp, 5, "5 ms apart: inside within(6), outside within(5)");
  });
});

describe("checkNoLeak", () => {
  it("passes on patterns with within (skip strategies, loops, keys)", async () => {
    const p = pattern<Ev>().begin("a").where(is("A")).oneOrMore().followedBy("b").where(is("B")).within(4).skip(skip.skipPastLastEvent());
    await assertCheck(checkNoLeak(p, evs, { show }), { numRuns: 200, seed: 5 });
    const keyed = fc.record({ type: fc.constantFrom("A", "B", "C"), k: fc.constantFrom("x", "y") });
    const q = pattern<{ type: string; k: string }>().begin("a").where(is("A")).followedByAny("c").where(is("C")).within(3);
    await assertCheck(checkNoLeak(q, keyed, { keyBy: (e) => e.k, watermarkLagMs: 2 }), { numRuns: 200, seed: 6 });
  });

  it("catches a pattern without within, whose partial matches never end", () => {
    const p = pattern<Ev>().begin("a").where(is("A")).followedBy("b").where(is("B"));
    const details = fc.check(checkNoLeak(p, evs, { show, afterMs: 1_000 }), { numRuns: 100, seed: 7 });
    assert.equal(details.failed, true, "caught");
    const [input] = details.counterexample!;
    assert.deepEqual(
      input.map((e) => e.value.type),
      ["A"],
      `shrunk to one A: ${fc.stringify(details.counterexample)}`,
    );
    assert.match(String((details.errorInstance as Error).message), /matcher state left 1000 ms after the last event\n {2}input: A@\d+\n {2}table \w+: \d+ row/);
  });

  it("refuses a pattern without within when no afterMs is given", () => {
    assert.throws(() => checkNoLeak(pattern<Ev>().begin("a").where(is("A")), evs), /the pattern has no within\(\); give afterMs/);
  });
});
