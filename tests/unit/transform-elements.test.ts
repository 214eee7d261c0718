import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bufferCount, concatMap, type OperatorFunction } from "rxjs";
import { ConfigError, type Element, Job, record, sinkFn } from "../../lib/index.ts";

describe("stream.transform(op) works on elements", () => {
  it("an RxJS operator that emits plain values (bufferCount) fails the job with a ConfigError that says what to use", async () => {
    const job = new Job({ name: "transform-buffer" });
    job
      .fromIterable([1, 2, 3, 4])
      // What an RxJS user tries first: the types do not fit, and at run time the operator gets elements.
      .transform(bufferCount(2) as unknown as OperatorFunction<Element<number>, Element<number[]>>)
      .sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /transform\(\): the operator emitted an array \(2 items\), not an element/);
      assert.match(err.message, /toObservable\(\)\.pipe\(op\)/);
      return true;
    });
  });

  it("an RxJS operator on elements that lets watermarks and the end through gives its records", async () => {
    const job = new Job({ name: "transform-elements" });
    const out: number[] = [];
    const double: OperatorFunction<Element<number>, Element<number>> = concatMap(async (e) =>
      e.kind === "record" ? record(e.value * 2, e.timestamp, e.key) : e,
    );
    job
      .fromIterable([1, 2, 3])
      .transform(double)
      .sinkTo(sinkFn("out", (x) => void out.push(x)));
    await job.run();
    assert.deepEqual(out, [2, 4, 6]);
  });
});
