// Property tests of dynamic CEP rules (cep/dynamic.ts): the results equal those of a job restarted at the
// change with the same policy, computed by two static match() runs over the whole input and filtered by the
// change's time; and every replaced version's state is freed once it can emit nothing more.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type Contiguity, match, matchDynamic, Pattern, type PatternResult, type PatternSpec, pattern, type RuleChange, type RuleResult } from "../../cep/index.ts";
import { boundedOutOfOrderness, memoryState, type StateBackend } from "../../lib/index.ts";
import { checkExactlyOnce, crashSchedules, MultiInputTestDriver, multiInput, type Tagged, TestDriver, timestampedEvents } from "../../lib/testing/index.ts";

interface Ev {
  readonly id: number;
  readonly type: string;
  readonly key: string;
}

interface StepGen {
  readonly types: string[];
  readonly kind: Contiguity;
  readonly q: readonly [number, number | null];
  readonly optional: boolean;
}
interface PatternGen {
  readonly steps: StepGen[];
  readonly within: number | undefined;
  /** A trailing notFollowedBy (needs within), or a notNext after the first step. */
  readonly negation: "none" | "notNext" | "notFollowedBy";
}

const stepGen = (first: boolean): fc.Arbitrary<StepGen> =>
  fc.record({
    types: fc.subarray(["A", "B", "C"], { minLength: 1, maxLength: 2 }),
    kind: fc.constantFrom<Contiguity>("strict", "relaxed", "any"),
    q: fc.constantFrom<readonly [number, number | null]>([1, 1], [1, 1], [1, null], [2, 2], [1, 2]),
    optional: first ? fc.constant(false) : fc.boolean(),
  });
const patternGen: fc.Arbitrary<PatternGen> = fc.record({
  steps: fc.tuple(stepGen(true), fc.array(stepGen(false), { maxLength: 2 })).map(([f, rest]) => [f, ...rest]),
  within: fc.option(fc.integer({ min: 3, max: 15 }), { nil: undefined }),
  negation: fc.constantFrom("none", "none", "notNext", "notFollowedBy"),
});

/** The pattern as JSON (field conditions only, so that it serialises without a registry). */
function spec(g: PatternGen): PatternSpec {
  let p = pattern<Ev>() as unknown as Pattern<Ev, string, string>;
  g.steps.forEach((s, i) => {
    const name = `s${i}`;
    p = i === 0 ? p.begin(name) : s.kind === "strict" ? p.next(name) : s.kind === "relaxed" ? p.followedBy(name) : p.followedByAny(name);
    p = p.where({ field: "type", op: "in", value: s.types });
    const [min, max] = s.q;
    if (max === null) p = p.oneOrMore();
    else if (min !== 1 || max !== 1) p = p.times(min, max);
    if (s.optional) p = p.optional();
    if (i === 0 && g.negation === "notNext") p = p.notNext("n").where({ field: "type", op: "==", value: "C" });
  });
  if (g.negation === "notFollowedBy" && g.within !== undefined && !g.steps.at(-1)!.optional) p = p.notFollowedBy("n").where({ field: "type", op: "==", value: "C" });
  if (g.within !== undefined) p = p.within(g.within);
  return p.toJSON();
}

type Op =
  | { readonly kind: "event"; readonly type: string; readonly key: string; readonly at: number }
  | { readonly kind: "watermark"; readonly step: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("event" as const), type: fc.constantFrom("A", "B", "C"), key: fc.constantFrom("k1", "k2"), at: fc.integer({ min: 0, max: 60 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("watermark" as const), step: fc.integer({ min: 0, max: 12 }) }) },
);

/** The event-time schedule: events at `at` (those at or behind the watermark are late in every run alike). */
interface Played {
  readonly ev: Ev;
  readonly at: number;
}

const show = (r: PatternResult<Ev, string>, rule = ""): string =>
  `${rule}${r.kind}:${r.start}..${r.kind === "match" ? r.end : r.timeoutAt}:${Object.entries(r.events)
    .map(([s, es]) => `${s}=${es.map((e) => e.id).join(",")}`)
    .join(" ")}`;

/** Plays `ops` into a driver, calling `change(i, wm)` before op `i` where a rule change goes. */
function play(ops: readonly Op[], onEvent: (p: Played) => void, onWatermark: (wm: number) => void, before: (i: number, wm: number) => void): void {
  let wm = Number.NEGATIVE_INFINITY;
  let id = 0;
  ops.forEach((op, i) => {
    before(i, wm);
    if (op.kind === "event") onEvent({ ev: { id: id++, type: op.type, key: op.key }, at: op.at });
    else {
      wm = (Number.isFinite(wm) ? wm : 0) + op.step;
      onWatermark(wm);
    }
  });
  before(ops.length, wm);
}

/** One static run of `p` (match() over the whole input): every result, and those emitted before op `cut`. */
function staticRun(ops: readonly Op[], p: PatternSpec, cut: number): { all: PatternResult<Ev, string>[]; before: PatternResult<Ev, string>[] } {
  const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s.keyBy((e) => e.key), Pattern.fromJSON<Ev>(p), { uid: "static" }));
  let before: PatternResult<Ev, string>[] = [];
  play(
    ops,
    (x) => d.pipeInput(x.ev, x.at),
    (wm) => d.advanceWatermark(wm),
    (i) => {
      if (i === cut) before = d.readOutput();
    },
  );
  d.endInput();
  return { all: [...before, ...d.readOutput()], before };
}

interface Scenario {
  readonly ops: Op[];
  readonly v1: PatternGen;
  readonly v2: PatternGen;
  /** Before which ops the rule is added, and changed (or removed). */
  readonly addAt: number;
  readonly changeAt: number;
  readonly policy: "finish" | "drop";
  readonly remove: boolean;
}
const scenario: fc.Arbitrary<Scenario> = fc
  .record({
    ops: fc.array(opArb, { minLength: 1, maxLength: 40 }),
    v1: patternGen,
    v2: patternGen,
    a: fc.nat(),
    b: fc.nat(),
    policy: fc.constantFrom<"finish" | "drop">("finish", "drop"),
    remove: fc.boolean(),
  })
  .map(({ ops, v1, v2, a, b, policy, remove }) => {
    const x = a % (ops.length + 1);
    const y = b % (ops.length + 1);
    return { ops, v1, v2, addAt: Math.min(x, y), changeAt: Math.max(x, y), policy, remove };
  });

function dynamicRun(s: Scenario, state: StateBackend): { results: string[]; freedV1: { wm: number; freed: boolean }[]; times: [number, number] } {
  const d = new MultiInputTestDriver<{ tx: Ev; rules: RuleChange }, RuleResult<Ev>>(
    ["tx", "rules"],
    (x) => matchDynamic(x.input("tx").keyBy((e) => e.key), x.input("rules"), { uid: "dyn" }),
    { state },
  );
  const times: [number, number] = [Number.NaN, Number.NaN];
  const v1Rows = (): number =>
    Object.entries(state.snapshot().tables)
      .filter(([id]) => id.startsWith("dyn/r@1/"))
      .reduce((n, [, rows]) => n + rows.length, 0);
  // After the change: at each watermark, whether version 1's tables are empty.
  const freedV1: { wm: number; freed: boolean }[] = [];
  let changed = false;
  play(
    s.ops,
    (x) => d.pipeInput("tx", x.ev, x.at),
    (wm) => {
      d.advanceWatermark("tx", wm);
      if (changed) freedV1.push({ wm, freed: v1Rows() === 0 });
    },
    (i, wm) => {
      if (i === s.addAt) {
        times[0] = wm + 1;
        d.pipeInput("rules", { id: "r", version: 1, pattern: spec(s.v1) }, 0);
      }
      if (i === s.changeAt) {
        times[1] = wm + 1;
        d.pipeInput("rules", { id: "r", version: 2, pattern: s.remove ? null : spec(s.v2), policy: s.policy }, 0);
        changed = true;
        freedV1.push({ wm, freed: v1Rows() === 0 });
      }
    },
  );
  d.endInput();
  freedV1.push({ wm: Number.POSITIVE_INFINITY, freed: v1Rows() === 0 });
  return { results: d.readOutput().map((r) => show(r, `${r.ruleId}@${r.version}:`)), freedV1, times };
}

describe("dynamic rules equal a job restarted at the change with the same policy", () => {
  it("over random patterns, inputs, watermarks and change points (noSkip)", () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const { results, times } = dynamicRun(s, memoryState());
        const [t1, t2] = times;
        // Version 1 counts from its addition; before the change, by the policy: finish keeps what started
        // before it (it completes or times out later), drop only what was emitted before it. (Usually that is
        // what ended before it; a match ending in notNext is emitted at the next event, so it may not be.)
        const run1 = staticRun(s.ops, spec(s.v1), s.changeAt);
        const v1 = (s.policy === "finish" ? run1.all.filter((r) => r.start < t2) : run1.before).filter((r) => r.start >= t1);
        const v2 = s.remove ? [] : staticRun(s.ops, spec(s.v2), s.changeAt).all.filter((r) => r.start >= t2);
        const expected = [...v1.map((r) => show(r, "r@1:")), ...v2.map((r) => show(r, "r@2:"))].sort();
        assert.deepEqual([...results].sort(), expected);
      }),
      { numRuns: 150 },
    );
  });

  it("the replaced version's state is freed: at the change under drop; under finish, once no partial match started before the change can be open", () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const state = memoryState();
        const { freedV1, times } = dynamicRun(s, state);
        const t2 = times[1];
        const within = s.v1.within;
        for (const { wm, freed } of freedV1) {
          // Under finish with within W, every partial match started before the change (at most t2 - 1) has
          // completed or timed out once the watermark reaches t2 - 1 + W; without within, at the end of input.
          const done = s.policy === "drop" || (within !== undefined && wm >= t2 - 1 + within) || wm === Number.POSITIVE_INFINITY;
          if (done) assert.ok(freed, `version 1's tables are not empty at watermark ${wm} (change at ${t2}, ${s.policy})`);
        }
        // Once freed, it stays freed.
        const first = freedV1.findIndex((f) => f.freed);
        if (first >= 0) assert.ok(freedV1.slice(first).every((f) => f.freed));
        assert.deepEqual(
          [...state.table<unknown>("dyn", "rules").entries()].map(([k, ns]) => `${k}@${ns}`),
          s.remove ? [] : ["r@2"],
        );
      }),
      { numRuns: 150 },
    );
  });
});

// Exactly-once across crashes (checkExactlyOnce: LMDB state, checkpoints between records, crashes at records,
// pre-commit, commit and recovery): the rule set, the records kept for new versions and every version's NFA
// state are restored together, so the committed results equal a failure-free run's.
type CrashInputs = { tx: { readonly card: string; readonly type: string; readonly n: number }; rules: RuleChange };
const rulePool: PatternSpec[] = [
  pattern<Ev>().begin("a").where({ field: "type", op: "==", value: "A" }).followedBy("b").where({ field: "type", op: "==", value: "B" }).toJSON(),
  pattern<Ev>().begin("a").where({ field: "type", op: "==", value: "A" }).followedBy("c").where({ field: "type", op: "==", value: "C" }).within(2_000).toJSON(),
  pattern<Ev>().begin("a").where({ field: "type", op: "==", value: "A" }).notFollowedBy("c").where({ field: "type", op: "==", value: "C" }).within(1_500).toJSON(),
];
const crashEvents = timestampedEvents(
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ card: fc.constantFrom("c1", "c2"), type: fc.constantFrom("A", "B", "C"), n: fc.nat(99) }).map((value): Tagged<CrashInputs> => ({ input: "tx", value })) },
    {
      weight: 2,
      arbitrary: fc
        .record({ p: fc.nat(rulePool.length), policy: fc.constantFrom<"finish" | "drop">("finish", "drop") })
        .map((r): Tagged<CrashInputs> => ({ input: "rules", value: { id: "r", version: 0, pattern: rulePool[r.p] ?? null, policy: r.policy } })),
    },
  ),
  { minLength: 8, maxLength: 24, maxGapMs: 600 },
).map((evs) => {
  // Versions increase in arrival order.
  let v = 0;
  return evs.map((e) => (e.value.input === "rules" ? { ...e, value: { input: "rules" as const, value: { ...e.value.value, version: ++v } } } : e));
});
const crashSchedulesFixed = fc.sample(
  crashSchedules(24).filter((s) => s.crashes.every((c) => c.at !== "checkpoint")),
  { numRuns: 60, seed: 16 },
);

describe("dynamic rules are exactly-once across crashes", () => {
  it("results committed after crashes and recoveries equal a failure-free run's", async () => {
    const pipeline = multiInput<CrashInputs, string>(["tx", "rules"], (d) =>
      matchDynamic(
        d
          .input("tx")
          .withTimestamps(boundedOutOfOrderness(0, { everyRecords: 1 }))
          .keyBy((t) => t.card),
        d.input("rules"),
        { uid: "dyn" },
      ).map((r) => `${r.ruleId}@${r.version} ${r.kind} ${String(r.key)} ${r.start}..${r.kind === "match" ? r.end : r.timeoutAt} ${Object.values(r.events).flat().map((e) => e.n).join(",")}`),
    );
    await fc.assert(checkExactlyOnce(pipeline, crashEvents, { schedules: crashSchedulesFixed }), { numRuns: 100 });
  });
});
