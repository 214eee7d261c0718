import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { from, lastValueFrom, Observable, of, Subject, toArray } from "rxjs";
import { LoggedSource } from "../../connectors/ingest-log/source.ts";
import {
  barrier,
  DEAD_LETTERS,
  type Element,
  END,
  fromAsyncIterable,
  fromIterable,
  fromObservable,
  isGressError,
  Job,
  type Positions,
  record,
  sideRecord,
  Stream,
  type Sink,
  sinkFn,
  type Source,
  type SourceContext,
  splitsAnnouncement,
  UserFunctionError,
  VirtualClock,
  watermark,
} from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { tempDirs } from "../support/temp.ts";

const lifecycleDir = tempDirs("gress-lifecycle-");

describe("stateless operators", () => {
  it("map transforms each value and keeps its timestamp", () => {
    const d = new TestDriver<number, string>((s) => s.map((x) => `v${x * 2}`));
    d.pipeInput(1, 10).pipeInput(2, 20);
    const out = d.readOutputRecords();
    assert.deepEqual(
      out.map((r) => [r.value, r.timestamp]),
      [
        ["v2", 10],
        ["v4", 20],
      ],
    );
  });

  it("filter keeps only values that satisfy the predicate", () => {
    const d = new TestDriver<number, number>((s) => s.filter((x) => x % 2 === 0));
    d.pipeInputs([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
    ]);
    assert.deepEqual(d.readOutput(), [2, 4]);
  });

  it("flatMap replaces a value by zero or more values with the original timestamp", () => {
    const d = new TestDriver<string, string>((s) => s.flatMap((line) => line.split(" ").filter((w) => w !== "")));
    d.pipeInput("a b c", 5).pipeInput("", 6).pipeInput("d", 7);
    const out = d.readOutputRecords();
    assert.deepEqual(
      out.map((r) => [r.value, r.timestamp]),
      [
        ["a", 5],
        ["b", 5],
        ["c", 5],
        ["d", 7],
      ],
    );
  });

  it("tap sees every value and passes it on unchanged", () => {
    const seen: number[] = [];
    const d = new TestDriver<number, number>((s) => s.tap((x) => seen.push(x)));
    d.pipeInput(3, 1).pipeInput(4, 2);
    assert.deepEqual(seen, [3, 4]);
    assert.deepEqual(d.readOutput(), [3, 4]);
  });

  it("stateless operators pass watermarks through in order", () => {
    const d = new TestDriver<number, number>((s) => s.map((x) => x + 1).filter(() => true));
    d.pipeInput(1, 1).advanceWatermark(5).advanceWatermark(9);
    assert.deepEqual(d.readWatermarks(), [5, 9]);
  });

  it("counts records in and out per operator", () => {
    const d = new TestDriver<number, number>((s) => s.filter((x) => x > 1));
    d.pipeInputs([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    const m = d.job.metrics.operators().find((o) => o.operator === "filter-1");
    assert.equal(m?.recordsIn, 3);
    assert.equal(m?.recordsOut, 2);
  });
});

describe("union", () => {
  it("interleaves records and emits the minimum of the inputs' watermarks", () => {
    const job = new Job({ name: "union", clock: new VirtualClock() });
    const a = new Subject<Element<string>>();
    const b = new Subject<Element<string>>();
    const out: Element<string>[] = [];
    new Stream<string>(job, a).union(new Stream<string>(job, b)).elements.subscribe((e) => out.push(e));
    a.next(record("a1", 1));
    b.next(record("b1", 2));
    a.next(watermark(10));
    assert.deepEqual(
      out.filter((e) => e.kind === "watermark"),
      [],
      "no watermark until every input has one",
    );
    b.next(watermark(4));
    a.next(watermark(12));
    b.next(watermark(8));
    b.next(watermark(20));
    assert.deepEqual(
      out.filter((e) => e.kind === "record").map((e) => (e.kind === "record" ? e.value : "")),
      ["a1", "b1"],
    );
    assert.deepEqual(
      out.filter((e) => e.kind === "watermark").map((e) => (e.kind === "watermark" ? e.timestamp : 0)),
      [4, 8, 12],
    );
  });

  it("an ended input no longer holds the watermark back, and end-of-stream comes once after all inputs end", () => {
    const job = new Job({ name: "union2", clock: new VirtualClock() });
    const a = new Subject<Element<number>>();
    const b = new Subject<Element<number>>();
    const out: Element<number>[] = [];
    let completed = false;
    new Stream<number>(job, a).union(new Stream<number>(job, b)).elements.subscribe({
      next: (e) => out.push(e),
      complete: () => (completed = true),
    });
    a.next(watermark(5));
    b.next(watermark(3));
    b.next(END);
    b.complete();
    assert.equal(completed, false);
    a.next(watermark(7));
    a.next(END);
    a.complete();
    assert.equal(completed, true);
    assert.deepEqual(
      out.map((e) => (e.kind === "watermark" ? e.timestamp : e.kind)),
      [3, 5, 7, Number.POSITIVE_INFINITY, "end"],
    );
  });

  it("unions two bounded sources of one job into one sink", async () => {
    const job = new Job({ name: "u3" });
    const got: number[] = [];
    job
      .fromIterable([1, 2, 3])
      .union(job.fromIterable([10, 20]))
      .sinkTo(sinkFn("collect", (v) => void got.push(v)));
    await job.run();
    assert.deepEqual(
      got.sort((x, y) => x - y),
      [1, 2, 3, 10, 20],
    );
  });
});

describe("keyBy", () => {
  it("sets the key of each record", () => {
    const d = new TestDriver<{ k: string }, { k: string }>((s) => s.keyBy((v) => v.k));
    d.pipeInput({ k: "x" }, 1);
    assert.deepEqual(
      d.readOutputRecords().map((r) => r.key),
      ["x"],
    );
  });

  it("a record whose key is not a string or finite number goes to dead letters with the reason", () => {
    const d = new TestDriver<{ k: unknown }, { k: unknown }>((s) => s.keyBy((v) => v.k as string));
    d.pipeInput({ k: null }, 1).pipeInput({ k: { nested: true } }, 2).pipeInput({ k: Number.NaN }, 3).pipeInput({ k: "ok" }, 4);
    assert.deepEqual(
      d.readOutput().map((v) => v.k),
      ["ok"],
    );
    const dead = d.readSideRecords(DEAD_LETTERS);
    assert.equal(dead.length, 3);
    assert.deepEqual(dead[0]?.value, { k: null });
    assert.match(dead[0]?.reason ?? "", /^keyBy-1: key must be a string or a finite number, got null$/);
    assert.match(dead[1]?.reason ?? "", /got object/);
    assert.match(dead[2]?.reason ?? "", /got number/);
    assert.equal(d.job.metrics.operator("keyBy-1").deadLetters, 3);
  });
});

describe("user function errors", () => {
  it("a throwing map sends the record to dead letters with the operator and message, and goes on", () => {
    const d = new TestDriver<number, number>((s) =>
      s.map((x) => {
        if (x === 2) throw new Error("two is bad");
        return x * 10;
      }),
    );
    d.pipeInput(1, 1).pipeInput(2, 2).pipeInput(3, 3);
    assert.deepEqual(d.readOutput(), [10, 30]);
    const dead = d.readSideRecords(DEAD_LETTERS);
    assert.deepEqual(
      dead.map((r) => [r.value, r.timestamp, r.reason]),
      [[2, 2, "map-1: two is bad"]],
    );
    assert.equal(d.job.metrics.operator("map-1").deadLetters, 1);
  });

  it("throwing filter, flatMap and tap also dead-letter instead of crashing", () => {
    const boom = (): never => {
      throw new Error("boom");
    };
    const d = new TestDriver<number, number>((s) =>
      s
        .filter((x) => (x === 1 ? boom() : true))
        .flatMap((x) => (x === 2 ? boom() : [x]))
        .tap((x) => (x === 3 ? boom() : undefined)),
    );
    d.pipeInput(1, 1).pipeInput(2, 2).pipeInput(3, 3).pipeInput(4, 4);
    assert.deepEqual(d.readOutput(), [4]);
    assert.deepEqual(
      d.readSideRecords(DEAD_LETTERS).map((r) => r.reason),
      ["filter-1: boom", "flatMap-1: boom", "tap-1: boom"],
    );
  });

  it('with onUserError "fail" the pipeline fails with a UserFunctionError naming the operator', () => {
    const cause = new Error("no");
    const d = new TestDriver<number, number>(
      (s) =>
        s.map((x) => {
          if (x > 1) throw cause;
          return x;
        }),
      { onUserError: "fail" },
    );
    d.pipeInput(1, 1);
    assert.throws(
      () => d.pipeInput(2, 2),
      (e: unknown) => {
        assert.ok(e instanceof UserFunctionError);
        assert.equal(e.code, "ERR_USER_FUNCTION");
        assert.equal(e.details.operator, "map-1");
        assert.match(e.message, /operator "map-1"/);
        assert.equal(e.cause, cause);
        return true;
      },
    );
  });

  it('with onUserError "fail" job.run() rejects with the UserFunctionError', async () => {
    const job = new Job({ name: "failing", onUserError: "fail" });
    job
      .fromIterable([1, 2, 3])
      .filter((x) => {
        if (x === 3) throw new TypeError("bad three");
        return true;
      })
      .sinkTo(sinkFn("null", () => {}));
    await assert.rejects(job.run(), (e: unknown) => {
      assert.ok(isGressError(e, "ERR_USER_FUNCTION"));
      assert.equal(e.details.operator, "filter-1");
      return true;
    });
  });
});

describe("RxJS interop", () => {
  it("fromObservable turns an Observable into a stream and toObservable gives plain values back", async () => {
    const values = await lastValueFrom(
      fromObservable(of(1, 2, 3))
        .map((x) => x * 2)
        .toObservable()
        .pipe(toArray()),
    );
    assert.deepEqual(values, [2, 4, 6]);
  });

  it("fromObservable stamps values with the given timestamp function", async () => {
    const recs = await lastValueFrom(
      fromObservable(from([{ at: 5 }, { at: 9 }]), { timestamp: (v) => v.at })
        .records()
        .pipe(toArray()),
    );
    assert.deepEqual(
      recs.map((r) => r.timestamp),
      [5, 9],
    );
  });

  it("fromObservable fails the stream with a SourceError when the Observable errors", async () => {
    const failing = new Observable<number>((s) => {
      s.next(1);
      s.error(new Error("upstream broke"));
    });
    await assert.rejects(fromObservable(failing, { name: "broken" }).collect(), (e: unknown) => {
      assert.ok(isGressError(e, "ERR_SOURCE"));
      assert.match(e.message, /source "broken" failed: .*upstream broke/);
      return true;
    });
  });

  it("fromIterable is a bounded stream of the iterable's values", async () => {
    assert.deepEqual(await fromIterable(new Set(["a", "b"])).collect(), ["a", "b"]);
  });

  it("an iterable source replays from a valid position and refuses a position that is not a non-negative integer", async () => {
    const values = [10, 11, 12, 13];
    const from = async (position: unknown): Promise<number[]> => {
      // The Source behind fromIterable, started at `position` as a restored checkpoint would start it.
      const source = new Job().fromIterable(values, { name: "xs" }).job.sources[0] as Source<number>;
      const job = new Job();
      const out: number[] = [];
      job.source(source, { from: { xs: position } as Positions }).sinkTo(sinkFn("out", (v) => void out.push(v)));
      await job.run();
      return out;
    };
    assert.deepEqual(await from(2), [12, 13]);
    assert.deepEqual(await from(9), []);
    for (const bad of [-1, 1.5, Number.NaN, "2"]) {
      await assert.rejects(from(bad), (e: unknown) => isGressError(e, "ERR_SOURCE") && /position must be a non-negative integer/.test((e as Error).message), String(bad));
    }
  });

  it("fromIterable with a timestamp function assigns event time", async () => {
    const recs = await lastValueFrom(
      fromIterable([3, 1, 2], { timestamp: (v) => v * 100 })
        .records()
        .pipe(toArray()),
    );
    assert.deepEqual(
      recs.map((r) => [r.value, r.timestamp]),
      [
        [3, 300],
        [1, 100],
        [2, 200],
      ],
    );
  });

  it("fromAsyncIterable pulls every value of an async generator", async () => {
    async function* gen(): AsyncGenerator<number> {
      for (let i = 0; i < 5; i++) {
        await Promise.resolve();
        yield i;
      }
    }
    assert.deepEqual(await fromAsyncIterable(gen()).collect(), [0, 1, 2, 3, 4]);
  });

  it("streams built with from* share a job when given one, and run with job.run()", async () => {
    const job = new Job({ name: "shared" });
    const got: string[] = [];
    fromIterable(["x", "y"], { job })
      .map((s) => s.toUpperCase())
      .sinkTo(sinkFn("collect", (v) => void got.push(v)));
    await job.run();
    assert.deepEqual(got, ["X", "Y"]);
  });

  it("a stream consumed by two sinks runs its source once", async () => {
    const job = new Job({ name: "fanout" });
    let pulled = 0;
    const s = job.fromIterable([1, 2, 3]).tap(() => pulled++);
    const a: number[] = [];
    const b: number[] = [];
    s.sinkTo(sinkFn("a", (v) => void a.push(v)));
    s.map((x) => -x).sinkTo(sinkFn("b", (v) => void b.push(v)));
    await job.run();
    assert.equal(pulled, 3);
    assert.deepEqual(a, [1, 2, 3]);
    assert.deepEqual(b, [-1, -2, -3]);
  });
});

describe("elements", () => {
  it("every kind of element has the same fields in the same order (one hidden class for V8)", () => {
    const shapes = [
      record({ a: 1 }, 5, "k", "split"),
      watermark(7),
      barrier(3),
      splitsAnnouncement(["p0"]),
      sideRecord("late", 1, 2, "why"),
      END,
    ].map((e) => Object.keys(e).join(","));
    assert.equal(new Set(shapes).size, 1, shapes.join(" | "));
    assert.equal(shapes[0], "kind,value,timestamp,key,split,tag,reason,checkpointId,splits");
  });

  it("the test driver hands out records and side records as plain objects of their own fields", () => {
    const d = new TestDriver<number, number>((s) => s.map((x) => x * 2));
    d.pipeInput(1, 5);
    assert.deepEqual(d.readOutputRecords(), [{ kind: "record", value: 2, timestamp: 5, key: undefined, split: undefined }]);
    const f = new TestDriver<number, number>((s) =>
      s.map((x) => {
        if (x > 0) throw new Error("no");
        return x;
      }),
    );
    f.pipeInput(1, 5);
    assert.deepEqual(f.readSideRecords(DEAD_LETTERS), [{ kind: "side", tag: "dead-letter", value: 1, timestamp: 5, reason: "map-1: no" }]);
  });
});

describe("job lifecycle", () => {
  /** A source whose close() takes a while, like one that disconnects from a broker. */
  class SlowClosingSource implements Source<number> {
    readonly name: string;
    closed = false;
    readonly #bounded: boolean;
    constructor(name: string, bounded: boolean) {
      this.name = name;
      this.#bounded = bounded;
    }
    open(ctx: SourceContext<number>): void {
      ctx.emit(1, 1);
      if (this.#bounded) ctx.end();
    }
    pause(): void {}
    resume(): void {}
    async close(): Promise<void> {
      await new Promise((r) => setTimeout(r, 20));
      this.closed = true;
    }
  }

  it("run() settles only once every source has closed: after the end of the input, a cancel, and a failure", async () => {
    const ended = new SlowClosingSource("ended", true);
    const job1 = new Job({ name: "ends" });
    job1.source(ended).sinkTo(sinkFn("out", () => {}));
    await job1.run();
    assert.equal(ended.closed, true, "bounded input");

    const cancelled = new SlowClosingSource("cancelled", false);
    const job2 = new Job({ name: "cancels" });
    job2.source(cancelled).sinkTo(sinkFn("out", () => job2.cancel()));
    await job2.run();
    assert.equal(cancelled.closed, true, "cancel()");

    const failed = new SlowClosingSource("failed", false);
    const job3 = new Job({ name: "fails", onUserError: "fail" });
    job3
      .source(failed)
      .map(() => {
        throw new Error("boom");
      })
      .sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job3.run(), /boom/);
    assert.equal(failed.closed, true, "failure");
  });

  it("a source whose close() never settles holds run() back only for closeTimeoutMs, and the job's error still comes out", async () => {
    const hanging = (name: string, fail: boolean): Source<number> => ({
      name,
      open(ctx) {
        ctx.emit(1, 1);
        if (fail) ctx.fail(new Error("boom"));
      },
      pause() {},
      resume() {},
      close: () => new Promise<void>(() => {}),
    });
    const failing = new Job({ name: "hangs-and-fails", closeTimeoutMs: 50 });
    failing.source(hanging("h1", true)).sinkTo(sinkFn("out", () => {}));
    await assert.rejects(failing.run(), /boom/);

    const cancelled = new Job({ name: "hangs-and-cancels", closeTimeoutMs: 50 });
    cancelled.source(hanging("h2", false)).sinkTo(sinkFn("out", () => cancelled.cancel()));
    await cancelled.run();
    assert.throws(
      () => new Job({ closeTimeoutMs: -1 }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /closeTimeoutMs/.test(e.message),
    );
  });

  it("a source closed while its open() is still under way releases what open() acquired before run() settles", async () => {
    const source = new LoggedSource<number>({ name: "logged", dir: await lifecycleDir(), fsync: false, decode: () => [] });
    const job = new Job({ name: "close-during-open" });
    job.source(source).sinkTo(sinkFn("out", () => {}));
    // A second source fails at once, while the logged one is still opening its log.
    job
      .source<number>({
        name: "bad",
        open() {
          throw new Error("cannot connect");
        },
        pause() {},
        resume() {},
        close() {},
      })
      .sinkTo(sinkFn("out2", () => {}));
    await assert.rejects(job.run(), /cannot connect/);
    assert.ok(source.log !== undefined, "the log was opened");
    await assert.rejects(source.log.append([new Uint8Array([1])]), /is closed/, "and closed again before run() settled");
  });

  it("a job runs once at a time, and can run again after it settled", async () => {
    const job = new Job({ name: "twice" });
    const out: number[] = [];
    job.fromIterable([1, 2, 3]).sinkTo(sinkFn("out", (v) => void out.push(v)));
    const first = job.run();
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_CONFIG") && /already running/.test(e.message));
    await first;
    await job.run();
    assert.deepEqual(out, [1, 2, 3, 1, 2, 3]);
  });

  it("a sink is closed once: after its flush at the end of the input, and without one when the job is cancelled or fails", async () => {
    const closingSink = (log: string[], fail = false): Sink<number> => ({
      name: "logged",
      write(v) {
        log.push(`write ${v}`);
        if (fail) throw new Error("sink down");
      },
      flush: () => void log.push("flush"),
      close: async () => {
        await new Promise((r) => setTimeout(r, 10));
        log.push("close");
      },
    });
    const ended: string[] = [];
    const job1 = new Job({ name: "sink-ends" });
    job1.fromIterable([1]).sinkTo(closingSink(ended));
    await job1.run();
    assert.deepEqual(ended, ["write 1", "flush", "close"]);

    const cancelled: string[] = [];
    const job2 = new Job({ name: "sink-cancelled" });
    job2
      .source(new SlowClosingSource("endless", false))
      .tap(() => job2.cancel())
      .sinkTo(closingSink(cancelled));
    await job2.run();
    assert.deepEqual(cancelled, ["close"], "closed before run() settled, without a flush");

    const failed: string[] = [];
    const job3 = new Job({ name: "sink-fails" });
    job3.fromIterable([1, 2]).sinkTo(closingSink(failed, true));
    await assert.rejects(job3.run(), /sink down/);
    assert.deepEqual(failed, ["write 1", "close"]);
  });
});
