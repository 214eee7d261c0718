import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { range } from "rxjs";
import { FlowControl, fromAsyncIterable, fromObservable, generator, isGressError, Job, type Sink } from "../../lib/index.ts";

/** A sink whose writes each take `delayMs` of real time; it records how many were pending at once. */
function slowSink<T>(name: string, delayMs: number): Sink<T> & { written: T[]; maxPending: number } {
  let pending = 0;
  const sink = {
    name,
    written: [] as T[],
    maxPending: 0,
    write(value: T): Promise<void> {
      pending++;
      if (pending > sink.maxPending) sink.maxPending = pending;
      return new Promise<void>((resolve) =>
        setTimeout(() => {
          pending--;
          sink.written.push(value);
          resolve();
        }, delayMs),
      );
    },
  };
  return sink;
}

describe("flow control", () => {
  it("FlowControl pauses while anyone is under pressure and resumes when all released", () => {
    const flow = new FlowControl();
    const seen: boolean[] = [];
    const stop = flow.listen((p) => seen.push(p));
    flow.press("a");
    flow.press("b");
    flow.press("a");
    flow.release("a");
    assert.equal(flow.paused, true);
    flow.release("b");
    flow.release("b");
    assert.equal(flow.paused, false);
    stop();
    flow.press("c");
    assert.deepEqual(seen, [true, false]);
  });

  it("a slow async sink with maxInFlight pauses the source: never more than maxInFlight pending writes", async () => {
    const job = new Job({ name: "backpressure" });
    const sink = slowSink<number>("slow", 2);
    const values = Array.from({ length: 60 }, (_, i) => i);
    const pausedSeen: boolean[] = [];
    job
      .fromIterable(values, { name: "numbers" })
      .tap(() => pausedSeen.push(job.metrics.source("numbers").paused))
      .map((x) => x * 2)
      .sinkTo(sink, { maxInFlight: 4 });
    await job.run();
    assert.deepEqual(
      sink.written,
      values.map((x) => x * 2),
    );
    assert.ok(sink.maxPending <= 4, `at most 4 writes pending, saw ${sink.maxPending}`);
    assert.equal(sink.maxPending, 4, "the bound is reached, so the test exercises it");
    assert.equal(pausedSeen.includes(true), false, "no record is emitted while the source is paused");
    assert.equal(job.metrics.source("numbers").paused, false, "resumed at the end");
  });

  it("the source's paused metric is set while the sink is saturated", async () => {
    const job = new Job({ name: "paused-metric" });
    let release: (() => void) | undefined;
    const gate = new Promise<void>((r) => (release = r));
    let writes = 0;
    job.fromIterable([1, 2, 3, 4, 5], { name: "src" }).sinkTo(
      {
        name: "gated",
        write: () => {
          writes++;
          return gate;
        },
      },
      { maxInFlight: 2 },
    );
    const done = job.run();
    for (let i = 0; i < 2000 && writes < 2; i++) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(writes, 2, "the source stopped after maxInFlight writes");
    assert.equal(job.metrics.source("src").paused, true);
    assert.equal(job.metrics.sink("gated").inFlight, 2);
    const text = await job.metrics.text();
    assert.match(text, /gress_source_paused\{[^}]*source="src"[^}]*\} 1/);
    release?.();
    await done;
    assert.equal(writes, 5);
    assert.equal(job.metrics.source("src").paused, false);
  });

  it("the generator source pauses too", async () => {
    const job = new Job({ name: "gen-bp" });
    const sink = slowSink<number>("slow", 1);
    job.source(generator({ name: "g", count: 40, make: (i) => i })).sinkTo(sink, { maxInFlight: 3 });
    await job.run();
    assert.equal(sink.written.length, 40);
    assert.ok(sink.maxPending <= 3, `saw ${sink.maxPending}`);
  });

  it("an async-iterable source stops pulling while paused", async () => {
    const job = new Job({ name: "async-bp" });
    const sink = slowSink<number>("slow", 1);
    let pulled = 0;
    let maxAhead = 0;
    async function* numbers(): AsyncGenerator<number> {
      for (let i = 0; i < 30; i++) {
        pulled++;
        maxAhead = Math.max(maxAhead, pulled - sink.written.length);
        yield i;
      }
    }
    fromAsyncIterable(numbers(), { job, name: "nums" }).sinkTo(sink, { maxInFlight: 2 });
    await job.run();
    assert.equal(sink.written.length, 30);
    assert.ok(sink.maxPending <= 2);
    assert.ok(maxAhead <= 3, `pulled at most maxInFlight + 1 ahead of the sink, saw ${maxAhead}`);
  });

  it("a failing write fails the job with a SinkError naming the sink", async () => {
    const job = new Job({ name: "sink-fail" });
    job.fromIterable([1, 2, 3]).sinkTo({
      name: "flaky",
      write: async (v: number) => {
        if (v === 2) throw new Error("connection reset");
      },
    });
    await assert.rejects(job.run(), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.equal((e as { code?: string }).code, "ERR_SINK");
      assert.match(e.message, /sink "flaky" failed to write: connection reset/);
      return true;
    });
  });

  it("an Observable that cannot pause is held in a bounded buffer and delivered in order on resume", async () => {
    const job = new Job({ name: "obs-bp" });
    const sink = slowSink<number>("slow", 1);
    fromObservable(range(0, 50), { job, name: "range", maxBuffered: 100 }).sinkTo(sink, { maxInFlight: 2 });
    await job.run();
    assert.deepEqual(
      sink.written,
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.ok(sink.maxPending <= 2);
  });

  it("past maxBuffered an Observable source fails the job with a SourceError instead of growing", async () => {
    const job = new Job({ name: "obs-overflow" });
    fromObservable(range(0, 50), { job, name: "range", maxBuffered: 5 }).sinkTo(slowSink<number>("slow", 1), { maxInFlight: 2 });
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_SOURCE") && /held 5 values/.test(e.message));
  });
});
