/**
 * gress/testing's time laws: each passes on a correct pipeline and catches the bug it is for, with a shrunk
 * counterexample — a window that uses arrival order (checkOrderInsensitive), results that depend on when
 * watermarks arrive (checkWatermarkSchedule), late records let into results (checkLateness).
 */
import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";
import fc from "fast-check";
import { aggregate, boundedOutOfOrderness, broadcastState, outputTag, type ProcessFunction, type Stream, sliding, tumbling } from "../../lib/index.ts";
import {
  assertCheck,
  checkLateness,
  checkOrderInsensitive,
  checkWatermarkSchedule,
  multiInput,
  type Tagged,
  type Timestamped,
  timestampedEvents,
} from "../../lib/testing/index.ts";

interface Reading {
  readonly sensor: string;
  readonly v: number;
}

const readings = (maxDisorderMs: number): fc.Arbitrary<Timestamped<Reading>[]> =>
  timestampedEvents(fc.record({ sensor: fc.constantFrom("s1", "s2"), v: fc.integer({ min: 0, max: 9 }) }), { maxLength: 25, maxGapMs: 300, maxDisorderMs });

/** Readings in any arrival order (timestamps 0-3 s): removing one leaves the others as they were, so it shrinks well. */
const anyOrder: fc.Arbitrary<Timestamped<Reading>[]> = fc
  .array(fc.tuple(fc.constantFrom("s1", "s2"), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 3_000 })), { maxLength: 25 })
  .map((rows) => rows.map(([sensor, v, timestamp]) => ({ value: { sensor, v }, timestamp })));

/** Sum per sensor in 1-second tumbling windows: order-insensitive. */
const sums = (s: Stream<Reading>): Stream<string> =>
  s
    .keyBy((r) => r.sensor)
    .window(tumbling(1_000))
    .aggregate(aggregate<Reading, number, number>({ create: () => 0, add: (a, r) => a + r.v, merge: (a, b) => a + b, result: (a) => a }))
    .map((w) => `${w.key}@${w.start}=${w.value}`);

/** The bug: "the first reading of the window" taken in arrival order instead of event time. */
const firstArrived = (s: Stream<Reading>): Stream<string> =>
  s
    .keyBy((r) => r.sensor)
    .window(tumbling(1_000))
    .aggregate(
      aggregate<Reading, number | null, number>({
        create: () => null,
        add: (a, r) => a ?? r.v,
        merge: (a, b) => a ?? b,
        result: (a) => a ?? -1,
      }),
    )
    .map((w) => `${w.key}@${w.start} first=${w.value}`);

/** Fails the test unless the property fails; returns fast-check's details. */
function caught<Ts extends unknown[]>(property: fc.IProperty<Ts>, seed: number, message: RegExp): fc.RunDetails<Ts> {
  const details = fc.check(property, { numRuns: 200, seed });
  assert.equal(details.failed, true, "the law caught the bug");
  if (process.env.TK_SHOW) console.log(fc.stringify(details.counterexample), String((details.errorInstance as Error).message));
  assert.match(String((details.errorInstance as Error).message), message);
  return details;
}

describe("checkOrderInsensitive", () => {
  it("passes on windows (driver watermarks, and the pipeline's own)", async () => {
    await assertCheck(checkOrderInsensitive(sums, readings(0), { boundMs: 800 }), { numRuns: 150, seed: 1 });
    const own = (s: Stream<Reading>): Stream<string> => sums(s.withTimestamps(boundedOutOfOrderness(800, { everyRecords: 1 })));
    await assertCheck(checkOrderInsensitive(own, readings(0), { boundMs: 800, watermarks: "pipeline" }), { numRuns: 150, seed: 2 });
  });

  it("catches a window that uses arrival order, shrunk to two readings in one window", () => {
    const details = caught(checkOrderInsensitive(firstArrived, readings(0), { boundMs: 800 }), 3, /the results depend on arrival order \(within 800 ms\)[\s\S]*arrival order:/);
    const [sorted] = details.counterexample!;
    assert.equal(sorted.length, 2, `shrunk to 2 readings: ${fc.stringify(details.counterexample)}`);
    assert.equal(Math.floor(sorted[0]!.timestamp / 1000), Math.floor(sorted[1]!.timestamp / 1000), "in the same window");
  });

  it("catches watermarks tighter than the disorder the pipeline must take (the pipeline's own bound is too small)", () => {
    const tooTight = (s: Stream<Reading>): Stream<string> => sums(s.withTimestamps(boundedOutOfOrderness(100, { everyRecords: 1 })));
    caught(checkOrderInsensitive(tooTight, readings(0), { boundMs: 800, watermarks: "pipeline" }), 4, /depend on arrival order/);
  });

  it("refuses a bound that is not a number ≥ 0", () => {
    assert.throws(() => checkOrderInsensitive(sums, readings(0), { boundMs: -1 }), /boundMs must be a finite number ≥ 0, got -1/);
  });
});

describe("checkWatermarkSchedule", () => {
  it("passes on tumbling and sliding windows, whatever the arrival order", async () => {
    await assertCheck(checkWatermarkSchedule(sums, readings(1_500)), { numRuns: 150, seed: 5 });
    await assertCheck(checkWatermarkSchedule(sums, anyOrder), { numRuns: 150, seed: 13 });
    const slidingCounts = (s: Stream<Reading>): Stream<string> =>
      s
        .keyBy((r) => r.sensor)
        .window(sliding(1_000, 500))
        .count()
        .map((w) => `${w.key}@${w.start}=${w.value}`);
    await assertCheck(checkWatermarkSchedule(slidingCounts, readings(1_500)), { numRuns: 150, seed: 6 });
  });

  it("catches a timer that reports what has arrived so far, shrunk to a short schedule", () => {
    // The bug: 500 ms after each reading, emit the sensor's count — of every reading that arrived by then,
    // instead of those up to the timer's time.
    const soFar: ProcessFunction<Reading, string, string> = {
      processElement(_r, ctx) {
        const n = ctx.state.value<number>("n");
        n.update((n.value() ?? 0) + 1);
        ctx.timers.registerEventTime(ctx.timestamp + 500);
      },
      onTimer(time, _domain, ctx) {
        ctx.emit(`${ctx.key}@${time}: ${ctx.state.value<number>("n").value()}`);
      },
    };
    const details = caught(checkWatermarkSchedule((s) => s.keyBy((r) => r.sensor).process(soFar), anyOrder), 7, /depend on when watermarks arrive[\s\S]*schedule: .*W-?\d+/);
    const [records] = details.counterexample!;
    assert.ok(records.length <= 3, `shrunk to at most 3 readings: ${fc.stringify(details.counterexample)}`);
  });
});

describe("checkLateness", () => {
  const LATE = outputTag<Reading>("too-late");
  const windowsWith = (allowedLatenessMs: number) => (s: Stream<Reading>): Stream<string> =>
    s
      .keyBy((r) => r.sensor)
      .window(tumbling(1_000), { allowedLatenessMs, lateTag: LATE.id })
      .count()
      .map((w) => `${w.key}@${w.start}=${w.value} (${w.timing})`);

  it("passes when the pipeline drops exactly what is past the allowed lateness", async () => {
    await assertCheck(checkLateness(windowsWith(300), readings(2_500), { windows: tumbling(1_000), allowedLatenessMs: 300, lateTag: LATE }), {
      numRuns: 200,
      seed: 8,
    });
    await assertCheck(checkLateness(windowsWith(300), anyOrder, { windows: tumbling(1_000), allowedLatenessMs: 300, lateTag: LATE }), { numRuns: 200, seed: 12 });
    await assertCheck(checkLateness(windowsWith(0), readings(2_500), { windows: tumbling(1_000), allowedLatenessMs: 0, lateTag: LATE, watermarkLagMs: 200 }), {
      numRuns: 200,
      seed: 9,
    });
  });

  it("catches windows that keep data longer than promised, shrunk to a few readings", () => {
    const details = caught(
      checkLateness(windowsWith(1_000), anyOrder, { windows: tumbling(1_000), allowedLatenessMs: 300, lateTag: LATE }),
      10,
      /the late side output is not exactly the records past the allowed lateness \(300 ms\)/,
    );
    const [records] = details.counterexample!;
    assert.ok(records.length <= 3, `shrunk to at most 3 readings: ${fc.stringify(details.counterexample)}`);
  });

  it("catches hand-written lateness handling with an off-by-one that lets a late record into results", () => {
    // A per-sensor "count so far in this second" that drops readings older than the watermark − but compares
    // with < where the window operator (and the law) treat "end − 1 ≤ watermark" as closed.
    const manual: ProcessFunction<Reading, string, string> = {
      processElement(r, ctx) {
        const end = Math.floor(ctx.timestamp / 1000) * 1000 + 1000;
        if (end - 1 < ctx.currentWatermark) {
          ctx.output(LATE, r);
          return;
        }
        const n = ctx.state.map<number, number>("n");
        n.put(end, (n.get(end) ?? 0) + 1);
        ctx.timers.registerEventTime(end - 1);
      },
      onTimer(time, _domain, ctx) {
        const n = ctx.state.map<number, number>("n");
        ctx.emit(`${ctx.key}@${time + 1 - 1000}=${n.get(time + 1)}`);
        n.delete(time + 1);
      },
    };
    // Timestamps on a 100 ms grid, so that watermarks land on window ends (the boundary the bug is at).
    const onGrid = anyOrder.map((evs) => evs.map((e) => ({ ...e, timestamp: Math.round(e.timestamp / 100) * 100 })));
    const details = caught(
      checkLateness((s) => s.keyBy((r) => r.sensor).process(manual), onGrid, { windows: tumbling(1_000), allowedLatenessMs: 0, lateTag: LATE }),
      11,
      /late side output is not exactly the records past the allowed lateness/,
    );
    assert.ok(details.counterexample![0].length <= 3, `shrunk: ${fc.stringify(details.counterexample)}`);
  });

  it("refuses session and global windows, which have no end known in advance", () => {
    assert.throws(() => checkLateness(sums, readings(0), { windows: { kind: "global" }, allowedLatenessMs: 0 }), /windows must be tumbling or sliding, got global/);
  });
});

describe("the time laws on a pipeline with several inputs (MultiInputTestDriver)", () => {
  type Inputs = { tx: { card: string; amount: number }; limits: number };
  const tagged: fc.Arbitrary<Tagged<Inputs>> = fc.oneof(
    fc.record({ card: fc.constantFrom("c1", "c2"), amount: fc.integer({ min: 1, max: 300 }) }).map((value): Tagged<Inputs> => ({ input: "tx", value })),
    fc.integer({ min: 50, max: 250 }).map((value): Tagged<Inputs> => ({ input: "limits", value })),
  );
  const both = timestampedEvents(tagged, { maxLength: 20, maxGapMs: 300 });

  it("pass on a union of the inputs into windows", async () => {
    const perWindow = multiInput<Inputs, string>(["tx", "limits"], (d) =>
      d
        .input("tx")
        .map((t) => t.amount)
        .union(d.input("limits"))
        .keyBy(() => "all")
        .window(tumbling(1_000))
        .count()
        .map((w) => `${w.start}=${w.value}`),
    );
    await assertCheck(checkOrderInsensitive(perWindow, both, { boundMs: 600 }), { numRuns: 100, seed: 21 });
    await assertCheck(checkWatermarkSchedule(perWindow, both), { numRuns: 100, seed: 22 });
    // Two feeds of the same type, so that the late output holds the values as they were pushed.
    type Feeds = { eu: Inputs["tx"]; us: Inputs["tx"] };
    const LATE = outputTag<Inputs["tx"]>("late-tx");
    const late = multiInput<Feeds, string>(["eu", "us"], (d) =>
      d
        .input("eu")
        .union(d.input("us"))
        .keyBy((t) => t.card)
        .window(tumbling(1_000), { lateTag: LATE.id })
        .count()
        .map((w) => `${w.key}@${w.start}=${w.value}`),
    );
    const feed = fc.record({ card: fc.constantFrom("c1", "c2"), amount: fc.integer({ min: 1, max: 9 }) });
    const disordered = fc
      .array(fc.tuple(fc.constantFrom("eu" as const, "us" as const), feed, fc.integer({ min: 0, max: 30 })), { maxLength: 20 })
      .map((rows) => rows.map(([input, value, t]): Timestamped<Tagged<Feeds>> => ({ value: { input, value }, timestamp: t * 100 })));
    await assertCheck(checkLateness(late, disordered, { windows: tumbling(1_000), allowedLatenessMs: 0, lateTag: LATE }), { numRuns: 150, seed: 23 });
  });

  it("catch a limit from a broadcast input applied in arrival order, shrunk to a limit and a transaction", () => {
    const limit = broadcastState<string, number>("limit");
    const overLimit = multiInput<Inputs, string>(["tx", "limits"], (d) =>
      d
        .input("tx")
        .keyBy((t) => t.card)
        .connect(d.input("limits").broadcast(limit))
        .process<string>({
          processElement(t, ctx) {
            if (t.amount > (ctx.getBroadcastState(limit).get("max") ?? Number.POSITIVE_INFINITY)) ctx.emit(`${t.card} ${t.amount} over`);
          },
          processBroadcastElement(max, ctx) {
            ctx.getBroadcastState(limit).put("max", max);
          },
        }),
    );
    const details = caught(checkOrderInsensitive(overLimit, both, { boundMs: 600 }), 24, /the results depend on arrival order/);
    const [sorted] = details.counterexample!;
    assert.deepEqual(
      sorted.map((e) => e.value.input).sort(),
      ["limits", "tx"],
      `shrunk to one limit and one transaction: ${fc.stringify(details.counterexample)}`,
    );
  });

  it("refuse a record that names no input of the pipeline", () => {
    const one = multiInput<Inputs, number>(["tx", "limits"], (d) => d.input("limits"));
    const wrong = fc.constant<Timestamped<Tagged<Inputs>>[]>([{ value: { input: "nope", value: 1 } as unknown as Tagged<Inputs>, timestamp: 1 }]);
    const details = fc.check(checkWatermarkSchedule(one, wrong), { numRuns: 1 });
    assert.match(String((details.errorInstance as Error).message), /a multi-input record must be \{ input, value \} with input one of "tx", "limits"; got \{input:nope,value:1\}/);
  });
});
