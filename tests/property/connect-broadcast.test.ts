import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { broadcastState, type KeyedBroadcastProcessFunction, type KeyedCoProcessFunction, memoryState, type StateBackend } from "../../lib/index.ts";
import { MultiInputTestDriver } from "../../lib/testing/index.ts";

type Input = "a" | "b";
type Op =
  | { readonly kind: "record"; readonly input: Input; readonly key: string; readonly at: number }
  | { readonly kind: "watermark"; readonly input: Input; readonly step: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("record" as const),
      input: fc.constantFrom<Input>("a", "b"),
      key: fc.constantFrom("k1", "k2", "k3"),
      at: fc.integer({ min: 0, max: 2_000 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("watermark" as const), input: fc.constantFrom<Input>("a", "b"), step: fc.integer({ min: 0, max: 400 }) }) },
);

/** Each record sets an event-time timer at its timestamp + 100; the timer reports its time and the watermark. */
const timersAt: KeyedCoProcessFunction<number, number, string, string> = {
  processElement1: (_v, ctx) => ctx.timers.registerEventTime(ctx.timestamp + 100),
  processElement2: (_v, ctx) => ctx.timers.registerEventTime(ctx.timestamp + 100),
  onTimer: (time, _d, ctx) => ctx.emit(`${ctx.key}@${time}/${ctx.currentWatermark}`),
};

describe("connected streams: event time is the minimum of both inputs' watermarks", () => {
  it("output watermarks are the running minimum, and every timer fires once, exactly when that minimum reaches it", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const d = new MultiInputTestDriver<{ a: number; b: number }, string>(["a", "b"], (x) =>
          x
            .input("a")
            .keyBy(() => "k")
            .connect(x.input("b").keyBy(() => "k"))
            .process(timersAt),
        );
        const marks = { a: Number.NEGATIVE_INFINITY, b: Number.NEGATIVE_INFINITY };
        const pending = new Set<number>();
        let min = Number.NEGATIVE_INFINITY;
        for (const op of ops) {
          if (op.kind === "record") {
            // A record at or behind the watermark would be late: keep the inputs' records on time here.
            const at = Math.max(op.at, Math.floor(Math.max(marks.a, marks.b, 0)) + 1);
            d.pipeInput(op.input, 0, at);
            if (at + 100 > min) pending.add(at + 100);
            continue;
          }
          marks[op.input] = Math.max(marks[op.input], 0) + op.step;
          d.advanceWatermark(op.input, marks[op.input]);
          const next = Math.min(marks.a, marks.b);
          const fired = d.readOutput();
          if (next > min) {
            assert.deepEqual(d.readWatermarks(), [next]);
            const due = [...pending].filter((t) => t <= next).sort((p, q) => p - q);
            assert.deepEqual(
              fired,
              due.map((t) => `k@${t}/${next}`),
            );
            for (const t of due) pending.delete(t);
            min = next;
          } else {
            assert.deepEqual(d.readWatermarks(), []);
            assert.deepEqual(fired, []);
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});

type Rule = { readonly country: string; readonly max: number | null };
type Step = { readonly kind: "tx"; readonly card: string; readonly amount: number } | { readonly kind: "rule"; readonly rule: Rule };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("tx" as const), card: fc.constantFrom("NL1", "NL2", "DE1"), amount: fc.integer({ min: 0, max: 1_000 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("rule" as const),
      rule: fc.record({ country: fc.constantFrom("NL", "DE"), max: fc.option(fc.integer({ min: 0, max: 1_000 }), { nil: null }) }),
    }),
  },
);

const LIMITS = broadcastState<string, number>("limits");
const judge: KeyedBroadcastProcessFunction<{ card: string; amount: number }, string, Rule, string> = {
  processElement(t, ctx) {
    const n = ctx.state.value<number>("n");
    n.update((n.value() ?? 0) + 1);
    const max = ctx.getBroadcastState(LIMITS).get(t.card.slice(0, 2));
    ctx.emit(`${ctx.key}#${n.value()}:${max !== undefined && t.amount > max ? "over" : "ok"}`);
  },
  processBroadcastElement(r, ctx) {
    if (r.max === null) ctx.getBroadcastState(LIMITS).delete(r.country);
    else ctx.getBroadcastState(LIMITS).put(r.country, r.max);
  },
};
const broadcastJob = (state: StateBackend) =>
  new MultiInputTestDriver<{ tx: { card: string; amount: number }; rules: Rule }, string>(
    ["tx", "rules"],
    (x) =>
      x
        .input("tx")
        .keyBy((t) => t.card)
        .connect(x.input("rules").broadcast(LIMITS))
        .process(judge, { uid: "judge" }),
    { state },
  );
const play = (d: ReturnType<typeof broadcastJob>, steps: readonly Step[]): string[] => {
  for (const s of steps) {
    if (s.kind === "tx") d.pipeInput("tx", { card: s.card, amount: s.amount }, 0);
    else d.pipeInput("rules", s.rule, 0);
  }
  return d.readOutput();
};

describe("broadcast state", () => {
  it("each keyed value is judged by the rules that arrived before it (a fold of the broadcast values)", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 80 }), (steps) => {
        const limits = new Map<string, number>();
        const counts = new Map<string, number>();
        const expected: string[] = [];
        for (const s of steps) {
          if (s.kind === "rule") {
            if (s.rule.max === null) limits.delete(s.rule.country);
            else limits.set(s.rule.country, s.rule.max);
            continue;
          }
          const n = (counts.get(s.card) ?? 0) + 1;
          counts.set(s.card, n);
          const max = limits.get(s.card.slice(0, 2));
          expected.push(`${s.card}#${n}:${max !== undefined && s.amount > max ? "over" : "ok"}`);
        }
        assert.deepEqual(play(broadcastJob(memoryState()), steps), expected);
      }),
      { numRuns: 200 },
    );
  });

  it("restored from a snapshot taken at any point, the job gives the same output as without the restore", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 60 }), fc.nat(), (steps, at) => {
        const cut = steps.length === 0 ? 0 : at % (steps.length + 1);
        const reference = play(broadcastJob(memoryState()), steps);
        const state = memoryState();
        const first = play(broadcastJob(state), steps.slice(0, cut));
        const restored = memoryState();
        restored.restore(state.snapshot());
        const second = play(broadcastJob(restored), steps.slice(cut));
        assert.deepEqual([...first, ...second], reference);
      }),
      { numRuns: 200 },
    );
  });
});
