import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compile, match, named, Pattern, type PatternResult, type PatternSpec, pattern, skip } from "../../cep/index.ts";
import { isGressError } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Tx {
  readonly card: string;
  readonly amount: number;
  readonly kind: string;
}

const throwsPattern = (f: () => unknown, message: RegExp): void => {
  assert.throws(f, (e: unknown) => isGressError(e, "ERR_PATTERN") && message.test((e as Error).message));
};

describe("pattern as data", () => {
  it("a pattern with named and field conditions round-trips through JSON and matches the same", () => {
    const small = named("small", (t: Tx) => t.amount < 2);
    const p = pattern<Tx>()
      .begin("tests")
      .where(small)
      .times(2)
      .consecutive()
      .followedBy("large")
      .where({ field: "amount", op: ">=", value: 500 })
      .or({ field: "kind", op: "in", value: ["refund"] })
      .within(60_000)
      .skip(skip.skipPastLastEvent());
    const json = JSON.stringify(p.toJSON());
    const back = Pattern.fromJSON<Tx>(JSON.parse(json), { small: (t) => t.amount < 2 });
    assert.deepEqual(back.toJSON(), p.toJSON());
    const run = (q: Pattern<Tx, string, string>): string[] => {
      const d = new TestDriver<Tx, PatternResult<Tx, string>>((s) => match(s, q));
      for (const [i, amount] of [1, 1.5, 700, 1, 0.5, 30, 9000].entries()) d.pipeInput({ card: "c", amount, kind: "buy" }, i + 1);
      d.endInput();
      return d.readOutput().map((r) => `${r.kind}:${Object.values(r.events).flat().map((t) => t.amount).join(",")}`);
    };
    assert.deepEqual(run(back), run(p as unknown as Pattern<Tx, string, string>));
    assert.deepEqual(run(p as unknown as Pattern<Tx, string, string>), ["match:1,1.5,700", "match:1,0.5,9000"]);
  });

  it("toJSON names the step whose inline function condition cannot be serialised", () => {
    const p = pattern<Tx>().begin("a").where((t) => t.amount > 1);
    throwsPattern(() => p.toJSON(), /step "a" uses an inline function/);
  });

  it("fromJSON rejects a condition name missing from the registry", () => {
    const spec: PatternSpec = {
      version: 1,
      steps: [{ name: "a", kind: "relaxed", where: { fn: "isBig" }, quantifier: { min: 1, max: 1, optional: false, greedy: false, inner: "relaxed" } }],
      skip: { kind: "noSkip" },
    };
    throwsPattern(() => Pattern.fromJSON<Tx>(spec, {}), /condition "isBig" is not in the registry/);
  });
});

describe("invalid patterns fail with a clear PatternError", () => {
  const base = () => pattern<Tx>().begin("a");
  it("greedy on a group", () => {
    throwsPattern(() => compile(base().followedBy(pattern<Tx>().begin("x").next("y")).oneOrMore().greedy().spec, new Map()), /greedy\(\) is not supported on a group/);
  });
  it("notFollowedBy at the end without within", () => {
    throwsPattern(() => compile(base().notFollowedBy("b").spec, new Map()), /cannot end with notFollowedBy unless it has within/);
  });
  it("a negative step after an optional one", () => {
    throwsPattern(() => compile(base().followedBy("b").optional().notNext("c").followedBy("d").spec, new Map()), /cannot follow an optional step/);
  });
  it("duplicate step names", () => {
    throwsPattern(() => compile(base().followedBy("a").spec, new Map()), /"a" is used twice/);
  });
  it("a second quantifier, bad counts, consecutive on a single step, until on a bounded step", () => {
    throwsPattern(() => base().oneOrMore().times(2), /already has a quantifier/);
    throwsPattern(() => base().times(3, 2), /1 ≤ n ≤ m/);
    throwsPattern(() => base().consecutive(), /applies to looping steps/);
    throwsPattern(() => compile(base().times(2).until(() => true).spec, new Map()), /until\(\) applies to looping steps/);
  });
  it("a skip strategy naming no step, and a non-positive within", () => {
    throwsPattern(() => compile(base().skip(skip.skipToLast("zz")).spec, new Map()), /names no step/);
    throwsPattern(() => base().within(0), /positive number/);
  });
  it("a per-step within on a group (it would be ignored)", () => {
    throwsPattern(
      () => compile(base().followedBy(pattern<Tx>().begin("x").next("y")).within(10, "step").spec, new Map()),
      /a per-step within cannot be set on a group/,
    );
  });
  it("steps before begin, and a per-step within on the first step", () => {
    throwsPattern(() => pattern<Tx>().next("a"), /must start with begin/);
    throwsPattern(() => base().within(10, "step"), /cannot be used on the first step/);
  });
});

describe("typing", () => {
  it("iterative conditions see the events of earlier steps, typed by step name", () => {
    const p = pattern<Tx>()
      .begin("a")
      .where((t) => t.kind === "a")
      .oneOrMore()
      .followedBy("b")
      .where((t, ctx) => t.kind === "b" && t.amount > ctx.eventsFor("a").reduce((s, x) => s + x.amount, 0));
    const d = new TestDriver<Tx, PatternResult<Tx, "a" | "b">>((s) => match(s, p, { maxPartialMatches: 100 }));
    d.pipeInput({ card: "c", amount: 3, kind: "a" }, 1)
      .pipeInput({ card: "c", amount: 4, kind: "a" }, 2)
      .pipeInput({ card: "c", amount: 5, kind: "b" }, 3)
      .pipeInput({ card: "c", amount: 8, kind: "b" }, 4)
      .endInput();
    const out = d.readOutput().map((r) => `${r.events.a.map((t) => t.amount).join("+")}<${r.events.b[0]!.amount}`);
    // {3,4} needs b > 7: the first b (5) fails it, the relaxed b step then takes 8; {4} takes 5 at once.
    assert.deepEqual(out.sort(), ["3+4<8", "3<5", "4<5"]);
  });
});
