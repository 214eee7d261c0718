// The FlinkCEP conformance gaps of issue 13: each case is FlinkCEP 1.20's result for the pattern (from its NFA
// construction, or its own test suite where it has the case), run through Gress.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { match, type Pattern, type PatternResult, pattern } from "../../cep/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

/** An event "a4" is name "a", price 4; "a4#2" another one like it; "x" has price 0. */
interface Ev {
  readonly id: string;
  readonly name: string;
  readonly price: number;
}
const ev = (id: string): Ev => {
  const [, name = "", price = "0"] = /^([a-z]+)(\d*)/.exec(id) ?? [];
  return { id, name, price: Number(price) };
};
const named =
  (...names: string[]) =>
  (e: Ev): boolean =>
    names.includes(e.name);
const sorted = (xs: string[]): string[] => [...xs].sort();

/** Runs `p` over `input` (timestamps 1, 2, ...) and returns each match as "id1 id2 ..." in event order. */
function matches(p: Pattern<Ev, string, string>, input: string[]): string[] {
  const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, p));
  for (const [i, id] of input.entries()) d.pipeInput(ev(id), i + 1);
  d.endInput();
  return d
    .readOutput()
    .filter((r) => r.kind === "match")
    .map((r) =>
      Object.values(r.events)
        .flat()
        .sort((a, b) => input.indexOf(a.id) - input.indexOf(b.id))
        .map((e) => e.id)
        .join(" "),
    );
}

describe("greedy loop with until: the continuation keeps skipping in its own state", () => {
  const cad = (optional: boolean) => {
    let p = pattern<Ev>().begin("c").where(named("c")).followedBy("a").where(named("a")).oneOrMore();
    if (optional) p = p.optional();
    return p
      .greedy()
      .until((e) => e.price > 3)
      .followedBy("d")
      .where(named("d"));
  };
  it("c a+.greedy.until(price > 3) d over c a2 a4 a2#1 a2#2 d gives {c a2 d}", () => {
    assert.deepEqual(matches(cad(false), ["c", "a2", "a4", "a2#1", "a2#2", "d"]), ["c a2 d"]);
  });
  it("the same with events after d's arrival in between: c a2 a4 x a2#1 d gives {c a2 d}", () => {
    assert.deepEqual(matches(cad(false), ["c", "a2", "a4", "x", "a2#1", "d"]), ["c a2 d"]);
  });
  it("GreedyITCase: a* until, the until event before the loop: c a4 a2 a3 a3#1 d gives {c d}", () => {
    assert.deepEqual(matches(cad(true), ["c", "a4", "a2", "a3", "a3#1", "d"]), ["c d"]);
  });
  it("GreedyITCase: a+ until, the until event after the loop: c a2 a3 a3#1 a4 d gives {c a2 a3 a3#1 d}", () => {
    assert.deepEqual(matches(cad(false), ["c", "a2", "a3", "a3#1", "a4", "d"]), ["c a2 a3 a3#1 d"]);
  });
});

describe("an optional step after notFollowedBy: once it takes an event, the guard is gone for good", () => {
  it("a !x b? c over a b y x c gives {a b c}: the guard-free copy keeps ignoring in itself", () => {
    const p = pattern<Ev>().begin("a").where(named("a")).notFollowedBy("x").where(named("x")).followedBy("b").where(named("b")).optional().followedBy("c").where(named("c"));
    assert.deepEqual(matches(p, ["a", "b", "y", "x", "c"]), ["a b c"]);
    // Without b, x is still forbidden.
    assert.deepEqual(matches(p, ["a", "y", "x", "c"]), []);
  });
  it("a !x b? c? d over a b y x d gives {a b d}: the guards are dropped through the optional c as well", () => {
    const p = pattern<Ev>()
      .begin("a")
      .where(named("a"))
      .notFollowedBy("x")
      .where(named("x"))
      .followedBy("b")
      .where(named("b"))
      .optional()
      .followedBy("c")
      .where(named("c"))
      .optional()
      .followedBy("d")
      .where(named("d"));
    assert.deepEqual(matches(p, ["a", "b", "y", "x", "d"]), ["a b d"]);
    assert.deepEqual(matches(p, ["a", "y", "x", "d"]), []);
  });
});
