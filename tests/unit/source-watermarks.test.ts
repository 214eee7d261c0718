import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { from } from "rxjs";
import {
  boundedOutOfOrderness,
  DEAD_LETTERS,
  fromAsyncIterable,
  fromObservable,
  isGressError,
  Job,
  sinkFn,
  tumbling,
  VirtualClock,
  type WatermarkStrategy,
  type WindowResult,
} from "../../lib/index.ts";

interface Ev {
  readonly k: string;
  readonly at: number;
}
const events: Ev[] = [
  { k: "a", at: 100 },
  { k: "b", at: 900 },
  { k: "a", at: 1_100 },
  { k: "a", at: 950 }, // out of order, within the bound
  { k: "b", at: 2_500 },
];

describe("job.source with watermarks", () => {
  it("assigns event time in the source and closes windows with its watermarks", async () => {
    const job = new Job({ name: "src-wm" });
    const results: WindowResult<string, number>[] = [];
    job
      .fromIterable(events, { watermarks: boundedOutOfOrderness(200, { timestamp: (e) => e.at, everyRecords: 1 }) })
      .keyBy((e) => e.k)
      .window(tumbling(1_000))
      .count()
      .sinkTo(sinkFn("out", (r) => void results.push(r)));
    await job.run();
    assert.deepEqual(results, [
      { key: "a", start: 0, end: 1_000, value: 2, timing: "on-time" },
      { key: "b", start: 0, end: 1_000, value: 1, timing: "on-time" },
      { key: "a", start: 1_000, end: 2_000, value: 1, timing: "on-time" },
      { key: "b", start: 2_000, end: 3_000, value: 1, timing: "on-time" },
    ]);
    // The watermarks are reported under an operator of their own, as withTimestamps' are.
    assert.equal(job.metrics.operator("watermarks-1").watermark, Number.POSITIVE_INFINITY);
    assert.equal(job.metrics.operator("watermarks-1").recordsOut, events.length);
  });

  it("sends a value whose timestamp function throws to dead letters, names the operator, and goes on", async () => {
    const job = new Job({ name: "src-wm-bad" });
    const stream = job.fromIterable([{ at: 5 }, { at: Number.NaN }, { at: 7 }], {
      watermarks: boundedOutOfOrderness(0, { timestamp: (e) => e.at }),
    });
    const out: number[] = [];
    stream.sinkTo(sinkFn("out", (e) => void out.push(e.at)));
    const dead: { value: unknown; reason: string }[] = [];
    stream.sideRecords(DEAD_LETTERS).subscribe((r) => dead.push({ value: r.value, reason: r.reason }));
    await job.run();
    assert.deepEqual(out, [5, 7]);
    assert.equal(dead.length, 1);
    assert.ok(Number.isNaN((dead[0]!.value as { at: number }).at));
    assert.match(dead[0]!.reason, /^watermarks-1: timestamp must be a finite number, got NaN$/);
    assert.equal(job.metrics.operator("watermarks-1").deadLetters, 1);
  });

  it("fails the job with onUserError: 'fail', naming the operator", async () => {
    const job = new Job({ name: "src-wm-fail", onUserError: "fail" });
    job
      .fromIterable([{ at: 1 }, { at: 2 }], {
        watermarks: boundedOutOfOrderness(0, {
          timestamp: (e) => {
            if (e.at === 2) throw new Error("no time for this one");
            return e.at;
          },
        }),
      })
      .sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_USER_FUNCTION") && /watermarks-1.*no time for this one/.test(e.message));
  });

  it("stops its periodic check when the input ends", async () => {
    const clock = new VirtualClock(0);
    const job = new Job({ name: "src-wm-timer", clock });
    job.fromIterable([{ at: 1 }], { watermarks: boundedOutOfOrderness(0, { timestamp: (e) => e.at }) }).sinkTo(sinkFn("out", () => {}));
    await job.run();
    assert.equal(clock.pendingTimers, 0);
  });
});

describe("a watermark strategy that is not one", () => {
  it("is a ConfigError naming where it was given and the bad field, in the source and in withTimestamps", () => {
    const job = new Job({ name: "bad-strategy" });
    const notAStrategy = { ...boundedOutOfOrderness<Ev>(0), everyRecords: 0 };
    assert.throws(
      () => job.fromIterable(events, { name: "evs", watermarks: notAStrategy }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /source "evs" watermarks\.everyRecords/.test(e.message),
    );
    assert.throws(
      () => job.fromIterable(events).withTimestamps({ timestamp: (e: Ev) => e.at } as unknown as WatermarkStrategy<Ev>),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /withTimestamps\.generator/.test(e.message),
    );
  });
});

describe("fromObservable and fromAsyncIterable with watermarks", () => {
  it("generate the watermarks in their source", async () => {
    const strategy = () => boundedOutOfOrderness<Ev>(0, { timestamp: (e) => e.at, everyRecords: 1 });
    async function* gen(): AsyncGenerator<Ev> {
      yield* events;
    }
    for (const make of [(job: Job) => fromObservable(from(events), { job, watermarks: strategy() }), (job: Job) => fromAsyncIterable(gen(), { job, watermarks: strategy() })]) {
      const job = new Job({ name: "from-wm" });
      const results: WindowResult<string, number>[] = [];
      make(job)
        .keyBy((e) => e.k)
        .window(tumbling(1_000))
        .count()
        .sinkTo(sinkFn("out", (r) => void results.push(r)));
      await job.run();
      assert.deepEqual(
        results.map((r) => [r.key, r.start, r.value]),
        [
          ["a", 0, 1],
          ["b", 0, 1],
          ["a", 1_000, 1],
          ["b", 2_000, 1],
        ],
        "the record at 950 comes after the watermark of 1 099: late, with no out-of-orderness allowed",
      );
      assert.equal(job.metrics.operator("watermarks-1").lateRecords, 0);
      assert.equal(job.metrics.operator("window-1").lateRecords, 1);
    }
  });
});

describe("a source object runs once at a time", () => {
  it("a stream subscribed before its last consumer was declared fails the second run with a clear error instead of sharing the source", async () => {
    const job = new Job({ name: "twice" });
    const stream = job.fromIterable([1, 2, 3], { name: "numbers" });
    // Subscribed while it is the stream's only consumer: this subscription runs a pipeline of its own.
    const early: number[] = [];
    const done = new Promise<void>((resolve) => stream.records().subscribe({ next: (r) => void early.push(r.value), complete: resolve }));
    stream.sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_CONFIG") && /source "numbers" is already running/.test(e.message));
    await done;
    assert.deepEqual(early, [1, 2, 3], "the first subscription still reads the whole input");
  });
});
