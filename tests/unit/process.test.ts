import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { tap } from "rxjs";
import { DEAD_LETTERS, isGressError, outputTag, } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { type Ev, ev, processDriver } from "../support/keyed-driver.ts";


describe("process function", () => {
  it("sees the key, the record's timestamp and the current watermark", () => {
    const d = processDriver<[string, number, number]>({
      processElement(_e, ctx) {
        ctx.emit([ctx.key, ctx.timestamp, ctx.currentWatermark]);
      },
    });
    d.pipeInput(ev("a"), 5).advanceWatermark(7).pipeInput(ev("b"), 9);
    assert.deepEqual(d.readOutput(), [
      ["a", 5, Number.NEGATIVE_INFINITY],
      ["b", 9, 7],
    ]);
  });

  it("emits with the current timestamp by default, or an explicit one", () => {
    const d = processDriver<string>({
      processElement(_e, ctx) {
        ctx.emit("default");
        ctx.emit("explicit", 123);
      },
    });
    d.pipeInput(ev("a"), 5);
    assert.deepEqual(
      d.readOutputRecords().map((r) => [r.value, r.timestamp, r.key]),
      [
        ["default", 5, "a"],
        ["explicit", 123, "a"],
      ],
    );
  });

  it("output() routes values to a side output", () => {
    const alerts = outputTag<string>("alerts");
    const d = processDriver<number>({
      processElement(e, ctx) {
        if (e.v > 10) ctx.output(alerts, `big ${e.v}`, "over limit");
        else ctx.emit(e.v);
      },
    });
    d.pipeInput(ev("a", 3), 1).pipeInput(ev("a", 30), 2);
    assert.deepEqual(d.readOutput(), [3]);
    const side = d.readSideRecords(alerts);
    assert.deepEqual(
      side.map((r) => [r.value, r.reason, r.timestamp]),
      [["big 30", "over limit", 2]],
    );
  });

  it("a throwing processElement dead-letters the record", () => {
    const d = processDriver<number>({
      processElement(e, ctx) {
        if (e.v === 0) throw new Error("zero");
        ctx.emit(e.v);
      },
    });
    d.pipeInput(ev("a", 0), 1).pipeInput(ev("a", 2), 2);
    assert.deepEqual(d.readOutput(), [2]);
    assert.deepEqual(
      d.readSideRecords(DEAD_LETTERS).map((r) => r.reason),
      ["process-1: zero"],
    );
  });
});

describe("event-time timers", () => {
  it("fire when the watermark reaches them, in time order, with the key they were registered for", () => {
    const d = processDriver<[string, number, string]>({
      processElement(e, ctx) {
        ctx.timers.registerEventTime(ctx.timestamp + e.v);
      },
      onTimer(time, domain, ctx) {
        ctx.emit([ctx.key, time, domain]);
      },
    });
    d.pipeInput(ev("a", 10), 0).pipeInput(ev("b", 5), 0).pipeInput(ev("c", 20), 0);
    d.advanceWatermark(4);
    assert.deepEqual(d.readOutput(), []);
    d.advanceWatermark(10);
    assert.deepEqual(d.readOutput(), [
      ["b", 5, "event"],
      ["a", 10, "event"],
    ]);
    d.endInput();
    assert.deepEqual(d.readOutput(), [["c", 20, "event"]]);
  });

  it("fire before the watermark is forwarded downstream", () => {
    const order: string[] = [];
    const d = new TestDriver<Ev, string>((s) =>
      s
        .keyBy((e) => e.k)
        .process<string>({
          processElement(_e, ctx) {
            ctx.timers.registerEventTime(5);
          },
          onTimer(t, _d, ctx) {
            ctx.emit(`timer ${t}`);
          },
        })
        .transform((elements) =>
          elements.pipe(
            tap((e) => {
              if (e.kind === "record") order.push(e.value);
              if (e.kind === "watermark") order.push(`wm ${e.timestamp}`);
            }),
          ),
        ),
    );
    d.pipeInput(ev("a"), 1).advanceWatermark(6);
    assert.deepEqual(order, ["timer 5", "wm 6"]);
  });

  it("registering the same timer twice fires it once; a deleted timer does not fire", () => {
    const d = processDriver<number>({
      processElement(e, ctx) {
        if (e.v === 1) {
          ctx.timers.registerEventTime(10);
          ctx.timers.registerEventTime(10);
          ctx.timers.registerEventTime(20);
        } else ctx.timers.deleteEventTime(20);
      },
      onTimer(t, _d, ctx) {
        ctx.emit(t);
      },
    });
    d.pipeInput(ev("a", 1), 0).pipeInput(ev("a", 2), 0).endInput();
    assert.deepEqual(d.readOutput(), [10]);
  });

  it("timers are per key: the same time on two keys fires twice", () => {
    const d = processDriver<string>({
      processElement(_e, ctx) {
        ctx.timers.registerEventTime(10);
      },
      onTimer(_t, _d, ctx) {
        ctx.emit(ctx.key);
      },
    });
    d.pipeInput(ev("a"), 0).pipeInput(ev("b"), 0).advanceWatermark(10);
    assert.deepEqual(d.readOutput().sort(), ["a", "b"]);
  });

  it("a timer may register a later timer that fires within the same watermark", () => {
    const d = processDriver<number>({
      processElement(_e, ctx) {
        ctx.timers.registerEventTime(1);
      },
      onTimer(t, _d, ctx) {
        ctx.emit(t);
        if (t < 4) ctx.timers.registerEventTime(t + 1);
      },
    });
    d.pipeInput(ev("a"), 0).advanceWatermark(100);
    assert.deepEqual(d.readOutput(), [1, 2, 3, 4]);
  });

  it("a NaN watermark is ignored: not forwarded, and the current watermark stays", () => {
    const d = processDriver<[string, number]>({
      processElement(_e, ctx) {
        ctx.timers.registerEventTime(ctx.timestamp + 10);
        ctx.emit([ctx.key, ctx.currentWatermark]);
      },
      onTimer(time, _d, ctx) {
        ctx.emit([ctx.key, time]);
      },
    });
    d.pipeInput(ev("a"), 5).advanceWatermark(3).advanceWatermark(Number.NaN).pipeInput(ev("b"), 6);
    assert.deepEqual(d.readOutput(), [
      ["a", Number.NEGATIVE_INFINITY],
      ["b", 3],
    ]);
    assert.deepEqual(d.readWatermarks(), [3]);
    d.advanceWatermark(16);
    assert.deepEqual(d.readOutput(), [
      ["a", 15],
      ["b", 16],
    ]);
  });

  it("onTimer reads and clears the key's state (a keyed timeout)", () => {
    const d = processDriver<[string, number]>({
      processElement(e, ctx) {
        const sum = ctx.state.value<number>("sum");
        sum.update((sum.value() ?? 0) + e.v);
        ctx.timers.registerEventTime(ctx.timestamp + 100);
      },
      onTimer(_t, _d, ctx) {
        const sum = ctx.state.value<number>("sum");
        ctx.emit([ctx.key, sum.value() ?? 0]);
        sum.clear();
      },
    });
    d.pipeInput(ev("a", 1), 0).pipeInput(ev("a", 2), 10).pipeInput(ev("b", 5), 20);
    d.advanceWatermark(100);
    assert.deepEqual(d.readOutput(), [["a", 3]]);
    d.advanceWatermark(110);
    assert.deepEqual(d.readOutput(), [["a", 0]]);
    d.advanceWatermark(120);
    assert.deepEqual(d.readOutput(), [["b", 5]]);
  });
});

describe("processing-time timers", () => {
  it("fire when the clock reaches them, with the key and domain", () => {
    const d = processDriver<[string, number, string]>({
      processElement(e, ctx) {
        ctx.timers.registerProcessingTime(ctx.currentProcessingTime + e.v);
      },
      onTimer(time, domain, ctx) {
        ctx.emit([ctx.key, time, domain]);
      },
    });
    d.pipeInput(ev("a", 300), 0).pipeInput(ev("b", 100), 0);
    d.advanceProcessingTime(99);
    assert.deepEqual(d.readOutput(), []);
    d.advanceProcessingTime(1);
    assert.deepEqual(d.readOutput(), [["b", 100, "processing"]]);
    d.advanceProcessingTime(1000);
    assert.deepEqual(d.readOutput(), [["a", 300, "processing"]]);
  });

  it("do not depend on the watermark, and a deleted one does not fire", () => {
    const d = processDriver<number>({
      processElement(e, ctx) {
        if (e.v > 0) ctx.timers.registerProcessingTime(e.v);
        else ctx.timers.deleteProcessingTime(-e.v);
      },
      onTimer(t, _d, ctx) {
        ctx.emit(t);
      },
    });
    d.pipeInput(ev("a", 50), 0).pipeInput(ev("a", 70), 0).pipeInput(ev("a", -50), 0);
    d.advanceWatermark(1_000_000);
    assert.deepEqual(d.readOutput(), []);
    d.advanceProcessingTime(100);
    assert.deepEqual(d.readOutput(), [70]);
  });

  it("a timer registered in onTimer fires later on the clock", () => {
    const d = processDriver<number>({
      processElement(_e, ctx) {
        ctx.timers.registerProcessingTime(ctx.currentProcessingTime + 10);
      },
      onTimer(t, _d, ctx) {
        ctx.emit(t);
        if (t < 30) ctx.timers.registerProcessingTime(t + 10);
      },
    });
    d.pipeInput(ev("a"), 0).advanceProcessingTime(25);
    assert.deepEqual(d.readOutput(), [10, 20]);
    d.advanceProcessingTime(100);
    assert.deepEqual(d.readOutput(), [30]);
  });

  it("timers live in the state backend's timer table", () => {
    const d = processDriver<number>({
      processElement(_e, ctx) {
        ctx.timers.registerProcessingTime(100);
        ctx.timers.registerEventTime(100);
      },
    });
    d.pipeInput(ev("a"), 0).pipeInput(ev("b"), 0);
    const timers = d.job.state.table<unknown>("process-1", "__timers");
    assert.equal(timers.size, 4);
    d.advanceProcessingTime(100).advanceWatermark(100);
    assert.equal(timers.size, 0);
  });
});

describe("timer errors", () => {
  it("a throwing onTimer fails the pipeline with a UserFunctionError naming the operator", () => {
    const d = processDriver<number>({
      processElement(_e, ctx) {
        ctx.timers.registerEventTime(10);
      },
      onTimer() {
        throw new Error("timer broke");
      },
    });
    d.pipeInput(ev("a"), 0);
    assert.throws(
      () => d.advanceWatermark(10),
      (e: unknown) =>
        isGressError(e, "ERR_USER_FUNCTION") && e.details.operator === "process-1" && /timer broke/.test(e.message),
    );
  });
});
