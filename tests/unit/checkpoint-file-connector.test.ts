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
function readSource(
  path: string,
  from: Positions | undefined,
  stopAfter = Number.POSITIVE_INFINITY,
  chunkBytes?: number,
  maxDepth?: number,
): Promise<{ values: unknown[]; dead: string[]; position: Positions }> {
  const src = fileSource({ path, ...(chunkBytes === undefined ? {} : { chunkBytes }), ...(maxDepth === undefined ? {} : { maxDepth }), batch: 3 });
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

  // Lines of every kind the source tells apart: records (ASCII or not, short or longer than maxDepth,
  // nested too deeply), blank lines, lines that are not JSON, CRLF ends. The reference reads them one by one.
  const depthOf = (v: unknown): number => (typeof v === "object" && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);
  const MAX_DEPTH = 6;
  const lineArb = fc.oneof(
    fc.record({ n: fc.integer(), s: fc.string({ maxLength: 12 }) }, { noNullPrototype: true }).map((r) => JSON.stringify(r)),
    fc.record({ s: fc.string({ maxLength: 4, unit: "grapheme" }) }, { noNullPrototype: true }).map((r) => JSON.stringify(r)),
    fc.integer({ min: 1, max: 9 }).map((d) => `${"[".repeat(d)}1${"]".repeat(d)}`),
    fc.constantFrom("", "  ", "\t", "not json", "{oops", "[1,", "1 2", '{"s":"[[[[{{{{"}', '[{"a":[{"b":[1]}]}]'),
  );
  const fileArb = fc.array(fc.tuple(lineArb, fc.boolean()), { minLength: 1, maxLength: 40 });
  /** The file's text, and what reading it line by line gives: the records, and the line and byte offset of each bad line. */
  const expected = (lines: readonly (readonly [string, boolean])[], finalNewline: boolean) => {
    const text = lines.map(([l, crlf], i) => l + (i < lines.length - 1 || finalNewline ? (crlf ? "\r\n" : "\n") : "")).join("");
    const values: unknown[] = [];
    const dead: string[] = [];
    let offset = 0;
    lines.forEach(([l, crlf], i) => {
      if (l.trim() !== "") {
        let v: unknown;
        let ok = true;
        try {
          v = JSON.parse(l);
        } catch {
          ok = false;
        }
        if (ok && depthOf(v) <= MAX_DEPTH) values.push(v);
        else dead.push(`line ${i + 1} (byte ${offset})`);
      }
      offset += Buffer.byteLength(l) + (crlf ? 2 : 1);
    });
    return { text, values, dead };
  };
  const whereOf = (reason: string): string => /line \d+ \(byte \d+\)/.exec(reason)?.[0] ?? reason;
  /** Writes the file of `lines` as in.ndjson in `dir`; returns its path and what reading it must give. */
  const written = (dir: string, lines: readonly (readonly [string, boolean])[], finalNewline: boolean) => {
    const path = join(dir, "in.ndjson");
    const want = expected(lines, finalNewline);
    writeFileSync(path, want.text);
    return { path, want };
  };

  it("law: every kind of line is read as the line-by-line reference reads it, with the line and byte offset of each bad one", async () => {
    const dir = tempDir();
    await fc.assert(
      fc.asyncProperty(fileArb, fc.boolean(), fc.integer({ min: 16, max: 4096 }), async (lines, finalNewline, chunk) => {
        const { path, want } = written(dir, lines, finalNewline);
        const all = await readSource(path, undefined, Number.POSITIVE_INFINITY, chunk, MAX_DEPTH);
        assert.deepEqual(all.values, want.values);
        assert.deepEqual(all.dead.map(whereOf), want.dead);
        assert.deepEqual(all.position, { file: Buffer.byteLength(want.text) });
      }),
      { numRuns: 300 },
    );
  });

  it("law: stopped after any k records of a file with bad and blank lines, and resumed from its position: every record and dead letter once", async () => {
    const dir = tempDir();
    await fc.assert(
      fc.asyncProperty(fileArb, fc.nat(), fc.integer({ min: 16, max: 4096 }), async (lines, cut, chunk) => {
        const { path, want } = written(dir, lines, true);
        fc.pre(want.values.length > 0);
        // The chunk of up to 4 KiB often holds the whole file: the records cut after the k-th are not emitted.
        const k = (cut % want.values.length) + 1;
        const head = await readSource(path, undefined, k, chunk, MAX_DEPTH);
        const tail = await readSource(path, head.position, Number.POSITIVE_INFINITY, chunk, MAX_DEPTH);
        assert.deepEqual([...head.values, ...tail.values], want.values);
        assert.deepEqual([...head.dead, ...tail.dead].map(whereOf), want.dead);
      }),
      { numRuns: 200 },
    );
  });

  it("paused from inside emit with records cut and not emitted: the position is the last emitted record's end, and resume goes on from there", async () => {
    const path = join(tempDir(), "in.ndjson");
    const rows = Array.from({ length: 1000 }, (_, i) => ({ i }));
    writeFileSync(path, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const src = fileSource<{ i: number }>({ path });
    const values: { i: number }[] = [];
    const positions: Positions[] = [];
    await new Promise<void>((resolve, reject) => {
      const ctx: SourceContext<{ i: number }> = {
        emit(v) {
          values.push(v);
          // Every 100th record pauses the source; it resumes on a later turn.
          if (v.i % 100 === 99) {
            src.pause();
            positions.push(src.positions());
            setTimeout(() => src.resume(), 1);
          }
        },
        announceSplits: () => {},
        deadLetter: () => reject(new Error("no dead letter expected")),
        userError: () => reject(new Error("no user error expected")),
        end: resolve,
        fail: reject,
        paused: false,
        ended: false,
        clock: new SystemClock(),
      };
      Promise.resolve(src.open(ctx)).catch(reject);
    });
    await src.close();
    assert.deepEqual(values, rows);
    const endOf = (i: number): number => rows.slice(0, i + 1).reduce((n, r) => n + JSON.stringify(r).length + 1, 0);
    assert.deepEqual(
      positions,
      rows.filter((r) => r.i % 100 === 99).map((r) => ({ file: endOf(r.i) })),
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
