import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileSink, readCommitted } from "../../connectors/file/index.ts";
import { BadRecordError, DEAD_LETTERS, isGressError, Job, type SideRecord, type Sink, sinkFn } from "../../lib/index.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-sink-bad-");

/** An array nested `depth` levels deep: valid JSON, but JSON.stringify overflows the stack on it. */
function nested(depth: number): unknown[] {
  let v: unknown[] = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

describe("a record a sink cannot take goes to dead letters, not into a failed job", () => {
  it("a function sink that throws BadRecordError for one value: that value is dead-lettered with the sink's name and reason, the rest written", async () => {
    const job = new Job({ name: "bad-fn" });
    const written: number[] = [];
    const dead: SideRecord[] = [];
    const out = job.fromIterable([1, 2, 3, 4]).sinkTo(
      sinkFn("out", (v: number) => {
        if (v === 3) throw new BadRecordError("3 is not welcome");
        written.push(v);
      }),
    );
    out.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
    await job.run();
    assert.deepEqual(written, [1, 2, 4]);
    assert.deepEqual(
      dead.map((d) => [d.value, d.reason]),
      [[3, 'sink "out": 3 is not welcome']],
    );
    assert.equal(job.metrics.operator("sink:out").deadLetters, 1);
    assert.equal(job.metrics.sink("out").written, 3);
  });

  it("the file sink: a cyclic value, a BigInt and undefined are dead letters; the part file holds the others", async () => {
    const dir = tempDir();
    const cyclic: Record<string, unknown> = { id: "cyclic" };
    cyclic.self = cyclic;
    const values: unknown[] = [{ id: 1 }, cyclic, { id: 2 }, { id: 10n }, undefined, { id: 3 }];
    const job = new Job({ name: "bad-file" });
    const dead: SideRecord[] = [];
    const out = job.fromIterable(values).sinkTo(fileSink({ dir, name: "parts" }));
    out.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
    await job.run();
    assert.deepEqual(readCommitted(dir, "parts"), [{ id: 1 }, { id: 2 }, { id: 3 }]);
    assert.deepEqual(
      dead.map((d) => d.value),
      [cyclic, values[3], undefined],
    );
    assert.match(dead[0]?.reason ?? "", /^sink "parts": format failed: .*(circular|cyclic)/i);
    assert.match(dead[1]?.reason ?? "", /^sink "parts": format failed: .*BigInt/i);
    assert.equal(dead[2]?.reason, 'sink "parts": format failed: a line must be a string, got undefined');
  });

  it("the file sink: a value nested 100,000 deep is a dead letter where JSON.stringify overflows the stack on it (Node, Bun), and written where it does not (Deno)", async () => {
    const deep = nested(100_000);
    let serialisable = true;
    try {
      JSON.stringify(deep);
    } catch {
      serialisable = false;
    }
    const dir = tempDir();
    const job = new Job({ name: "deep-file" });
    const dead: SideRecord[] = [];
    job
      .fromIterable<unknown>([{ id: 1 }, deep, { id: 2 }])
      .sinkTo(fileSink({ dir, name: "parts" }))
      .sideRecords(DEAD_LETTERS)
      .subscribe((r) => void dead.push(r));
    await job.run();
    const written = readCommitted(dir, "parts");
    if (serialisable) {
      assert.equal(written.length, 3);
      assert.deepEqual(dead, []);
    } else {
      assert.deepEqual(written, [{ id: 1 }, { id: 2 }]);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]?.value, deep);
      assert.match(dead[0]?.reason ?? "", /^sink "parts": format failed: .*call stack/i);
    }
  });

  it("dead letters of a sink can be written to another sink (a dead-letter queue)", async () => {
    const job = new Job({ name: "dlq" });
    const dlq: unknown[] = [];
    const written: unknown[] = [];
    job
      .fromIterable([{ a: 1 }, null, { a: 2 }])
      .sinkTo(
        sinkFn("rows", (r: { a: number } | null) => {
          if (r === null) throw new BadRecordError("null row");
          written.push(r.a);
        }),
      )
      .sideOutput(DEAD_LETTERS)
      .sinkTo(sinkFn("dlq", (v) => void dlq.push(v)));
    await job.run();
    assert.deepEqual(written, [1, 2]);
    assert.deepEqual(dlq, [null]);
  });

  it('with onRecordError "fail" (or the job\'s onUserError "fail") the job fails with a SinkError naming the sink, the BadRecordError as cause', async () => {
    for (const make of [
      () => ({ job: new Job({ name: "strict-sink" }), options: { onRecordError: "fail" as const } }),
      () => ({ job: new Job({ name: "strict-job", onUserError: "fail" }), options: {} }),
    ]) {
      const { job, options } = make();
      const written: number[] = [];
      job.fromIterable([1, 2, 3]).sinkTo(
        sinkFn("strict", (v: number) => {
          if (v === 2) throw new BadRecordError("two");
          written.push(v);
        }),
        options,
      );
      await assert.rejects(job.run(), (e: unknown) => {
        assert.ok(isGressError(e, "ERR_SINK"), String(e));
        assert.equal((e as Error).message, 'sink "strict" failed to write: two');
        assert.ok(isGressError((e as Error).cause, "ERR_BAD_RECORD"));
        return true;
      });
      assert.deepEqual(written, [1]);
    }
  });

  it("any other error from write still fails the job: only BadRecordError says one record is bad", async () => {
    const job = new Job({ name: "broken" });
    job.fromIterable([1, 2]).sinkTo(
      sinkFn("broken", () => {
        throw new Error("connection lost");
      }),
    );
    await assert.rejects(job.run(), /sink "broken" failed to write: connection lost/);
  });

  it("a write that rejects with BadRecordError, and a write before the sink finished opening, are dead-lettered too", async () => {
    const job = new Job({ name: "async-bad" });
    const written: number[] = [];
    const dead: unknown[] = [];
    const sink: Sink<number> = {
      name: "slow",
      open: () => new Promise((r) => setTimeout(r, 20)),
      write: (v) => {
        if (v === 1) throw new BadRecordError("one, before open");
        if (v === 3) return Promise.reject(new BadRecordError("three, asynchronously"));
        written.push(v);
        return Promise.resolve();
      },
    };
    job
      .fromIterable([1, 2, 3, 4])
      .sinkTo(sink)
      .sideOutput(DEAD_LETTERS)
      .sinkTo(sinkFn("dead", (v) => void dead.push(v)));
    await job.run();
    assert.deepEqual(written, [2, 4]);
    assert.deepEqual(dead.sort(), [1, 3]);
    assert.equal(job.metrics.operator("sink:slow").deadLetters, 2);
    assert.equal(job.metrics.sink("slow").written, 2);
  });
});
