// Conformance with FlinkCEP's documented semantics (docs/libs/cep.md: "Contiguity within looping patterns",
// "Combining Patterns", consecutive(), allowCombinations(), until(), "After Match Skip Strategy") and with
// the expected results of FlinkCEP's GreedyITCase for greedy/optional combinations.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Pattern, pattern, skip } from "../../cep/index.ts";
import { matchNames } from "../support/cep-matches.ts";

interface Ev {
  readonly n: string;
}
const is =
  (...prefixes: string[]) =>
  (e: Ev): boolean =>
    prefixes.some((p) => e.n.startsWith(p));

/** Runs `p` over events named `input` (timestamps 1, 2, ...) and returns each match as "n1 n2 ...". */
function matches(p: Pattern<Ev, string, string>, input: string[]): string[] {
  return matchNames<Ev>(p, input, (n) => ({ n }), (e) => e.n);
}
const sorted = (xs: string[]): string[] => [...xs].sort();

describe("FlinkCEP conformance: contiguity within looping patterns (a b+ c over a b1 d1 b2 d2 b3 c)", () => {
  const input = ["a", "b1", "d1", "b2", "d2", "b3", "c"];
  const base = () => pattern<Ev>().begin("a").where(is("a")).followedByAny("b").where(is("b")).oneOrMore();

  it("strict contiguity gives {a b3 c}", () => {
    const p = base().consecutive().next("c").where(is("c"));
    assert.deepEqual(matches(p, input), ["a b3 c"]);
  });

  it("relaxed contiguity gives the six documented matches", () => {
    const p = base().followedBy("c").where(is("c"));
    assert.deepEqual(sorted(matches(p, input)), sorted(["a b1 c", "a b1 b2 c", "a b1 b2 b3 c", "a b2 c", "a b2 b3 c", "a b3 c"]));
  });

  it("non-deterministic relaxed contiguity adds {a b1 b3 c}", () => {
    const p = base().allowCombinations().followedBy("c").where(is("c"));
    assert.deepEqual(
      sorted(matches(p, input)),
      sorted(["a b1 c", "a b1 b2 c", "a b1 b3 c", "a b1 b2 b3 c", "a b2 c", "a b2 b3 c", "a b3 c"]),
    );
  });
});

describe("FlinkCEP conformance: contiguity between steps (a b over a c b1 b2)", () => {
  const input = ["a", "c", "b1", "b2"];
  const a = () => pattern<Ev>().begin("a").where(is("a"));
  it("strict: no match, the c after a discards a", () => {
    assert.deepEqual(matches(a().next("b").where(is("b")), input), []);
  });
  it("relaxed: {a b1}", () => {
    assert.deepEqual(matches(a().followedBy("b").where(is("b")), input), ["a b1"]);
  });
  it("non-deterministic relaxed: {a b1}, {a b2}", () => {
    assert.deepEqual(matches(a().followedByAny("b").where(is("b")), input), ["a b1", "a b2"]);
  });
});

describe("FlinkCEP conformance: consecutive() and allowCombinations() (C D A1 A2 A3 D A4 B)", () => {
  const input = ["C", "D1", "A1", "A2", "A3", "D2", "A4", "B"];
  const p = () => pattern<Ev>().begin("start").where(is("C")).followedBy("middle").where(is("A")).oneOrMore();
  it("consecutive: {C A1 B}, {C A1 A2 B}, {C A1 A2 A3 B}", () => {
    const got = matches(p().consecutive().followedBy("end1").where(is("B")), input);
    assert.deepEqual(sorted(got), sorted(["C A1 B", "C A1 A2 B", "C A1 A2 A3 B"]));
  });
  it("default (relaxed): adds {C A1 A2 A3 A4 B}", () => {
    const got = matches(p().followedBy("end1").where(is("B")), input);
    assert.deepEqual(sorted(got), sorted(["C A1 B", "C A1 A2 B", "C A1 A2 A3 B", "C A1 A2 A3 A4 B"]));
  });
  // The documented list holds combinations that skip A1 (e.g. {C A2 B}); those exist only if the first A may
  // be skipped too, i.e. when "middle" is joined with followedByAny, which is what this test uses.
  it("allowCombinations: every subsequence of the As", () => {
    const q = pattern<Ev>().begin("start").where(is("C")).followedByAny("middle").where(is("A")).oneOrMore();
    const got = matches(q.allowCombinations().followedBy("end1").where(is("B")), input);
    const expected = [
      "C A1 B", "C A1 A2 B", "C A1 A3 B", "C A1 A4 B", "C A1 A2 A3 B", "C A1 A2 A4 B", "C A1 A3 A4 B", "C A1 A2 A3 A4 B",
      "C A2 B", "C A2 A3 B", "C A2 A4 B", "C A2 A3 A4 B", "C A3 B", "C A3 A4 B", "C A4 B",
    ];
    assert.deepEqual(sorted(got), sorted(expected));
  });
});

describe("FlinkCEP conformance: until()", () => {
  it("(a+ until b) over a1 c a2 b a3 gives {a1 a2} {a1} {a2} {a3}", () => {
    const p = pattern<Ev>().begin("a").where(is("a")).oneOrMore().until(is("b"));
    assert.deepEqual(sorted(matches(p, ["a1", "c", "a2", "b", "a3"])), sorted(["a1 a2", "a1", "a2", "a3"]));
  });
});

describe("FlinkCEP conformance: after-match skip strategies (b+ c over b1 b2 b3 c)", () => {
  const input = ["b1", "b2", "b3", "c"];
  const p = () => pattern<Ev>().begin("b").where(is("b")).oneOrMore().next("c").where(is("c"));
  const cases: [string, ReturnType<typeof skip.noSkip>, string[]][] = [
    ["noSkip", skip.noSkip(), ["b1 b2 b3 c", "b2 b3 c", "b3 c"]],
    ["skipToNext", skip.skipToNext(), ["b1 b2 b3 c", "b2 b3 c", "b3 c"]],
    ["skipPastLastEvent", skip.skipPastLastEvent(), ["b1 b2 b3 c"]],
    ["skipToFirst(b)", skip.skipToFirst("b"), ["b1 b2 b3 c", "b2 b3 c", "b3 c"]],
    ["skipToLast(b)", skip.skipToLast("b"), ["b1 b2 b3 c", "b3 c"]],
  ];
  for (const [name, strategy, expected] of cases) {
    it(`${name} gives ${expected.map((m) => `{${m}}`).join(" ")}`, () => {
      assert.deepEqual(matches(p().skip(strategy), input), expected);
    });
  }

  it("(a|b|c) (b|c) c+.greedy d over a b c1 c2 c3 d: noSkip gives three matches", () => {
    const q = pattern<Ev>().begin("x").where(is("a", "b", "c")).next("y").where(is("b", "c")).next("c").where(is("c")).oneOrMore().greedy().next("d").where(is("d"));
    const input2 = ["a", "b", "c1", "c2", "c3", "d"];
    assert.deepEqual(matches(q, input2), ["a b c1 c2 c3 d", "b c1 c2 c3 d", "c1 c2 c3 d"]);
    assert.deepEqual(matches(q.skip(skip.skipToFirst("c")), input2), ["a b c1 c2 c3 d", "c1 c2 c3 d"]);
  });

  it("a b+ over a b1 b2 b3: noSkip gives three matches, skipToNext only {a b1}", () => {
    const q = pattern<Ev>().begin("a").where(is("a")).followedBy("b").where(is("b")).oneOrMore();
    assert.deepEqual(matches(q, ["a", "b1", "b2", "b3"]), ["a b1", "a b1 b2", "a b1 b2 b3"]);
    assert.deepEqual(matches(q.skip(skip.skipToNext()), ["a", "b1", "b2", "b3"]), ["a b1"]);
  });
});

describe("FlinkCEP conformance: greedy and optional (GreedyITCase)", () => {
  const cad = () => pattern<Ev>().begin("start").where(is("c")).followedBy("middle").where(is("a")).oneOrMore().optional();
  it("c a*.greedy d over c a1 a2 a3 d gives only {c a1 a2 a3 d}", () => {
    assert.deepEqual(matches(cad().greedy().followedBy("end").where(is("d")), ["c", "a1", "a2", "a3", "d"]), ["c a1 a2 a3 d"]);
  });
  it("without greedy the same pattern gives every prefix of the as", () => {
    const got = matches(cad().followedBy("end").where(is("d")), ["c", "a1", "a2", "a3", "d"]);
    assert.deepEqual(sorted(got), sorted(["c d", "c a1 d", "c a1 a2 d", "c a1 a2 a3 d"]));
  });
  it("greedy with dummies in between: {c a1 a2 a3 d}", () => {
    const got = matches(cad().greedy().followedBy("end").where(is("d")), ["c", "x1", "a1", "x2", "a2", "x3", "a3", "d"]);
    assert.deepEqual(got, ["c a1 a2 a3 d"]);
  });
  it("greedy with a dummy after the quantifier: {c a1 a2 d}", () => {
    assert.deepEqual(matches(cad().greedy().followedBy("end").where(is("d")), ["c", "a1", "a2", "x", "d"]), ["c a1 a2 d"]);
  });
  it("greedy with no a at all: {c d}", () => {
    assert.deepEqual(matches(cad().greedy().followedBy("end").where(is("d")), ["c", "x", "d"]), ["c d"]);
  });
  it("greedy one-or-more with a dummy before the quantifier: no match", () => {
    const p = pattern<Ev>().begin("start").where(is("c")).followedBy("middle").where(is("a")).oneOrMore().greedy().followedBy("end").where(is("d"));
    assert.deepEqual(matches(p, ["c", "x", "d"]), []);
  });
  it("greedy with until: the loop stops at the until event, c a1 a2 a3 A4 d gives {c a1 a2 a3 d}", () => {
    // A4 is an "a" whose price is above 3, which the until condition stops at.
    const p = cad().greedy().until(is("A")).followedBy("end").where(is("d"));
    const q = pattern<Ev>().begin("start").where(is("c")).followedBy("middle").where(is("a", "A")).oneOrMore().optional().greedy().until(is("A")).followedBy("end").where(is("d"));
    assert.deepEqual(matches(q, ["c", "a1", "a2", "a3", "A4", "d"]), ["c a1 a2 a3 d"]);
    // A0 fails the take condition but fires until: the loop may be left empty there, and the continuation
    // skips the remaining events in its own state (as FlinkCEP's copied sink state does), so {c d} too.
    assert.deepEqual(sorted(matches(p, ["c", "A0", "a1", "a2", "d"])), sorted(["c a1 a2 d", "c d"]));
  });
  it("greedy before an optional step: c a1 a2 x e gives {c a1 a2 e}", () => {
    const p = cad().greedy().followedBy("middle2").where(is("d")).optional().followedBy("end").where(is("e"));
    assert.deepEqual(matches(p, ["c", "a1", "a2", "x", "e"]), ["c a1 a2 e"]);
  });
  it("greedy before an optional step: c a1 a2 d e gives {c a1 a2 e} and {c a1 a2 d e}", () => {
    const p = cad().greedy().followedBy("middle2").where(is("d")).optional().followedBy("end").where(is("e"));
    assert.deepEqual(sorted(matches(p, ["c", "a1", "a2", "d", "e"])), sorted(["c a1 a2 e", "c a1 a2 d e"]));
  });
  it("times(2).optional() takes zero or two events", () => {
    const p = pattern<Ev>().begin("s").where(is("s")).followedBy("a").where(is("a")).times(2).optional().followedBy("e").where(is("e"));
    assert.deepEqual(sorted(matches(p, ["s", "a1", "a2", "e"])), sorted(["s e", "s a1 a2 e"]));
  });
  it("times(1, 3) takes one to three events", () => {
    const p = pattern<Ev>().begin("s").where(is("s")).next("a").where(is("a")).times(1, 3).consecutive().next("e").where(is("e"));
    assert.deepEqual(matches(p, ["s", "a1", "a2", "a3", "e"]), ["s a1 a2 a3 e"]);
    const q = pattern<Ev>().begin("s").where(is("s")).followedBy("a").where(is("a")).times(1, 3).followedBy("e").where(is("e"));
    assert.deepEqual(sorted(matches(q, ["s", "a1", "a2", "a3", "a4", "e"])), sorted(["s a1 e", "s a1 a2 e", "s a1 a2 a3 e"]));
  });
  it("an optional step at the end completes the match without it, and again with it", () => {
    const p = pattern<Ev>().begin("a").where(is("a")).followedBy("b").where(is("b")).optional();
    assert.deepEqual(matches(p, ["a", "x", "b"]), ["a", "a b"]);
  });
});
