/**
 * gress/testing's checkExactlyOnce: it passes on exactly-once pipelines (keyed state, windows, CEP) under
 * random crash schedules, and each crash point catches the bug it exists for, with a shrunk counterexample:
 * a sink that commits before the checkpoint is durable (during a checkpoint), an operator that keeps state
 * outside the state backend (between records), a sink that keeps pre-committed data only in its process
 * (after a pre-commit), a commit that is not idempotent (after a commit; during recovery).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { match, pattern } from "../../cep/index.ts";
import { aggregate, boundedOutOfOrderness, broadcastState, type ProcessFunction, record, type Sink, type Stream, tumbling } from "../../lib/index.ts";
import {
  type CrashSchedule,
  checkExactlyOnce,
  type InspectableSink,
  multiInput,
  runWithCrashes,
  type Tagged,
  type Timestamped,
  timestampedEvents,
  transactionalMemorySink,
} from "../../lib/testing/index.ts";

interface Tx {
  readonly card: string;
  readonly amount: number;
}

/** Running total per card in keyed state. */
const runningTotal: ProcessFunction<Tx, string, string> = {
  processElement(tx, ctx) {
    const sum = ctx.state.value<number>("sum");
    const next = (sum.value() ?? 0) + tx.amount;
    sum.update(next);
    ctx.emit(`${tx.card}=${next}`);
  },
};
const totals = (s: Stream<Tx>): Stream<string> => s.keyBy((t) => t.card).process(runningTotal);

const txs = timestampedEvents(fc.record({ card: fc.constantFrom("c1", "c2"), amount: fc.integer({ min: 1, max: 9 }) }), { maxLength: 10, maxGapMs: 400 });
const fixed: Timestamped<Tx>[] = Array.from({ length: 8 }, (_, i) => ({ value: { card: `c${i % 2}`, amount: i + 1 }, timestamp: i * 100 }));

/** Runs the property and returns fast-check's details (fc.check: no throw). */
async function run(property: ReturnType<typeof checkExactlyOnce<Tx, string>>, numRuns: number, seed = 7): Promise<fc.RunDetails<[Timestamped<Tx>[], CrashSchedule]>> {
  return fc.check(property, { numRuns, seed });
}

/** The property failed, and its error says what the check says for this kind of failure. */
function assertCaught(details: fc.RunDetails<[Timestamped<Tx>[], CrashSchedule]>, message: RegExp): [Timestamped<Tx>[], CrashSchedule] {
  assert.equal(details.failed, true, "the check caught the bug");
  const error = String((details.errorInstance as Error | undefined)?.message);
  assert.match(error, /not exactly-once/);
  assert.match(error, message);
  return details.counterexample!;
}

/** A sink with two-phase commit methods whose behaviour a test can break in one place. */
function sinkWith(overrides: (base: { visible: string[]; prepared: Map<number, string[]>; open: string[] }) => Partial<Sink<string>>): () => InspectableSink<string> {
  return () => {
    const st = { visible: [] as string[], prepared: new Map<number, string[]>(), open: [] as string[] };
    const base: Sink<string> = {
      name: "user-sink",
      open() {
        st.open = [];
      },
      write(v) {
        st.open.push(v);
      },
      async preCommit(id) {
        st.prepared.set(id, st.open);
        st.open = [];
        return id;
      },
      async commit(id) {
        const txn = st.prepared.get(id);
        if (txn === undefined) return;
        st.visible.push(...txn);
        st.prepared.delete(id);
      },
      async abort(id) {
        st.prepared.delete(id);
      },
      close() {
        st.open = [];
      },
    };
    return { ...base, ...overrides(st), committed: () => [...st.visible] };
  };
}

describe("checkExactlyOnce passes on exactly-once pipelines", () => {
  it("keyed state (running totals), random inputs and crash schedules", async () => {
    const details = await run(checkExactlyOnce(totals, txs), 25);
    assert.equal(details.failed, false, String(details.errorInstance));
    assert.equal(details.numRuns, 25);
  });

  it("event-time windows with watermarks from the pipeline", async () => {
    const windows = (s: Stream<Tx>): Stream<string> =>
      s
        .withTimestamps(boundedOutOfOrderness(200, { everyRecords: 1 }))
        .keyBy((t) => t.card)
        .window(tumbling(1_000))
        .aggregate(aggregate<Tx, number, number>({ create: () => 0, add: (a, t) => a + t.amount, merge: (a, b) => a + b, result: (a) => a }))
        .map((w) => `${w.key}@${w.start}=${w.value}`);
    const details = await fc.check(checkExactlyOnce(windows, txs), { numRuns: 20, seed: 11 });
    assert.equal(details.failed, false, String(details.errorInstance));
  });

  it("CEP matches per key", async () => {
    const big = (s: Stream<Tx>): Stream<string> =>
      match(
        s.keyBy((t) => t.card),
        pattern<Tx>()
          .begin("small")
          .where((t) => t.amount < 4)
          .followedBy("large")
          .where((t) => t.amount > 6),
        { uid: "big" },
      ).map((r) => `${r.kind}:${JSON.stringify(r.events)}`);
    const details = await fc.check(checkExactlyOnce(big, txs), { numRuns: 20, seed: 13 });
    assert.equal(details.failed, false, String(details.errorInstance));
  });

  it("every crash point on a fixed input, with the in-memory transactional sink", async () => {
    const schedules: CrashSchedule[] = [
      { checkpointEvery: 2, crashes: [{ at: "records", n: 5 }] },
      { checkpointEvery: 2, crashes: [{ at: "checkpoint", n: 2 }] },
      { checkpointEvery: 2, crashes: [{ at: "pre-commit", n: 2 }] },
      { checkpointEvery: 2, crashes: [{ at: "commit", n: 2 }] },
      { checkpointEvery: 2, crashes: [{ at: "pre-commit", n: 1 }, { at: "recovery" }, { at: "records", n: 3 }] },
    ];
    const details = await fc.check(checkExactlyOnce(totals, fixed, { schedules }), { numRuns: 40, seed: 1 });
    assert.equal(details.failed, false, String(details.errorInstance));
  });

  it("runWithCrashes: one run through a schedule, with the committed output and where each crash happened", async () => {
    const run = await runWithCrashes(totals, fixed, { checkpointEvery: 3, crashes: [{ at: "records", n: 5 }, { at: "checkpoint", n: 1 }, { at: "commit", n: 9 }] });
    assert.deepEqual(run.crashes, ["before input record 5 ({amount:5,card:c0}@400)", "during checkpoint 1 of the run (its state transaction not written)"]);
    assert.deepEqual(run.committed.sort(), ["c0=1", "c0=4", "c0=9", "c0=16", "c1=2", "c1=6", "c1=12", "c1=20"].sort());
  });

  it("the in-memory transactional sink: invisible until committed, idempotent commit, aborted and stale transactions never visible", async () => {
    const sink = transactionalMemorySink<string>("t");
    sink.open?.({ jobName: "j", checkpointIntervalMs: 10 });
    await sink.write("a", record("a", 0));
    const h1 = await sink.preCommit!(1);
    await sink.write("b", record("b", 0));
    const h2 = await sink.preCommit!(2);
    await sink.write("c", record("c", 0));
    await sink.preCommit!(3);
    assert.deepEqual(sink.committed(), []);
    await sink.commit!(1, h1);
    await sink.commit!(1, h1);
    await sink.abort!(2, h2);
    sink.close?.();
    assert.deepEqual(sink.committed(), ["a"]);
    await assert.rejects(sink.commit!(2, h2) as Promise<unknown>, /commit of transaction 2, which was never prepared/);
  });
});

describe("checkExactlyOnce catches what breaks exactly-once, and shrinks it", () => {
  it("a sink that commits before the checkpoint is durable (in its pre-commit): caught by a crash during a checkpoint", async () => {
    const eager = sinkWith((st) => ({
      async preCommit(id) {
        st.visible.push(...st.open);
        st.open = [];
        return id;
      },
    }));
    const details = await run(checkExactlyOnce(totals, txs, { sink: eager }), 100);
    const [input, schedule] = assertCaught(details, /in the run with crashes, not in the failure-free run/);
    assert.ok(schedule.crashes.some((c) => c.at === "checkpoint"), `shrunk to a crash during a checkpoint: ${fc.stringify(schedule)}`);
    assert.ok(input.length <= 2, `shrunk to at most 2 records: ${fc.stringify(input)}`);
    // The printed counterexample is short: the events in the notation of events(), the schedule in one line.
    assert.match(fc.stringify(details.counterexample), /^\[\{amount:\d,card:c\d\}@\d+[^\]]*,every \d: [^\]]*checkpoint#\d[^\]]*\]$/);
  });

  it("an operator that keeps state outside the state backend: caught by a crash between records", async () => {
    const outside = (s: Stream<Tx>): Stream<string> => {
      const sums = new Map<string, number>();
      return s.map((t) => {
        const next = (sums.get(t.card) ?? 0) + t.amount;
        sums.set(t.card, next);
        return `${t.card}=${next}`;
      });
    };
    const details = await run(checkExactlyOnce(outside, txs), 100);
    const [input, schedule] = assertCaught(details, /missing from the run with crashes/);
    assert.ok(input.length <= 3, `shrunk to at most 3 records: ${fc.stringify(input)}`);
    assert.ok(schedule.crashes.length <= 2, `shrunk to at most 2 crashes: ${fc.stringify(schedule)}`);
    // The same pipeline with its state in the backend passes the same schedule and input.
    const again = await fc.check(checkExactlyOnce(totals, input, { schedules: [schedule] }), { numRuns: 1 });
    assert.equal(again.failed, false, String(again.errorInstance));
  });

  it("a sink that keeps pre-committed transactions only in its process: caught by a crash after a pre-commit", async () => {
    const forgetful = sinkWith((st) => ({
      close() {
        st.open = [];
        st.prepared.clear();
      },
    }));
    const schedule: CrashSchedule = { checkpointEvery: 2, crashes: [{ at: "pre-commit", n: 2 }] };
    const caught = await fc.check(checkExactlyOnce(totals, fixed, { sink: forgetful, schedules: [schedule] }), { numRuns: 1 });
    assertCaught(caught, /after the sink pre-committed checkpoint 2 of the run[\s\S]*missing from the run with crashes/);
    // Crashes elsewhere do not reveal it: the crash point matters.
    const elsewhere = await fc.check(checkExactlyOnce(totals, fixed, { sink: forgetful, schedules: [{ checkpointEvery: 2, crashes: [{ at: "commit", n: 2 }] }] }), { numRuns: 1 });
    assert.equal(elsewhere.failed, false, String(elsewhere.errorInstance));
  });

  it("a commit that is not idempotent: caught by a crash after a commit, and by a crash during recovery", async () => {
    const twice = sinkWith((st) => {
      const seen = new Map<number, string[]>();
      return {
        async preCommit(id) {
          st.prepared.set(id, st.open);
          seen.set(id, st.open);
          st.open = [];
          return id;
        },
        // Commits whatever the checkpoint held, every time it is asked to.
        async commit(id) {
          st.visible.push(...(seen.get(id) ?? []));
          st.prepared.delete(id);
        },
      };
    });
    const afterCommit = await fc.check(checkExactlyOnce(totals, fixed, { sink: twice, schedules: [{ checkpointEvery: 2, crashes: [{ at: "commit", n: 2 }] }] }), { numRuns: 1 });
    assertCaught(afterCommit, /after the sink committed checkpoint 2 of the run[\s\S]*in the run with crashes, not in the failure-free run/);
    // Recovery after a crash past the pre-commit commits once: correct. Crashing that recovery right after its
    // commit makes the next recovery commit again: the duplicate shows.
    const once = await fc.check(checkExactlyOnce(totals, fixed, { sink: twice, schedules: [{ checkpointEvery: 2, crashes: [{ at: "pre-commit", n: 1 }] }] }), { numRuns: 1 });
    assert.equal(once.failed, false, String(once.errorInstance));
    const inRecovery = await fc.check(
      checkExactlyOnce(totals, fixed, { sink: twice, schedules: [{ checkpointEvery: 2, crashes: [{ at: "pre-commit", n: 1 }, { at: "recovery" }] }] }),
      { numRuns: 1 },
    );
    assertCaught(inRecovery, /during recovery \(after committing checkpoint 1 again\)/);
  });

  it("a sink without two-phase commit (writes visible at once): caught", async () => {
    const direct = (): InspectableSink<string> => {
      const visible: string[] = [];
      return { name: "direct", write: (v) => void visible.push(v), committed: () => [...visible] };
    };
    const details = await run(checkExactlyOnce(totals, txs, { sink: direct }), 100);
    assertCaught(details, /in the run with crashes, not in the failure-free run/);
  });

  it("refuses options that cannot work, naming them", () => {
    assert.throws(() => checkExactlyOnce(totals, fixed, { schedules: [] }), /schedules is empty; leave it out for random schedules/);
    assert.throws(() => checkExactlyOnce(totals, fixed, { schedules: [{ checkpointEvery: 0, crashes: [] }] }), /schedules\[0\]\.checkpointEvery must be an integer ≥ 1, got 0/);
    assert.throws(
      () => checkExactlyOnce(totals, fixed, { schedules: [{ checkpointEvery: 1, crashes: [{ at: "checkpoint", n: 0 }] }] }),
      /schedules\[0\]\.crashes\[0\] is not a crash point: \{"at":"checkpoint","n":0\}/,
    );
    assert.throws(() => checkExactlyOnce(totals, fixed, { maxCrashes: 0 }), /maxCrashes must be an integer ≥ 1, got 0/);
  });

  it("a job that fails on its own (its sink fails) fails the property with that error, not as a crash", async () => {
    const full = sinkWith(() => ({
      write() {
        throw new Error("disk full");
      },
    }));
    const details = await fc.check(checkExactlyOnce(totals, fixed, { sink: full, schedules: [{ checkpointEvery: 2, crashes: [] }] }), { numRuns: 1 });
    assert.equal(details.failed, true);
    const message = String((details.errorInstance as Error).message);
    assert.match(message, /disk full/);
    assert.doesNotMatch(message, /not exactly-once|simulated crash/);
  });
});

describe("checkExactlyOnce on a job with several inputs (multiInput: one replayable source per input)", () => {
  type Inputs = { tx: Tx; limits: number };
  const tagged: fc.Arbitrary<Tagged<Inputs>> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ card: fc.constantFrom("c1", "c2"), amount: fc.integer({ min: 1, max: 9 }) }).map((value): Tagged<Inputs> => ({ input: "tx", value })) },
    { weight: 1, arbitrary: fc.integer({ min: 2, max: 8 }).map((value): Tagged<Inputs> => ({ input: "limits", value })) },
  );
  const both = timestampedEvents(tagged, { maxLength: 12, maxGapMs: 300 });
  const limit = broadcastState<string, number>("limit");

  /** Transactions over the latest limit (broadcast state), with a running count per card (keyed state). */
  const overLimit = multiInput<Inputs, string>(["tx", "limits"], (d) =>
    d
      .input("tx")
      .keyBy((t) => t.card)
      .connect(d.input("limits").broadcast(limit))
      .process<string>({
        processElement(t, ctx) {
          const max = ctx.getBroadcastState(limit).get("max");
          if (max === undefined || t.amount <= max) return;
          const n = ctx.state.value<number>("over");
          n.update((n.value() ?? 0) + 1);
          ctx.emit(`${t.card} over ${max}: #${n.value()}`);
        },
        processBroadcastElement(max, ctx) {
          ctx.getBroadcastState(limit).put("max", max);
        },
      }),
  );

  it("passes on connected inputs with broadcast and keyed state", async () => {
    const details = await fc.check(checkExactlyOnce(overLimit, both), { numRuns: 25, seed: 31 });
    assert.equal(details.failed, false, String(details.errorInstance));
  });

  it("catches the latest limit kept in a variable instead of broadcast state, shrunk", async () => {
    const outside = multiInput<Inputs, string>(["tx", "limits"], (d) => {
      let max: number | undefined;
      return d
        .input("tx")
        .keyBy((t) => t.card)
        .connect(d.input("limits").broadcast(limit))
        .process<string>({
          processElement(t, ctx) {
            if (max !== undefined && t.amount > max) ctx.emit(`${t.card} over ${max}`);
          },
          processBroadcastElement(m) {
            max = m;
          },
        });
    });
    const details = await fc.check(checkExactlyOnce(outside, both), { numRuns: 100, seed: 32 });
    assert.equal(details.failed, true, "caught");
    assert.match(String((details.errorInstance as Error).message), /missing from the run with crashes/);
    const [input] = details.counterexample!;
    assert.ok(input.length <= 3, `shrunk to at most 3 records: ${fc.stringify(details.counterexample)}`);
    assert.ok(input.some((e) => e.value.input === "limits") && input.some((e) => e.value.input === "tx"), "a limit and a transaction");
  });

  it("refuses a record that names no input", async () => {
    await assert.rejects(
      runWithCrashes(overLimit, [{ value: { input: "nope", value: 1 } as unknown as Tagged<Inputs>, timestamp: 1 }], { checkpointEvery: 1, crashes: [] }),
      /a multi-input record must be \{ input, value \} with input one of "tx", "limits"; got \{input:nope,value:1\}/,
    );
  });
});
