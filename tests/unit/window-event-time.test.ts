import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  boundedOutOfOrderness,
  ConfigError,
  countTrigger,
  fromIterable,
  global,
  isGressError,
  Job,
  monotonic,
  sinkFn,
  type Source,
  tumbling,
  type WindowResult,
} from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

/** A source that stamps nothing: its records carry their arrival time. */
const untimed = <T>(name: string, values: T[]): Source<T> => ({
  name,
  open(ctx) {
    for (const v of values) ctx.emit(v);
    ctx.end();
  },
  pause() {},
  resume() {},
  close() {},
});

const refused = (build: () => unknown): ConfigError => {
  try {
    build();
  } catch (err) {
    assert.ok(err instanceof ConfigError && isGressError(err, "ERR_CONFIG"), `a ConfigError, not ${String(err)}`);
    return err;
  }
  assert.fail("the window was accepted");
};

describe("an event-time window needs event time", () => {
  it("on a source without timestamps or watermarks it is a ConfigError that says what to add", () => {
    const job = new Job();
    const err = refused(() => job.fromIterable([{ user: "ann" }]).keyBy((c) => c.user).window(tumbling(1_000)).count());
    assert.match(err.message, /window "window-1" is an event-time window, but its input has no event time/);
    assert.match(err.message, /\.withTimestamps\(strategy\)/);
    assert.match(err.message, /watermarks/);
    assert.match(err.message, /time: "processing"/);
    assert.deepEqual(err.issues[0]?.path, ["window", "time"]);
  });

  it("is refused through map, filter and union, and for a union with one input without event time", () => {
    const job = new Job();
    const timed = job.fromIterable([1], { timestamp: () => 0 });
    const arrival = job.source(untimed("plain", [2]));
    refused(() =>
      arrival
        .map((x) => x + 1)
        .filter((x) => x > 0)
        .keyBy(() => "k")
        .window(tumbling(10))
        .count(),
    );
    refused(() =>
      timed
        .union(arrival)
        .keyBy(() => "k")
        .window(tumbling(10))
        .sum((x) => x),
    );
  });

  it("is accepted after withTimestamps, with source watermarks, explicit source timestamps, and for global windows", async () => {
    const job = new Job();
    const out: string[] = [];
    const sink = sinkFn<WindowResult<string, number>>("out", (w) => {
      out.push(`${w.key}@${w.start}=${w.value}`);
    });
    job
      .source(untimed("a", [{ k: "a", at: 5 }]))
      .withTimestamps(monotonic({ timestamp: (e) => e.at }))
      .keyBy((e) => e.k)
      .window(tumbling(10))
      .count()
      .sinkTo(sink);
    job
      .source(untimed("b", [{ k: "b", at: 15 }]), { watermarks: boundedOutOfOrderness(0, { timestamp: (e) => e.at }) })
      .keyBy((e) => e.k)
      .window(tumbling(10))
      .count()
      .sinkTo(sink);
    job
      .fromIterable([{ k: "c", at: 25 }], { timestamp: (e) => e.at })
      .keyBy((e) => e.k)
      .window(tumbling(10))
      .count()
      .sinkTo(sink);
    job
      .source(untimed("d", [1, 2, 3, 4]))
      .keyBy(() => "d")
      .window(global(), { trigger: countTrigger(2, { purge: true }) })
      .count()
      .sinkTo(sink);
    await job.run();
    assert.deepEqual(out.sort(), ["a@0=1", "b@10=1", "c@20=1", `d@${Number.MIN_SAFE_INTEGER}=2`, `d@${Number.MIN_SAFE_INTEGER}=2`].sort());
  });

  it("the standalone fromIterable with a timestamp function is event time, without one it is not", async () => {
    const counts = await fromIterable([{ at: 1 }, { at: 12 }], { timestamp: (e) => e.at })
      .keyBy(() => "k")
      .window(tumbling(10))
      .count()
      .collect();
    assert.deepEqual(
      counts.map((w) => [w.start, w.value]),
      [
        [0, 1],
        [10, 1],
      ],
    );
    refused(() => fromIterable([{ at: 1 }]).keyBy(() => "k").window(tumbling(10)).count());
  });

  it('a processing-time window ({ time: "processing" }) windows by the job clock and closes as the clock passes its end', () => {
    const driver = new TestDriver<string, WindowResult<string, number>>((s) =>
      s
        .keyBy((x) => x)
        .window(tumbling(1_000), { time: "processing" })
        .count(),
    );
    // The event timestamps given here are ignored: the window goes by the time each record reaches it.
    driver.pipeInput("a", 999_999).pipeInput("a", 5);
    driver.advanceProcessingTime(1_500).pipeInput("a", 0);
    assert.deepEqual(
      driver.readOutput().map((w) => [w.start, w.value]),
      [[0, 2]],
    );
    driver.advanceProcessingTime(1_000);
    assert.deepEqual(
      driver.readOutput().map((w) => [w.start, w.value]),
      [[1_000, 1]],
    );
  });
});
