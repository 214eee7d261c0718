/**
 * The file connector's part in the checkpoint protocol: the NDJSON source reports byte offsets and seeks to
 * them; the transactional sink pre-commits to a temporary file and commits by atomic rename, idempotently.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type FileSinkHandle, fileSink, fileSource, readCommitted } from "../../connectors/file/index.ts";
import { DEAD_LETTERS, isGressError, Job, type Positions, type SourceContext, SystemClock } from "../../lib/index.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-file-");

/** Runs a file source directly; stops after `stopAfter` values and returns them with the position then. */
function readSource(path: string, from: Positions | undefined, stopAfter = Number.POSITIVE_INFINITY, chunkBytes?: number): Promise<{ values: unknown[]; dead: string[]; position: Positions }> {
  const src = fileSource({ path, ...(chunkBytes === undefined ? {} : { chunkBytes }), batch: 3 });
  const values: unknown[] = [];
  const dead: string[] = [];
  return new Promise((resolve, reject) => {
    const done = (): void => {
      const position = src.positions();
      void src.close();
      resolve({ values, dead, position });
    };
    const ctx: SourceContext<unknown> = {
      emit(v) {
        values.push(v);
        if (values.length === stopAfter) {
          src.pause();
          done();
        }
      },
      announceSplits: () => {},
      deadLetter: (_v, reason) => void dead.push(reason),
      userError: (_v, err, what) => void dead.push(`${what}: ${String(err)}`),
      end: done,
      fail: reject,
      paused: false,
      ended: false,
      clock: new SystemClock(),
    };
    Promise.resolve(src.open(ctx, from)).catch(reject);
  });
}

describe("NDJSON file source", () => {
  it("law: stopping after any k records and resuming from the reported position yields the rest exactly once", async () => {
    // Law: for every k, read(0..k) ++ read(from position(k)) == read(all).
    const dir = tempDir();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ n: fc.integer(), s: fc.string({ maxLength: 6, unit: "grapheme" }) }, { noNullPrototype: true }), { minLength: 1, maxLength: 20 }), fc.nat(), fc.integer({ min: 16, max: 64 }), async (rows, cut, chunk) => {
        const path = join(dir, "in.ndjson");
        writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n") + (cut % 2 === 0 ? "\n" : ""));
        const k = (cut % rows.length) + 1;
        const head = await readSource(path, undefined, k, chunk);
        const tail = k === rows.length ? { values: [] } : await readSource(path, head.position, Number.POSITIVE_INFINITY, chunk);
        assert.deepEqual([...head.values, ...tail.values], rows);
      }),
      { numRuns: 200 },
    );
  });

  it("a line that is not JSON goes to dead letters with its byte offset; blank lines and CRLF are fine", async () => {
    const path = join(tempDir(), "in.ndjson");
    writeFileSync(path, '{"a":1}\r\n\nnot json\n{"a":2}');
    const r = await readSource(path, undefined);
    assert.deepEqual(r.values, [{ a: 1 }, { a: 2 }]);
    assert.equal(r.dead.length, 1);
    assert.match(r.dead[0]!, /line 3 \(byte 10\): /);
    assert.deepEqual(r.position, { file: 26 }, "the position is the file's length once everything was read");
  });

  it("bad lines reach the job's dead-letter output and are counted, the job keeps going", async () => {
    const path = join(tempDir(), "in.ndjson");
    writeFileSync(path, '{"a":1}\n{oops\n{"a":2}\n');
    const job = new Job({ name: "dl" });
    const stream = job.source(fileSource<{ a: number }>({ path }));
    const values: unknown[] = [];
    const dead: unknown[] = [];
    stream.sinkTo({ name: "values", write: (v) => void values.push(v) });
    stream.sideOutput(DEAD_LETTERS).sinkTo({ name: "dead", write: (v) => void dead.push(v) });
    await job.run();
    assert.deepEqual(values, [{ a: 1 }, { a: 2 }]);
    assert.deepEqual(dead, ["{oops"]);
    assert.equal(job.metrics.operator("source:file").deadLetters, 1);
  });

  it("a position that is not a byte offset is a SourceError naming the source", async () => {
    const path = join(tempDir(), "in.ndjson");
    writeFileSync(path, "1\n");
    await assert.rejects(readSource(path, { file: "x" }), (e: unknown) => isGressError(e, "ERR_SOURCE") && /file source "file": position must be a byte offset/.test((e as Error).message));
  });
});

describe("transactional file sink", () => {
  it("nothing is visible before commit; commit renames atomically and is idempotent; abort deletes", async () => {
    const dir = tempDir();
    const sink = fileSink<{ n: number }>({ dir, name: "out" });
    sink.open();
    sink.write({ n: 1 });
    sink.write({ n: 2 });
    const h1 = (await sink.preCommit(1)) as FileSinkHandle;
    sink.write({ n: 3 });
    const h2 = (await sink.preCommit(2)) as FileSinkHandle;
    assert.deepEqual(readCommitted(dir, "out"), [], "pre-committed data is not visible");
    assert.equal(h1.records, 2);
    await sink.commit(1, h1);
    await sink.commit(1, h1);
    assert.deepEqual(readCommitted(dir, "out"), [{ n: 1 }, { n: 2 }]);
    await sink.abort(2, h2);
    assert.equal(existsSync(join(dir, h2.temp)), false);
    assert.equal(await sink.preCommit(3), null, "an empty transaction has no handle");
    await sink.commit(3, null);
    assert.deepEqual(readdirSync(dir), ["out-000000000001.ndjson"]);
  });

  it("on open, temporary files of transactions that never committed are deleted; a lost transaction is a SinkError", async () => {
    const dir = tempDir();
    const a = fileSink<number>({ dir, name: "out" });
    a.open();
    a.write(1);
    const h = (await a.preCommit(7)) as FileSinkHandle;
    a.write(2);
    const b = fileSink<number>({ dir, name: "out" });
    b.open();
    assert.deepEqual(readdirSync(dir), [], "stale temporary files are gone");
    await assert.rejects(b.commit(7, h), (e: unknown) => isGressError(e, "ERR_SINK") && /neither/.test((e as Error).message));
  });

  it("without checkpoints, a bounded job's output is committed at the end of the input", async () => {
    const dir = tempDir();
    const job = new Job({ name: "plain" });
    job.fromIterable([1, 2, 3]).map((x) => ({ x })).sinkTo(fileSink({ dir, name: "out" }));
    await job.run();
    assert.deepEqual(readCommitted(dir, "out"), [{ x: 1 }, { x: 2 }, { x: 3 }]);
  });
});
