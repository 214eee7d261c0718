/**
 * Restart strategies (lib/restart.ts) and restarts inside job.run(): the back-off on virtual time, the limits
 * that end a job (attempts, failure rate, non-recoverable errors, `none`), cancel() during a back-off, the
 * metrics, and a checkpointed job whose sink fails mid-run ending with exactly-once output.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileSink, readCommitted } from "../../connectors/file/index.ts";
import {
  ConfigError,
  generator,
  isGressError,
  Job,
  monotonic,
  type Sink,
  type Source,
  type SourceContext,
  SourceError,
  sinkFn,
  tumbling,
  VirtualClock,
  type WindowResult,
} from "../../lib/index.ts";
import { latestCheckpoint } from "../../lib/checkpoint/storage.ts";
import { isRestartable, nonRecoverable, type RestartOptions, RestartTracker, restartLine } from "../../lib/restart.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { sequencePerKey } from "../support/sequence.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-restart-");

/** Polls `cond` between turns of the event loop (real time, at most 10 s). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** A source whose first `failures` opens fail with `error()`; then it emits 1, 2, 3 and ends. */
class FlakySource implements Source<number> {
  readonly name = "flaky";
  opens = 0;
  readonly #failures: number;
  readonly #error: () => unknown;
  constructor(failures: number, error: () => unknown = () => new SourceError("broker down\nat some.internal.frame")) {
    this.#failures = failures;
    this.#error = error;
  }
  open(ctx: SourceContext<number>): void {
    this.opens++;
    if (this.opens <= this.#failures) throw this.#error();
    for (const v of [1, 2, 3]) ctx.emit(v);
    ctx.end();
  }
  pause(): void {}
  resume(): void {}
  close(): void {}
  positions(): Record<string, number> {
    return {};
  }
}

/** A job on virtual time reading `source` into `out`, logging restarts into `log`. */
function flakyJob(source: Source<number>, restart: RestartOptions, log: string[], out: number[] = []): { job: Job; clock: VirtualClock } {
  const clock = new VirtualClock(1_000_000);
  const job = new Job({ name: "flaky", clock, restart: { ...restart, log: (m) => log.push(m) } });
  job.source(source).sinkTo(sinkFn("out", (v) => void out.push(v)));
  return { job, clock };
}

describe("restart strategies", () => {
  it("exponential-backoff waits initial, then multiplier times longer up to the maximum, and resets after a stable period", () => {
    const t = new RestartTracker({ strategy: "exponential-backoff", initialDelayMs: 1000, multiplier: 2, maxDelayMs: 5000, jitter: 0, resetAfterMs: 60_000 });
    const err = new SourceError("down");
    const delays = [0, 1, 2, 3, 4].map((i) => {
      const d = t.onFailure(err, 10_000 + i, 10_000 + i);
      assert.ok(d.restart);
      return [d.delayMs, d.attempt];
    });
    assert.deepEqual(delays, [
      [1000, 1],
      [2000, 2],
      [4000, 3],
      [5000, 4],
      [5000, 5],
    ]);
    // This attempt ran 60 s before failing: the back-off starts over.
    const after = t.onFailure(err, 200_000, 140_000);
    assert.ok(after.restart);
    assert.deepEqual([after.delayMs, after.attempt], [1000, 1]);
  });

  it("jitter moves each wait by at most ±jitter of itself", () => {
    const low = new RestartTracker({ strategy: "exponential-backoff", initialDelayMs: 1000, jitter: 0.2 }, () => 0);
    const high = new RestartTracker({ strategy: "exponential-backoff", initialDelayMs: 1000, jitter: 0.2 }, () => 0.999_999);
    const d1 = low.onFailure(new Error("x"), 0, 0);
    const d2 = high.onFailure(new Error("x"), 0, 0);
    assert.ok(d1.restart && d2.restart);
    assert.equal(d1.delayMs, 800);
    assert.equal(d2.delayMs, 1200);
  });

  it("fixed-delay allows `attempts` restarts; exponential-backoff with attempts counts since the last reset", () => {
    const fixed = new RestartTracker({ strategy: "fixed-delay", attempts: 2, delayMs: 50 });
    const decisions = [0, 1, 2].map((i) => fixed.onFailure(new Error("x"), i, i));
    assert.deepEqual(
      decisions.map((d) => (d.restart ? `restart ${d.attempt}/${d.maxAttempts} in ${d.delayMs}` : d.reason)),
      ["restart 1/2 in 50", "restart 2/2 in 50", "all 2 restart attempts were used"],
    );
    const exp = new RestartTracker({ strategy: "exponential-backoff", attempts: 1, jitter: 0, resetAfterMs: 1000 });
    assert.ok(exp.onFailure(new Error("x"), 0, 0).restart);
    assert.equal(exp.onFailure(new Error("x"), 10, 5).restart, false);
    assert.ok(exp.onFailure(new Error("x"), 5000, 3000).restart, "a stable attempt resets the count");
  });

  it("the failure-rate limit counts the failures within the interval", () => {
    const t = new RestartTracker({ strategy: "fixed-delay", attempts: 100, delayMs: 0, failureRate: { maxFailures: 2, intervalMs: 1000 } });
    assert.ok(t.onFailure(new Error("x"), 0, 0).restart);
    assert.ok(t.onFailure(new Error("x"), 600, 600).restart);
    assert.ok(t.onFailure(new Error("x"), 1200, 1200).restart, "the failure at 0 is out of the window (200, 1200]");
    const d = t.onFailure(new Error("x"), 1300, 1300);
    assert.equal(d.restart, false);
    assert.match(d.restart ? "" : d.reason, /3 failures within 1000 ms exceed the failure-rate limit of 2/);
  });

  it("configuration errors, pattern errors and errors marked nonRecoverable (also as a cause) do not restart", () => {
    assert.equal(isRestartable(new ConfigError("bad", [])), false);
    assert.equal(isRestartable(new SourceError("wrapped", { cause: new ConfigError("bad", []) })), false);
    assert.equal(isRestartable(new SourceError("wrapped", { cause: nonRecoverable(new Error("poison")) })), false);
    assert.equal(isRestartable(new SourceError("down")), true);
    assert.equal(isRestartable(new TypeError("a user function threw")), true);
    const d = new RestartTracker({ strategy: "fixed-delay" }).onFailure(new ConfigError("bad", []), 0, 0);
    assert.deepEqual(d, { restart: false, reason: "ERR_CONFIG is not recoverable" });
  });

  it("a restart logs one line: number, wait, error code and the first line of the message", () => {
    const line = restartLine({ restart: true, attempt: 2, maxAttempts: 5, delayMs: 4000 }, new SourceError("broker down\n    at frame (x.ts:1)"));
    assert.equal(line, "restart 2/5 in 4.0 s after ERR_SOURCE: broker down");
    assert.equal(restartLine({ restart: true, attempt: 7, maxAttempts: undefined, delayMs: 250 }, new TypeError("boom")), "restart 7 in 0.3 s after TypeError: boom");
  });

  it("the job option is validated, and errors name the field", () => {
    assert.throws(
      () => new Job({ restart: { strategy: "fixed-delay", delayMs: -1 } }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /job\.restart\.delayMs/.test(e.message),
    );
    assert.throws(
      () => new Job({ restart: { strategy: "sometimes" } as unknown as RestartOptions }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /job\.restart\.strategy/.test(e.message),
    );
    assert.throws(
      () => new Job({ restart: { strategy: "exponential-backoff", initialDelayMs: 10_000, maxDelayMs: 1000 } }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /job\.restart\.maxDelayMs: initialDelayMs must not exceed maxDelayMs/.test(e.message),
    );
    assert.throws(
      () => new Job({ restart: { strategy: "none", attempts: 3 } as unknown as RestartOptions }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /job\.restart/.test(e.message) && /attempts/.test(e.message),
    );
  });
});

describe("restarts in job.run()", () => {
  it("waits the back-off on the job's clock before each restart, then completes", async () => {
    const source = new FlakySource(4);
    const log: string[] = [];
    const out: number[] = [];
    const { job, clock } = flakyJob(source, { strategy: "exponential-backoff", initialDelayMs: 1000, multiplier: 2, maxDelayMs: 5000, jitter: 0 }, log, out);
    const done = job.run();
    for (const [n, delay] of [
      [1, 1000],
      [2, 2000],
      [3, 4000],
      [4, 5000],
    ] as const) {
      await until(() => log.length === n, `restart ${n}`);
      assert.equal(log[n - 1], `restart ${n} in ${(delay / 1000).toFixed(1)} s after ERR_SOURCE: broker down`);
      clock.advance(delay - 1);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(source.opens, n, `restart ${n} waits the whole back-off`);
      clock.advance(1);
      await until(() => source.opens === n + 1, `open ${n + 1}`);
    }
    await done;
    assert.deepEqual(out, [1, 2, 3], "the output of the attempt that succeeded, once");
    assert.equal(job.metrics.restarts, 4);
    const text = await job.metrics.text();
    assert.match(text, /gress_job_restarts_total\{job="flaky"\} 4/);
    assert.match(text, /gress_job_last_failure_info\{code="ERR_SOURCE",job="flaky"\} 1/);
    assert.match(text, new RegExp(`gress_job_last_failure_timestamp_seconds\\{job="flaky"\\} ${(1_000_000 + 1000 + 2000 + 4000) / 1000}`));
    assert.match(text, /gress_job_uptime_seconds\{job="flaky"\} 0/, "not running any more");
  });

  it("reports the uptime of the running attempt on the job's clock", async () => {
    const clock = new VirtualClock(0);
    const job = new Job({ name: "up", clock });
    let ctxRef: SourceContext<number> | undefined;
    job
      .source<number>({
        name: "manual",
        open: (ctx) => void (ctxRef = ctx),
        pause() {},
        resume() {},
        close() {},
      })
      .sinkTo(sinkFn("out", () => {}));
    const done = job.run();
    await until(() => ctxRef !== undefined, "open");
    clock.advance(2500);
    assert.match(await job.metrics.text(), /gress_job_uptime_seconds\{job="up"\} 2\.5/);
    assert.match(await job.metrics.text(), /gress_job_last_failure_timestamp_seconds\{job="up"\} 0\n/, "no failure yet");
    assert.doesNotMatch(await job.metrics.text(), /gress_job_last_failure_info\{/, "no failure yet");
    ctxRef?.end();
    await done;
  });

  it("the failure-rate limit ends the job with its error", async () => {
    const source = new FlakySource(Number.POSITIVE_INFINITY);
    const log: string[] = [];
    const { job, clock } = flakyJob(source, { strategy: "fixed-delay", attempts: 100, delayMs: 100, failureRate: { maxFailures: 2, intervalMs: 1000 } }, log);
    const done = job.run();
    for (const n of [1, 2]) {
      await until(() => log.length === n, `restart ${n}`);
      clock.advance(100);
    }
    await assert.rejects(done, (e: unknown) => isGressError(e, "ERR_SOURCE") && e.message.startsWith("broker down"));
    assert.equal(source.opens, 3);
    assert.deepEqual(log, [
      "restart 1/100 in 0.1 s after ERR_SOURCE: broker down",
      "restart 2/100 in 0.1 s after ERR_SOURCE: broker down",
      "not restarted: 3 failures within 1000 ms exceed the failure-rate limit of 2",
    ]);
  });

  it("`none` (the default) fails at once", async () => {
    const source = new FlakySource(1);
    const job = new Job({ name: "plain" });
    job.source(source).sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_SOURCE"));
    assert.equal(source.opens, 1);
    assert.equal(job.metrics.restarts, 0);
    assert.equal(job.restart.strategy, "none");
  });

  it("a non-recoverable error ends the job at once, whatever the strategy", async () => {
    const source = new FlakySource(5, () => new SourceError("cannot parse the topic option", { cause: new ConfigError("bad topic", []) }));
    const log: string[] = [];
    const { job } = flakyJob(source, { strategy: "fixed-delay", attempts: 5, delayMs: 10 }, log);
    await assert.rejects(job.run(), /cannot parse the topic option/);
    assert.equal(source.opens, 1);
    assert.deepEqual(log, ["not restarted: ERR_SOURCE is not recoverable"]);
  });

  it("a user function failing under onUserError 'fail' restarts like any failure, until the attempts are used", async () => {
    const clock = new VirtualClock(0);
    const log: string[] = [];
    const job = new Job({ name: "udf", clock, onUserError: "fail", restart: { strategy: "fixed-delay", attempts: 2, delayMs: 0, log: (m) => log.push(m) } });
    const seen: number[] = [];
    job
      .fromIterable([1, 2, 3])
      .map((x) => {
        seen.push(x);
        if (x === 2) throw new Error("two is bad");
        return x;
      })
      .sinkTo(sinkFn("out", () => {}));
    const done = job.run();
    for (const n of [1, 2]) {
      await until(() => log.length === n, `restart ${n}`);
      clock.advance(0);
    }
    await assert.rejects(done, (e: unknown) => isGressError(e, "ERR_USER_FUNCTION"));
    assert.deepEqual(seen, [1, 2, 1, 2, 1, 2], "three attempts, each from the start");
    assert.match(log[0] ?? "", /^restart 1\/2 in 0\.0 s after ERR_USER_FUNCTION: .*two is bad/);
    assert.equal(log[2], "not restarted: all 2 restart attempts were used");
  });

  it("cancel() during a back-off ends run() at once, without a restart", async () => {
    const source = new FlakySource(1);
    const log: string[] = [];
    const { job, clock } = flakyJob(source, { strategy: "fixed-delay", attempts: 3, delayMs: 60_000 }, log);
    const done = job.run();
    await until(() => log.length === 1, "the first restart's back-off");
    const before = Date.now();
    job.cancel();
    await done;
    assert.ok(Date.now() - before < 1000, "run() settled without waiting the back-off");
    assert.equal(source.opens, 1, "no restart after cancel()");
    assert.equal(clock.pendingTimers, 0, "the back-off timer was cancelled");
  });

  it("a checkpointed job whose sink fails mid-run restarts from its last checkpoint: exactly-once output and state", async () => {
    const dir = tempDir();
    const out = join(dir, "out");
    const state = new LmdbStateBackend({ path: join(dir, "state"), mapSize: 64 * 1024 * 1024, durability: "process" });
    const log: string[] = [];
    const cpLog: string[] = [];
    const job = new Job({
      name: "sink-fails",
      state,
      // A bounded checkpoint timeout, so that a checkpoint stuck on the failed attempt's writes fails the test.
      checkpoints: { intervalMs: 15, timeoutMs: 3000, log: (m) => cpLog.push(m) },
      restart: { strategy: "fixed-delay", attempts: 3, delayMs: 5, log: (m) => log.push(m) },
    });
    const total = 30_000;
    const inner = fileSink<{ key: string; seq: number; i: number }>({ dir: out, name: "out" });
    // The first two attempts lose the "connection" after some writes, once a checkpoint has completed.
    let attempts = 0;
    let writes = 0;
    const failing: Sink<{ key: string; seq: number; i: number }> = {
      name: "out",
      open() {
        attempts++;
        writes = 0;
        return inner.open();
      },
      write(v) {
        if (attempts <= 2 && ++writes > 4000 && job.metrics.checkpointsCompleted >= attempts) {
          const lost = new Error(`connection lost (attempt ${attempts})`);
          // The first attempt's write fails asynchronously (as a client library's does), the second's at once.
          if (attempts === 1) return Promise.reject(lost);
          throw lost;
        }
        return inner.write(v);
      },
      preCommit: (id) => inner.preCommit(id),
      commit: (id, h) => inner.commit(id, h),
      abort: (id, h) => inner.abort(id, h),
      flush: () => inner.flush(),
      close: () => inner.close(),
    };
    job
      .source(generator({ name: "events", seed: 3, count: total, ratePerSecond: 40_000, make: (i, _t, r) => ({ i, key: `k${r.int(5)}` }) }))
      .keyBy((e) => e.key)
      .process(sequencePerKey())
      .sinkTo(failing);
    await job.run();
    await state.close();
    assert.equal(attempts, 3);
    assert.deepEqual(
      log.map((l) => l.replace(/attempt \d/, "attempt N")),
      [
        'restart 1/3 in 0.0 s after ERR_SINK: sink "out" failed to write: connection lost (attempt N)',
        'restart 2/3 in 0.0 s after ERR_SINK: sink "out" failed to write: connection lost (attempt N)',
      ],
    );
    assert.ok(
      cpLog.some((l) => /recovered checkpoint \d+/.test(l)),
      `the restart recovered a checkpoint: ${cpLog.join(" | ")}`,
    );
    const all = readCommitted<{ key: string; seq: number; i: number }>(out, "out");
    assert.equal(all.length, total, "every event in the committed output");
    assert.equal(new Set(all.map((r) => r.i)).size, total, "each exactly once");
    // The per-key sequence numbers live in keyed state: 1..n per key only if the restart rolled the state back.
    const byKey = new Map<string, number[]>();
    for (const r of all) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r.seq]);
    for (const [k, seqs] of byKey) {
      seqs.sort((a, b) => a - b);
      assert.deepEqual(seqs, seqs.map((_, j) => j + 1), `key ${k}`);
    }
    assert.equal(job.metrics.restarts, 2, `restarts: ${log.join(" | ")}`);
  });
});

describe("job.stop()", () => {
  it("without checkpoints, ends every source's input: all windows fire, every record read is counted, run() resolves", async () => {
    const job = new Job({ name: "drain" });
    const out: WindowResult<string, number>[] = [];
    job
      .source(generator({ name: "ticks", ratePerSecond: 5_000, make: (i) => ({ i, key: `k${i % 3}` }) }), { watermarks: monotonic({ timestamp: (e) => e.i }) })
      .keyBy((e) => e.key)
      .window(tumbling(100))
      .count()
      .sinkTo(sinkFn("out", (w) => void out.push(w)));
    const done = job.run();
    await until(() => out.length > 3, "some windows");
    await job.stop();
    await done;
    const read = job.metrics.source("ticks").emitted;
    assert.equal(
      out.reduce((n, w) => n + w.value, 0),
      read,
      "the last, partial windows fired too: every record read is in a window",
    );
  });

  it("with checkpoints, takes a last checkpoint that commits everything read and keeps the state; the next start resumes there", async () => {
    const dir = tempDir();
    const out = join(dir, "out");
    const lmdb = (): LmdbStateBackend => new LmdbStateBackend({ path: join(dir, "state"), mapSize: 64 * 1024 * 1024, durability: "process" });
    const build = (job: Job, count?: number): void => {
      job
        .source(generator({ name: "events", seed: 9, ...(count === undefined ? {} : { count }), ratePerSecond: 10_000, make: (i, _t, r) => ({ i, key: `k${r.int(4)}` }) }))
        .keyBy((e) => e.key)
        .process(sequencePerKey())
        .sinkTo(fileSink<{ key: string; seq: number; i: number }>({ dir: out, name: "out" }));
    };
    const first = new Job({ name: "stopping", state: lmdb(), checkpoints: { intervalMs: 60_000, log: () => {} } });
    build(first);
    const done = first.run();
    await until(() => first.metrics.source("events").emitted > 2_000, "records");
    await first.stop();
    await done;
    const position = (latestCheckpoint((first.state as LmdbStateBackend).meta)?.positions.events as Record<string, number> | undefined)?.events ?? 0;
    await first.state.close();
    const committed = readCommitted<{ key: string; seq: number; i: number }>(out, "out");
    assert.equal(first.metrics.checkpointsCompleted, 1, "the one checkpoint is the stop's");
    assert.equal(committed.length, position, "everything before the stop's checkpoint is committed");
    assert.ok(position > 2_000);

    const total = position + 1_000;
    const second = new Job({ name: "stopping", state: lmdb(), checkpoints: { intervalMs: 20, log: () => {} } });
    build(second, total);
    await second.run();
    await second.state.close();
    const all = readCommitted<{ key: string; seq: number; i: number }>(out, "out");
    assert.deepEqual(
      all.map((r) => r.i).sort((a, b) => a - b),
      Array.from({ length: total }, (_, i) => i),
      "resumed at the stop's position: each event once",
    );
    const byKey = new Map<string, number[]>();
    for (const r of all) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r.seq]);
    for (const [k, seqs] of byKey) {
      seqs.sort((a, b) => a - b);
      assert.deepEqual(seqs, seqs.map((_, j) => j + 1), `key ${k}: the state was kept`);
    }
  });
});
