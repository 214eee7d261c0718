import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  avg,
  count,
  countTrigger,
  eventTimeTrigger,
  global,
  LATE_DATA,
  MemoryStateBackend,
  outputTag,
  processingTimeTrigger,
  type Stream,
  sliding,
  sum,
  tumbling,
  type WindowedStream,
  type WindowResult,
} from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Ev {
  readonly k: string;
  readonly n: number;
}
const ev = (k: string, n = 0): Ev => ({ k, n });
type Res<R> = WindowResult<string, R>;
const byKeyStart = <R>(a: Res<R>, b: Res<R>): number => a.key.localeCompare(b.key) || a.start - b.start;

describe("tumbling windows", () => {
  it("count per key; a window [start,end) fires when the watermark reaches end-1", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(tumbling(10)).count());
    d.pipeInput(ev("a"), 0).pipeInput(ev("a"), 9).pipeInput(ev("b"), 10).pipeInput(ev("a"), 10);
    d.advanceWatermark(8);
    assert.deepEqual(d.readOutput(), [], "watermark 8 < end-1 = 9");
    d.advanceWatermark(9);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 10, value: 2, timing: "on-time" }]);
    d.endInput();
    assert.deepEqual(d.readOutput().sort(byKeyStart), [
      { key: "a", start: 10, end: 20, value: 1, timing: "on-time" },
      { key: "b", start: 10, end: 20, value: 1, timing: "on-time" },
    ]);
  });

  it("a result carries the window's last timestamp (end-1) as its event time and keeps the key", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(tumbling(10)).count());
    d.pipeInput(ev("a"), 3).endInput();
    const [r] = d.readOutputRecords();
    assert.equal(r?.timestamp, 9);
    assert.equal(r?.key, "a");
  });

  it("windows are aligned to the epoch plus offset, also for negative timestamps", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(tumbling(10, { offsetMs: 3 })).count());
    d.pipeInput(ev("a"), 2).pipeInput(ev("a"), 3).pipeInput(ev("a"), -8).endInput();
    assert.deepEqual(
      d
        .readOutput()
        .sort(byKeyStart)
        .map((r) => [r.start, r.end, r.value]),
      [
        [-7, 3, 1],
        [-17, -7, 1],
        [3, 13, 1],
      ].sort((x, y) => x[0]! - y[0]!),
    );
  });

  it("the window operator forwards the watermark after firing", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(tumbling(10)).count());
    d.pipeInput(ev("a"), 1).advanceWatermark(20);
    assert.equal(d.readOutput().length, 1);
    assert.deepEqual(d.readWatermarks(), [20]);
  });
});

describe("sliding windows", () => {
  it("places a record in size/slide windows", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(sliding(30, 10)).count());
    d.pipeInput(ev("a"), 25).endInput();
    assert.deepEqual(
      d
        .readOutput()
        .sort(byKeyStart)
        .map((r) => [r.start, r.end, r.value]),
      [
        [0, 30, 1],
        [10, 40, 1],
        [20, 50, 1],
      ],
    );
  });

  it("counts overlapping windows and fires each when the watermark passes its end", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(sliding(20, 10)).count());
    d.pipeInput(ev("a"), 5).pipeInput(ev("a"), 15).pipeInput(ev("a"), 25);
    d.advanceWatermark(19);
    assert.deepEqual(
      d.readOutput().map((r) => [r.start, r.end, r.value]),
      [
        [-10, 10, 1],
        [0, 20, 2],
      ],
    );
    d.endInput();
    assert.deepEqual(
      d
        .readOutput()
        .sort(byKeyStart)
        .map((r) => [r.start, r.end, r.value]),
      [
        [10, 30, 2],
        [20, 40, 1],
      ],
    );
  });

  it("a record late for only some of its windows goes to the ones still open, and is not counted as late", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(sliding(20, 10)).count());
    d.advanceWatermark(19);
    d.pipeInput(ev("a"), 15).endInput();
    assert.deepEqual(
      d.readOutput().map((r) => [r.start, r.end, r.value]),
      [[10, 30, 1]],
    );
    assert.deepEqual(d.readSideOutput(LATE_DATA), []);
  });
});

describe("late data and allowed lateness", () => {
  it("a record for a closed window goes to the late side output with the reason and is counted", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(tumbling(10)).count());
    d.pipeInput(ev("a", 1), 1).advanceWatermark(9);
    d.pipeInput(ev("a", 2), 9);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 10, value: 1, timing: "on-time" }]);
    const late = d.readSideRecords(LATE_DATA);
    assert.deepEqual(
      late.map((r) => [r.value, r.timestamp]),
      [[ev("a", 2), 9]],
    );
    assert.match(late[0]?.reason ?? "", /late/);
    assert.equal(d.job.metrics.operator("window-1").lateRecords, 1);
  });

  it("a record with timestamp > watermark is on time even right after a window closed", () => {
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(tumbling(10)).count());
    d.advanceWatermark(9).pipeInput(ev("a"), 10).endInput();
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 10, end: 20, value: 1, timing: "on-time" }]);
    assert.deepEqual(d.readSideOutput(LATE_DATA), []);
  });

  it("within the allowed lateness a late record re-fires an updated result with timing late", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(tumbling(10), { allowedLatenessMs: 5 }).count(),
    );
    d.pipeInput(ev("a"), 1).advanceWatermark(9);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 10, value: 1, timing: "on-time" }]);
    d.pipeInput(ev("a"), 2);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 10, value: 2, timing: "late" }]);
    d.advanceWatermark(13).pipeInput(ev("a"), 3);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 10, value: 3, timing: "late" }]);
    // Cleanup time is end-1+lateness = 14: from there on the window is gone and records are late for good.
    d.advanceWatermark(14).pipeInput(ev("a"), 4);
    assert.deepEqual(d.readOutput(), []);
    assert.equal(d.readSideOutput(LATE_DATA).length, 1);
    assert.equal(d.job.metrics.operator("window-1").lateRecords, 1);
  });

  it("a late record within lateness into a window that had no records fires once, as late", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(tumbling(10), { allowedLatenessMs: 100 }).count(),
    );
    d.advanceWatermark(50);
    d.pipeInput(ev("a"), 5);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 10, value: 1, timing: "late" }]);
    d.advanceWatermark(60).endInput();
    assert.deepEqual(d.readOutput(), [], "no second, on-time firing of a window that already fired late");
  });

  it("the window state is kept until the cleanup time and dropped after it", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(tumbling(10), { allowedLatenessMs: 20 }).count(),
    );
    d.pipeInput(ev("a"), 1).advanceWatermark(9);
    const m = d.job.metrics.operator("window-1");
    assert.equal(m.buffered, 1);
    d.advanceWatermark(29);
    assert.equal(m.buffered, 0);
  });

  for (const [name, assigner] of [
    ["tumbling", () => tumbling<Ev>(10)],
    ["sliding", () => sliding<Ev>(10, 5)],
  ] as const) {
    it(`restored from a snapshot at any point, ${name} windows with lateness give the uninterrupted run's results`, () => {
      // Windows open and fired-but-kept (for late updates), new keys arriving late into a fired window, and
      // windows dropped at their cleanup time: the operator rebuilds which windows hold which keys from state.
      type Step = [kind: "in", key: string, t: number] | [kind: "wm", t: number];
      const steps: Step[] = [
        ["in", "a", 1], ["in", "b", 3], ["in", "a", 12], ["wm", 9], ["in", "c", 4], ["in", "a", 5],
        ["in", "b", 15], ["wm", 19], ["in", "d", 8], ["in", "c", 18], ["wm", 24], ["in", "a", 9], ["in", "e", 25],
        ["wm", 40], ["in", "f", 2], ["in", "a", 36], ["wm", 50],
      ];
      const pipeline = (s: Stream<Ev>) => s.keyBy((v) => v.k).window(assigner(), { allowedLatenessMs: 12 }).count();
      const play = (d: TestDriver<Ev, Res<number>>, from: number, to: number): void => {
        for (const step of steps.slice(from, to)) {
          if (step[0] === "in") d.pipeInput(ev(step[1]), step[2]);
          else d.advanceWatermark(step[1]);
        }
      };
      const straight = new TestDriver<Ev, Res<number>>(pipeline);
      play(straight, 0, steps.length);
      const expected = straight.readOutput();
      const late = straight.readSideOutput(LATE_DATA).length;
      assert.ok(expected.some((r) => r.timing === "late") && late > 0, "the steps exercise late updates and late records");
      for (let cut = 1; cut < steps.length; cut++) {
        const before = new TestDriver<Ev, Res<number>>(pipeline);
        play(before, 0, cut);
        const state = new MemoryStateBackend();
        state.restore(before.job.state.snapshot());
        const after = new TestDriver<Ev, Res<number>>(pipeline, { state });
        play(after, cut, steps.length);
        assert.deepEqual([...before.readOutput(), ...after.readOutput()], expected, `restored after step ${cut}`);
        assert.equal(before.readSideOutput(LATE_DATA).length + after.readSideOutput(LATE_DATA).length, late, `late records, cut ${cut}`);
      }
      // The same windows through the general path (an explicit event-time trigger) give the same results.
      const general = new TestDriver<Ev, Res<number>>((s) =>
        s.keyBy((v) => v.k).window(assigner(), { allowedLatenessMs: 12, trigger: eventTimeTrigger() }).count(),
      );
      play(general, 0, steps.length);
      assert.deepEqual(general.readOutput().sort(byKeyStart), [...expected].sort(byKeyStart));
      assert.equal(general.readSideOutput(LATE_DATA).length, late);
    });
  }

  it("a NaN watermark is ignored by tumbling and sliding windows, as by the others", () => {
    for (const assigner of [tumbling<Ev>(10), sliding<Ev>(10, 5)]) {
      const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(assigner).count());
      d.pipeInput(ev("a"), 1).pipeInput(ev("a"), 25).advanceWatermark(Number.NaN);
      assert.deepEqual(d.readOutput(), [], assigner.kind);
      d.pipeInput(ev("a"), 2).advanceWatermark(100);
      const results = d.readOutput().map((r) => [r.start, r.value]);
      assert.deepEqual(results.find(([start]) => start === 0), [0, 2], assigner.kind);
    }
  });

  it("after a restore, the buffered gauge counts the restored window state at once", () => {
    const pipeline = (s: Stream<Ev>) => s.keyBy((v) => v.k).window(tumbling(10)).count();
    const before = new TestDriver<Ev, Res<number>>(pipeline);
    before.pipeInput(ev("a"), 1).pipeInput(ev("b"), 2);
    const state = new MemoryStateBackend();
    state.restore(before.job.state.snapshot());
    const after = new TestDriver<Ev, Res<number>>(pipeline, { state });
    assert.equal(after.job.metrics.operator("window-1").buffered, 2);
    after.pipeInput(ev("a"), 3);
    assert.equal(after.job.metrics.operator("window-1").buffered, 2);
  });

  it("late records can go to a custom side output tag", () => {
    const tooLate = outputTag<Ev>("too-late");
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(tumbling(10), { lateTag: tooLate.id }).count(),
    );
    d.advanceWatermark(100).pipeInput(ev("a", 7), 3);
    assert.deepEqual(d.readSideOutput(tooLate), [ev("a", 7)]);
    assert.deepEqual(d.readSideOutput(LATE_DATA), []);
  });

  it("the late side output can be selected with sideOutput() in a job", async () => {
    const { Job, sinkFn } = await import("../../lib/index.ts");
    const { boundedOutOfOrderness } = await import("../../lib/index.ts");
    const job = new Job({ name: "late-side" });
    const windowed = job
      .fromIterable([1, 2, 30, 3, 31], { timestamp: (v) => v })
      .withTimestamps(boundedOutOfOrderness(0, { everyRecords: 1 }))
      .keyBy(() => "k")
      .window(tumbling(10))
      .count();
    const results: number[] = [];
    const late: number[] = [];
    windowed.sinkTo(sinkFn("results", (r) => void results.push(r.value)));
    windowed.sideOutput(LATE_DATA).sinkTo(sinkFn("late", (v) => void late.push(v as number)));
    await job.run();
    assert.deepEqual(results, [2, 2]);
    assert.deepEqual(late, [3]);
  });
});

describe("early firings", () => {
  it("everyCount emits an early result every N records, then the final result on time", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(tumbling(100), { early: { everyCount: 2 } }).count(),
    );
    d.pipeInput(ev("a"), 1).pipeInput(ev("a"), 2);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 100, value: 2, timing: "early" }]);
    d.pipeInput(ev("a"), 3);
    assert.deepEqual(d.readOutput(), []);
    d.pipeInput(ev("a"), 4);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 100, value: 4, timing: "early" }]);
    d.pipeInput(ev("a"), 5).advanceWatermark(99);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 100, value: 5, timing: "on-time" }]);
  });

  it("everyMs emits early results for windows that changed, on processing time", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(tumbling(100), { early: { everyMs: 1000 } }).count(),
    );
    d.pipeInput(ev("a"), 1).pipeInput(ev("b"), 2);
    d.advanceProcessingTime(999);
    assert.deepEqual(d.readOutput(), []);
    d.advanceProcessingTime(1);
    assert.deepEqual(d.readOutput().sort(byKeyStart), [
      { key: "a", start: 0, end: 100, value: 1, timing: "early" },
      { key: "b", start: 0, end: 100, value: 1, timing: "early" },
    ]);
    d.advanceProcessingTime(1000);
    assert.deepEqual(d.readOutput(), [], "nothing changed, nothing emitted");
    d.pipeInput(ev("a"), 3).advanceProcessingTime(1000);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 100, value: 2, timing: "early" }]);
    d.advanceWatermark(99);
    assert.deepEqual(
      d
        .readOutput()
        .sort(byKeyStart)
        .map((r) => [r.key, r.value, r.timing]),
      [
        ["a", 2, "on-time"],
        ["b", 1, "on-time"],
      ],
    );
  });
});

describe("global windows and triggers", () => {
  it("a global window with countTrigger fires and purges every N records per key", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(global(), { trigger: countTrigger(3) }).sum((v) => v.n),
    );
    for (let i = 1; i <= 7; i++) d.pipeInput(ev("a", i), i);
    d.pipeInput(ev("b", 100), 8);
    const out = d.readOutput();
    assert.deepEqual(
      out.map((r) => [r.key, r.value, r.timing]),
      [
        ["a", 6, "on-time"],
        ["a", 15, "on-time"],
      ],
    );
    d.endInput();
    assert.deepEqual(d.readOutput(), [], "a global window never closes on event time");
  });

  it("countTrigger without purge keeps the data and fires the running total", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(global(), { trigger: countTrigger(2, { purge: false }) }).count(),
    );
    for (let i = 0; i < 6; i++) d.pipeInput(ev("a"), i);
    assert.deepEqual(
      d.readOutput().map((r) => r.value),
      [2, 4, 6],
    );
  });

  it("processingTimeTrigger fires on processing time after the first record of each round", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(global(), { trigger: processingTimeTrigger(500) }).count(),
    );
    d.pipeInput(ev("a"), 1).advanceProcessingTime(200).pipeInput(ev("a"), 2);
    d.advanceProcessingTime(299);
    assert.deepEqual(d.readOutput(), []);
    d.advanceProcessingTime(1);
    assert.deepEqual(
      d.readOutput().map((r) => r.value),
      [2],
    );
    d.pipeInput(ev("a"), 3).advanceProcessingTime(500);
    assert.deepEqual(
      d.readOutput().map((r) => r.value),
      [1],
    );
  });
});

describe("window state cleanup", () => {
  it("a time window with a custom trigger is purged at its cleanup time, and later records for it are late", () => {
    const d = new TestDriver<Ev, Res<number>>((s) =>
      s.keyBy((v) => v.k).window(tumbling(10), { trigger: countTrigger(5) }).count(),
    );
    d.pipeInput(ev("a"), 1).pipeInput(ev("a"), 2);
    const m = d.job.metrics.operator("window-1");
    d.advanceWatermark(8);
    assert.equal(m.buffered, 1);
    d.advanceWatermark(9);
    assert.equal(m.buffered, 0, "the window's accumulator is dropped once the watermark passes end-1");
    assert.deepEqual(d.readOutput(), [], "a count trigger does not fire on event time");
    d.pipeInput(ev("a"), 3);
    assert.equal(d.readSideOutput(LATE_DATA).length, 1);
  });

  it("a record with a non-finite timestamp goes to dead letters instead of a window that never closes", async () => {
    const { DEAD_LETTERS } = await import("../../lib/index.ts");
    const d = new TestDriver<Ev, Res<number>>((s) => s.keyBy((v) => v.k).window(tumbling(10)).count());
    d.pipeInput(ev("a"), Number.NaN).pipeInput(ev("a"), 1).endInput();
    assert.deepEqual(
      d.readOutput().map((r) => r.value),
      [1],
    );
    const dead = d.readSideRecords(DEAD_LETTERS);
    assert.equal(dead.length, 1);
    assert.match(dead[0]?.reason ?? "", /window-1: .*timestamp/);
    assert.equal(d.job.metrics.operator("window-1").buffered, 0);
  });
});

describe("aggregations", () => {
  interface Sale {
    readonly shop: string;
    readonly price: number;
  }
  const run = <R>(agg: (w: WindowedStream<Sale, string>) => Stream<Res<R>>): Res<R>[] => {
    const d = new TestDriver<Sale, Res<R>>((s) => agg(s.keyBy((v) => v.shop).window(tumbling(10))));
    d.pipeInput({ shop: "x", price: 4 }, 1)
      .pipeInput({ shop: "x", price: 10 }, 2)
      .pipeInput({ shop: "x", price: 1 }, 3)
      .pipeInput({ shop: "y", price: 7 }, 4)
      .endInput();
    return d.readOutput().sort(byKeyStart);
  };
  const values = <R>(rs: Res<R>[]): [string, R][] => rs.map((r) => [r.key, r.value]);

  it("count", () => {
    assert.deepEqual(
      values(run((w) => w.count())),
      [
        ["x", 3],
        ["y", 1],
      ],
    );
  });
  it("sum", () => {
    assert.deepEqual(
      values(run((w) => w.sum((s) => s.price))),
      [
        ["x", 15],
        ["y", 7],
      ],
    );
  });
  it("avg", () => {
    assert.deepEqual(
      values(run((w) => w.avg((s) => s.price))),
      [
        ["x", 5],
        ["y", 7],
      ],
    );
  });
  it("min", () => {
    assert.deepEqual(
      values(run((w) => w.min((s) => s.price))),
      [
        ["x", 1],
        ["y", 7],
      ],
    );
  });
  it("max", () => {
    assert.deepEqual(
      values(run((w) => w.max((s) => s.price))),
      [
        ["x", 10],
        ["y", 7],
      ],
    );
  });
  it("reduce", () => {
    assert.deepEqual(
      values(run((w) => w.reduce((a, b) => (a.price >= b.price ? a : b)))),
      [
        ["x", { shop: "x", price: 10 }],
        ["y", { shop: "y", price: 7 }],
      ],
    );
  });
  it("collectAll", () => {
    assert.deepEqual(
      values(run((w) => w.collectAll())).map(([k, v]) => [k, v.map((s) => s.price)]),
      [
        ["x", [4, 10, 1]],
        ["y", [7]],
      ],
    );
  });
  it("custom aggregate with create/add/merge/result", () => {
    const spread = run((w) =>
      w.aggregateWith<{ lo: number; hi: number }, number>({
        name: "spread",
        create: () => ({ lo: Number.POSITIVE_INFINITY, hi: Number.NEGATIVE_INFINITY }),
        add: (a, s) => ({ lo: Math.min(a.lo, s.price), hi: Math.max(a.hi, s.price) }),
        merge: (a, b) => ({ lo: Math.min(a.lo, b.lo), hi: Math.max(a.hi, b.hi) }),
        result: (a) => a.hi - a.lo,
      }),
    );
    assert.deepEqual(values(spread), [
      ["x", 9],
      ["y", 0],
    ]);
  });

  it("built-in aggregators are plain objects: they can be passed to aggregateWith, spread and destructured", () => {
    assert.deepEqual(values(run((w) => w.aggregateWith(sum((s: Sale) => s.price)))), [
      ["x", 15],
      ["y", 7],
    ]);
    assert.deepEqual(values(run((w) => w.aggregate({ ...avg((s: Sale) => s.price), name: "mean" }))), [
      ["x", 5],
      ["y", 7],
    ]);
    const { create, add, result } = count<Sale>();
    assert.equal(result(add(add(create(), { shop: "x", price: 1 }), { shop: "x", price: 2 })), 2);
  });

  it("a throwing aggregate function dead-letters the record and keeps the window's other records", async () => {
    const { DEAD_LETTERS } = await import("../../lib/index.ts");
    const d = new TestDriver<Sale, Res<number>>((s) =>
      s
        .keyBy((v) => v.shop)
        .window(tumbling(10))
        .sum((v) => {
          if (v.price < 0) throw new RangeError("negative price");
          return v.price;
        }),
    );
    d.pipeInput({ shop: "x", price: 2 }, 1).pipeInput({ shop: "x", price: -1 }, 2).pipeInput({ shop: "x", price: 3 }, 3);
    d.endInput();
    assert.deepEqual(values(d.readOutput()), [["x", 5]]);
    assert.deepEqual(
      d.readSideRecords(DEAD_LETTERS).map((r) => r.reason),
      ["window-1: negative price"],
    );
  });
});
