import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  boundedOutOfOrderness,
  customWatermarks,
  DEAD_LETTERS,
  isGressError,
  monotonic,
  tumbling,
  type WatermarkStrategy,
  type WindowResult,
} from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Ev {
  readonly at: number;
}
const driver = (strategy: WatermarkStrategy<Ev>) => new TestDriver<Ev, Ev>((s) => s.withTimestamps(strategy));

describe("watermark strategies", () => {
  it("bounded out-of-orderness: watermark = max timestamp - bound - 1", () => {
    const d = driver(boundedOutOfOrderness(100, { timestamp: (e) => e.at, everyRecords: 1 }));
    d.pipeInput({ at: 1000 }, 0).pipeInput({ at: 950 }, 0).pipeInput({ at: 1200 }, 0);
    assert.deepEqual(d.readWatermarks(), [899, 1099]);
  });

  it("the timestamp function assigns the record's event time", () => {
    const d = driver(boundedOutOfOrderness(0, { timestamp: (e) => e.at }));
    d.pipeInput({ at: 42 }, 7);
    assert.deepEqual(
      d.readOutputRecords().map((r) => r.timestamp),
      [42],
    );
  });

  it("without a timestamp function the record keeps the timestamp its source gave it", () => {
    const d = driver(monotonic({ everyRecords: 1 }));
    d.pipeInput({ at: 0 }, 7);
    assert.deepEqual(
      d.readOutputRecords().map((r) => r.timestamp),
      [7],
    );
    assert.deepEqual(d.readWatermarks(), [6]);
  });

  it("monotonic: watermark = max timestamp - 1, and it never goes backwards", () => {
    const d = driver(monotonic({ timestamp: (e) => e.at, everyRecords: 1 }));
    d.pipeInput({ at: 10 }, 0).pipeInput({ at: 5 }, 0).pipeInput({ at: 10 }, 0).pipeInput({ at: 11 }, 0);
    assert.deepEqual(d.readWatermarks(), [9, 10]);
  });

  it("custom generator with the same periodic emission", () => {
    const d = driver(
      customWatermarks(
        () => {
          let last = Number.NEGATIVE_INFINITY;
          return {
            onEvent: (ts) => {
              last = ts;
            },
            // Punctuated-style: only multiples of 100 move event time.
            current: () => Math.floor(last / 100) * 100,
          };
        },
        { timestamp: (e) => e.at, everyRecords: 1 },
      ),
    );
    d.pipeInput({ at: 50 }, 0).pipeInput({ at: 150 }, 0).pipeInput({ at: 199 }, 0).pipeInput({ at: 420 }, 0);
    assert.deepEqual(d.readWatermarks(), [0, 100, 400]);
  });

  it("emits only every N records", () => {
    const d = driver(monotonic({ timestamp: (e) => e.at, everyRecords: 3 }));
    for (let i = 1; i <= 7; i++) d.pipeInput({ at: i * 10 }, 0);
    assert.deepEqual(d.readWatermarks(), [29, 59]);
  });

  it("emits every T ms of processing time", () => {
    const d = driver(monotonic({ timestamp: (e) => e.at, everyRecords: 1000, everyMs: 50 }));
    d.pipeInput({ at: 10 }, 0).pipeInput({ at: 20 }, 0);
    d.advanceProcessingTime(49);
    assert.deepEqual(d.readWatermarks(), []);
    d.advanceProcessingTime(1);
    assert.deepEqual(d.readWatermarks(), [19]);
    d.pipeInput({ at: 30 }, 0).advanceProcessingTime(50);
    assert.deepEqual(d.readWatermarks(), [29]);
  });

  it("upstream watermarks are replaced, except the final one that closes a bounded input", () => {
    const d = driver(monotonic({ timestamp: (e) => e.at, everyRecords: 1 }));
    d.pipeInput({ at: 10 }, 0).advanceWatermark(500);
    assert.deepEqual(d.readWatermarks(), [9]);
    d.endInput();
    assert.deepEqual(d.readWatermarks(), [Number.POSITIVE_INFINITY]);
  });

  it("a throwing or non-finite timestamp sends the record to dead letters with the reason", () => {
    const d = driver(
      boundedOutOfOrderness(0, {
        timestamp: (e) => {
          if (e.at < 0) throw new Error("negative time");
          return e.at === 0 ? Number.NaN : e.at;
        },
        everyRecords: 1,
      }),
    );
    d.pipeInput({ at: -1 }, 0).pipeInput({ at: 0 }, 0).pipeInput({ at: 5 }, 0);
    assert.deepEqual(d.readOutput(), [{ at: 5 }]);
    assert.deepEqual(
      d.readSideRecords(DEAD_LETTERS).map((r) => r.reason),
      ["watermarks-1: negative time", "watermarks-1: timestamp must be a finite number, got NaN"],
    );
  });

  it("rejects invalid options with a ConfigError naming the field", () => {
    assert.throws(
      () => boundedOutOfOrderness(-1),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /boundedOutOfOrderness\.maxOutOfOrdernessMs/.test(e.message),
    );
    assert.throws(
      () => monotonic({ everyRecords: 0 }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /everyRecords/.test(e.message),
    );
    assert.throws(
      () => boundedOutOfOrderness(5, { idleTimeoutMs: -3 }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /idleTimeoutMs/.test(e.message),
    );
  });
});

describe("per-split watermarks", () => {
  const splitDriver = (idleTimeoutMs?: number) =>
    new TestDriver<Ev, Ev>((s) =>
      s.withTimestamps(
        boundedOutOfOrderness(0, {
          timestamp: (e) => e.at,
          everyRecords: 1,
          everyMs: 100,
          ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
        }),
      ),
    );

  it("the watermark is the minimum over the splits", () => {
    const d = splitDriver();
    d.pipeInput({ at: 1000 }, 0, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), [999]);
    d.pipeInput({ at: 100 }, 0, { split: "p1" });
    assert.deepEqual(d.readWatermarks(), [], "a slower new split cannot move the watermark back");
    d.pipeInput({ at: 2000 }, 0, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), []);
    d.pipeInput({ at: 500 }, 0, { split: "p1" });
    d.pipeInput({ at: 1500 }, 0, { split: "p1" });
    assert.deepEqual(d.readWatermarks(), [1499]);
  });

  it("a split that stays quiet is held back without idleness", () => {
    const d = splitDriver();
    d.pipeInput({ at: 10 }, 0, { split: "p0" }).pipeInput({ at: 10 }, 0, { split: "p1" });
    d.readWatermarks();
    d.advanceProcessingTime(10_000);
    d.pipeInput({ at: 5000 }, 0, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), []);
  });

  it("an idle split no longer holds the watermark back, and counts again once it sends", () => {
    const d = splitDriver(1000);
    d.pipeInput({ at: 10 }, 0, { split: "p0" }).pipeInput({ at: 10 }, 0, { split: "p1" });
    assert.deepEqual(d.readWatermarks(), [9]);
    d.advanceProcessingTime(500).pipeInput({ at: 3000 }, 0, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), [], "p1 is not idle yet");
    d.advanceProcessingTime(600).pipeInput({ at: 4000 }, 0, { split: "p0" });
    // The periodic check at 1000 ms finds p1 idle and releases p0's watermark; the record then moves it on.
    assert.deepEqual(d.readWatermarks(), [2999, 3999], "p1 idle for ≥ 1000 ms: excluded");
    d.pipeInput({ at: 4100 }, 0, { split: "p1" }).pipeInput({ at: 5000 }, 0, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), [4099], "p1 active again: the minimum includes it");
  });

  it("a split that had records since the last check is active at that check, even if another split came after it", () => {
    // Checks run every 100 ms of processing time only (everyRecords is large), so a split is marked active
    // when it becomes the current one, and the one it hands over to must not lose the records it had.
    const d = new TestDriver<Ev, Ev>((s) =>
      s.withTimestamps(boundedOutOfOrderness(0, { timestamp: (e) => e.at, everyRecords: 1_000_000, everyMs: 100, idleTimeoutMs: 150 })),
    );
    d.pipeInput({ at: 10 }, 0, { split: "p0" }).pipeInput({ at: 10 }, 0, { split: "p1" });
    d.advanceProcessingTime(100);
    assert.deepEqual(d.readWatermarks(), [9]);
    // p1 is still the current split after the check at 100; it gets a record, then p0 takes over.
    d.pipeInput({ at: 20 }, 0, { split: "p1" }).pipeInput({ at: 5000 }, 0, { split: "p0" });
    d.advanceProcessingTime(100); // check at 200: p1 had a record since the last check
    d.pipeInput({ at: 5001 }, 0, { split: "p0" });
    d.advanceProcessingTime(100); // check at 300: p1 last active at 200, 100 ms < 150 ms: still counts
    assert.deepEqual(d.readWatermarks(), [19]);
    d.advanceProcessingTime(100); // check at 400: 200 ms without records: idle, p0 alone sets the watermark
    assert.deepEqual(d.readWatermarks(), [5000]);
  });

  it("when every split is idle the watermark holds", () => {
    const d = splitDriver(1000);
    d.pipeInput({ at: 10 }, 0, { split: "p0" });
    d.readWatermarks();
    d.advanceProcessingTime(5000);
    assert.deepEqual(d.readWatermarks(), []);
  });
});

describe("heartbeat", () => {
  it("closes windows on a quiet stream by advancing the watermark with processing time", () => {
    const d = new TestDriver<Ev, WindowResult<string, number>>(
      (s) =>
        s
          .withTimestamps(boundedOutOfOrderness(100, { timestamp: (e) => e.at, everyRecords: 1, heartbeatMs: 1000 }))
          .keyBy(() => "k")
          .window(tumbling(1000))
          .count(),
      { startTime: 10_000 },
    );
    d.pipeInput({ at: 10_050 }, 0);
    assert.deepEqual(d.readWatermarks(), [9949]);
    d.advanceProcessingTime(999);
    assert.deepEqual(d.readOutput(), []);
    // Quiet for heartbeatMs: the watermark follows processing time minus the bound: 12 000 − 100 − 1.
    d.advanceProcessingTime(1001);
    assert.deepEqual(d.readOutput(), [{ key: "k", start: 10_000, end: 11_000, value: 1, timing: "on-time" }]);
    const wms = d.readWatermarks();
    assert.ok(wms.length > 0);
    assert.equal(wms.at(-1), 11_899);
  });

  it("does not advance the watermark while records keep arriving", () => {
    const d = new TestDriver<Ev, Ev>(
      (s) => s.withTimestamps(boundedOutOfOrderness(0, { timestamp: (e) => e.at, everyRecords: 1, heartbeatMs: 1000 })),
      { startTime: 10_000 },
    );
    for (let i = 0; i < 10; i++) d.pipeInput({ at: 5_000 + i }, 0).advanceProcessingTime(500);
    assert.deepEqual(
      d.readWatermarks(),
      Array.from({ length: 10 }, (_, i) => 4_999 + i),
    );
  });
});
