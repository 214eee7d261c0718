import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Subject } from "rxjs";
import {
  AsyncCache,
  type AsyncCallContext,
  AsyncTimeoutError,
  asyncMetrics,
  barrier,
  ConfigError,
  DEAD_LETTERS,
  type Element,
  fromIterable,
  isGressError,
  Job,
  lmdbState,
  memoryState,
  record,
  type Sink,
  Stream,
  VirtualClock,
  watermark,
} from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-async-");

/** A call the test resolves or rejects by hand. */
interface Call<I> {
  readonly value: I;
  readonly ctx: AsyncCallContext;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

function manual<I>(): { calls: Call<I>[]; fn: (value: I, ctx: AsyncCallContext) => Promise<unknown> } {
  const calls: Call<I>[] = [];
  return {
    calls,
    fn: (value, ctx) =>
      new Promise((resolve, reject) => {
        calls.push({ value, ctx, resolve, reject });
      }),
  };
}

/** Lets promise callbacks run. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe("mapAsync: order", () => {
  it("ordered: results in input order although the calls complete in reverse", async () => {
    const { calls, fn } = manual<number>();
    const d = new TestDriver<number, number>((s) => s.mapAsync(async (x, c) => ((await fn(x, c)) as number) * 10));
    d.pipeInput(1, 1).pipeInput(2, 2).pipeInput(3, 3);
    assert.equal(calls.length, 3, "all three calls start at once");
    calls[2]!.resolve(3);
    calls[1]!.resolve(2);
    await settle();
    assert.deepEqual(d.readOutput(), [], "nothing goes out before the first result");
    calls[0]!.resolve(1);
    await settle();
    assert.deepEqual(d.readOutput(), [10, 20, 30]);
  });

  it("results keep the input's timestamp and key", async () => {
    const d = new TestDriver<number, number>((s) => s.keyBy((x) => `k${x}`).mapAsync(async (x) => x + 1));
    d.pipeInput(1, 100).pipeInput(2, 200);
    await settle();
    assert.deepEqual(
      d.readOutputRecords().map((r) => [r.value, r.timestamp, r.key]),
      [
        [2, 100, "k1"],
        [3, 200, "k2"],
      ],
    );
  });

  it("unordered: results as they complete, but none crosses a watermark", async () => {
    const { calls, fn } = manual<string>();
    const d = new TestDriver<string, unknown>((s) => s.mapAsync(fn, { ordered: false }));
    d.pipeInput("a", 1).pipeInput("b", 2).advanceWatermark(5).pipeInput("c", 6);
    calls[2]!.resolve("c");
    calls[1]!.resolve("b");
    await settle();
    assert.deepEqual(d.readOutput(), ["b"], "b overtakes a; c waits behind the watermark");
    assert.deepEqual(d.readWatermarks(), [], "the watermark waits for a");
    calls[0]!.resolve("a");
    await settle();
    assert.deepEqual(d.readOutput(), ["a", "c"]);
    assert.deepEqual(d.readWatermarks(), [5]);
  });

  it("unordered: the watermark goes out between the results before and after it", async () => {
    const { calls, fn } = manual<string>();
    const seen: string[] = [];
    const input = new Subject<Element<string>>();
    const job = new Job();
    new Stream<string>(job, input).mapAsync(fn, { ordered: false }).elements.subscribe((e) => {
      seen.push(e.kind === "record" ? String(e.value) : e.kind === "watermark" ? `w${e.timestamp}` : e.kind);
    });
    input.next(record("a", 1));
    input.next(watermark(1));
    input.next(record("b", 2));
    calls[1]!.resolve("b");
    await settle();
    calls[0]!.resolve("a");
    await settle();
    assert.deepEqual(seen, ["a", "w1", "b"]);
  });

  it('"per-key": each key in input order, keys pass each other', async () => {
    const { calls, fn } = manual<{ k: string; n: number }>();
    const d = new TestDriver<{ k: string; n: number }, unknown>((s) => s.keyBy((e) => e.k).mapAsync(async (e, c) => `${(await fn(e, c)) as string}`, { ordered: "per-key" }));
    d.pipeInput({ k: "x", n: 1 }, 1).pipeInput({ k: "y", n: 1 }, 2).pipeInput({ k: "x", n: 2 }, 3).pipeInput({ k: "y", n: 2 }, 4);
    // Completion order: y2, x2, y1 — y1 releases y2; x2 waits for x1.
    calls[3]!.resolve("y2");
    calls[2]!.resolve("x2");
    calls[1]!.resolve("y1");
    await settle();
    assert.deepEqual(d.readOutput(), ["y1", "y2"]);
    calls[0]!.resolve("x1");
    await settle();
    assert.deepEqual(d.readOutput(), ["x1", "x2"]);
  });

  it('"per-key" needs a keyed stream: a ConfigError when the pipeline is built', () => {
    assert.throws(
      () => fromIterable([1]).mapAsync(async (x) => x, { ordered: "per-key" as unknown as boolean }),
      (err: unknown) => err instanceof ConfigError && /per-key.*keyed stream/.test(err.message),
    );
  });

  it("bad options are a ConfigError naming the field", () => {
    assert.throws(
      () => fromIterable([1]).mapAsync(async (x) => x, { concurrency: 0 }),
      (err: unknown) => err instanceof ConfigError && err.message.includes("mapAsync.concurrency"),
    );
    assert.throws(
      () => fromIterable([1]).mapAsync(async (x) => x, { retry: { maxAttempts: 2, backoff: "linear" as "fixed" } }),
      (err: unknown) => err instanceof ConfigError && err.message.includes("mapAsync.retry.backoff"),
    );
  });

  it("flatMapAsync emits zero or more results per value, in order", async () => {
    const out = await fromIterable([0, 1, 2, 3])
      .flatMapAsync(async (n) => {
        await new Promise((r) => setTimeout(r, (3 - n) * 3));
        return Array.from({ length: n }, () => n);
      })
      .collect();
    assert.deepEqual(out, [1, 2, 2, 3, 3, 3]);
  });
});

describe("mapAsync: bounds and backpressure", () => {
  it("starts at most `concurrency` calls, pauses the sources when full, and starts the rest as calls end", async () => {
    const { calls, fn } = manual<number>();
    const d = new TestDriver<number, unknown>((s) => s.mapAsync(fn, { concurrency: 2, uid: "two" }));
    for (let i = 0; i < 3; i++) d.pipeInput(i, i);
    assert.equal(d.job.flow.paused, false, "3 records: 2 in flight, 1 waiting");
    d.pipeInput(3, 3);
    assert.equal(d.job.flow.paused, true, "the sources are paused once twice `concurrency` records are held");
    d.pipeInput(4, 4); // a source's batch that was under way still gets in, and waits
    assert.equal(calls.length, 2);
    assert.equal(asyncMetrics(d.job.metrics, "two").inFlight, 2);
    calls[0]!.resolve(0);
    await settle();
    assert.equal(calls.length, 3, "a finished call frees a slot for the next waiting record");
    assert.deepEqual(d.readOutput(), [0]);
    assert.equal(d.job.flow.paused, true, "4 held: still paused");
    calls[1]!.resolve(1);
    await settle();
    assert.equal(d.job.flow.paused, true, "3 held: still paused");
    calls[2]!.resolve(2);
    await settle();
    assert.equal(d.job.flow.paused, false, "back at `concurrency` held: the sources go on");
    for (let i = 3; i < 5; i++) {
      assert.ok(calls.length <= i + 2, "never more than 2 calls in flight");
      calls[i]!.resolve(i);
      await settle();
    }
    assert.deepEqual(d.readOutput(), [1, 2, 3, 4]);
    assert.equal(d.job.flow.paused, false, "released once the queue drained");
    assert.equal(asyncMetrics(d.job.metrics, "two").inFlight, 0);
  });

  it("thousands of records waiting for one slot (a source that cannot pause) come out complete and in order", async () => {
    let calls = 0;
    let inFlight = 0;
    let most = 0;
    const d = new TestDriver<number, number>((s) =>
      s.mapAsync(
        async (x) => {
          calls++;
          most = Math.max(most, ++inFlight);
          await Promise.resolve();
          inFlight--;
          return x;
        },
        { concurrency: 1 },
      ),
    );
    const n = 3_000;
    for (let i = 0; i < n; i++) d.pipeInput(i, i);
    await settle();
    assert.deepEqual(
      d.readOutput(),
      Array.from({ length: n }, (_, i) => i),
    );
    assert.equal(calls, n, "one call per record");
    assert.equal(most, 1);
  });

  it("at the end of the input, waits for every call before it completes", async () => {
    const { calls, fn } = manual<number>();
    const d = new TestDriver<number, unknown>((s) => s.mapAsync(fn));
    d.pipeInput(1, 1).endInput();
    await settle();
    assert.equal(d.completed, false);
    calls[0]!.resolve("one");
    await settle();
    assert.equal(d.completed, true);
    assert.deepEqual(d.readOutput(), ["one"]);
  });
});

describe("mapAsync: failures", () => {
  it("a timeout aborts the call's signal and goes through the retry policy with exponential back-off", async () => {
    const { calls, fn } = manual<number>();
    const d = new TestDriver<number, unknown>((s) =>
      s.mapAsync(fn, { timeoutMs: 100, retry: { maxAttempts: 3, backoff: "exponential", delayMs: 10, maxDelayMs: 15 }, uid: "slow" }),
    );
    d.pipeInput(7, 7);
    const startedAt: number[] = [d.clock.now()];
    d.advanceProcessingTime(100);
    assert.equal(calls[0]!.ctx.signal.aborted, true);
    assert.ok(calls[0]!.ctx.signal.reason instanceof AsyncTimeoutError);
    assert.equal(calls.length, 1, "the retry waits for its delay");
    d.advanceProcessingTime(10);
    assert.equal(calls.length, 2);
    startedAt.push(d.clock.now());
    d.advanceProcessingTime(100);
    d.advanceProcessingTime(14);
    assert.equal(calls.length, 2, "the second delay is 20 ms capped at 15");
    d.advanceProcessingTime(1);
    assert.equal(calls.length, 3);
    assert.deepEqual(
      calls.map((c) => c.ctx.attempt),
      [1, 2, 3],
    );
    d.advanceProcessingTime(100);
    await settle();
    assert.deepEqual(d.readOutput(), []);
    const dead = d.readSideRecords(DEAD_LETTERS);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.value, 7);
    assert.match(dead[0]!.reason, /^slow: call timed out after 100 ms \(after 3 attempts\)$/);
    const m = asyncMetrics(d.job.metrics, "slow");
    assert.equal(m.timeouts, 3);
    assert.equal(m.retries, 2);
    assert.equal(m.calls, 3);
    // A late answer of a timed-out attempt is ignored.
    calls[0]!.resolve("late");
    await settle();
    assert.deepEqual(d.readOutput(), []);
  });

  it("a rejected call is retried, and a later success is emitted once", async () => {
    let n = 0;
    const d = new TestDriver<number, number>((s) =>
      s.mapAsync(
        async (x) => {
          if (++n < 3) throw new Error(`flaky ${n}`);
          return x * 2;
        },
        { retry: { maxAttempts: 5 } },
      ),
    );
    d.pipeInput(21, 1);
    await settle();
    assert.deepEqual(d.readOutput(), [42]);
    assert.equal(n, 3);
  });

  it("a function that throws synchronously is a failed call too; results that are plain values need no promise", async () => {
    const d = new TestDriver<number, number>((s) =>
      s.mapAsync(
        (x) => {
          if (x < 0) throw new RangeError(`negative: ${x}`);
          return x * 2;
        },
        { uid: "sync" },
      ),
    );
    d.pipeInput(1, 1).pipeInput(-1, 2).pipeInput(3, 3);
    await settle();
    assert.deepEqual(d.readOutput(), [2, 6]);
    assert.deepEqual(
      d.readSideRecords(DEAD_LETTERS).map((r) => [r.value, r.reason]),
      [[-1, "sync: negative: -1"]],
    );
  });

  it("retryIf decides which errors are tried again; the reason names the error", async () => {
    const d = new TestDriver<number, number>((s) =>
      s.mapAsync(
        async () => {
          throw new Error("HTTP 404");
        },
        { retry: { maxAttempts: 5, retryIf: (e) => !String(e).includes("HTTP 4") }, uid: "lookup" },
      ),
    );
    d.pipeInput(1, 1);
    await settle();
    assert.deepEqual(d.readSideRecords(DEAD_LETTERS).map((r) => r.reason), ["lookup: HTTP 404"]);
    assert.equal(asyncMetrics(d.job.metrics, "lookup").calls, 1);
  });

  it("a dead-lettered record keeps its place: later results wait for it in ordered mode", async () => {
    const { calls, fn } = manual<number>();
    const seen: string[] = [];
    const input = new Subject<Element<number>>();
    new Stream<number>(new Job(), input).mapAsync(fn).elements.subscribe((e) => {
      if (e.kind === "record") seen.push(`r${e.value}`);
      else if (e.kind === "side") seen.push(`dead${e.value}`);
    });
    input.next(record(1, 1));
    input.next(record(2, 2));
    calls[1]!.resolve(2);
    await settle();
    calls[0]!.reject(new Error("no"));
    await settle();
    assert.deepEqual(seen, ["dead1", "r2"]);
  });

  it('onUserError "fail": a call whose attempts all failed fails the job with a UserFunctionError naming the operator', async () => {
    const job = new Job();
    job
      .fromIterable([1, 2])
      .mapAsync(
        async (x) => {
          if (x === 2) throw new Error("scoring service down");
          return x;
        },
        { onUserError: "fail", uid: "score" },
      )
      .sinkTo({ name: "s", write() {} });
    await assert.rejects(job.run(), (err: unknown) => isGressError(err, "ERR_USER_FUNCTION") && /operator "score".*scoring service down/.test(err.message));
  });

  it("cancelling the job aborts the signals of the calls in flight", async () => {
    const job = new Job();
    const signals: AbortSignal[] = [];
    job
      .fromIterable([1, 2, 3])
      .mapAsync((_x, { signal }) => {
        signals.push(signal);
        return new Promise(() => {});
      })
      .sinkTo({ name: "s", write() {} });
    const running = job.run();
    await settle();
    assert.equal(signals.length, 3);
    assert.ok(signals.every((s) => !s.aborted));
    job.cancel();
    await running.catch(() => {});
    assert.ok(signals.every((s) => s.aborted));
  });
});

describe("mapAsync: checkpoints", () => {
  it("a barrier passes at once and stores the inputs (and watermarks) whose results are not out; a new run calls them again first", async () => {
    const state = memoryState();
    const job = new Job({ state });
    const first = manual<string>();
    const input = new Subject<Element<string>>();
    const seen: string[] = [];
    new Stream<string>(job, input).keyBy((s) => s).mapAsync(first.fn, { uid: "lookup" }).elements.subscribe((e) => {
      seen.push(e.kind === "record" ? String(e.value) : e.kind === "watermark" ? `w${e.timestamp}` : e.kind);
    });
    input.next(record("a", 1, "a"));
    input.next(record("b", 2, "b"));
    input.next(watermark(2));
    input.next(record("c", 3, "c"));
    first.calls[0]!.resolve("A");
    await settle();
    input.next(barrier(1));
    assert.deepEqual(seen, ["A", "barrier"], "the barrier does not wait for b and c");
    const stored = [...job.state.table<unknown>("lookup", "in-flight").entries()].map(([, , v]) => v);
    assert.deepEqual(stored, [{ v: "b", t: 2, k: "b" }, { w: 2 }, { v: "c", t: 3, k: "c" }]);
    first.calls[1]!.resolve("B");
    await settle();
    // A second subscription on the same state (a recovered run) calls b and c again, before any new input.
    const second = manual<string>();
    const input2 = new Subject<Element<string>>();
    const seen2: string[] = [];
    new Stream<string>(new Job({ state }), input2).mapAsync(second.fn, { uid: "lookup" }).records().subscribe((r) => seen2.push(`${r.value}@${r.timestamp}/${r.key}`));
    input2.next(record("d", 4, "d"));
    assert.deepEqual(
      second.calls.map((c) => c.value),
      ["b", "c", "d"],
    );
    for (const c of second.calls) c.resolve(c.value.toUpperCase());
    await settle();
    assert.deepEqual(seen2, ["B@2/b", "C@3/c", "D@4/d"]);
    // The next barrier stores only what is still in flight: nothing.
    input2.next(barrier(2));
    assert.equal(state.table("lookup", "in-flight").size, 0);
  });
});

describe("mapAsync: the final checkpoint", () => {
  it("waits for the calls still in flight when the input ends, so that it commits their results", async () => {
    const state = lmdbState({ path: join(tempDir(), "state"), durability: "process" });
    const job = new Job({ name: "final", state, checkpoints: { intervalMs: 60_000, log: () => {} } });
    // Two-phase commit: what is written after the last pre-commit is never made visible.
    const committed: number[] = [];
    const prepared = new Map<number, number[]>();
    let open: number[] = [];
    const sink: Sink<number> = {
      name: "two-phase",
      write: (v) => void open.push(v),
      preCommit: async (id) => {
        prepared.set(id, open);
        open = [];
        return id;
      },
      commit: async (id) => void committed.push(...(prepared.get(id) ?? [])),
    };
    job
      .fromIterable([1, 2, 3, 4, 5])
      .mapAsync((x) => new Promise<number>((r) => setTimeout(r, 20, x * 10)), { ordered: false })
      .sinkTo(sink);
    await job.run();
    await state.close();
    assert.deepEqual(committed.sort((a, b) => a - b), [10, 20, 30, 40, 50]);
  });
});

describe("mapAsync: cache and metrics", () => {
  it("a cache answers repeated lookups within its TTL and counts hits and misses", async () => {
    let calls = 0;
    const d = new TestDriver<{ user: string }, string>((s) =>
      s.mapAsync(
        async (v) => {
          calls++;
          return `${v.user}:${calls}`;
        },
        { cache: { maxEntries: 10, ttlMs: 1_000, key: (v) => v.user }, uid: "profiles" },
      ),
    );
    d.pipeInput({ user: "ann" }, 1);
    await settle();
    d.pipeInput({ user: "ann" }, 2).pipeInput({ user: "bob" }, 3);
    await settle();
    d.advanceProcessingTime(1_000);
    d.pipeInput({ user: "ann" }, 4);
    await settle();
    assert.deepEqual(d.readOutput(), ["ann:1", "ann:1", "bob:2", "ann:3"]);
    const m = asyncMetrics(d.job.metrics, "profiles");
    assert.equal(m.cacheHits, 1);
    assert.equal(m.cacheMisses, 3);
    assert.equal(m.calls, 3);
  });

  it("AsyncCache drops the least recently used entry beyond its bound", () => {
    const clock = new VirtualClock(0);
    const cache = new AsyncCache<string, number>({ maxEntries: 2 }, clock);
    cache.set("a", 1);
    cache.set("b", 2);
    assert.equal(cache.get("a"), 1); // a is now the most recently used
    cache.set("c", 3);
    assert.equal(cache.get("b"), undefined);
    assert.equal(cache.get("a"), 1);
    assert.equal(cache.get("c"), 3);
    assert.equal(cache.size, 2);
    assert.throws(() => new AsyncCache({ maxEntries: 0 }, clock), ConfigError);
  });

  it("AsyncCache.getOrLoad loads a missing or expired key once and answers the rest from the cache", async () => {
    const clock = new VirtualClock(0);
    const cache = new AsyncCache<string, string>({ maxEntries: 10, ttlMs: 100 }, clock);
    let loads = 0;
    const load = async (): Promise<string> => `v${++loads}`;
    assert.equal(await cache.getOrLoad("k", load), "v1");
    assert.equal(await cache.getOrLoad("k", load), "v1");
    clock.advance(100);
    assert.equal(await cache.getOrLoad("k", load), "v2", "expired after ttlMs");
    assert.equal(await cache.getOrLoad("u", async () => undefined as unknown as string), undefined);
    assert.equal(cache.size, 1, "undefined is not stored");
    assert.deepEqual([cache.hits, cache.misses], [1, 3]);
  });

  it("exports the in-flight gauge, call latency histogram, timeouts and retries to Prometheus", async () => {
    const job = new Job();
    job
      .fromIterable([1, 2, 3])
      .mapAsync(async (x) => x, { uid: "ident" })
      .sinkTo({ name: "s", write() {} });
    await job.run();
    const text = await job.metrics.text();
    assert.match(text, /gress_async_in_flight\{operator="ident",job="gress"\} 0/);
    assert.match(text, /gress_async_call_duration_seconds_count\{operator="ident",job="gress"\} 3/);
    assert.match(text, /gress_async_call_duration_seconds_bucket\{le="\+Inf",operator="ident",job="gress"\} 3/);
    assert.match(text, /gress_async_timeouts_total\{operator="ident",job="gress"\} 0/);
    assert.match(text, /gress_async_retries_total\{operator="ident",job="gress"\} 0/);
  });
});
