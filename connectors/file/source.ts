/**
 * A replayable NDJSON file source: one JSON value per line. Its position is the byte offset of the first line
 * not yet emitted, so a restored job seeks straight to it and replays exactly what came after the checkpoint.
 * A line that does not parse, or that nests deeper than `maxDepth`, goes to the dead-letter output with the
 * file, its line number, byte offset and the reason; it is never dropped silently, and it does not stop the
 * job. A last line without a final newline is read as a line; CRLF line ends are fine; blank lines are
 * skipped. A close() during open() closes the file open() was opening. Without a `timestamp` function, the
 * records emitted in one event-loop turn (up to `batch`) share the processing time at which that turn began.
 *
 * The file is read in large chunks (`chunkBytes`) and the whole lines of a chunk are decoded to text at once;
 * records are cut and parsed out of that text a run at a time (up to 256) and then emitted one by one, the
 * position moving with each; a line split across two chunks is carried over as bytes.
 * The same reader runs CSV ({@link csvSource} in ./csv.ts). A run restored past byte 0 counts the lines
 * before its position once at open (a scan of that prefix), so that error messages name the right line.
 *
 * Opened again after close() (a restart), it starts over from the `from` position it is given (the
 * restored checkpoint's byte offset), or from the start of the file without one: a read still in flight for
 * the closed run is discarded, and the file is opened anew once the previous close() released it.
 *
 * @example
 * ```ts
 * job.source(fileSource<Order>({ path: "orders.ndjson", timestamp: (o) => o.at }))
 * ```
 * @module
 */
import { type FileHandle, open } from "node:fs/promises";
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { SourceError } from "../../lib/errors.ts";
import { runSoon } from "../../lib/runtime.ts";
import { DEFAULT_MAX_DEPTH, depthViolation } from "../ingest/decode.ts";
import { NextIndex } from "./next-index.ts";
import type { Positions, Source, SourceContext, SourceProgress } from "../../lib/source.ts";

/**
 * Options of {@link fileSource}.
 *
 * @example
 * ```ts
 * import { type FileSourceOptions, fileSource } from "gress/file";
 *
 * type Event = { at: number; kind: string };
 * // Read in 1 MiB chunks, emit 1 000 records per batch, the event time from each line.
 * const options: FileSourceOptions<Event> = { path: "events.ndjson", name: "events", timestamp: (e) => e.at, chunkBytes: 1 << 20, batch: 1_000 };
 * const source = fileSource(options);
 * ```
 */
export interface FileSourceOptions<T> {
  /** The NDJSON file. */
  readonly path: string;
  /** Source name, unique in the job. Default "file". */
  readonly name?: string;
  /**
   * Event time of a value. Default: processing time. Called when the line is parsed, up to 256 records before
   * the value is emitted, and again for lines read again after a restart: keep it free of side effects.
   */
  readonly timestamp?: (value: T) => number;
  /** Turns a line into a value. Default JSON.parse. A throw sends the line to dead letters. */
  readonly parse?: (line: string) => T;
  /**
   * With the default parse: lines whose arrays and objects nest deeper than this go to dead letters, checked
   * before parsing (a deeper value would overflow the stack of whatever serialises it later). Default 128.
   */
  readonly maxDepth?: number;
  /** Records emitted per event-loop turn. Default 4096. */
  readonly batch?: number;
  /** Bytes read at a time. Default 1 MiB. */
  readonly chunkBytes?: number;
}

const schema = z.strictObject({
  path: z.string().min(1),
  name: z.string().min(1).optional(),
  timestamp: z.function().optional(),
  parse: z.function().optional(),
  maxDepth: z.number().int().positive().optional(),
  batch: z.number().int().positive().optional(),
  chunkBytes: z.number().int().min(16).optional(),
});

const NEWLINE = 10;
const CR = 13;
/** Characters of a too deeply nested line kept in its dead letter. */
const PREVIEW = 256;

/** Records cut and parsed at a time (see FileSource.#cut). */
const SLAB = 256;
/** What a cut record is: a record to emit, a blank line, a bad record (a dead letter), the end of the job. */
type Kind = 0 | 1 | 2 | 3;
const RECORD: Kind = 0;
const SKIPPED: Kind = 1;
const BAD: Kind = 2;
const FAILED: Kind = 3;
/** What a {@link RecordReader} returns for a record that makes no value (a blank line, a CSV header). */
export const SKIP: unique symbol = Symbol("skip");

/**
 * How a chunked file source cuts decoded text into records and turns each into a value (NDJSON here, CSV in
 * ./csv.ts). The source hands it the text of whole lines (decoded once per chunk, never per line) and moves
 * the byte offset and the line number by what it reports.
 * @internal
 */
export interface RecordReader<T> {
  /**
   * Finds the end of the record that starts at `text[i]`: the index after its terminating newline, or
   * `text.length` for a last record without one (only when `final`), or -1 when the record goes on past the
   * end of `text` (more bytes are needed). Sets {@link newlines} to the newlines it consumed.
   */
  end(text: string, i: number, final: boolean): number;
  /** Newlines inside the record found by the last end() (its terminator included). */
  readonly newlines: number;
  /**
   * The value of the record found by the last end(), which spans `text[i..end)` and the bytes
   * `buf[from..to)`; SKIP when it makes none. Throws an Error whose message is the reason when it is bad.
   */
  value(text: string, i: number, end: number, buf: Uint8Array, from: number, to: number): T | typeof SKIP;
  /** Called by open() before the first record of a run; `from` is the byte offset the run starts at. */
  reset(from: number): void;
  /** True while the reader waits for the file's first record (a CSV header): a run restored past byte 0 reads it first. */
  readonly needsHeader: boolean;
}

/** The end of a line-terminated record: text.length at the end of a last line without a newline. */
function lineEnd(text: string, i: number, final: boolean): number {
  const nl = text.indexOf("\n", i);
  return nl >= 0 ? nl + 1 : final ? text.length : -1;
}

/** The record text[i..end) without its line terminator (\n or \r\n). */
export function recordText(text: string, i: number, end: number): string {
  let e = end;
  if (e > i && text.charCodeAt(e - 1) === NEWLINE) e--;
  if (e > i && text.charCodeAt(e - 1) === CR) e--;
  return text.slice(i, e);
}

/** NDJSON: one JSON value per line; blank lines are skipped. */
class NdjsonReader<T> implements RecordReader<T> {
  newlines = 1;
  readonly needsHeader = false;
  /** The depth limit when the source parses lines with JSON.parse itself (see FileSource.#cut); -1 with a parse function. */
  readonly plainDepth: number;
  readonly #parse: ((line: string) => T) | undefined;
  readonly #maxDepth: number | undefined;
  constructor(parse: ((line: string) => T) | undefined, maxDepth: number | undefined) {
    this.#parse = parse;
    this.#maxDepth = maxDepth;
    this.plainDepth = parse === undefined ? (maxDepth ?? Number.MAX_SAFE_INTEGER) : -1;
  }
  reset(): void {}
  end(text: string, i: number, final: boolean): number {
    const e = lineEnd(text, i, final);
    this.newlines = e > 0 && text.charCodeAt(e - 1) === NEWLINE ? 1 : 0;
    return e;
  }
  value(text: string, i: number, end: number, buf: Uint8Array, from: number, to: number): T | typeof SKIP {
    if (this.#parse !== undefined) {
      const line = recordText(text, i, end);
      return line.trim() === "" ? SKIP : this.#parse(line);
    }
    // Nesting deeper than maxDepth takes more than maxDepth characters: short lines need no depth scan.
    if (this.#maxDepth !== undefined && end - i > this.#maxDepth) {
      const deep = depthViolation(buf.subarray(from, to), this.#maxDepth);
      if (deep !== undefined) throw new DeepLine(deep);
    }
    // A slice of the chunk's text (no copy of the line).
    const line = recordText(text, i, end);
    if (line === "") return SKIP;
    try {
      return JSON.parse(line) as T;
    } catch (err) {
      if (line.trim() === "") return SKIP;
      throw err;
    }
  }
}

/**
 * Counts the `{` and `[` of a line with indexOf: a line with at most `limit` of them cannot nest deeper than
 * `limit`, so it needs no depth scan. Asked about the lines of a text in order, it searches for each
 * character once per occurrence (see {@link NextIndex}), so a text without one is searched once.
 */
class Openers {
  readonly #brace = new NextIndex("{");
  readonly #bracket = new NextIndex("[");
  /** True when text[i..end) holds at most `limit` of them. */
  atMost(text: string, i: number, end: number, limit: number): boolean {
    let n = 0;
    for (let b = this.#brace.in(text, i); b < end && n <= limit; b = this.#brace.in(text, b + 1)) n++;
    for (let b = this.#bracket.in(text, i); b < end && n <= limit; b = this.#bracket.in(text, b + 1)) n++;
    return n <= limit;
  }
}

/** A line nested too deeply: its dead letter keeps only a preview. */
class DeepLine extends Error {}

/**
 * The NDJSON file source.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { type FileSource, fileSource } from "gress/file";
 *
 * const source: FileSource<{ id: number }> = fileSource({ path: "in.ndjson" });
 * const job = new Job();
 * const ids = job.source(source).map((r) => r.id);
 * ```
 */
export class FileSource<T> implements Source<T> {
  readonly name: string;
  readonly #path: string;
  readonly #timestamp: ((value: T) => number) | undefined;
  readonly #reader: RecordReader<T>;
  /** NDJSON parsed with JSON.parse: the depth limit of its lines (see #cut); -1 for any other reader. */
  readonly #plainDepth: number;
  readonly #batch: number;
  readonly #chunk: number;
  readonly #decoder = new TextDecoder();
  #ctx: SourceContext<T> | undefined;
  #file: FileHandle | undefined;
  /** The file being opened: a close() during open() waits for it and closes it. */
  #opening: Promise<FileHandle> | undefined;
  /**
   * File offset of the first byte not yet emitted (the position). While no cut record waits to be emitted,
   * it is the file offset of #buf[#start].
   */
  #offset = 0;
  /** 1-based line number of the byte at #buf[#start] (for error messages); 0 until known on a restored run. */
  #line = 1;
  /** The file's size when it was opened. */
  #size: number | undefined;
  #buf: Uint8Array = new Uint8Array(0);
  /** Index in #buf of the first byte not yet cut into a record. */
  #start = 0;
  /** #buf[#start..#textEnd) decoded: the whole lines of the chunk (all of it at the end of the file). */
  #text = "";
  /** Index in #text of the next record to cut, whose first byte is #buf[#start]. */
  #ti = 0;
  /** The `{` and `[` of #text, looked for line by line (see #cut). */
  readonly #openers = new Openers();
  /**
   * The records cut from #text and not yet emitted (see #cut): #cutAt to #cutLength. For each: its kind,
   * its value (the record, the raw text of a bad one, the error that ends the job), its event time with a
   * timestamp function, the dead letter's reason, and the file offset after it (the position once emitted).
   */
  #cutAt = 0;
  #cutLength = 0;
  readonly #kinds = new Uint8Array(SLAB);
  readonly #values: unknown[] = new Array(SLAB).fill(undefined);
  readonly #times = new Float64Array(SLAB);
  readonly #reasons: (string | undefined)[] = new Array(SLAB).fill(undefined);
  readonly #offsets = new Float64Array(SLAB);
  #textEnd = 0;
  /** #text has as many characters as bytes, so a character index is a byte index too. */
  #ascii = true;
  /** #text reaches the end of the file. */
  #final = false;
  #eof = false;
  /**
   * The read-ahead: the chunk at file offset `at`, being read while the buffer is parsed, into `into` from
   * index `room`: the bytes before it take the buffer's unparsed rest without a copy into a new buffer.
   */
  #ahead: { readonly at: number; readonly into: Uint8Array; readonly room: number; readonly bytes: Promise<number | Error> } | undefined;
  /** A buffer no longer in use (the one before #buf), for the next read-ahead: no new buffer per chunk. */
  #spare: Uint8Array | undefined;
  #paused = false;
  #closed = false;
  #scheduled = false;
  #reading = false;
  #acked = 0;
  /** Counts open() calls: a read or timer of an earlier (closed) run sees a different number and stops. */
  #run = 0;
  /** The last close(): the next open() waits for it, so that one run's handle is released before the next. */
  #closing: Promise<void> = Promise.resolve();

  /** `reader` is how records are cut and parsed (NDJSON without one; see csvSource). */
  constructor(options: FileSourceOptions<T>, reader?: RecordReader<T>) {
    const o = validate(schema, options, "fileSource");
    this.name = o.name ?? "file";
    this.#path = o.path;
    this.#timestamp = options.timestamp;
    const ndjson = reader === undefined ? new NdjsonReader<T>(options.parse, options.parse === undefined ? (o.maxDepth ?? DEFAULT_MAX_DEPTH) : undefined) : undefined;
    this.#reader = reader ?? (ndjson as NdjsonReader<T>);
    this.#plainDepth = ndjson?.plainDepth ?? -1;
    this.#batch = o.batch ?? 4096;
    this.#chunk = o.chunkBytes ?? 1 << 20;
  }

  async open(ctx: SourceContext<T>, from?: Positions): Promise<void> {
    const pos = from?.[this.name];
    if (pos !== undefined && (typeof pos !== "number" || !Number.isInteger(pos) || pos < 0)) {
      throw new SourceError(`file source "${this.name}": position must be a byte offset (a non-negative integer), got ${JSON.stringify(pos)}`);
    }
    // Everything a previous run (closed by a restart) left is reset: this run starts at `from` or at byte 0.
    const run = ++this.#run;
    this.#closed = false;
    await this.#closing;
    // Closed again while the previous close() was finishing.
    if (this.#closed || run !== this.#run) return;
    this.#ctx = ctx;
    this.#paused = ctx.paused;
    this.#scheduled = false;
    this.#reading = false;
    this.#eof = false;
    this.#ahead = undefined;
    // A closed run's read may still be filling its buffers: this run reads into buffers of its own.
    this.#spare = undefined;
    this.#buf = new Uint8Array(0);
    this.#start = 0;
    this.#text = "";
    this.#ti = 0;
    this.#dropCut();
    this.#textEnd = 0;
    this.#final = false;
    this.#offset = pos ?? 0;
    this.#line = 1;
    this.#acked = pos ?? 0;
    this.#reader.reset(this.#offset);
    this.#opening = open(this.#path, "r");
    let file: FileHandle;
    try {
      file = await this.#opening;
    } catch (err) {
      throw new SourceError(`file source "${this.name}": cannot open "${this.#path}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    // Closed while the file was opening (the job failed or was cancelled): close() closes this handle.
    if (this.#closed || run !== this.#run) return;
    this.#file = file;
    try {
      if (this.#offset > 0) this.#line = await this.#prefix(file, this.#offset);
    } catch (err) {
      if (this.#closed || run !== this.#run) return;
      throw new SourceError(`file source "${this.name}": cannot read "${this.#path}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (this.#closed || run !== this.#run) return;
    this.#size = await file.stat().then(
      (st) => st.size,
      () => undefined,
    );
    if (this.#closed || run !== this.#run) return;
    this.#pump();
  }

  /**
   * A run restored at byte `to`: counts the lines before it (so that errors name the right line) and lets
   * the reader see the file's first record when it needs it (a CSV header). Returns the line number at `to`.
   */
  async #prefix(file: FileHandle, to: number): Promise<number> {
    const reader = this.#reader;
    let line = 1;
    let carry = "";
    let j = 0;
    const chunk = new Uint8Array(Math.min(this.#chunk, to));
    for (let at = 0; at < to; ) {
      const { bytesRead } = await file.read(chunk, 0, Math.min(chunk.length, to - at), at);
      if (bytesRead === 0) break;
      const bytes = chunk.subarray(0, bytesRead);
      for (let i = bytes.indexOf(NEWLINE); i >= 0; i = bytes.indexOf(NEWLINE, i + 1)) line++;
      at += bytesRead;
      if (reader.needsHeader) {
        carry += this.#decoder.decode(bytes, { stream: at < to });
        for (let end = reader.end(carry, j, at >= to); end >= 0 && reader.needsHeader; end = reader.end(carry, j, at >= to)) {
          reader.value(carry, j, end, chunk, 0, 0);
          j = end;
        }
      }
    }
    return line;
  }

  /** Bytes read of the file's size at open (a file that grows meanwhile shows more than 100% until the end). */
  progress(): SourceProgress | undefined {
    return this.#size === undefined ? undefined : { done: this.#offset, total: Math.max(this.#size, this.#offset), unit: "bytes" };
  }
  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#schedule();
  }
  positions(): Positions {
    return { [this.name]: this.#offset };
  }
  /** Remembers the acknowledged offset (a file needs no upstream acknowledgement). */
  async ack(positions: Positions): Promise<void> {
    const pos = positions[this.name];
    if (typeof pos === "number") this.#acked = pos;
  }
  /** The last acknowledged byte offset. */
  get acked(): number {
    return this.#acked;
  }
  close(): Promise<void> {
    this.#closed = true;
    this.#dropCut();
    this.#closing = this.#release();
    return this.#closing;
  }

  async #release(): Promise<void> {
    const f = this.#file ?? (await this.#opening?.catch(() => undefined));
    this.#file = undefined;
    this.#opening = undefined;
    await f?.close();
  }

  /** Forgets the records cut and not emitted (a run that ends, or starts over from its position). */
  #dropCut(): void {
    this.#cutAt = 0;
    this.#cutLength = 0;
    this.#values.fill(undefined);
    this.#reasons.fill(undefined);
  }

  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    const run = this.#run;
    // The next turn of the event loop (timers and I/O run first), without a timer's minimum delay.
    runSoon(() => {
      if (run !== this.#run) return;
      this.#scheduled = false;
      this.#pump();
    });
  }

  /**
   * Decodes the whole lines of the buffer from #start into #text (one decode per chunk); at the end of the
   * file, the rest too. False when no whole line is buffered (more bytes are needed) or nothing is left.
   */
  #decode(): boolean {
    const buf = this.#buf;
    let end = buf.length;
    if (!this.#eof) {
      end = buf.lastIndexOf(NEWLINE) + 1;
      if (end <= this.#start) return false;
    } else if (end <= this.#start) return false;
    this.#text = this.#decoder.decode(buf.subarray(this.#start, end));
    this.#ti = 0;
    this.#textEnd = end;
    this.#final = end === buf.length && this.#eof;
    // Every decoded character comes from at least one byte, and only an ASCII byte (or a lone bad byte)
    // gives exactly one: equal lengths mean character and byte indices coincide.
    this.#ascii = this.#text.length === end - this.#start;
    this.#prefetch();
    return true;
  }

  #pump(): void {
    const ctx = this.#ctx;
    if (ctx === undefined || this.#closed || this.#reading) return;
    // Without a timestamp function, the records of one turn share the processing time the turn began at:
    // the time they were read (one clock read per turn, not one per record).
    const now = this.#timestamp === undefined ? ctx.clock.now() : undefined;
    const name = this.name;
    for (let n = this.#batch; n > 0; ) {
      if (this.#paused || this.#closed) return;
      if (this.#cutAt >= this.#cutLength) {
        if (this.#ti >= this.#text.length && !this.#decode()) {
          if (this.#eof) ctx.end();
          else this.#readMore();
          return;
        }
        if (this.#cut() === 0) {
          // The record goes on past the buffered lines: read on, then decode again from its first byte.
          this.#text = "";
          this.#ti = 0;
          this.#readMore();
          return;
        }
      }
      const stop = Math.min(this.#cutLength, this.#cutAt + n);
      n -= stop - this.#cutAt;
      for (let k = this.#cutAt; k < stop; ) {
        // The position first, so that a checkpoint taken after the record includes it.
        this.#offset = this.#offsets[k] as number;
        const value = this.#values[k];
        this.#values[k] = undefined;
        const kind = this.#kinds[k];
        this.#cutAt = ++k;
        if (kind === RECORD) ctx.emit(value as T, now ?? (this.#times[k - 1] as number), name);
        else if (kind === BAD) ctx.deadLetter(value, this.#reasons[k - 1] as string);
        else if (kind === FAILED) {
          this.#closed = true;
          ctx.fail(value);
          return;
        }
        // Paused or closed by what the record caused downstream.
        if (this.#paused || this.#closed) return;
      }
    }
    this.#schedule();
  }

  /**
   * Cuts the records after #ti out of #text and parses them (and times them with the timestamp function),
   * up to SLAB of them, into the cut records that #pump emits. Parsing a run of records first and emitting
   * them after keeps both loops small: the parser's and the pipeline's code and data do not evict each other
   * at every record. #ti, #start and #line move past the cut records here; the position (#offset) moves
   * record by record as they are emitted. Returns how many records were cut: 0 when the record at #ti goes
   * on past the buffered text.
   */
  #cut(): number {
    const text = this.#text;
    const reader = this.#reader;
    const final = this.#final;
    const stamp = this.#timestamp;
    // NDJSON parsed with JSON.parse: lines that cannot nest deeper than this take the short way.
    const plainDepth = this.#plainDepth;
    const ascii = this.#ascii;
    // The file offset of buffer index b is base + b.
    const base = this.#offset - this.#start;
    let i = this.#ti;
    let start = this.#start;
    let line = this.#line;
    let k = 0;
    for (; k < SLAB && i < text.length; k++) {
      if (plainDepth >= 0) {
        const nl = text.indexOf("\n", i);
        // Every line with its newline, too short or with too few `{` and `[` to nest deeper than the limit
        // (no depth scan): the same as the general way below gives, in fewer steps. A carriage return before
        // the newline is whitespace to JSON.parse, and blank to trim().
        if (nl > i && (nl - i <= plainDepth || this.#openers.atMost(text, i, nl, plainDepth))) {
          let kind = RECORD;
          try {
            const value = JSON.parse(text.slice(i, nl)) as T;
            this.#values[k] = value;
            if (stamp !== undefined) this.#times[k] = this.#eventTime(value);
          } catch (err) {
            // A line of spaces or tabs is blank (a line that parsed is not).
            kind = text.slice(i, nl).trim() === "" ? SKIPPED : this.#refuse(k, err, text, i, nl + 1, line, base + start);
          }
          this.#kinds[k] = kind;
          // In an ASCII chunk a character index is a byte index; otherwise the line ends at the buffer's next
          // newline byte (the text's newlines are its newline bytes, one for one).
          start = ascii ? start + (nl + 1 - i) : this.#buf.indexOf(NEWLINE, start) + 1;
          this.#offsets[k] = base + start;
          i = nl + 1;
          line++;
          continue;
        }
      }
      const end = reader.end(text, i, final);
      const from = start;
      let newlines = reader.newlines;
      let kind = RECORD;
      if (end < 0) {
        // The record goes on past the buffered lines: the records before it are emitted first.
        if (!final) break;
        // A record still open at the end of the file (an unterminated quoted CSV field).
        start = this.#textEnd;
        newlines = 0;
        kind = this.#refuse(k, new Error("unterminated quoted field at the end of the file"), text, i, text.length, line, base + from);
        i = text.length;
      } else {
        if (this.#ascii) start += end - i;
        else if (end === text.length) start = this.#textEnd;
        else for (let q = 0; q < newlines; q++) start = this.#buf.indexOf(NEWLINE, start) + 1;
        try {
          const value = reader.value(text, i, end, this.#buf, from, start);
          if (value === SKIP) kind = SKIPPED;
          else {
            this.#values[k] = value;
            if (stamp !== undefined) this.#times[k] = this.#eventTime(value);
          }
        } catch (err) {
          kind = this.#refuse(k, err, text, i, end, line, base + from);
        }
        i = end;
      }
      this.#kinds[k] = kind;
      this.#offsets[k] = base + start;
      line += newlines;
    }
    this.#ti = i;
    this.#start = start;
    this.#line = line;
    this.#cutAt = 0;
    this.#cutLength = k;
    return k;
  }

  /** The record's event time from the timestamp function; a throw when it is not a finite number. */
  #eventTime(value: T): number {
    const ts = (this.#timestamp as (value: T) => number)(value);
    if (!Number.isFinite(ts)) throw new TypeError(`timestamp must be a finite number, got ${String(ts)}`);
    return ts;
  }

  /**
   * Cut record `k`, text[i..end) starting at `line` and file `offset`, could not be read or timed: a dead
   * letter whose reason names the file, the line and the byte offset (BAD); or, when the error is about the
   * whole file (a SourceError: a CSV header without a column the rows need), the end of the job (FAILED).
   */
  #refuse(k: number, err: unknown, text: string, i: number, end: number, line: number, offset: number): Kind {
    if (err instanceof SourceError) {
      this.#values[k] = err;
      return FAILED;
    }
    const raw = recordText(text, i, end);
    this.#values[k] = err instanceof DeepLine ? raw.slice(0, PREVIEW) : raw;
    this.#reasons[k] = `file "${this.#path}" line ${line} (byte ${offset}): ${err instanceof Error ? err.message : String(err)}`;
    return BAD;
  }

  /** Starts reading the chunk after the buffer while the buffer's lines are parsed (read-ahead). */
  #prefetch(): void {
    const file = this.#file;
    if (file === undefined || this.#eof || this.#ahead !== undefined) return;
    const at = this.#offset + (this.#buf.length - this.#start);
    // Room before the chunk for what will be left of this buffer: the bytes after its last decoded line.
    const room = this.#buf.length - this.#textEnd;
    let into = this.#spare;
    this.#spare = undefined;
    if (into === undefined || into.length < room + this.#chunk) into = new Uint8Array(room + this.#chunk + Math.min(this.#chunk, 1 << 14));
    this.#ahead = {
      at,
      into,
      room,
      bytes: file.read(into, room, this.#chunk, at).then(
        ({ bytesRead }) => bytesRead,
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      ),
    };
  }

  #readMore(): void {
    const file = this.#file;
    if (file === undefined) return;
    this.#reading = true;
    const rest = this.#buf.subarray(this.#start);
    const at = this.#offset + rest.length;
    const ahead = this.#ahead;
    this.#ahead = undefined;
    let next: Promise<Uint8Array>;
    // The read-ahead, if it is of the bytes wanted; a record longer than a chunk being carried over doubles
    // the buffer instead (so that a very long record is scanned a logarithmic, not linear, number of times).
    if (ahead !== undefined && ahead.at === at && rest.length < this.#chunk) {
      next = ahead.bytes.then((n) => {
        if (n instanceof Error) throw n;
        const { into, room } = ahead;
        // The rest fits in the room left before the chunk (always, but for a CSV record of several lines).
        if (rest.length <= room) {
          into.set(rest, room - rest.length);
          return into.subarray(room - rest.length, room + n);
        }
        const joined = new Uint8Array(rest.length + n);
        joined.set(rest);
        joined.set(into.subarray(room, room + n), rest.length);
        return joined;
      });
    } else {
      const chunk = new Uint8Array(rest.length + Math.max(this.#chunk, rest.length));
      chunk.set(rest);
      next = file.read(chunk, rest.length, chunk.length - rest.length, at).then(({ bytesRead }) => chunk.subarray(0, rest.length + bytesRead));
    }
    const run = this.#run;
    next
      .then((buf) => {
        // Read for a run that was closed (and perhaps opened again since): not this run's bytes.
        if (run !== this.#run || this.#closed) return;
        this.#reading = false;
        // The buffer before is done with (its rest was copied): the next read-ahead reuses it.
        const old = this.#buf.buffer;
        if (old !== buf.buffer && old.byteLength > this.#chunk) this.#spare = new Uint8Array(old);
        this.#buf = buf;
        this.#start = 0;
        this.#text = "";
        this.#ti = 0;
        if (buf.length === rest.length) this.#eof = true;
        this.#pump();
      })
      .catch((err: unknown) => {
        if (run !== this.#run) return;
        this.#reading = false;
        if (!this.#closed) this.#ctx?.fail(new SourceError(`file source "${this.name}": read failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      });
  }

}

/**
 * Creates an NDJSON file source.
 *
 * @example
 * ```ts
 * import { Job, sinkFn } from "gress";
 * import { fileSource } from "gress/file";
 *
 * type Line = { at: number; msg: string };
 * // Reads an NDJSON file; the position is the byte offset, so a restored job resumes where it was.
 * const job = new Job();
 * job.source(fileSource<Line>({ path: "logs/app.ndjson", timestamp: (l) => l.at })).sinkTo(sinkFn("print", (l) => console.log(l.msg)));
 * ```
 */
export function fileSource<T = unknown>(options: FileSourceOptions<T>): FileSource<T> {
  return new FileSource(options);
}
