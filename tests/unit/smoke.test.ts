import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { tumbling } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

describe("tumbling window", () => {
  it("counts per key and fires when the watermark passes the end", () => {
    const d = new TestDriver<{ k: string }, unknown>((s) => s.keyBy((v) => v.k).window(tumbling(10)).count());
    d.pipeInput({ k: "a" }, 1).pipeInput({ k: "a" }, 5).pipeInput({ k: "b" }, 12);
    d.advanceWatermark(9);
    assert.deepEqual(d.readOutput(), [{ key: "a", start: 0, end: 10, value: 2, timing: "on-time" }]);
  });
});
