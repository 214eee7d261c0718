// Adaptive throttling (issue 14): a source's rate limit follows downstream pressure, additive increase and
// multiplicative decrease. Simulated time throughout (VirtualClock), so the assertions are about the rule,
// not about how loaded the machine is.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VirtualClock } from "../../lib/clock.ts";
import { ConfigError } from "../../lib/errors.ts";
import { AimdRate, SourceThrottle } from "../../lib/flow.ts";
import { Job } from "../../lib/job.ts";
import { runSoon } from "../../lib/runtime.ts";
import type { Sink } from "../../lib/sink.ts";
import type { Source, SourceContext } from "../../lib/source.ts";

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** An unbounded counter that emits as fast as it is let: synchronously until paused. */
class Counter implements Source<number> {
  readonly name = "counter";
  #ctx: SourceContext<number> | undefined;
  #paused = false;
  #next = 0;
  #pumping = false;
  open(ctx: SourceContext<number>): void {
    this.#ctx = ctx;
    this.#paused = ctx.paused;
    this.#pump();
  }
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    const ctx = this.#ctx;
    // Bounded per call, as a real source yields; the throttle or the sink's bound pauses it long before.
    for (let i = 0; ctx !== undefined && !this.#paused && !ctx.ended && i < 100_000; i++) ctx.emit(this.#next++);
    this.#pumping = false;
  }
  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    this.#paused = false;
    this.#pump();
  }
  close(): void {
    this.#ctx = undefined;
  }
}

describe("adaptive throttling (AIMD)", () => {
  it("the rule: converges under a fluid model of a slow sink, and climbs when the sink speeds up", () => {
    // Each 100 ms interval the source sends rate/10 records; the sink takes capacity/10; the rest queue.
    // More than 200 queued is pressure. Capacity 2 000/s for 60 s, then 8 000/s.
    const aimd = new AimdRate({ maxRate: 50_000, initialRate: 20_000, increase: 100, decrease: 0.5 });
    let queue = 0;
    const rates: number[] = [];
    const step = (capacity: number): void => {
      queue = Math.max(0, queue + aimd.rate / 10 - capacity / 10);
      rates.push(aimd.update(queue > 200));
    };
    for (let i = 0; i < 600; i++) step(2000);
    const settled = rates.slice(300);
    assert.ok(mean(settled) > 0.6 * 2000 && mean(settled) < 1.25 * 2000, `mean rate ${mean(settled)} should be near the capacity 2000`);
    assert.ok(Math.max(...settled) < 2 * 2000, "it never runs far past the capacity once converged");
    assert.ok(Math.min(...settled) > 0.3 * 2000, "the decrease does not collapse it");
    assert.ok(queue < 1000, `the queue stays bounded (${queue})`);
    for (let i = 0; i < 600; i++) step(8000);
    const faster = rates.slice(900);
    assert.ok(mean(faster) > 0.6 * 8000 && mean(faster) < 1.25 * 8000, `after the speed-up the mean rate ${mean(faster)} is near 8000`);
  });

  it("a job with a throttled source: the rate limit settles under a slow sink, recovers when it speeds up, and is a metric", async () => {
    const clock = new VirtualClock(0);
    const job = new Job({ name: "aimd", clock });
    let latencyMs = 10;
    const sink: Sink<number> = {
      name: "slow",
      // Each write takes latencyMs of the job's clock: with 100 in flight at most, the sink takes
      // 100 / latency records per ms; the throttle sees pressure above 50 in flight (rate > 50 / latency).
      write: () => new Promise<void>((resolve) => clock.setTimer(clock.now() + latencyMs, resolve)),
    };
    const counter = new Counter();
    job.source(counter, { throttle: { maxRate: 20_000, initialRate: 20_000, increase: 400, decrease: 0.5, intervalMs: 100 } }).sinkTo(sink, { maxInFlight: 100 });
    const done = job.run();
    const m = job.metrics.source("counter");
    const written = (): number => job.metrics.sink("slow").written;
    const samples: { t: number; rate: number; written: number }[] = [];
    const runFor = async (ms: number): Promise<void> => {
      for (let t = 0; t < ms; t += 2) {
        clock.advance(2);
        // Let the settled writes' callbacks run (the sink releases, the source resumes).
        await new Promise<void>((r) => runSoon(r));
        if (clock.now() % 100 === 0) samples.push({ t: clock.now(), rate: m.rateLimit?.() ?? Number.NaN, written: written() });
      }
    };
    const window = (from: number, to: number) => {
      const s = samples.filter((x) => x.t > from && x.t <= to);
      const first = samples.filter((x) => x.t <= from).at(-1) ?? { written: 0 };
      return { rate: mean(s.map((x) => x.rate)), maxRate: Math.max(...s.map((x) => x.rate)), throughput: ((s.at(-1)?.written ?? 0) - first.written) / ((to - from) / 1000) };
    };
    try {
      await runFor(6000);
      // Slow sink (10 ms per write): pressure above 5 000 records/s.
      const slow = window(3000, 6000);
      assert.ok(slow.rate > 2000 && slow.rate < 7000, `converged rate limit ${slow.rate.toFixed(0)} should be near 5 000/s`);
      assert.ok(slow.maxRate < 12_000, `never back at the ceiling (${slow.maxRate})`);
      // The source is held to the limit (the sink's hard bound alone would let 10 000/s through).
      assert.ok(slow.throughput > 0.7 * slow.rate && slow.throughput < 1.3 * slow.rate, `written ${slow.throughput.toFixed(0)}/s should follow the limit ${slow.rate.toFixed(0)}/s`);
      latencyMs = 1;
      await runFor(6000);
      // Fast sink (1 ms per write): no pressure below 50 000/s, so the limit climbs back to the ceiling.
      const fast = window(10_000, 12_000);
      assert.ok(fast.rate > 15_000, `recovered rate limit ${fast.rate.toFixed(0)} should be near the ceiling 20 000/s`);
      assert.ok(fast.throughput > 12_000, `and the records follow (${fast.throughput.toFixed(0)}/s)`);
      const text = await job.metrics.text();
      assert.match(text, /gress_source_rate_limit\{source="counter",job="aimd"\} 20000/);
    } finally {
      job.cancel();
      for (let i = 0; i < 20; i++) {
        clock.advance(10);
        await new Promise<void>((r) => runSoon(r));
      }
      await done.catch(() => {});
    }
  });

  it("holds the source when an interval's budget is spent and lets it go when time earned it back", () => {
    const clock = new VirtualClock(0);
    const events: string[] = [];
    const t = new SourceThrottle({ maxRate: 1000, intervalMs: 100 }, clock, () => undefined, (held) => events.push(held ? "hold" : "go"));
    t.start();
    for (let i = 0; i < 99; i++) t.emitted();
    assert.deepEqual(events, [], "99 of a budget of 100");
    t.emitted();
    assert.deepEqual(events, ["hold"]);
    clock.advance(1);
    assert.deepEqual(events, ["hold", "go"], "1 ms at 1000/s earns one record");
    t.stop();
  });

  it("names every bad bound in a ConfigError where the source is declared", () => {
    const job = new Job({ name: "bad-throttle" });
    const err = (() => {
      try {
        job.source(new Counter(), { throttle: { maxRate: -5, decrease: 1.5, intervalMs: 0, inFlightFraction: 2 } });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, /^source "counter": /);
    assert.match(err.message, /throttle\.maxRate must be a number > 0, got -5/);
    assert.match(err.message, /throttle\.decrease must be a factor between 0 and 1 \(exclusive\), got 1\.5/);
    assert.match(err.message, /throttle\.intervalMs must be a number of ms >= 1, got 0/);
    assert.match(err.message, /throttle\.inFlightFraction must be a fraction in \(0, 1\], got 2/);
    assert.throws(() => job.source(new Counter(), { throttle: 5000 as never }), /source "counter": throttle must be an object of options \(\{\} for the defaults\), got 5000/);
    assert.throws(() => new AimdRate({ minRate: 10, maxRate: 5 }), /throttle\.minRate \(10\) must not exceed throttle\.maxRate \(5\)/);
    assert.throws(() => new AimdRate({ maxRate: 100, initialRate: 500 }), /throttle\.initialRate must be between minRate \(1\) and maxRate \(100\), got 500/);
  });
});
