/**
 * gress/testing's marble-like notation: parsing (records, watermarks, processing time, frames, value maps),
 * clear errors for what it cannot read, playing a script into a TestDriver frame by frame, and printing
 * records back.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { broadcastState, LATE_DATA, type ProcessFunction, tumbling, type WindowResult } from "../../lib/index.ts";
import { events, formatEvents, MultiInputTestDriver, playEvents, recordsOf, TestDriver } from "../../lib/testing/index.ts";

describe("events(): the notation", () => {
  it("reads records, watermarks, processing time and frame boundaries in arrival order", () => {
    assert.deepEqual(events("a@1 b@3 | W5 c@4 | +250 d@-2"), [
      { kind: "record", name: "a", value: "a", timestamp: 1 },
      { kind: "record", name: "b", value: "b", timestamp: 3 },
      { kind: "frame" },
      { kind: "watermark", timestamp: 5 },
      { kind: "record", name: "c", value: "c", timestamp: 4 },
      { kind: "frame" },
      { kind: "time", ms: 250 },
      { kind: "record", name: "d", value: "d", timestamp: -2 },
    ]);
    assert.deepEqual(events("  \n "), []);
  });

  it("takes values from a map, as RxJS marbles do", () => {
    const steps = events("x@10 y@20 x@30", { x: { n: 1 }, y: { n: 2 } });
    assert.deepEqual(recordsOf(steps), [
      { value: { n: 1 }, timestamp: 10 },
      { value: { n: 2 }, timestamp: 20 },
      { value: { n: 1 }, timestamp: 30 },
    ]);
  });

  it("names the token it cannot read, and a name missing from the map", () => {
    assert.throws(() => events("a@1 b@x"), /events\(\): token 2 "b@x": expected name@time \(a@1\), W<time> \(W5\), \+<ms> \(\+100\) or \|/);
    assert.throws(() => events("a@1 W"), /token 2 "W"/);
    assert.throws(() => events("a@1 a@2.5"), /token 2 "a@2.5"/);
    assert.throws(() => events("a@1 z@2", { a: 1 }), /token 2 "z@2": "z" is not in the value map \(it has a\)/);
  });

  it("prints records back in the notation", () => {
    assert.equal(formatEvents(recordsOf("a@1 W5 b@3")), "a@1 b@3");
    assert.equal(formatEvents([{ value: { card: "c1", amount: 5 }, timestamp: 7 }]), "{amount:5,card:c1}@7");
    assert.equal(formatEvents([{ value: { card: "c1" }, timestamp: 7 }], (v) => v.card), "c1@7");
  });
});

describe("playEvents(): a script into a TestDriver", () => {
  it("gives the output of each frame; a record behind the watermark goes to the late output", () => {
    const driver = new TestDriver<string, WindowResult<string, number>>((s) => s.keyBy((x) => x).window(tumbling(5)).count());
    const frames = playEvents(driver, events("a@1 a@3 | W4 | a@6 W9 | a@2 |"));
    assert.deepEqual(frames, [
      [],
      [{ key: "a", start: 0, end: 5, value: 2, timing: "on-time" }],
      [{ key: "a", start: 5, end: 10, value: 1, timing: "on-time" }],
      [],
    ]);
    assert.deepEqual(driver.readSideOutput(LATE_DATA), ["a"]);
  });

  it("moves processing time, and reads what follows the last frame boundary", () => {
    const ticks: ProcessFunction<string, string, string> = {
      processElement(_v, ctx) {
        ctx.timers.registerProcessingTime(ctx.currentProcessingTime + 100);
      },
      onTimer(time, domain, ctx) {
        ctx.emit(`${ctx.key} ${domain} ${time}`);
      },
    };
    const driver = new TestDriver<string, string>((s) => s.keyBy((x) => x).process(ticks));
    assert.deepEqual(playEvents(driver, events("a@1 +50 | +50 b@2 +99 | +1")), [[], ["a processing 100"], ["b processing 200"]]);
  });

  it("plays into a MultiInputTestDriver: input:name@t records, input:Wt and (with inputs) Wt watermarks", () => {
    type Inputs = { tx: number; limits: number };
    const limit = broadcastState<string, number>("limit");
    const driver = new MultiInputTestDriver<Inputs, string>(["tx", "limits"], (d) =>
      d
        .input("tx")
        .keyBy(() => "card")
        .connect(d.input("limits").broadcast(limit))
        .process<string>({
          processElement(amount, ctx) {
            if (amount > (ctx.getBroadcastState(limit).get("max") ?? Number.POSITIVE_INFINITY)) ctx.emit(`${amount} over`);
          },
          processBroadcastElement(max, ctx) {
            ctx.getBroadcastState(limit).put("max", max);
          },
        }),
    );
    const script = events("tx:big@1 limits:max@2 | tx:big@3 tx:small@4 tx:W5 limits:W5 | W9", { big: 500, small: 5, max: 100 });
    assert.deepEqual(playEvents(driver, script, { inputs: ["tx", "limits"] }), [[], ["500 over"], []]);
    assert.throws(() => playEvents(driver, events("W10")), /W10 names no input; write input:W10, or give the inputs option/);
    assert.throws(() => playEvents(driver, events("big@11")), /record "big@11" names no input; write input:name@time/);
  });
});
