import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEAD_LETTERS, Job, type KeyedCoProcessFunction, memoryState, outputTag, sinkFn, type StateBackend } from "../../lib/index.ts";
import { MultiInputTestDriver } from "../../lib/testing/index.ts";

type Order = { id: string; total: number };
type Payment = { order: string; amount: number };
type Inputs = { orders: Order; payments: Payment };

const UNPAID = outputTag<string>("unpaid");

/** Per order: the amount still owed; an event-time timer 1 000 ms after the order reports it if unpaid. */
const owed: KeyedCoProcessFunction<Order, Payment, string, string> = {
  processElement1(o, ctx) {
    ctx.state.value<number>("owed").update(o.total);
    ctx.timers.registerEventTime(ctx.timestamp + 1_000);
  },
  processElement2(p, ctx) {
    const owes = ctx.state.value<number>("owed");
    const left = (owes.value() ?? 0) - p.amount;
    owes.update(left);
    ctx.emit(`${ctx.key} owes ${left}`);
  },
  onTimer(time, _domain, ctx) {
    const left = ctx.state.value<number>("owed").value() ?? 0;
    if (left > 0) ctx.output(UNPAID, `${ctx.key} unpaid at ${time}: ${left}`);
  },
};

const ordersAndPayments = (state?: StateBackend) =>
  new MultiInputTestDriver<Inputs, string>(
    ["orders", "payments"],
    (d) =>
      d.input("orders")
        .keyBy((o) => o.id)
        .connect(d.input("payments").keyBy((p) => p.order))
        .process(owed, { uid: "owed" }),
    state === undefined ? {} : { state },
  );

describe("connected streams", () => {
  it("a keyed co-process function shares keyed state between both inputs, per key", () => {
    const d = ordersAndPayments();
    d.pipeInput("orders", { id: "o1", total: 30 }, 0).pipeInput("orders", { id: "o2", total: 5 }, 0);
    d.pipeInput("payments", { order: "o1", amount: 10 }, 1).pipeInput("payments", { order: "o2", amount: 5 }, 1);
    d.pipeInput("payments", { order: "o1", amount: 15 }, 2);
    assert.deepEqual(
      d.readOutputRecords().map((r) => [r.value, r.key, r.timestamp]),
      [
        ["o1 owes 20", "o1", 1],
        ["o2 owes 0", "o2", 1],
        ["o1 owes 5", "o1", 2],
      ],
    );
  });

  it("event time is the minimum of both inputs' watermarks: a timer fires only when both have passed it", () => {
    const d = ordersAndPayments();
    d.pipeInput("orders", { id: "o1", total: 30 }, 0);
    d.advanceWatermark("orders", 5_000);
    assert.deepEqual(d.readSideOutput(UNPAID), [], "the payments input still holds event time back");
    assert.deepEqual(d.readWatermarks(), []);
    d.advanceWatermark("payments", 999);
    assert.deepEqual(d.readSideOutput(UNPAID), []);
    assert.deepEqual(d.readWatermarks(), [999]);
    d.advanceWatermark("payments", 2_000);
    assert.deepEqual(d.readSideOutput(UNPAID), ["o1 unpaid at 1000: 30"]);
    assert.deepEqual(d.readWatermarks(), [2_000]);
    d.endInput("payments");
    assert.deepEqual(d.readWatermarks(), [5_000], "an ended input counts as +∞");
    d.endInput("orders");
    assert.ok(d.completed);
  });

  it("its state and timers are restored from a snapshot of the state backend", () => {
    const state = memoryState();
    const first = ordersAndPayments(state);
    first.pipeInput("orders", { id: "o1", total: 30 }, 0).pipeInput("payments", { order: "o1", amount: 10 }, 1);
    assert.deepEqual(first.readOutput(), ["o1 owes 20"]);
    const snapshot = state.snapshot();
    first.pipeInput("payments", { order: "o1", amount: 20 }, 2);
    first.close();

    const restored = memoryState();
    restored.restore(snapshot);
    const second = ordersAndPayments(restored);
    second.pipeInput("payments", { order: "o1", amount: 5 }, 2);
    assert.deepEqual(second.readOutput(), ["o1 owes 15"]);
    second.endInput();
    assert.deepEqual(second.readSideOutput(UNPAID), ["o1 unpaid at 1000: 15"], "the timer came back with the state");
  });

  it("connect(...).keyBy(first, second) keys both inputs for a keyed function", () => {
    const d = new MultiInputTestDriver<Inputs, string>(["orders", "payments"], (d) =>
      d.input("orders")
        .connect(d.input("payments"))
        .keyBy(
          (o) => o.id,
          (p) => p.order,
        )
        .process(owed),
    );
    d.pipeInput("orders", { id: "o1", total: 8 }, 0).pipeInput("payments", { order: "o1", amount: 3 }, 0);
    assert.deepEqual(d.readOutput(), ["o1 owes 5"]);
  });

  it("an unkeyed co-process function sees time and output, but no key, keyed state or timers", () => {
    const seen: string[][] = [];
    const d = new MultiInputTestDriver<{ words: string; numbers: number }, string>(["words", "numbers"], (d) =>
      d.input("words").connect(d.input("numbers")).process<string>({
        processElement1(w, ctx) {
          seen.push(Object.keys(ctx).sort());
          ctx.emit(`${w}@${ctx.timestamp}`);
        },
        processElement2(n, ctx) {
          ctx.emit(`${n * 2}`, 99);
        },
      }),
    );
    d.pipeInput("words", "a", 7).pipeInput("numbers", 21, 8);
    assert.deepEqual(
      d.readOutputRecords().map((r) => [r.value, r.timestamp]),
      [
        ["a@7", 7],
        ["42", 99],
      ],
    );
    assert.deepEqual(seen, [["currentProcessingTime", "currentWatermark", "emit", "output", "timestamp"]]);
  });

  it("a function that throws on one input's value sends that value (not an envelope) to dead letters; the job goes on", () => {
    const d = new MultiInputTestDriver<Inputs, string>(["orders", "payments"], (d) =>
      d.input("orders")
        .keyBy((o) => o.id)
        .connect(d.input("payments").keyBy((p) => p.order))
        .process<string>({
          processElement1: (o, ctx) => ctx.emit(o.id),
          processElement2(p) {
            throw new Error(`bad payment ${p.amount}`);
          },
        }),
    );
    d.pipeInput("payments", { order: "o1", amount: -1 }, 3).pipeInput("orders", { id: "o1", total: 1 }, 4);
    assert.deepEqual(d.readOutput(), ["o1"]);
    const dead = d.readSideRecords(DEAD_LETTERS);
    assert.deepEqual(
      dead.map((r) => [r.value, r.timestamp]),
      [[{ order: "o1", amount: -1 }, 3]],
    );
    assert.match(dead[0]?.reason ?? "", /co-process-1: bad payment -1/);
  });

  it("runs in a job: two sources of different types into one keyed function", async () => {
    const job = new Job({ name: "connect" });
    const orders = job.fromIterable<Order>([{ id: "o1", total: 30 }, { id: "o2", total: 9 }], { timestamp: () => 0 });
    const payments = job.fromIterable<Payment>(
      [
        { order: "o1", amount: 30 },
        { order: "o2", amount: 4 },
      ],
      { timestamp: () => 1 },
    );
    const unpaid: string[] = [];
    const out = orders
      .keyBy((o) => o.id)
      .connect(payments.keyBy((p) => p.order))
      .process(owed);
    out.sideOutput(UNPAID).sinkTo(sinkFn("unpaid", (u) => void unpaid.push(u)));
    out.sinkTo(sinkFn("out", () => {}));
    await job.run();
    assert.deepEqual(unpaid, ["o2 unpaid at 1000: 5"]);
  });
});
