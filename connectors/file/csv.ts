/**
 * A replayable CSV file source (RFC 4180): fields separated by a delimiter (default ","), records by LF or
 * CRLF; a field in double quotes may hold the delimiter, line breaks and doubled quotes (`""` is one `"`).
 * A quote inside an unquoted field is kept as it is. Empty lines are skipped. Its position is the byte offset
 * of the first record not yet emitted, as for the NDJSON {@link fileSource}, with the same chunked reading.
 *
 * Rows come out as:
 * - objects typed by `columns` (`{ id: "integer", user: "string", amount: "number" }`), matched by position,
 *   or by name against the header with `header: true` (extra header columns are ignored);
 * - objects of strings keyed by the header with `header: true` and no `columns`;
 * - arrays of strings otherwise.
 *
 * A bad record (a wrong number of fields, a value its column type refuses, text after a closing quote, a
 * quoted field never closed) goes to the dead-letter output with the file, the line it starts on, its byte
 * offset and the reason, and the job goes on. A header without a column that `columns` names fails the job
 * with a SourceError (no row of such a file can be read).
 *
 * @example
 * ```ts
 * import { Job, sinkFn } from "gress";
 * import { csvSource } from "gress/file";
 *
 * type Trade = { at: number; symbol: string; price: number };
 * const job = new Job();
 * job
 *   .source(csvSource<Trade>({ path: "trades.csv", header: true, columns: { at: "integer", symbol: "string", price: "number" }, timestamp: (t) => t.at }))
 *   .sinkTo(sinkFn("print", (t) => console.log(t.symbol, t.price)));
 * ```
 * @module
 */
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { SourceError } from "../../lib/errors.ts";
import { NextIndex } from "./next-index.ts";
import { FileSource, type RecordReader, SKIP } from "./source.ts";

/**
 * The type of a CSV column: "string" keeps the text; "number" and "integer" parse it (an empty field is
 * null, anything else that is not a finite number, or not a safe integer, makes the row bad); "boolean"
 * takes true/false in any case (empty is null); a function turns the text into the value (a throw makes the
 * row bad, with its message as the reason).
 *
 * @example
 * ```ts
 * import type { CsvColumnType } from "gress/file";
 *
 * const at: CsvColumnType = (text) => Date.parse(text);
 * ```
 */
export type CsvColumnType = "string" | "number" | "integer" | "boolean" | ((text: string) => unknown);

/**
 * Options of {@link csvSource}.
 *
 * @example
 * ```ts
 * import { type CsvSourceOptions, csvSource } from "gress/file";
 *
 * type Row = { id: number; name: string };
 * const options: CsvSourceOptions<Row> = { path: "people.tsv", delimiter: "\t", columns: { id: "integer", name: "string" } };
 * const source = csvSource(options);
 * ```
 */
export interface CsvSourceOptions<T> {
  /** The CSV file. */
  readonly path: string;
  /** Source name, unique in the job. Default "csv". */
  readonly name?: string;
  /** Column names and types, in file order (or matched against the header with `header: true`). */
  readonly columns?: Readonly<Record<string, CsvColumnType>>;
  /** The first record is a header of column names, not a row. Default false. */
  readonly header?: boolean;
  /** One character between fields, not a quote or a line break. Default ",". */
  readonly delimiter?: string;
  /**
   * Event time of a row. Default: processing time. Called when the row is parsed, up to 256 records before it
   * is emitted, and again for rows read again after a restart: keep it free of side effects.
   */
  readonly timestamp?: (row: T) => number;
  /** Records emitted per event-loop turn. Default 4096. */
  readonly batch?: number;
  /** Bytes read at a time. Default 1 MiB. */
  readonly chunkBytes?: number;
}

const columnType = z.union([z.enum(["string", "number", "integer", "boolean"]), z.function()]);
const schema = z.strictObject({
  path: z.string().min(1),
  name: z.string().min(1).optional(),
  columns: z.record(z.string(), columnType).optional(),
  header: z.boolean().optional(),
  delimiter: z
    .string()
    .length(1)
    .refine((d) => d !== '"' && d !== "\n" && d !== "\r", "must not be a quote or a line break")
    .optional(),
  timestamp: z.function().optional(),
  batch: z.number().int().positive().optional(),
  chunkBytes: z.number().int().min(16).optional(),
});

const QUOTE = 34;
const NL = 10;
const CR = 13;

/**
 * Cuts CSV records out of decoded text and splits them into fields: a record without quotes is split with
 * indexOf (slices of the chunk's text, no per-character work); a record with a quote goes through a small
 * state machine. The next quote's index is remembered per text, so finding that a record has none costs
 * nothing per record.
 * @internal
 */
export class CsvParser {
  /** The fields of the last record found; only the first `count` are its own. */
  readonly fields: string[] = [];
  count = 0;
  /** Newlines consumed by the last record (its terminator included). */
  newlines = 0;
  /** Why the last record is malformed, or undefined. */
  error: string | undefined;
  /**
   * With `lazy` set, a record without a quote is found but not split: `plain` is true and `stop` is where
   * its fields end (before CR LF); the reader parses text[i..stop) itself. A quoted record is split as ever.
   */
  lazy = false;
  plain = false;
  stop = 0;
  readonly delimiter: string;
  readonly #delimCode: number;
  /** The next quote. */
  readonly #quote = new NextIndex('"');
  /** The next delimiter: a file with fewer delimiters than its rows promise is not searched to the end for each record. */
  readonly #delimiter: NextIndex;

  constructor(delimiter = ",") {
    this.delimiter = delimiter;
    this.#delimCode = delimiter.charCodeAt(0);
    this.#delimiter = new NextIndex(delimiter);
  }

  /**
   * Finds and splits the record starting at text[i]: returns the index after it (see RecordReader.end), or
   * -1 when it goes on past the end of `text` and `final` is false, or when `final` and a quote is left open.
   */
  end(text: string, i: number, final: boolean): number {
    this.error = undefined;
    const nl = text.indexOf("\n", i);
    if (nl < 0 && !final) return -1;
    const stop = nl < 0 ? text.length : nl;
    if (this.#quote.in(text, i) >= stop) {
      let e = stop;
      if (e > i && text.charCodeAt(e - 1) === CR) e--;
      this.plain = this.lazy;
      this.stop = e;
      if (!this.lazy) this.split(text, i, e);
      this.newlines = nl < 0 ? 0 : 1;
      return nl < 0 ? text.length : nl + 1;
    }
    this.plain = false;
    return this.#quoted(text, i, final);
  }

  /** Splits the unquoted fields of text[i..e) (no line terminator in it) into {@link fields} and {@link count}. */
  split(text: string, i: number, e: number): void {
    const fields = this.fields;
    let k = 0;
    if (e > i) {
      let a = i;
      for (;;) {
        const c = this.#delimiter.in(text, a);
        if (c >= e) {
          fields[k++] = text.slice(a, e);
          break;
        }
        fields[k++] = text.slice(a, c);
        a = c + 1;
      }
    }
    this.count = k;
  }

  #quoted(text: string, i: number, final: boolean): number {
    const fields = this.fields;
    const len = text.length;
    let k = 0;
    let p = i;
    let newlines = 0;
    for (;;) {
      // At the start of a field.
      if (p < len && text.charCodeAt(p) === QUOTE) {
        let value = "";
        let seg = p + 1;
        for (;;) {
          const q = text.indexOf('"', seg);
          if (q < 0) return -1; // open to the end of the text: more is needed, or it is never closed
          if (q + 1 < len && text.charCodeAt(q + 1) === QUOTE) {
            value += text.slice(seg, q + 1);
            seg = q + 2;
            continue;
          }
          value += text.slice(seg, q);
          for (let n = text.indexOf("\n", p); n >= 0 && n < q; n = text.indexOf("\n", n + 1)) newlines++;
          p = q + 1;
          break;
        }
        fields[k++] = value;
        if (p >= len) {
          if (!final) return -1;
          this.count = k;
          this.newlines = newlines;
          return len;
        }
        const c = text.charCodeAt(p);
        if (c === this.#delimCode) {
          p++;
          continue;
        }
        if (c === NL || (c === CR && p + 1 < len && text.charCodeAt(p + 1) === NL)) {
          const end = c === NL ? p + 1 : p + 2;
          this.count = k;
          this.newlines = newlines + 1;
          return end;
        }
        if (c === CR && p + 1 >= len && !final) return -1;
        // Text after a closing quote: the record is malformed; it ends at the next line break.
        this.error = `unexpected ${JSON.stringify(text[p])} after the closing quote of field ${k}`;
        const n = text.indexOf("\n", p);
        this.count = k;
        this.newlines = newlines + (n < 0 ? 0 : 1);
        return n < 0 ? len : n + 1;
      }
      // An unquoted field: up to the delimiter or the line end (a quote in it is kept).
      let q = p;
      while (q < len) {
        const c = text.charCodeAt(q);
        if (c === this.#delimCode || c === NL) break;
        q++;
      }
      if (q >= len) {
        if (!final) return -1;
        fields[k++] = text.slice(p, q);
        this.count = k;
        this.newlines = newlines;
        return len;
      }
      if (text.charCodeAt(q) === NL) {
        fields[k++] = text.slice(p, q > p && text.charCodeAt(q - 1) === CR ? q - 1 : q);
        this.count = k;
        this.newlines = newlines + 1;
        return q + 1;
      }
      fields[k++] = text.slice(p, q);
      p = q + 1;
    }
  }
}

type Convert = (text: string) => unknown;
/** Makes a row object out of the fields. */
type Build = (fields: readonly string[]) => unknown;

function notA(what: string, column: string, text: string): Error {
  return new Error(`column "${column}": not ${what}: ${JSON.stringify(text)}`);
}

function converter(column: string, type: CsvColumnType): Convert {
  switch (type) {
    case "string":
      return (text) => text;
    case "number":
      return (text) => {
        if (text === "") return null;
        const v = +text;
        if (!Number.isFinite(v)) throw notA("a number", column, text);
        return v;
      };
    case "integer":
      return (text) => {
        if (text === "") return null;
        const v = +text;
        if (!Number.isSafeInteger(v)) throw notA("an integer", column, text);
        return v;
      };
    case "boolean":
      return (text) => {
        if (text === "") return null;
        const t = text.toLowerCase();
        if (t === "true") return true;
        if (t === "false") return false;
        throw notA("a boolean (true or false)", column, text);
      };
    default:
      return (text) => {
        try {
          return type(text);
        } catch (err) {
          throw new Error(`column "${column}": ${err instanceof Error ? err.message : String(err)}`);
        }
      };
  }
}

/** Sets an own property, also one named "__proto__" (an assignment would set the prototype instead). */
function put(row: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(row, key, { value, enumerable: true, writable: true, configurable: true });
  else row[key] = value;
}

/**
 * The row builder of a schema: `names[c]` from `fields[index[c]]` through its converter. Generated as one
 * function with an object literal (one hidden class for every row, each column's conversion at its own call
 * site) where the runtime allows it, which makes rows about as cheap as a hand-written parser's; a plain loop
 * otherwise. Names enter the code only as JSON string literals, and the indexes as integers.
 */
function builder(names: readonly string[], types: readonly CsvColumnType[], index: readonly number[]): Build {
  const converts = names.map((n, c) => converter(n, types[c] as CsvColumnType));
  try {
    const props = names.map((n, c) => {
      const field = `f[${Math.trunc(index[c] as number)}]`;
      // "__proto__" as a plain key in a literal would set the prototype: as a computed key it is a property.
      const name = n === "__proto__" ? `[${JSON.stringify(n)}]` : JSON.stringify(n);
      return `${name}: ${types[c] === "string" ? field : `k[${c}](${field})`}`;
    });
    const make = new Function("k", `"use strict"; return (f) => ({ ${props.join(", ")} });`) as (k: readonly Convert[]) => Build;
    return make(converts);
  } catch {
    return (fields) => {
      const row: Record<string, unknown> = {};
      for (let c = 0; c < names.length; c++) put(row, names[c] as string, (converts[c] as Convert)(fields[index[c] as number] as string));
      return row;
    };
  }
}

/** What a {@link PlainRow} returns for a record whose number of fields is not the schema's. */
const MISMATCH: unique symbol = Symbol("mismatch");

/**
 * The typed row of the unquoted record text[i..e) (no line terminator in it), parsed straight out of the
 * text: no array of field strings, and an integer field read digit by digit without a string of its own.
 * Returns MISMATCH when the record has another number of fields than the schema's `width`.
 */
type PlainRow = (text: string, i: number, e: number) => unknown;

/**
 * An integer column's value from text[a..e): up to 15 digits with an optional minus read directly (always a
 * safe integer); anything else goes through the column's converter, so the rules and errors are the same.
 */
function integerAt(text: string, a: number, e: number, convert: Convert): unknown {
  let k = a;
  const neg = k < e && text.charCodeAt(k) === 45;
  if (neg) k++;
  if (k === e || e - k > 15) return convert(text.slice(a, e));
  let v = 0;
  for (; k < e; k++) {
    const d = text.charCodeAt(k) - 48;
    if (d < 0 || d > 9) return convert(text.slice(a, e));
    v = v * 10 + d;
  }
  return neg ? -v : v;
}

/**
 * Compiles the {@link PlainRow} of a schema once per file layout: `width` fields, column c at field index[c].
 * Each field is cut at the next delimiter (indexOf on the chunk's text; for an integer column, the first
 * character after its digits when that is the delimiter) and converted in column order (so the first bad
 * column named is the same as with {@link builder}), and the row is one object literal. Integer fields that
 * are plain digits are read while they are scanned; any other text goes through the column's converter.
 *
 * A search that ends past the record (its last field's, or any field's of a record with too few) is
 * remembered: the next delimiter after position `cf` of text `ct` is at `cd`. The next record's first field
 * takes it from there, which also keeps a file with fewer delimiters than its rows need from being searched
 * to the far delimiter once per record. Undefined where the runtime does not allow generated code: rows then
 * go through the field array.
 */
function plainRow(delimiter: string, names: readonly string[], types: readonly CsvColumnType[], index: readonly number[], width: number): PlainRow | undefined {
  const converts = names.map((n, c) => converter(n, types[c] as CsvColumnType));
  const w = Math.trunc(width);
  const delim = JSON.stringify(delimiter);
  const search = (from: string): string => `d = t.indexOf(${delim}, ${from}); if (d < 0) d = t.length;`;
  const remember = (from: string): string => `ct = t; cf = ${from}; cd = d;`;
  // Field f's integer column, if it has one: its digits are read while looking for the delimiter after them
  // (not with a delimiter that could be part of an integer).
  const integerOf = new Map<number, number>();
  const code = delimiter.charCodeAt(0);
  if (code !== 45 && (code < 48 || code > 57)) {
    for (let c = 0; c < names.length; c++) if (types[c] === "integer") integerOf.set(Math.trunc(index[c] as number), c);
  }
  const lines = ["let d = 0;"];
  for (let f = 0; f < w; f++) {
    const from = f === 0 ? "i" : `e${f - 1} + 1`;
    let find = f === 0 ? `if (ct === t && i >= cf && i <= cd) d = cd; else { ${search(from)} }` : search(from);
    if (integerOf.has(f)) {
      // Up to 15 digits (a safe integer) with an optional minus, then the delimiter (or the record's end, for
      // the last field): the value, and where the field ends, without a search. Anything else: the search,
      // and the column's converter later (v${f} stays M).
      const next = f < w - 1 ? `t.charCodeAt(k) === ${code}` : "k === e";
      lines.push(
        `let v${f} = M; { let k = ${from}; const neg = k < e && t.charCodeAt(k) === 45; if (neg) k++; const k0 = k; let n = 0;` +
          ` for (; k < e && k - k0 < 16; k++) { const c = t.charCodeAt(k) - 48; if (c < 0 || c > 9) break; n = n * 10 + c; }` +
          ` if (k > k0 && k - k0 <= 15 && ${next}) { d = k; v${f} = neg ? -n : n; } else { ${find} } }`,
      );
      find = "";
    }
    if (f < w - 1) lines.push(`${find} if (d >= e) { ${remember(from)} return M; } const e${f} = d;`);
    else if (integerOf.has(f)) lines.push(`if (v${f} === M) { ${remember(from)} if (d < e) return M; }`);
    else lines.push(`${find} ${remember(from)} if (d < e) return M;`);
  }
  const start = (f: number): string => (f === 0 ? "i" : `e${f - 1} + 1`);
  const end = (f: number): string => (f === w - 1 ? "e" : `e${f}`);
  const props = names.map((n, c) => {
    const f = Math.trunc(index[c] as number);
    // "__proto__" as a plain key in a literal would set the prototype: as a computed key it is a property.
    const name = n === "__proto__" ? `[${JSON.stringify(n)}]` : JSON.stringify(n);
    const type = types[c];
    const integer = integerOf.get(f) === c ? `v${f} !== M ? v${f} : I(t, ${start(f)}, ${end(f)}, k[${c}])` : `I(t, ${start(f)}, ${end(f)}, k[${c}])`;
    const value = type === "string" ? `t.slice(${start(f)}, ${end(f)})` : type === "integer" ? integer : `k[${c}](t.slice(${start(f)}, ${end(f)}))`;
    return `${name}: ${value}`;
  });
  try {
    const body = `"use strict"; let ct = "", cf = 0, cd = -1; return (t, i, e) => { ${lines.join(" ")} return { ${props.join(", ")} }; };`;
    const make = new Function("k", "I", "M", body) as (k: readonly Convert[], i: typeof integerAt, m: typeof MISMATCH) => PlainRow;
    return make(converts, integerAt, MISMATCH);
  } catch {
    return undefined;
  }
}

/** CSV records as rows for the chunked file source. */
class CsvReader<T> implements RecordReader<T> {
  readonly #parser: CsvParser;
  readonly #header: boolean;
  readonly #names: readonly string[] | undefined;
  readonly #types: readonly CsvColumnType[] | undefined;
  readonly #source: string;
  readonly #path: string;
  #headerPending = false;
  /** Builds a typed row (with columns). */
  #build: Build | undefined;
  /** Parses a typed row out of an unquoted record (with columns, once the layout is known). */
  #plain: PlainRow | undefined;
  /** Fields a row must have. */
  #width = -1;
  /** Header names, for rows of strings keyed by the header. */
  #keys: string[] | undefined;

  constructor(source: string, path: string, parser: CsvParser, header: boolean, columns: Readonly<Record<string, CsvColumnType>> | undefined) {
    this.#source = source;
    this.#path = path;
    this.#parser = parser;
    this.#header = header;
    if (columns !== undefined) {
      this.#names = Object.keys(columns);
      this.#types = this.#names.map((n) => columns[n] as CsvColumnType);
      const index = this.#names.map((_, i) => i);
      this.#build = builder(this.#names, this.#types, index);
      this.#plain = plainRow(parser.delimiter, this.#names, this.#types, index, this.#names.length);
      this.#width = this.#names.length;
    }
  }

  get newlines(): number {
    return this.#parser.newlines;
  }
  get needsHeader(): boolean {
    return this.#headerPending;
  }
  reset(): void {
    this.#headerPending = this.#header;
    // A header is split into fields; rows are parsed straight out of the text once their layout is known.
    this.#parser.lazy = !this.#header && this.#plain !== undefined;
  }
  end(text: string, i: number, final: boolean): number {
    return this.#parser.end(text, i, final);
  }

  value(text: string, i: number): T | typeof SKIP {
    const p = this.#parser;
    if (p.plain) {
      const e = p.stop;
      if (e === i) return SKIP;
      const row = (this.#plain as PlainRow)(text, i, e);
      if (row !== MISMATCH) return row as T;
      p.split(text, i, e);
      throw new Error(`expected ${this.#width} fields, got ${p.count}`);
    }
    if (p.error !== undefined) throw new Error(p.error);
    const n = p.count;
    if (n === 0) return SKIP;
    const fields = p.fields;
    if (this.#headerPending) {
      this.#headerPending = false;
      this.#readHeader(fields.slice(0, n));
      return SKIP;
    }
    if (this.#width >= 0 && n !== this.#width) throw new Error(`expected ${this.#width} fields, got ${n}`);
    if (this.#build !== undefined) return this.#build(fields) as T;
    const keys = this.#keys;
    if (keys !== undefined) {
      const row: Record<string, string> = {};
      for (let c = 0; c < keys.length; c++) put(row, keys[c] as string, fields[c] as string);
      return row as T;
    }
    return fields.slice(0, n) as T;
  }

  #readHeader(header: string[]): void {
    this.#width = header.length;
    if (this.#names === undefined) {
      this.#keys = header;
      return;
    }
    const missing = this.#names.filter((n) => !header.includes(n));
    if (missing.length > 0) {
      throw new HeaderError(`csv source "${this.#source}": the header of "${this.#path}" has no column ${missing.map((m) => JSON.stringify(m)).join(", ")} (it has ${header.map((h) => JSON.stringify(h)).join(", ")})`);
    }
    const index = this.#names.map((n) => header.indexOf(n));
    this.#build = builder(this.#names, this.#types as readonly CsvColumnType[], index);
    this.#plain = plainRow(this.#parser.delimiter, this.#names, this.#types as readonly CsvColumnType[], index, header.length);
    this.#parser.lazy = this.#plain !== undefined;
  }
}

/** A header that lacks a column: no row of the file can be read, so the job fails. */
class HeaderError extends SourceError {}

/**
 * Creates a CSV file source (see the module documentation for the format, the rows and bad records).
 *
 * @example
 * ```ts
 * import { Job, sinkFn } from "gress";
 * import { csvSource } from "gress/file";
 *
 * type Reading = { device: string; celsius: number };
 * const job = new Job();
 * job
 *   .source(csvSource<Reading>({ path: "readings.csv", header: true, columns: { device: "string", celsius: "number" } }))
 *   .filter((r) => r.celsius > 30)
 *   .sinkTo(sinkFn("hot", (r) => console.log(r.device)));
 * await job.run();
 * ```
 */
export function csvSource<T = Record<string, unknown>>(options: CsvSourceOptions<T>): FileSource<T> {
  const o = validate(schema, options, "csvSource");
  const name = o.name ?? "csv";
  const reader = new CsvReader<T>(name, o.path, new CsvParser(o.delimiter), o.header ?? false, options.columns);
  return new FileSource<T>(
    {
      path: o.path,
      name,
      ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
      ...(o.batch === undefined ? {} : { batch: o.batch }),
      ...(o.chunkBytes === undefined ? {} : { chunkBytes: o.chunkBytes }),
    },
    reader,
  );
}
