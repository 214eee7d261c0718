import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { of } from "rxjs";
import { LoggedSource } from "../../connectors/ingest-log/source.ts";
import { DEAD_LETTERS, fromAsyncIterable, fromObservable, isGressError, Job, type SideRecord, sinkFn, type Stream } from "../../lib/index.ts";
import { tempDirs } from "../support/temp.ts";

// A source's timestamp function is a user function: a throw or a bad result is handled by the job's
// onUserError policy, as in operators, never an uncaught exception.

/** Runs `stream`'s job, collecting its values and its dead letters with their reasons. */
async function drain<T>(job: Job, stream: Stream<T>): Promise<{ values: T[]; dead: SideRecord[] }> {
  const values: T[] = [];
  const dead: SideRecord[] = [];
  stream.sinkTo(sinkFn("out", (v) => void values.push(v)));
  stream.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
  await job.run();
  return { values, dead };
}

const tempDir = tempDirs("gress-ts-logged-");
const n = 10_000; // more than one batch of the iterable source, so the failure happens on a later turn
const stampFailingAt =
  (bad: number) =>
  (v: number): number => {
    if (v === bad) throw new Error(`no time for ${v}`);
    return v;
  };

describe("timestamp functions of sources", () => {
  it("fromIterable: a throwing timestamp function sends that value to dead letters, named, and the rest goes on", async () => {
    const job = new Job({ name: "ts-throws" });
    const { values, dead } = await drain(job, job.fromIterable(Array.from({ length: n }, (_, i) => i), { name: "nums", timestamp: stampFailingAt(9_000) }));
    assert.equal(values.length, n - 1);
    assert.ok(!values.includes(9_000));
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.value, 9_000);
    assert.equal(dead[0]!.reason, 'timestamp function of source "nums" threw: no time for 9000');
    assert.equal(job.metrics.operator("source:nums").deadLetters, 1);
  });

  it("fromIterable: a timestamp that is not a finite number is a dead letter too", async () => {
    const job = new Job({ name: "ts-nan" });
    const { values, dead } = await drain(job, job.fromIterable([1, 2, 3], { name: "nums", timestamp: (v) => (v === 2 ? Number.NaN : v) }));
    assert.deepEqual(values, [1, 3]);
    assert.match(dead[0]!.reason, /timestamp function of source "nums" threw: timestamp must be a finite number, got NaN/);
  });

  it("fromIterable with onUserError 'fail': the job fails with a UserFunctionError naming the source", async () => {
    const job = new Job({ name: "ts-fail", onUserError: "fail" });
    job.fromIterable(Array.from({ length: n }, (_, i) => i), { name: "nums", timestamp: stampFailingAt(9_000) }).sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_USER_FUNCTION") && /source "nums" threw: no time for 9000/.test(e.message));
  });

  it("with onUserError 'fail' the source stops reading at the failure: no more values are pulled or stamped", async () => {
    let pulled = 0;
    let stamped = 0;
    function* numbers(): Generator<number> {
      for (let i = 0; i < n; i++) {
        pulled++;
        yield i;
      }
    }
    const job = new Job({ name: "ts-fail-stops", onUserError: "fail" });
    job
      .fromIterable(numbers(), {
        timestamp: (v) => {
          stamped++;
          return stampFailingAt(10)(v);
        },
      })
      .sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), /no time for 10/);
    assert.equal(stamped, 11);
    assert.equal(pulled, 11);
  });

  it("fromIterable: an iterable that cannot even start fails the job with a SourceError naming the source", async () => {
    const broken: Iterable<number> = {
      [Symbol.iterator]() {
        throw new Error("cannot iterate");
      },
    };
    const job = new Job({ name: "iter-broken" });
    job.fromIterable(broken, { name: "broken" }).sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_SOURCE") && /iterable source "broken" failed at index 0: cannot iterate/.test(e.message));
  });

  it("fromIterable: an iterable that throws fails the job with a SourceError naming the source and the index", async () => {
    function* numbers(): Generator<number> {
      for (let i = 0; i < n; i++) {
        if (i === 5_000) throw new Error("generator broke");
        yield i;
      }
    }
    const job = new Job({ name: "iter-throws" });
    job.fromIterable(numbers(), { name: "gen" }).sinkTo(sinkFn("out", () => {}));
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_SOURCE") && /iterable source "gen" failed at index 5000: generator broke/.test(e.message));
  });

  it("fromObservable and fromAsyncIterable: a throwing timestamp function is a dead letter", async () => {
    const job = new Job({ name: "ts-rx" });
    const rx = await drain(job, fromObservable(of(1, 2, 3), { job, name: "rx", timestamp: stampFailingAt(2) }));
    assert.deepEqual(rx.values, [1, 3]);
    assert.deepEqual(
      rx.dead.map((d) => d.reason),
      ['timestamp function of source "rx" threw: no time for 2'],
    );

    async function* gen(): AsyncGenerator<number> {
      yield* [1, 2, 3];
    }
    const job2 = new Job({ name: "ts-async" });
    const it2 = await drain(job2, fromAsyncIterable(gen(), { job: job2, name: "async", timestamp: stampFailingAt(3) }));
    assert.deepEqual(it2.values, [1, 2]);
    assert.deepEqual(
      it2.dead.map((d) => d.reason),
      ['timestamp function of source "async" threw: no time for 3'],
    );
  });
});

describe("timestamp functions of logged sources (WebSocket, HTTP)", () => {
  it("a throwing timestamp function is a dead letter with the reason, and is not counted as emitted", async () => {
    const dir = await tempDir();
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    let opened: () => void = () => {};
    const open = new Promise<void>((resolve) => (opened = resolve));
    const source = new LoggedSource<number>({
      name: "logged",
      dir,
      fsync: false,
      decode: (entry) => [{ decoded: { ok: true, value: Number(dec.decode(entry.body)) }, raw: entry.body }],
      timestamp: stampFailingAt(2),
      onOpen: () => opened(),
    });
    const job = new Job({ name: "ts-logged" });
    const stream = job.source(source);
    const values: number[] = [];
    const dead: SideRecord[] = [];
    stream.sinkTo(sinkFn("out", (v) => void values.push(v)));
    const deadLetters = stream.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
    const running = job.run();
    await open; // replay of the (empty) log is over: appends go live
    await source.append([1, 2, 3].map((i) => ({ receivedAt: i, meta: "", body: enc.encode(String(i)) })));
    while (values.length + dead.length < 3) await new Promise((r) => setTimeout(r, 5));
    // The source runs until its last subscriber leaves: our side-output subscription, then the job's sink.
    deadLetters.unsubscribe();
    job.cancel();
    await running; // settles once the source closed its log files
    await assert.rejects(source.append([{ receivedAt: 4, meta: "", body: enc.encode("4") }]), /source "logged" is not open/);
    assert.deepEqual(values, [1, 3]);
    assert.deepEqual(
      dead.map((d) => [d.value, d.reason]),
      [[2, 'timestamp function of source "logged" threw: no time for 2']],
    );
    assert.deepEqual(source.counts, { appended: 3, emitted: 2, deadLetters: 1 });
  });
});
