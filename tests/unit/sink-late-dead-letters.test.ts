/**
 * SinkContext.deadLetter: a batching sink that learns only when its batch goes out that a record was bad
 * reports it, and it goes to the sink's DEAD_LETTERS side output with the reason (or fails the job under the
 * policy "fail"), before the flush that found it completes.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEAD_LETTERS, Job, type SideRecord, type Sink, type SinkContext } from "../../lib/index.ts";

/** Buffers values and "sends" them at flush, where odd ones are refused as an external system would. */
function batchingSink(written: number[]): Sink<number> {
  let ctx: SinkContext | undefined;
  let batch: { value: number; at: number }[] = [];
  return {
    name: "batch",
    open(c) {
      ctx = c;
    },
    write(value, record) {
      batch.push({ value, at: record.timestamp });
    },
    async flush() {
      await new Promise((r) => setTimeout(r, 1));
      for (const { value, at } of batch) {
        if (value % 2 === 1) ctx?.deadLetter?.(value, at, `${value} is odd`);
        else written.push(value);
      }
      batch = [];
    },
  };
}

describe("SinkContext.deadLetter (a record refused after write returned)", () => {
  it("goes to the sink's dead letters with its reason and timestamp, is counted, and the job succeeds", async () => {
    const job = new Job({ name: "late-dead" });
    const written: number[] = [];
    const dead: SideRecord[] = [];
    job
      .fromIterable([1, 2, 3, 4], { timestamp: (v) => v * 10 })
      .sinkTo(batchingSink(written))
      .sideRecords(DEAD_LETTERS)
      .subscribe((r) => void dead.push(r));
    await job.run();
    assert.deepEqual(written, [2, 4]);
    assert.deepEqual(
      dead.map((d) => [d.value, d.timestamp, d.reason]),
      [
        [1, 10, 'sink "batch": 1 is odd'],
        [3, 30, 'sink "batch": 3 is odd'],
      ],
    );
    assert.equal(job.metrics.operator("sink:batch").deadLetters, 2);
  });

  it('under onUserError "fail" the first one fails the job with the reason', async () => {
    const job = new Job({ name: "late-dead-fail", onUserError: "fail" });
    job.fromIterable([2, 3]).sinkTo(batchingSink([]));
    await assert.rejects(job.run(), /sink "batch" failed to write: 3 is odd/);
  });
});
