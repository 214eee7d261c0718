/**
 * The chunked file sources: CSV (RFC 4180 quoting, CRLF, typed columns, a header) and NDJSON read in small
 * chunks so that records and multi-byte characters split across chunk boundaries; bad records go to dead
 * letters naming the file and line, and the job goes on; positions are byte offsets a restored run resumes at.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CsvParser } from "../../connectors/file/csv.ts";
import { csvSource, type FileSource, fileSource } from "../../connectors/file/index.ts";
import { DEAD_LETTERS, isGressError, Job, type Positions, type SourceContext, SystemClock } from "../../lib/index.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-csv-");

interface Read {
  values: unknown[];
  dead: { value: unknown; reason: string }[];
  position: Positions;
}

/** Runs a source directly; stops after `stopAfter` values and returns them with the position then. */
function read<T>(src: FileSource<T>, from?: Positions, stopAfter = Number.POSITIVE_INFINITY): Promise<Read> {
  const values: unknown[] = [];
  const dead: { value: unknown; reason: string }[] = [];
  return new Promise((resolve, reject) => {
    const done = (): void => {
      const position = src.positions();
      void src.close();
      resolve({ values, dead, position });
    };
    const ctx: SourceContext<T> = {
      emit(v) {
        values.push(v);
        if (values.length === stopAfter) {
          src.pause();
          done();
        }
      },
      announceSplits: () => {},
      deadLetter: (value, reason) => void dead.push({ value, reason }),
      userError: (value, err, what) => void dead.push({ value, reason: `${what}: ${String(err)}` }),
      end: done,
      fail: reject,
      paused: false,
      ended: false,
      clock: new SystemClock(),
    };
    Promise.resolve(src.open(ctx, from)).catch(reject);
  });
}

function file(name: string, text: string): string {
  const path = join(tempDir(), name);
  writeFileSync(path, text);
  return path;
}

describe("CSV file source", () => {
  it("RFC 4180 quoting: delimiters, doubled quotes and line breaks inside quotes; a quote inside an unquoted field is kept", async () => {
    const path = file("q.csv", 'a,"b,c","he said ""hi""","two\nlines",\n"",x"y,"z"\n');
    for (const chunkBytes of [16, 17, 23, 1 << 20]) {
      const r = await read(csvSource({ path, chunkBytes, batch: 2 }));
      assert.deepEqual(r.values, [["a", "b,c", 'he said "hi"', "two\nlines", ""], ["", 'x"y', "z"]], `chunkBytes ${chunkBytes}`);
      assert.deepEqual(r.dead, []);
    }
  });

  it("CRLF and LF line ends, a quoted field before the CRLF, empty lines skipped, a missing final newline", async () => {
    const path = file("crlf.csv", 'id,name\r\n1,"Ann"\r\n\r\n2,Bob\n3,"C\r\nD"\r\n4,Eve');
    const r = await read(csvSource({ path, header: true, columns: { id: "integer", name: "string" }, chunkBytes: 16 }));
    assert.deepEqual(r.values, [
      { id: 1, name: "Ann" },
      { id: 2, name: "Bob" },
      { id: 3, name: "C\r\nD" },
      { id: 4, name: "Eve" },
    ]);
    assert.deepEqual(r.position, { csv: Buffer.byteLength('id,name\r\n1,"Ann"\r\n\r\n2,Bob\n3,"C\r\nD"\r\n4,Eve') });
  });

  it("typed columns by header name in any order; rows of strings keyed by the header without columns; arrays without a header", async () => {
    const path = file("h.csv", "amount,user,ok,extra\n1.5,u1,true,e\n,u2,FALSE,e\n");
    const typed = await read(csvSource({ path, header: true, columns: { user: "string", amount: "number", ok: "boolean" } }));
    assert.deepEqual(typed.values, [
      { user: "u1", amount: 1.5, ok: true },
      { user: "u2", amount: null, ok: false },
    ]);
    const keyed = await read(csvSource({ path, header: true }));
    assert.deepEqual(keyed.values[0], { amount: "1.5", user: "u1", ok: "true", extra: "e" });
    const arrays = await read(csvSource({ path, delimiter: "," }));
    assert.deepEqual(arrays.values[0], ["amount", "user", "ok", "extra"]);
  });

  it("a record and multi-byte characters split across chunks: every chunk size reads the same rows, and positions are byte offsets", async () => {
    const dir = tempDir();
    const field = fc.oneof(fc.string({ maxLength: 8, unit: "grapheme" }), fc.constantFrom("é", "日本", "😀", 'a"b', "x,y", "l1\nl2", "c\r\nd", ""));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(field, { minLength: 2, maxLength: 2 }), { minLength: 1, maxLength: 15 }), fc.integer({ min: 16, max: 40 }), fc.nat(), async (rows, chunkBytes, cut) => {
        const quote = (f: string): string => `"${f.replaceAll('"', '""')}"`;
        const path = join(dir, "p.csv");
        writeFileSync(path, `${rows.map((r) => r.map(quote).join(",")).join(cut % 2 === 0 ? "\n" : "\r\n")}${cut % 3 === 0 ? "" : "\n"}`);
        const k = (cut % rows.length) + 1;
        // Stop after k rows, then resume from the position: the rest, exactly once.
        const head = await read(csvSource({ path, chunkBytes, batch: 3 }), undefined, k);
        const tail = k === rows.length ? { values: [], dead: [] } : await read(csvSource({ path, chunkBytes }), head.position);
        assert.deepEqual([...head.values, ...tail.values], rows);
        assert.deepEqual(tail.dead, []);
      }),
      { numRuns: 150 },
    );
  });

  it("bad rows go to dead letters naming the file, the line (line breaks inside quotes counted) and the reason; the others are read", async () => {
    const path = file("bad.csv", ['id,amount', '1,10', '2,"x\ny"', '3', '4,abc', '5,"7"z', '6,1.5', '7,20', '8,"never closed'].join("\n"));
    const r = await read(csvSource({ path, header: true, columns: { id: "integer", amount: "integer" }, chunkBytes: 16 }));
    assert.deepEqual(r.values, [
      { id: 1, amount: 10 },
      { id: 7, amount: 20 },
    ]);
    const reasons = r.dead.map((d) => d.reason.replace(path, "F"));
    assert.deepEqual(reasons, [
      'file "F" line 3 (byte 15): column "amount": not an integer: "x\\ny"',
      'file "F" line 5 (byte 23): expected 2 fields, got 1',
      'file "F" line 6 (byte 25): column "amount": not an integer: "abc"',
      'file "F" line 7 (byte 31): unexpected "z" after the closing quote of field 2',
      'file "F" line 8 (byte 38): column "amount": not an integer: "1.5"',
      'file "F" line 10 (byte 49): unterminated quoted field at the end of the file',
    ]);
    assert.deepEqual(
      r.dead.map((d) => d.value),
      ['2,"x\ny"', "3", "4,abc", '5,"7"z', "6,1.5", '8,"never closed'],
    );
  });

  it("in a job: bad rows reach the dead-letter output and are counted, the job finishes with the good rows", async () => {
    const path = file("job.csv", "a,b\n1,2\n3\n4,5\n");
    const job = new Job({ name: "csv-dl" });
    const stream = job.source(csvSource<{ a: number; b: number }>({ path, header: true, columns: { a: "number", b: "number" } }));
    const values: unknown[] = [];
    const dead: unknown[] = [];
    stream.sinkTo({ name: "values", write: (v) => void values.push(v) });
    stream.sideOutput(DEAD_LETTERS).sinkTo({ name: "dead", write: (v) => void dead.push(v) });
    await job.run();
    assert.deepEqual(values, [
      { a: 1, b: 2 },
      { a: 4, b: 5 },
    ]);
    assert.deepEqual(dead, ["3"]);
    assert.equal(job.metrics.operator("source:csv").deadLetters, 1);
  });

  it("a header without a column the rows need fails the job with a SourceError naming the column", async () => {
    const path = file("nohdr.csv", "a,b\n1,2\n");
    const job = new Job({ name: "csv-hdr" });
    job.source(csvSource({ path, header: true, columns: { a: "number", c: "number" } })).sinkTo({ name: "out", write: () => {} });
    await assert.rejects(job.run(), (e: unknown) => isGressError(e, "ERR_SOURCE") && /header of ".*nohdr\.csv" has no column "c"/.test((e as Error).message));
  });

  it("restored past the header: the header still names the columns, and errors name the right line", async () => {
    const path = file("restore.csv", 'v,k\n1,a\n"2\n",b\n3,c\nx,d\n4,e\n');
    const columns = { k: "string", v: "number" } as const;
    const head = await read(csvSource({ path, header: true, columns, chunkBytes: 16 }), undefined, 2);
    assert.deepEqual(head.values, [
      { k: "a", v: 1 },
      { k: "b", v: 2 },
    ]);
    const tail = await read(csvSource({ path, header: true, columns, chunkBytes: 16 }), head.position);
    assert.deepEqual(tail.values, [
      { k: "c", v: 3 },
      { k: "e", v: 4 },
    ]);
    assert.equal(tail.dead.length, 1);
    assert.match(tail.dead[0]!.reason, /restore\.csv" line 6 \(byte 19\): column "v": not a number: "x"$/);
  });

  it('a column named "__proto__" is a property of the row, not its prototype', async () => {
    const path = file("proto.csv", '__proto__,a\n{},1\n');
    for (const options of [{ header: true }, { header: true, columns: { ["__proto__"]: (t: string) => JSON.parse(t) as unknown, a: "integer" } as const }]) {
      const r = await read(csvSource<Record<string, unknown>>({ path, ...options }));
      const row = r.values[0] as Record<string, unknown>;
      assert.equal(Object.getPrototypeOf(row), Object.prototype);
      assert.ok(Object.hasOwn(row, "__proto__"));
    }
  });

  it("the parser's memory of where the next quote is does not carry over to the same text read again from an earlier record", () => {
    // The same bytes decoded again (after a record ran past the chunk) give a string of equal content: where
    // the last search found no quote says nothing about the records before it.
    const text = 'a,b\n"x,y",z\nc,d\n';
    const p = new CsvParser();
    for (let i = 0; i < text.length; ) i = p.end(text, i, true);
    const again = [...text].join("");
    assert.equal(p.end(again, 4, true), 12);
    assert.deepEqual(p.fields.slice(0, p.count), ["x,y", "z"]);
  });

  it("opened again after close() (a restart) on the same source object, typed rows without a header: the same rows again", async () => {
    // The second run decodes text of the same content again from its start: what the first run remembered
    // about where the next delimiter is (found from its last record) says nothing about the first records.
    const path = file("again.csv", "1,10\n2,20\n3,30\n");
    const src = csvSource({ path, columns: { id: "integer", amount: "integer" } });
    const rows = [
      { id: 1, amount: 10 },
      { id: 2, amount: 20 },
      { id: 3, amount: 30 },
    ];
    for (let run = 0; run < 2; run++) {
      const r = await read(src);
      assert.deepEqual(r.dead, [], `run ${run}`);
      assert.deepEqual(r.values, rows, `run ${run}`);
    }
  });

  it('a delimiter that can be part of an integer ("-") still separates integer columns', async () => {
    const path = file("minus.csv", "5-7-1\n-3-4\n12--\n");
    const r = await read(csvSource({ path, delimiter: "-", columns: { a: "integer", b: "integer", c: "integer" } }));
    assert.deepEqual(r.dead, []);
    assert.deepEqual(r.values, [
      { a: 5, b: 7, c: 1 },
      { a: null, b: 3, c: 4 },
      { a: 12, b: null, c: null },
    ]);
  });

  it("options are checked: a delimiter that is a quote is a ConfigError", () => {
    assert.throws(
      () => csvSource({ path: "x.csv", delimiter: '"' }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /delimiter/.test((e as Error).message),
    );
  });
});

describe("NDJSON file source, chunked", () => {
  it("lines and multi-byte characters split across chunks; a bad line names its line, also after a restore", async () => {
    const lines = ['{"s":"é日本😀"}', '{"s":"plain"}', "not json", '{"s":"ü"}', "{oops", '{"s":"end"}'];
    const path = file("u.ndjson", lines.join("\n"));
    for (const chunkBytes of [16, 19, 1 << 20]) {
      const all = await read(fileSource({ path, chunkBytes }));
      assert.deepEqual(all.values, [{ s: "é日本😀" }, { s: "plain" }, { s: "ü" }, { s: "end" }]);
      assert.deepEqual(
        all.dead.map((d) => d.reason.match(/line \d+ \(byte \d+\)/)?.[0]),
        [`line 3 (byte ${Buffer.byteLength(`${lines.slice(0, 2).join("\n")}\n`)})`, `line 5 (byte ${Buffer.byteLength(`${lines.slice(0, 4).join("\n")}\n`)})`],
      );
      const head = await read(fileSource({ path, chunkBytes }), undefined, 2);
      assert.deepEqual(head.position, { file: Buffer.byteLength(`${lines.slice(0, 2).join("\n")}\n`) });
      const tail = await read(fileSource({ path, chunkBytes }), head.position);
      assert.deepEqual(tail.values, [{ s: "ü" }, { s: "end" }]);
      assert.match(tail.dead[1]!.reason, /line 5 \(byte /);
    }
  });
});
