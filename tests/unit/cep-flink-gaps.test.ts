// The FlinkCEP conformance gaps of issue 13: each case is FlinkCEP 1.20's result for the pattern (from its NFA
// construction, or its own test suite where it has the case), run through Gress.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compile, type MatchOptions, match, Pattern, type PatternResult, pattern } from "../../cep/index.ts";
import { DEAD_LETTERS, isGressError } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { matchNames } from "../support/cep-matches.ts";

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
const compileSpec = (p: Pattern<Ev, string, string>): unknown => compile(p.spec, p.conditions);

/** Runs `p` over `input` (timestamps 1, 2, ...) and returns each match as "id1 id2 ..." in event order. */
function matches(p: Pattern<Ev, string, string>, input: string[]): string[] {
  return matchNames<Ev>(p, input, ev, (e) => e.id);
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

describe("times(0, n): up to n events or none, as times(1, n).optional()", () => {
  it("s a{0,2} e over s a1 a2 a3 e gives {s e} and the runs of one or two as", () => {
    const p = pattern<Ev>().begin("s").where(named("s")).followedBy("a").where(named("a")).times(0, 2).followedBy("e").where(named("e"));
    const q = pattern<Ev>().begin("s").where(named("s")).followedBy("a").where(named("a")).times(1, 2).optional().followedBy("e").where(named("e"));
    const input = ["s", "a1", "a2", "a3", "e"];
    assert.deepEqual(sorted(matches(p, input)), sorted(["s e", "s a1 e", "s a1 a2 e"]));
    assert.deepEqual(matches(p, input), matches(q, input));
    assert.deepEqual(p.spec.steps[1]?.quantifier, { min: 1, max: 2, optional: true, greedy: false, inner: "relaxed" });
  });
  it("times(0) and times(0, 0) are rejected; times(0, n).optional() says optional twice", () => {
    const a = () => pattern<Ev>().begin("a").where(named("a"));
    assert.throws(() => a().times(0), /times\(0\): a step cannot take exactly 0 events/);
    assert.throws(() => a().times(0, 0), /0 ≤ n ≤ m and m ≥ 1/);
    assert.throws(() => a().times(0, 2).optional(), /optional\(\) is given twice/);
  });
});

describe("a pattern of optional steps only: the non-empty matches, never an empty one", () => {
  const input = ["a1", "a2", "x", "a3"];
  it("begin(a).oneOrMore().optional() matches what begin(a).oneOrMore() matches", () => {
    const opt = pattern<Ev>().begin("a").where(named("a")).oneOrMore().optional();
    const plain = pattern<Ev>().begin("a").where(named("a")).oneOrMore();
    const got = matches(opt, input);
    assert.deepEqual(sorted(got), sorted(["a1", "a1 a2", "a1 a2 a3", "a2", "a2 a3", "a3"]));
    assert.deepEqual(got, matches(plain, input));
  });
  it("a? b? over a1 b1 x gives {a1} {a1 b1} {b1}", () => {
    const p = pattern<Ev>().begin("a").where(named("a")).optional().followedBy("b").where(named("b")).optional();
    assert.deepEqual(sorted(matches(p, ["a1", "b1", "x"])), sorted(["a1", "a1 b1", "b1"]));
  });
});

describe("until() on a looping group: the until event ends the group's occurrences", () => {
  const is = (n: string) => named(n);
  const p = (until: boolean) => {
    let q = pattern<Ev>()
      .begin("c")
      .where(is("c"))
      .followedBy(pattern<Ev>().begin("a").where(is("a")).followedBy("b").where(is("b")))
      .oneOrMore();
    if (until) q = q.until(is("x"));
    return q.followedBy("d").where(is("d"));
  };
  it("c (a b)+ until x d over c a1 b1 a2 x b2 d gives {c a1 b1 d}: x cuts the second occurrence", () => {
    assert.deepEqual(sorted(matches(p(false), ["c", "a1", "b1", "a2", "x", "b2", "d"])), sorted(["c a1 b1 d", "c a1 b1 a2 b2 d"]));
    assert.deepEqual(matches(p(true), ["c", "a1", "b1", "a2", "x", "b2", "d"]), ["c a1 b1 d"]);
  });
  it("after x, no new occurrence starts: c a1 b1 x a2 b2 d gives {c a1 b1 d}", () => {
    assert.deepEqual(matches(p(true), ["c", "a1", "b1", "x", "a2", "b2", "d"]), ["c a1 b1 d"]);
  });
  it("an x before the first occurrence ends the loop too (FlinkCEP extends the group's skip conditions with it)", () => {
    assert.deepEqual(matches(p(true), ["c", "x", "a1", "b1", "d"]), []);
  });
  it("until() on a group that does not loop is rejected", () => {
    const g = pattern<Ev>().begin("a").where(is("a"));
    assert.throws(
      () =>
        compileSpec(
          pattern<Ev>()
          .begin("c")
          .followedBy(g)
          .times(2)
          .until(is("x"))
          .followedBy("d"),
        ),
      /until\(\) applies to looping steps/,
    );
  });
});

describe("within(ms, \"step\") on a notFollowedBy that ends the pattern", () => {
  const p = () =>
    pattern<Ev>()
      .begin("a")
      .where(named("a"))
      .followedBy("b")
      .where(named("b"))
      .notFollowedBy("x")
      .where(named("x"))
      .within(10, "step");
  it("completes 10 ms after the last matched event when no x came, and not when one did", () => {
    const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, p()));
    const input: [string, number][] = [
      ["a1", 1],
      ["b1", 5],
      ["a2", 20],
      ["b2", 30],
      ["x", 35],
      ["a3", 50],
      ["b3", 52],
      ["y", 58],
    ];
    for (const [id, t] of input) d.pipeInput(ev(id), t);
    d.advanceWatermark(100);
    const out = d.readOutput().map((r) => (r.kind === "match" ? `${(r.events.a ?? []).map((e) => e.id)} ${(r.events.b ?? []).map((e) => e.id)} @${r.end}` : r.kind));
    assert.deepEqual(out, ["a1 b1 @15", "a3 b3 @62"]);
  });
  it("is measured from the previous step, not from the start of the match", () => {
    const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, p()));
    d.pipeInput(ev("a1"), 1).pipeInput(ev("b1"), 40).pipeInput(ev("x"), 45);
    d.advanceWatermark(100);
    assert.deepEqual(d.readOutput(), []);
  });
  it("a per-step within on a notFollowedBy in the middle, or on a notNext, is rejected", () => {
    const mid = pattern<Ev>().begin("a").where(named("a")).notFollowedBy("x").where(named("x")).within(5, "step").followedBy("b").where(named("b"));
    assert.throws(() => compileSpec(mid), /only supported on a notFollowedBy that ends the pattern/);
    const nn = pattern<Ev>().begin("a").where(named("a")).notNext("x").where(named("x")).within(5, "step").followedBy("b").where(named("b"));
    assert.throws(() => compileSpec(nn), /only supported on a notFollowedBy that ends the pattern/);
  });
});

describe("comparator: orders records with equal timestamps, as FlinkCEP's EventComparator", () => {
  const ab = () => pattern<Ev>().begin("a").where(named("a")).next("b").where(named("b"));
  const run = (options: MatchOptions<Ev>, input: [string, number][]): { out: string[]; dead: Ev[] } => {
    const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, ab(), options));
    for (const [id, t] of input) d.pipeInput(ev(id), t);
    d.endInput();
    const out = d.readOutput().map((r) => `${(r.events.a ?? []).map((e) => e.id)} ${(r.events.b ?? []).map((e) => e.id)}`);
    return { out, dead: d.readSideOutput(DEAD_LETTERS) as Ev[] };
  };
  const byName = (x: Ev, y: Ev): number => x.name.localeCompare(y.name);
  it("b and a at the same time: arrival order gives no a-next-b match, the comparator puts a first", () => {
    const input: [string, number][] = [
      ["b1", 5],
      ["a1", 5],
      ["x", 6],
    ];
    assert.deepEqual(run({}, input).out, []);
    assert.deepEqual(run({ comparator: byName }, input).out, ["a1 b1"]);
  });
  it("orders only within a timestamp, and records it ranks equal keep their arrival order", () => {
    // b#1 at 4 stays before a#1 at 5; at 5 the a's come first in arrival order (a1 then a2), then b2.
    const input: [string, number][] = [
      ["b1", 4],
      ["b2", 5],
      ["a2", 5],
      ["a1", 5],
    ];
    assert.deepEqual(run({ comparator: byName }, input).out, ["a1 b2"]);
    const reversed: [string, number][] = [
      ["b1", 4],
      ["b2", 5],
      ["a1", 5],
      ["a2", 5],
    ];
    assert.deepEqual(run({ comparator: byName }, reversed).out, ["a2 b2"]);
  });
  it("a comparator that throws sends the record to dead letters, and the others are matched", () => {
    const picky = (x: Ev, y: Ev): number => {
      if (x.name === "z" || y.name === "z") throw new Error("cannot compare z");
      return byName(x, y);
    };
    const r = run({ comparator: picky }, [
      ["b1", 5],
      ["z", 5],
      ["a1", 5],
    ]);
    assert.deepEqual(r.dead.map((e) => e.id), ["z"]);
    assert.deepEqual(r.out, ["a1 b1"]);
  });
  it("with time: \"processing\" it is rejected: records are matched on arrival there", () => {
    const d = () => new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, ab(), { time: "processing", comparator: byName }));
    assert.throws(d, (e: unknown) => isGressError(e, "ERR_CONFIG") && /comparator/.test((e as Error).message));
  });
});

describe("a pattern read from JSON with a quantifier the builder cannot produce", () => {
  it("min 0 or max below min is rejected with a PatternError naming the step, not compiled into other counts", () => {
    const spec = (quantifier: unknown) => ({
      version: 1,
      steps: [{ name: "a", kind: "relaxed", where: { field: "name", op: "==", value: "a" }, quantifier }],
      skip: { kind: "noSkip" },
    });
    const q = { min: 1, max: 2, optional: false, greedy: false, inner: "relaxed" };
    assert.doesNotThrow(() => Pattern.fromJSON<Ev>(spec(q)));
    for (const bad of [{ ...q, min: 0 }, { ...q, min: 3 }, { ...q, max: 1.5 }, null]) {
      assert.throws(() => Pattern.fromJSON<Ev>(spec(bad)), (e: unknown) => isGressError(e, "ERR_PATTERN") && /step "a": the quantifier needs/.test((e as Error).message));
    }
  });
});

describe("an absence bounded by both the pattern's within and its own", () => {
  it("completes at whichever bound comes first, even when one watermark passes both", () => {
    const p = pattern<Ev>()
      .begin("a")
      .where(named("a"))
      .followedBy("b")
      .where(named("b"))
      .notFollowedBy("x")
      .where(named("x"))
      .within(10, "step")
      .within(20);
    const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s, p));
    // From a at 1 the match must end by 21; from b at 15 the absence would last until 25.
    d.pipeInput(ev("a1"), 1).pipeInput(ev("b1"), 15);
    d.advanceWatermark(100);
    assert.deepEqual(
      d.readOutput().map((r) => (r.kind === "match" ? r.end : -1)),
      [21],
    );
  });
});
