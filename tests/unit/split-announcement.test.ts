import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { boundedOutOfOrderness, type Stream } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

const perRecord = (s: Stream<number>): Stream<number> => s.withTimestamps(boundedOutOfOrderness(0, { everyRecords: 1 }));

describe("announced source splits", () => {
  it("an announced split that has not delivered holds the watermark back", () => {
    const d = new TestDriver<number, number>(perRecord);
    d.announceSplits(["p0", "p1"]);
    d.pipeInput(1, 1_000, { split: "p0" }).pipeInput(2, 2_000, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), [], "p1 has delivered nothing yet");
    d.pipeInput(3, 500, { split: "p1" });
    assert.deepEqual(d.readWatermarks(), [499], "minimum over both splits");
    d.pipeInput(4, 3_000, { split: "p1" });
    assert.deepEqual(d.readWatermarks(), [1_999]);
  });

  it("without an announcement the first split alone sets the watermark (and the other's records are late)", () => {
    const d = new TestDriver<number, number>(perRecord);
    d.pipeInput(1, 1_000, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), [999]);
  });

  it("an announced split that stays silent past the idle timeout no longer holds the watermark", () => {
    const d = new TestDriver<number, number>((s) =>
      s.withTimestamps(boundedOutOfOrderness(0, { everyRecords: 1, everyMs: 100, idleTimeoutMs: 1_000 })),
    );
    d.announceSplits(["p0", "p1"]);
    d.pipeInput(1, 5_000, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), []);
    d.advanceProcessingTime(500).pipeInput(2, 6_000, { split: "p0" });
    assert.deepEqual(d.readWatermarks(), []);
    d.advanceProcessingTime(1_000);
    assert.deepEqual(d.readWatermarks(), [5_999]);
  });
});
