import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  broadcastState,
  ConfigError,
  isBroadcastPartitioned,
  Job,
  type KeyedBroadcastProcessFunction,
  memoryState,
  monotonic,
  sinkFn,
  type Source,
  type StateBackend,
} from "../../lib/index.ts";
import { MultiInputTestDriver } from "../../lib/testing/index.ts";

type Tx = { card: string; amount: number };
type Rule = { country: string; max: number | null };
const LIMITS = broadcastState<string, number>("limits");

/** Flags a transaction above its country's limit (cards "NL-…" are Dutch); counts per card in keyed state. */
const flag: KeyedBroadcastProcessFunction<Tx, string, Rule, string> = {
  processElement(tx, ctx) {
    const n = ctx.state.value<number>("n");
    n.update((n.value() ?? 0) + 1);
    const max = ctx.getBroadcastState(LIMITS).get(tx.card.slice(0, 2));
    if (max !== undefined && tx.amount > max) ctx.emit(`${ctx.key} #${n.value()}: ${tx.amount} > ${max}`);
  },
  processBroadcastElement(rule, ctx) {
    const limits = ctx.getBroadcastState(LIMITS);
    if (rule.max === null) limits.delete(rule.country);
    else limits.put(rule.country, rule.max);
  },
  onTimer(time, _domain, ctx) {
    ctx.emit(`${ctx.key} timer ${time}, limits ${JSON.stringify(ctx.getBroadcastState(LIMITS).entries())}`);
  },
};

const fraud = (state?: StateBackend) =>
  new MultiInputTestDriver<{ tx: Tx; rules: Rule }, string>(
    ["tx", "rules"],
    (d) =>
      d.input("tx")
        .keyBy((t) => t.card)
        .connect(d.input("rules").broadcast(LIMITS))
        .process(flag, { uid: "fraud" }),
    state === undefined ? {} : { state },
  );

describe("broadcast state", () => {
  it("the broadcast side writes the state, every key reads it; changes and removals apply to later values", () => {
    const d = fraud();
    d.pipeInput("tx", { card: "NL1", amount: 900 }, 0);
    d.pipeInput("rules", { country: "NL", max: 500 }, 1);
    d.pipeInput("tx", { card: "NL1", amount: 600 }, 2).pipeInput("tx", { card: "NL2", amount: 501 }, 2).pipeInput("tx", { card: "DE1", amount: 9_999 }, 2);
    d.pipeInput("rules", { country: "NL", max: 1_000 }, 3);
    d.pipeInput("tx", { card: "NL2", amount: 600 }, 4);
    d.pipeInput("rules", { country: "NL", max: null }, 5);
    d.pipeInput("tx", { card: "NL1", amount: 5_000 }, 6);
    assert.deepEqual(d.readOutput(), ["NL1 #2: 600 > 500", "NL2 #1: 501 > 500"]);
  });

  it("the keyed side only reads it, and the broadcast side sees no key, keyed state or timers", () => {
    const seen: string[] = [];
    const d = new MultiInputTestDriver<{ tx: Tx; rules: Rule }, string>(["tx", "rules"], (d) =>
      d.input("tx")
        .keyBy((t) => t.card)
        .connect(d.input("rules").broadcast(LIMITS))
        .process<string>({
          processElement(_t, ctx) {
            const view = ctx.getBroadcastState(LIMITS) as unknown as Record<string, unknown>;
            seen.push(`keyed: put ${typeof view.put}, delete ${typeof view.delete}, key ${ctx.key}`);
          },
          processBroadcastElement(_r, ctx) {
            seen.push(`broadcast: ${Object.keys(ctx).sort().join(",")}`);
          },
        }),
    );
    d.pipeInput("rules", { country: "NL", max: 1 }, 0).pipeInput("tx", { card: "NL1", amount: 1 }, 0);
    assert.deepEqual(seen, [
      "broadcast: currentProcessingTime,currentWatermark,emit,getBroadcastState,output,timestamp",
      "keyed: put undefined, delete undefined, key NL1",
    ]);
  });

  it("timers of the keyed side read the broadcast state; event time is the minimum of both inputs' watermarks", () => {
    const d = new MultiInputTestDriver<{ tx: Tx; rules: Rule }, string>(["tx", "rules"], (d) =>
      d.input("tx")
        .keyBy((t) => t.card)
        .connect(d.input("rules").broadcast(LIMITS))
        .process<string>({
          ...flag,
          processElement(_t, ctx) {
            ctx.timers.registerEventTime(ctx.timestamp + 10);
          },
        }),
    );
    d.pipeInput("tx", { card: "NL1", amount: 1 }, 0).pipeInput("rules", { country: "NL", max: 7 }, 0);
    d.advanceWatermark("tx", 100);
    assert.deepEqual(d.readOutput(), []);
    d.advanceWatermark("rules", 50);
    assert.deepEqual(d.readOutput(), ['NL1 timer 10, limits [["NL",7]]']);
  });

  it("is restored with the keyed state from a snapshot of the state backend", () => {
    const state = memoryState();
    const first = fraud(state);
    first.pipeInput("rules", { country: "NL", max: 100 }, 0).pipeInput("tx", { card: "NL1", amount: 5 }, 1);
    const snapshot = state.snapshot();
    first.pipeInput("rules", { country: "NL", max: 1 }, 2);
    first.close();
    const restored = memoryState();
    restored.restore(snapshot);
    const second = fraud(restored);
    second.pipeInput("tx", { card: "NL1", amount: 150 }, 3);
    assert.deepEqual(second.readOutput(), ["NL1 #2: 150 > 100"], "the limit and the count as of the snapshot");
  });

  it("a descriptor not given to broadcast() is a ConfigError naming it; broadcast() without one is refused", () => {
    const other = broadcastState<string, number>("other");
    const d = new MultiInputTestDriver<{ tx: Tx; rules: Rule }, string>(["tx", "rules"], (d) =>
      d.input("tx")
        .keyBy((t) => t.card)
        .connect(d.input("rules").broadcast(LIMITS))
        .process<string>({ processElement: () => {}, processBroadcastElement: (_r, ctx) => void ctx.getBroadcastState(other).put("x", 1) }),
      { onUserError: "fail" },
    );
    assert.throws(
      () => d.pipeInput("rules", { country: "NL", max: 1 }, 0),
      (err: unknown) => err instanceof Error && /has no broadcast state "other".*"limits"/.test(String((err as Error & { cause?: unknown }).cause ?? err)),
    );
    const job = new Job();
    assert.throws(() => job.fromIterable([1]).broadcast(), ConfigError);
    assert.throws(() => broadcastState("no spaces"), ConfigError);
  });

  it("a broadcast stream is marked for scale-out, so that every task reads all of it", () => {
    const job = new Job();
    const rules = job.fromIterable<Rule>([]).broadcast(LIMITS);
    assert.equal(isBroadcastPartitioned(rules), true);
    assert.equal(isBroadcastPartitioned(job.fromIterable([1])), false);
  });

  it("in a job, a rules stream without event time does not hold back the keyed side's timers", async () => {
    const job = new Job({ name: "rules-no-time" });
    // A rules source that never ends and stamps nothing: its records carry their arrival time.
    const rulesSource: Source<Rule> = {
      name: "rules",
      open(ctx) {
        ctx.emit({ country: "NL", max: 10 });
      },
      pause() {},
      resume() {},
      close() {},
    };
    const tx = job.fromIterable<Tx & { at: number }>(
      [
        { card: "NL1", amount: 50, at: 1 },
        { card: "NL1", amount: 1, at: 5_000 },
      ],
      { watermarks: monotonic({ timestamp: (t) => t.at, everyRecords: 1 }) },
    );
    const out: string[] = [];
    const done = new Promise<void>((resolve) => {
      tx.keyBy((t) => t.card)
        .connect(job.source(rulesSource).broadcast(LIMITS))
        .process<string>({
          processElement(_t, ctx) {
            if (ctx.timestamp === 1) ctx.timers.registerEventTime(1_000);
          },
          processBroadcastElement: flag.processBroadcastElement,
          onTimer(time, _d, ctx) {
            ctx.emit(`timer ${time} at watermark ${ctx.currentWatermark}`);
          },
        })
        .sinkTo(
          sinkFn("out", (s) => {
            out.push(s);
            resolve();
          }),
        );
    });
    const run = job.run();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stuck = new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the keyed side's timer never fired: the rules stream holds event time back")), 10_000);
    });
    await Promise.race([done, stuck]).finally(() => clearTimeout(timer));
    job.cancel();
    await run;
    assert.deepEqual(out, ["timer 1000 at watermark 4999"]);
  });
});
