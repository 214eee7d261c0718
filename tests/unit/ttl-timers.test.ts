import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { StateTtl } from "../../lib/index.ts";
import { ev, processDriver } from "../support/keyed-driver.ts";

/** Sums values per key and, at an event-time timer 60 s after the first record, reports the total. */
const totalAtTimer = (ttl: StateTtl) =>
  processDriver<string>({
    processElement(e, ctx) {
      const total = ctx.state.value<number>("total", { ttl });
      if (total.value() === undefined) ctx.timers.registerEventTime(ctx.timestamp + 60_000);
      total.update((total.value() ?? 0) + e.v);
    },
    onTimer(time, _domain, ctx) {
      ctx.emit(`timer@${time} wm=${ctx.currentWatermark} total=${ctx.state.value<number>("total", { ttl }).value()}`);
    },
  });

describe("state TTL and timers fired by the same watermark", () => {
  it("event-time TTL: the final watermark's timers read the state before TTL expires it", () => {
    const d = totalAtTimer({ ms: 3_600_000, time: "event" });
    d.pipeInput(ev("a", 5), 10_000).pipeInput(ev("a", 7), 20_000).endInput();
    assert.deepEqual(d.readOutput(), ["timer@70000 wm=Infinity total=12"]);
  });

  it("event-time TTL: a watermark far past the TTL still lets its earlier timers read the state", () => {
    const d = totalAtTimer({ ms: 3_600_000, time: "event" });
    d.pipeInput(ev("a", 5), 10_000).pipeInput(ev("a", 7), 20_000).advanceWatermark(10 * 3_600_000);
    assert.deepEqual(d.readOutput(), [`timer@70000 wm=${10 * 3_600_000} total=12`]);
  });

  it("event-time TTL: a timer later than the TTL sees the state expired, at its own time", () => {
    const d = processDriver<string>({
      processElement(e, ctx) {
        ctx.state.value<number>("total", { ttl: { ms: 1_000, time: "event" } }).update(e.v);
        ctx.timers.registerEventTime(ctx.timestamp + 999);
        ctx.timers.registerEventTime(ctx.timestamp + 1_000);
      },
      onTimer(time, _domain, ctx) {
        ctx.emit(`${time}:${ctx.state.value<number>("total", { ttl: { ms: 1_000, time: "event" } }).value()}`);
      },
    });
    d.pipeInput(ev("a", 3), 0).endInput();
    assert.deepEqual(d.readOutput(), ["999:3", "1000:undefined"]);
  });

  it("processing-time TTL reads the same total at the end of input", () => {
    const d = totalAtTimer({ ms: 3_600_000, time: "processing" });
    d.pipeInput(ev("a", 5), 10_000).pipeInput(ev("a", 7), 20_000).endInput();
    assert.deepEqual(d.readOutput(), ["timer@70000 wm=Infinity total=12"]);
  });
});
