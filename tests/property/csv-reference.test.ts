/**
 * The CSV source against a reference parser: random rows of random fields (delimiters, quotes, CR, LF,
 * multi-byte characters, empty fields), written quoted or bare as RFC 4180 allows, with LF or CRLF and with
 * or without a final newline, read through csvSource in random chunk sizes. The rows must equal both the rows
 * written and what a character-at-a-time reference parser makes of the same text.
 *
 * Typed columns the same way, with a random delimiter (`,` `;` tab `|`, also inside string fields): random schemas
 * of string, integer and number columns, with or without a header (in any column order, with an extra column), rows mixing quoted and bare fields (a row without a
 * quote takes the source's fast path, one with a quote the field array), integer texts at and past the
 * edges of the digit-by-digit reading, and rows with a field too many or too few. Each record must come out
 * as the reference's fields converted by the documented rules, or as a dead letter with the reason those
 * rules give, in file order.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { csvSource } from "../../connectors/file/index.ts";
import { type SourceContext, SystemClock } from "../../lib/index.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-csv-prop-");

/** RFC 4180 one character at a time; a quote inside a bare field is kept, a CR is a line end only before LF. */
function reference(text: string, delimiter = ","): string[][] {
  const rows: string[][] = [];
  let i = 0;
  while (i < text.length) {
    const row: string[] = [];
    for (;;) {
      let f = "";
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (text[i] === '"') {
            if (text[i + 1] === '"') {
              f += '"';
              i += 2;
            } else {
              i++;
              break;
            }
          } else {
            f += text[i];
            i++;
          }
        }
      } else {
        while (i < text.length && text[i] !== delimiter && text[i] !== "\n" && !(text[i] === "\r" && text[i + 1] === "\n")) f += text[i++];
      }
      row.push(f);
      if (text[i] === delimiter) {
        i++;
        continue;
      }
      if (text[i] === "\r") i++;
      if (text[i] === "\n") i++;
      break;
    }
    rows.push(row);
  }
  return rows;
}

function readAll(path: string, chunkBytes: number): Promise<{ rows: unknown[]; dead: string[] }> {
  const src = csvSource<string[]>({ path, chunkBytes, batch: 7 });
  const rows: unknown[] = [];
  const dead: string[] = [];
  return new Promise((resolve, reject) => {
    const ctx: SourceContext<string[]> = {
      emit: (v) => void rows.push(v),
      announceSplits: () => {},
      deadLetter: (_v, reason) => void dead.push(reason),
      userError: (_v, err) => void dead.push(String(err)),
      end: () => void src.close().then(() => resolve({ rows, dead })),
      fail: reject,
      paused: false,
      ended: false,
      clock: new SystemClock(),
    };
    Promise.resolve(src.open(ctx)).catch(reject);
  });
}

const char = fc.constantFrom("a", "b", " ", ",", '"', "\n", "\r", "é", "😀", "日");
const field = fc.array(char, { maxLength: 6 }).map((cs) => cs.join(""));
/** A field written bare where RFC 4180 allows (and a quote inside a bare field, which readers keep), else quoted. */
const written = fc.tuple(field, fc.boolean()).map(([f, bare]) => {
  const canBeBare = !/[,\n\r]/.test(f) && !f.startsWith('"');
  return { f, text: bare && canBeBare ? f : `"${f.replaceAll('"', '""')}"` };
});

describe("CSV source against a reference parser", () => {
  it("random quoted and bare fields, LF or CRLF, any final newline, any chunk size: the rows written, as the reference reads them", async () => {
    const dir = tempDir();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(written, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 16, max: 80 }),
        async (rows, crlf, finalNewline, chunkBytes) => {
          // A row of one empty bare field would be an empty line, which the source skips: write it quoted.
          const lines = rows.map((r) => (r.length === 1 && r[0]!.text === "" ? '""' : r.map((w) => w.text).join(",")));
          const eol = crlf ? "\r\n" : "\n";
          const text = lines.join(eol) + (finalNewline ? eol : "");
          const path = join(dir, "p.csv");
          writeFileSync(path, text);
          const got = await readAll(path, chunkBytes);
          assert.deepEqual(got.dead, []);
          assert.deepEqual(got.rows, reference(text));
          assert.deepEqual(
            got.rows,
            rows.map((r) => r.map((w) => w.f)),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});

type ColumnType = "string" | "integer" | "number";

/** The documented conversion of one field, or the reason the row is bad. */
function convert(type: ColumnType, column: string, text: string): { value: unknown } | { error: string } {
  if (type === "string") return { value: text };
  if (text === "") return { value: null };
  const v = +text;
  if (type === "integer") return Number.isSafeInteger(v) ? { value: v } : { error: `column "${column}": not an integer: ${JSON.stringify(text)}` };
  return Number.isFinite(v) ? { value: v } : { error: `column "${column}": not a number: ${JSON.stringify(text)}` };
}

type Outcome = { row: unknown } | { dead: string };

/** Records in file order: rows emitted and dead letters (the reason after the file, line and byte prefix). */
function readTyped(path: string, options: { header: boolean; columns: Record<string, ColumnType>; chunkBytes: number; delimiter: string }): Promise<Outcome[]> {
  const src = csvSource<Record<string, unknown>>({ path, batch: 5, ...options });
  const out: Outcome[] = [];
  return new Promise((resolve, reject) => {
    const ctx: SourceContext<Record<string, unknown>> = {
      emit: (v) => void out.push({ row: v }),
      announceSplits: () => {},
      deadLetter: (_v, reason) => void out.push({ dead: reason.replace(/^file ".*" line \d+ \(byte \d+\): /, "") }),
      userError: (_v, err) => reject(err),
      end: () => void src.close().then(() => resolve(out)),
      fail: reject,
      paused: false,
      ended: false,
      clock: new SystemClock(),
    };
    Promise.resolve(src.open(ctx)).catch(reject);
  });
}

const integerText = fc.oneof(
  fc.integer({ min: -1_000_000, max: 1_000_000 }).map(String),
  fc.bigInt({ min: -(10n ** 17n), max: 10n ** 17n }).map(String),
  fc.constantFrom("", "-", "-0", "007", "+5", " 12", "12 ", "1e3", "0x10", "12.5", "1.0", "abc", "1:0", "/5", "9007199254740991", "9007199254740992", "999999999999999", "-999999999999999", "1000000000000000", "١٢"),
);
const numberText = fc.oneof(fc.double({ noNaN: true }).map(String), integerText, fc.constantFrom("Infinity", "NaN", ".5", "1e400"));
/** The delimiters the typed test picks from; a string field may hold any of them. */
const DELIMITERS = [",", ";", "\t", "|"] as const;
const typedField = fc.array(fc.constantFrom("a", " ", '"', "\n", "\r", "é", "😀", ...DELIMITERS), { maxLength: 6 }).map((cs) => cs.join(""));
const textOf = (type: ColumnType): fc.Arbitrary<string> => (type === "integer" ? integerText : type === "number" ? numberText : typedField);
/** A field written bare where RFC 4180 allows it (no delimiter, line break or leading quote) and `bare` asks for it, else quoted. */
function write(f: string, bare: boolean, delimiter: string): string {
  const canBeBare = !f.includes(delimiter) && !/[\n\r]/.test(f) && !f.startsWith('"');
  return bare && canBeBare ? f : `"${f.replaceAll('"', '""')}"`;
}

describe("CSV source with typed columns against a reference", () => {
  it("random schemas and delimiters (, ; tab |), header or not, quoted and bare fields, bad values and wrong field counts: the reference's rows and reasons, in order", async () => {
    const dir = tempDir();
    const schema = fc.array(fc.constantFrom<ColumnType>("string", "integer", "number"), { minLength: 1, maxLength: 4 });
    const plan = schema.chain((types) =>
      fc.record({
        types: fc.constant(types),
        header: fc.boolean(),
        // The file's column order (with a header) as a permutation, and an extra column the schema ignores.
        order: fc.shuffledSubarray(types.map((_, c) => c), { minLength: types.length, maxLength: types.length }),
        extra: fc.boolean(),
        rows: fc.array(
          fc.record({
            fields: fc.tuple(...types.map((t) => fc.array(fc.tuple(textOf(t), fc.boolean()), { minLength: 1, maxLength: 1 }))),
            extraField: fc.tuple(typedField, fc.boolean()),
            // 0: as many fields as the file has; 1: one too many; 2: one too few.
            count: fc.constantFrom(0, 0, 0, 0, 1, 2),
          }),
          { minLength: 1, maxLength: 10 },
        ),
        crlf: fc.boolean(),
        finalNewline: fc.boolean(),
        chunkBytes: fc.integer({ min: 16, max: 80 }),
        delimiter: fc.constantFrom(...DELIMITERS),
      }),
    );
    await fc.assert(
      fc.asyncProperty(plan, async ({ types, header, order, extra, rows, crlf, finalNewline, chunkBytes, delimiter }) => {
        const names = types.map((_, c) => `c${c}`);
        const columns: Record<string, ColumnType> = Object.fromEntries(names.map((n, c) => [n, types[c] as ColumnType]));
        // Field c of the file holds column layout[c] (-1: the extra column).
        const layout = header ? [...order, ...(extra ? [-1] : [])] : types.map((_, c) => c);
        const lines: string[] = header ? [layout.map((c) => (c < 0 ? "extra" : (names[c] as string))).join(delimiter)] : [];
        for (const r of rows) {
          const fields = layout.map((c) => (c < 0 ? r.extraField : (r.fields[c]?.[0] as [string, boolean])));
          if (r.count === 1) fields.push(r.extraField);
          if (r.count === 2) fields.pop();
          const written = fields.map(([f, bare]) => write(f, bare, delimiter));
          // An empty line is skipped by the source, and is no record to compare: write one field quoted.
          lines.push(written.length === 0 || (written.length === 1 && written[0] === "") ? '""' : written.join(delimiter));
        }
        const eol = crlf ? "\r\n" : "\n";
        const text = lines.join(eol) + (finalNewline ? eol : "");
        const path = join(dir, "typed.csv");
        writeFileSync(path, text);

        const records = reference(text, delimiter);
        const expected: Outcome[] = [];
        for (const fields of header ? records.slice(1) : records) {
          if (fields.length !== layout.length) {
            expected.push({ dead: `expected ${layout.length} fields, got ${fields.length}` });
            continue;
          }
          const row: Record<string, unknown> = {};
          let error: string | undefined;
          for (let c = 0; c < names.length && error === undefined; c++) {
            const r = convert(types[c] as ColumnType, names[c] as string, fields[layout.indexOf(c)] as string);
            if ("error" in r) error = r.error;
            else row[names[c] as string] = r.value;
          }
          expected.push(error === undefined ? { row } : { dead: error });
        }
        assert.deepStrictEqual(await readTyped(path, { header, columns, chunkBytes, delimiter }), expected);
      }),
      { numRuns: 300 },
    );
  });
});
