import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { matchDynamic, named, pattern, RULE_ERRORS, type RuleChange, type RuleResult, SHADOW_MATCHES } from "../../cep/index.ts";
import { ConfigError, fromIterable, LATE_DATA, memoryState, PatternError, type StateBackend } from "../../lib/index.ts";
import { MultiInputTestDriver } from "../../lib/testing/index.ts";

interface Tx {
  readonly card: string;
  readonly kind: string;
  readonly amount?: number;
}
type Inputs = { tx: Tx; rules: RuleChange };
type Out = RuleResult<Tx>;

const kindIs = (kind: string) => ({ field: "kind", op: "==" as const, value: kind });
/** `first` followed by `second` (relaxed), optionally within `within` ms. */
const seq = (first: string, second: string, within?: number) => {
  const p = pattern<Tx>().begin("first").where(kindIs(first)).followedBy("second").where(kindIs(second));
  return (within === undefined ? p : p.within(within)).toJSON();
};

const driver = (state: StateBackend = memoryState(), conditions = {}) =>
  new MultiInputTestDriver<Inputs, Out>(["tx", "rules"], (d) => matchDynamic(d.input("tx").keyBy((t) => t.card), d.input("rules"), { uid: "rules", conditions }), { state });

const show = (r: Out): string => `${r.ruleId}@${r.version}:${r.kind}:${r.start}..${r.kind === "match" ? r.end : r.timeoutAt}`;
const out = (d: MultiInputTestDriver<Inputs, Out>): string[] => d.readOutput().map(show).sort();

/** Rows left in the tables of `operatorId` (a version's matcher state is under `<uid>/<rule>@<version>`). */
const rowsOf = (state: StateBackend, operatorId: string): number =>
  Object.entries(state.snapshot().tables)
    .filter(([id]) => id.startsWith(`${operatorId}/`))
    .reduce((n, [, rows]) => n + rows.length, 0);

describe("matchDynamic: rules from a control stream", () => {
  it("tags each match with the rule's id and version; a later version matches from the change on", () => {
    const d = driver();
    d.pipeInput("rules", { id: "ab", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).pipeInput("tx", { card: "c1", kind: "b" }, 2).advanceWatermark("tx", 2);
    assert.deepEqual(out(d), ["ab@1:match:1..2"]);
    // Version 2 looks for a then c, from event time 3 on.
    d.pipeInput("rules", { id: "ab", version: 2, pattern: seq("a", "c") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 3).pipeInput("tx", { card: "c1", kind: "b" }, 4).pipeInput("tx", { card: "c1", kind: "c" }, 5).advanceWatermark("tx", 10);
    assert.deepEqual(out(d), ["ab@2:match:3..5"]);
  });

  it("a new version also matches the records that arrived before it but were not yet behind the watermark", () => {
    const d = driver();
    d.pipeInput("tx", { card: "c1", kind: "a" }, 5).pipeInput("tx", { card: "c1", kind: "b" }, 6);
    d.pipeInput("rules", { id: "ab", version: 1, pattern: seq("a", "b") }, 0);
    d.advanceWatermark("tx", 6);
    assert.deepEqual(out(d), ["ab@1:match:5..6"]);
  });

  it("policy finish: a partial match open at the change completes under the old version, which starts no new one", () => {
    const state = memoryState();
    const d = driver(state);
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).advanceWatermark("tx", 1);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c"), policy: "finish" }, 0);
    // Open partial match of version 1: its state is still there.
    assert.ok(rowsOf(state, "rules/r@1") > 0);
    // a@3 could start a version-1 match (a..b@4), but version 1 only finishes what started before 2.
    d.pipeInput("tx", { card: "c1", kind: "a" }, 3).pipeInput("tx", { card: "c1", kind: "b" }, 4).pipeInput("tx", { card: "c1", kind: "c" }, 5).advanceWatermark("tx", 5);
    assert.deepEqual(out(d), ["r@1:match:1..4", "r@2:match:3..5"]);
    // ...and version 1 can emit nothing more: it is freed with its state, even as new a's arrive.
    assert.equal(rowsOf(state, "rules/r@1"), 0);

    assert.deepEqual(
      [...state.table("rules", "rules").entries()].map(([k, ns]) => `${k}@${ns}`),
      ["r@2"],
    );
  });

  it("policy finish: an event after the change starts no partial match of the old version, so it is freed when its own end", () => {
    const state = memoryState();
    const d = driver(state);
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).advanceWatermark("tx", 1);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c") }, 0);
    // b@2 completes version 1's match; a@3 would start another one, had version 1 not ended at 2.
    d.pipeInput("tx", { card: "c1", kind: "b" }, 2).pipeInput("tx", { card: "c1", kind: "a" }, 3).advanceWatermark("tx", 3);
    assert.deepEqual(out(d), ["r@1:match:1..2"]);
    assert.equal(rowsOf(state, "rules/r@1"), 0);
    // Version 2's partial match of a@3 is the only one held.
    assert.equal(d.job.metrics.operator("rules").partialMatches, 1);
  });

  it("policy finish with within: the old version is freed when its last partial match times out, not before", () => {
    const state = memoryState();
    const d = driver(state);
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b", 100) }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 10).pipeInput("tx", { card: "c2", kind: "a" }, 50).advanceWatermark("tx", 60);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "b", 100) }, 0);
    d.advanceWatermark("tx", 109);
    assert.ok(rowsOf(state, "rules/r@1") > 0, "c2's partial match is still open");
    d.advanceWatermark("tx", 110);
    assert.deepEqual(out(d), ["r@1:timeout:10..110"]);
    assert.ok(rowsOf(state, "rules/r@1") > 0, "c2's partial match is still open");
    d.advanceWatermark("tx", 150);
    assert.deepEqual(out(d), ["r@1:timeout:50..150"]);
    assert.equal(rowsOf(state, "rules/r@1"), 0);
    assert.equal(d.job.metrics.operator("rules").partialMatches, 0);
  });

  it("policy drop: partial matches open at the change are dropped and the old version's state is freed at once", () => {
    const state = memoryState();
    const d = driver(state);
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).pipeInput("tx", { card: "c1", kind: "b" }, 2).pipeInput("tx", { card: "c1", kind: "a" }, 3).advanceWatermark("tx", 3);
    assert.deepEqual(out(d), ["r@1:match:1..2"]);
    assert.ok(rowsOf(state, "rules/r@1") > 0);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c"), policy: "drop" }, 0);
    assert.equal(rowsOf(state, "rules/r@1"), 0);
    d.pipeInput("tx", { card: "c1", kind: "b" }, 4).advanceWatermark("tx", 10);
    assert.deepEqual(out(d), []);
  });

  it("pattern null removes a rule; a removal of an unknown rule, or a version not newer, is rejected", () => {
    const state = memoryState();
    const d = driver(state);
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).advanceWatermark("tx", 1);
    d.pipeInput("rules", { id: "r", version: 2, pattern: null, policy: "drop" }, 0);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "b") }, 0);
    d.pipeInput("rules", { id: "nope", version: 1, pattern: null }, 0);
    d.pipeInput("tx", { card: "c1", kind: "b" }, 2).pipeInput("tx", { card: "c1", kind: "a" }, 3).pipeInput("tx", { card: "c1", kind: "b" }, 4).advanceWatermark("tx", 10);
    assert.deepEqual(out(d), []);
    assert.equal(rowsOf(state, "rules/r@1"), 0);
    assert.deepEqual(
      d.readSideOutput(RULE_ERRORS).map((r) => r.message),
      ['rule "r": version 2 is not newer than version 2, seen before', 'rule "nope" version 1: there is no version of this rule to remove'],
    );
  });

  it("an invalid pattern is rejected with a PatternError on RULE_ERRORS, counted, and the previous version keeps running", async () => {
    const d = driver(memoryState(), { isA: (t: Tx) => t.kind === "a" });
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    const bad: unknown[] = [
      { id: "r", version: 2, pattern: { version: 1, steps: [], skip: { kind: "noSkip" } } },
      { id: "r", version: 3, pattern: { version: 1, steps: [{ name: "x", kind: "strict", where: { fn: "missing" }, quantifier: { min: 1, max: 1, optional: false, greedy: false, inner: "relaxed" } }], skip: { kind: "noSkip" } } },
      { id: "r", version: 4, pattern: { version: 1, steps: [{ name: "x" }], skip: { kind: "noSkip" } } },
      { id: "r", version: 5, pattern: "not a pattern" },
      { id: "has space", version: 1, pattern: seq("a", "b") },
      { id: "r", version: -1, pattern: seq("a", "b") },
      { id: "r", version: 6, pattern: seq("a", "b"), policy: "later" },
      null,
    ];
    for (const b of bad) d.pipeInput("rules", b as RuleChange, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).pipeInput("tx", { card: "c1", kind: "b" }, 2).advanceWatermark("tx", 2);
    assert.deepEqual(out(d), ["r@1:match:1..2"]);
    const rejected = d.readSideOutput(RULE_ERRORS);
    assert.equal(rejected.length, bad.length);
    for (const r of rejected) assert.ok(r.error instanceof PatternError, r.message);
    assert.deepEqual(
      rejected.map((r) => r.change),
      bad,
    );
    assert.match(rejected[0]!.message, /^rule "r" version 2: a pattern needs at least one step/);
    assert.match(rejected[1]!.message, /condition "missing" is not in the registry/);
    assert.match(rejected[2]!.message, /^rule "r" version 4: /);
    assert.match(rejected[4]!.message, /id must be a string of letters/);
    assert.match(rejected[6]!.message, /policy must be "finish" or "drop"/);
    const text = await d.job.metrics.text();
    assert.match(text, /gress_cep_rule_changes_total\{[^}]*operator="rules"[^}]*outcome="rejected"[^}]*\} 8/);
    assert.match(text, /gress_cep_rule_changes_total\{[^}]*operator="rules"[^}]*outcome="applied"[^}]*\} 1/);
    // A version that failed was not taken: version 2 can still be sent, with a good pattern.
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 3).pipeInput("tx", { card: "c1", kind: "c" }, 4).advanceWatermark("tx", 4);
    assert.deepEqual(out(d), ["r@2:match:3..4"]);
  });

  it("named conditions come from the registry given to matchDynamic", () => {
    const d = driver(memoryState(), { big: (t: Tx) => (t.amount ?? 0) > 100 });
    const spec = pattern<Tx>().begin("big").where(named("big", (t: Tx) => (t.amount ?? 0) > 100)).toJSON();
    d.pipeInput("rules", { id: "big", version: 1, pattern: spec }, 0);
    d.pipeInput("tx", { card: "c1", kind: "x", amount: 50 }, 1).pipeInput("tx", { card: "c1", kind: "x", amount: 500 }, 2).advanceWatermark("tx", 5);
    assert.deepEqual(out(d), ["big@1:match:2..2"]);
  });

  it("initial rules are in effect from the start, are checked at once, and are not applied again on a restore", () => {
    const initial: RuleChange[] = [{ id: "ab", version: 1, pattern: seq("a", "b") }];
    const make = (state: StateBackend) =>
      new MultiInputTestDriver<Inputs, Out>(["tx", "rules"], (d) => matchDynamic(d.input("tx").keyBy((t) => t.card), d.input("rules"), { uid: "rules", initial }), { state });
    const state = memoryState();
    const d = make(state);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).pipeInput("tx", { card: "c1", kind: "b" }, 2).advanceWatermark("tx", 2);
    d.pipeInput("rules", { id: "ab", version: 2, pattern: null }, 0);
    assert.deepEqual(out(d), ["ab@1:match:1..2"]);
    const restored = memoryState();
    restored.restore(state.snapshot());
    const again = make(restored);
    again.pipeInput("tx", { card: "c1", kind: "a" }, 3).pipeInput("tx", { card: "c1", kind: "b" }, 4).advanceWatermark("tx", 4);
    assert.deepEqual(out(again), [], "the removed rule came back from `initial`");
    assert.throws(
      () => new MultiInputTestDriver<Inputs, Out>(["tx", "rules"], (x) => matchDynamic(x.input("tx"), x.input("rules"), { initial: [{ id: "bad", version: 1, pattern: { version: 1, steps: [], skip: { kind: "noSkip" } } }] })),
      (err: unknown) => err instanceof PatternError && /rule "bad" version 1: a pattern needs at least one step/.test(err.message),
    );
  });

  it("an input without event time is refused with a ConfigError that says what to add", () => {
    const rules = fromIterable<RuleChange>([]);
    assert.throws(
      () => matchDynamic(fromIterable<Tx>([{ card: "c1", kind: "a" }]).keyBy((t) => t.card), rules),
      (err: unknown) => err instanceof ConfigError && /no event time/.test(err.message) && /withTimestamps/.test(err.message),
    );
    // With timestamps it is accepted.
    matchDynamic(fromIterable<Tx>([{ card: "c1", kind: "a" }], { timestamp: () => 0 }).keyBy((t) => t.card), rules);
  });

  it("late records go to the late output once, whatever the number of versions", () => {
    const d = driver();
    d.pipeInput("rules", { id: "r1", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("rules", { id: "r2", version: 1, pattern: seq("a", "c") }, 0);
    d.advanceWatermark("tx", 10).pipeInput("tx", { card: "c1", kind: "a" }, 5);
    assert.equal(d.readSideOutput(LATE_DATA).length, 1);
  });

  it("restored from a snapshot taken while an old version finishes, the job gives the output of an uninterrupted run", () => {
    type Step = (d: MultiInputTestDriver<Inputs, Out>) => void;
    const steps: Step[] = [
      (d) => d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b", 50) }, 0),
      (d) => d.pipeInput("tx", { card: "c1", kind: "a" }, 1).pipeInput("tx", { card: "c2", kind: "a" }, 2).advanceWatermark("tx", 2),
      (d) => d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c", 50) }, 0),
      (d) => d.pipeInput("tx", { card: "c1", kind: "b" }, 5).pipeInput("tx", { card: "c2", kind: "a" }, 6).pipeInput("tx", { card: "c2", kind: "c" }, 7),
      (d) => d.advanceWatermark("tx", 8),
      (d) => d.pipeInput("tx", { card: "c2", kind: "b" }, 9).advanceWatermark("tx", 100),
      (d) => d.endInput(),
    ];
    const reference = driver();
    for (const s of steps) s(reference);
    const expected = out(reference);
    assert.deepEqual(expected, ["r@1:match:1..5", "r@1:match:2..9", "r@2:match:6..7"]);
    for (let cut = 1; cut < steps.length; cut++) {
      const state = memoryState();
      const first = driver(state);
      for (const s of steps.slice(0, cut)) s(first);
      const before = out(first);
      const restored = memoryState();
      restored.restore(state.snapshot());
      const second = driver(restored);
      for (const s of steps.slice(cut)) s(second);
      assert.deepEqual([...before, ...out(second)].sort(), expected, `restored after step ${cut}`);
    }
  });
});

describe("matchDynamic: shadow versions", () => {
  it("a shadow version's results go to SHADOW_MATCHES and are counted; promoted, it replaces the active version", async () => {
    const d = driver();
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c"), shadow: true }, 0);
    // c@3 then a@3: the a opens a partial match in both versions that is still open at the promotion.
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).pipeInput("tx", { card: "c1", kind: "b" }, 2).pipeInput("tx", { card: "c1", kind: "c" }, 3).pipeInput("tx", { card: "c1", kind: "a" }, 3);
    d.advanceWatermark("tx", 3);
    assert.deepEqual(out(d), ["r@1:match:1..2"]);
    assert.deepEqual(d.readSideOutput(SHADOW_MATCHES).map((r) => show(r as Out)), ["r@2:match:1..3"]);
    assert.match(await d.job.metrics.text(), /gress_cep_shadow_matches_total\{[^}]*operator="rules"[^}]*rule="r"[^}]*version="2"[^}]*\} 1/);
    // A promotion must carry the shadow's pattern.
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "b") }, 0);
    assert.match(d.readSideOutput(RULE_ERRORS)[0]?.message ?? "", /runs as a shadow with a different pattern/);
    // Promoted at 4: version 1 finishes its partial match of a@3; version 2's matches from 4 on are the main output.
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c") }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 5).pipeInput("tx", { card: "c1", kind: "b" }, 6).pipeInput("tx", { card: "c1", kind: "c" }, 7).advanceWatermark("tx", 10);
    assert.deepEqual(out(d), ["r@1:match:3..6", "r@2:match:5..7"]);
    // Started before the promotion: still the shadow's.
    assert.deepEqual(d.readSideOutput(SHADOW_MATCHES).map((r) => show(r as Out)), ["r@2:match:3..7"]);
  });

  it("a shadow version older than the active one is not promoted", () => {
    const d = driver();
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c"), shadow: true }, 0);
    d.pipeInput("rules", { id: "r", version: 3, pattern: seq("a", "b") }, 0);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c") }, 0);
    assert.match(d.readSideOutput(RULE_ERRORS)[0]?.message ?? "", /shadow version 2 is older than the active version 3/);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).pipeInput("tx", { card: "c1", kind: "b" }, 2).pipeInput("tx", { card: "c1", kind: "c" }, 3).advanceWatermark("tx", 3);
    assert.deepEqual(out(d), ["r@3:match:1..2"]);
    assert.deepEqual(d.readSideOutput(SHADOW_MATCHES).map((r) => show(r as Out)), ["r@2:match:1..3"]);
  });

  it("a shadow version is removed with pattern null and shadow true, leaving the active one", () => {
    const state = memoryState();
    const d = driver(state);
    d.pipeInput("rules", { id: "r", version: 1, pattern: seq("a", "b") }, 0);
    d.pipeInput("rules", { id: "r", version: 2, pattern: seq("a", "c"), shadow: true }, 0);
    d.pipeInput("tx", { card: "c1", kind: "a" }, 1).advanceWatermark("tx", 1);
    d.pipeInput("rules", { id: "r", version: 3, pattern: null, shadow: true, policy: "drop" }, 0);
    assert.equal(rowsOf(state, "rules/r@2"), 0);
    d.pipeInput("tx", { card: "c1", kind: "b" }, 2).pipeInput("tx", { card: "c1", kind: "c" }, 3).advanceWatermark("tx", 10);
    assert.deepEqual(out(d), ["r@1:match:1..2"]);
    assert.deepEqual(d.readSideOutput(SHADOW_MATCHES), []);
  });
});
