/**
 * The CSV source against a reference parser: random rows of random fields (delimiters, quotes, CR, LF,
 * multi-byte characters, empty fields), written quoted or bare as RFC 4180 allows, with LF or CRLF and with
 * or without a final newline, read through csvSource in random chunk sizes. The rows must equal both the rows
 * written and what a character-at-a-time reference parser makes of the same text.
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
function reference(text: string): string[][] {
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
        while (i < text.length && text[i] !== "," && text[i] !== "\n" && !(text[i] === "\r" && text[i + 1] === "\n")) f += text[i++];
      }
      row.push(f);
      if (text[i] === ",") {
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
