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
 * records are cut and parsed out of that text, and a line split across two chunks is carried over as bytes.
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
  /** Event time of a value. Default: processing time. */
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
  readonly #parse: ((line: string) => T) | undefined;
  readonly #maxDepth: number | undefined;
  constructor(parse: ((line: string) => T) | undefined, maxDepth: number | undefined) {
    this.#parse = parse;
    this.#maxDepth = maxDepth;
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
  readonly #batch: number;
  readonly #chunk: number;
  readonly #decoder = new TextDecoder();
  #ctx: SourceContext<T> | undefined;
  #file: FileHandle | undefined;
  /** The file being opened: a close() during open() waits for it and closes it. */
  #opening: Promise<FileHandle> | undefined;
  /** File offset of the first byte not yet emitted (the position); it is the file offset of #buf[#start]. */
  #offset = 0;
  /** 1-based line number of the byte at #offset (for error messages); 0 until known on a restored run. */
  #line = 1;
  /** The file's size when it was opened. */
  #size: number | undefined;
  #buf: Uint8Array = new Uint8Array(0);
  #start = 0;
  /** #buf[#start..#textEnd) decoded: the whole lines of the chunk (all of it at the end of the file). */
  #text = "";
  /** Index in #text of the next record, whose first byte is #buf[#start]. */
  #ti = 0;
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
    this.#reader = reader ?? new NdjsonReader<T>(options.parse, options.parse === undefined ? (o.maxDepth ?? DEFAULT_MAX_DEPTH) : undefined);
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
    this.#closing = this.#release();
    return this.#closing;
  }

  async #release(): Promise<void> {
    const f = this.#file ?? (await this.#opening?.catch(() => undefined));
    this.#file = undefined;
    this.#opening = undefined;
    await f?.close();
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
    const reader = this.#reader;
    // Without a timestamp function, the records of one turn share the processing time the turn began at:
    // the time they were read (one clock read per turn, not one per record).
    const now = this.#timestamp === undefined ? ctx.clock.now() : undefined;
    for (let n = 0; n < this.#batch; n++) {
      if (this.#paused || this.#closed) return;
      let text = this.#text;
      let i = this.#ti;
      if (i >= text.length) {
        if (!this.#decode()) {
          if (this.#eof) ctx.end();
          else this.#readMore();
          return;
        }
        text = this.#text;
        i = 0;
      }
      const end = reader.end(text, i, this.#final);
      const line = this.#line;
      const offset = this.#offset;
      if (end < 0) {
        if (this.#final) {
          // A record still open at the end of the file (an unterminated quoted CSV field).
          this.#consume(i, text.length, 0);
          this.#bad(recordText(text, i, text.length), "unterminated quoted field at the end of the file", line, offset);
          continue;
        }
        // The record goes on past the buffered lines: read on, then decode again from its first byte.
        this.#text = "";
        this.#ti = 0;
        this.#readMore();
        return;
      }
      const at = this.#start;
      this.#consume(i, end, reader.newlines);
      this.#line += reader.newlines;
      let value: T | typeof SKIP;
      let ts = now;
      try {
        value = reader.value(text, i, end, this.#buf, at, this.#start);
        if (value === SKIP) continue;
        if (this.#timestamp !== undefined) {
          ts = this.#timestamp(value);
          if (!Number.isFinite(ts)) throw new TypeError(`timestamp must be a finite number, got ${String(ts)}`);
        }
      } catch (err) {
        // A SourceError is about the whole file (a CSV header without a column the rows need): the job fails.
        if (err instanceof SourceError) {
          this.#closed = true;
          ctx.fail(err);
          return;
        }
        const raw = recordText(text, i, end);
        this.#bad(err instanceof DeepLine ? raw.slice(0, PREVIEW) : raw, err instanceof Error ? err.message : String(err), line, offset);
        continue;
      }
      ctx.emit(value, ts, this.name);
    }
    this.#schedule();
  }

  /** Moves past text[i..end): the position first, so that a checkpoint taken after the record includes it. */
  #consume(i: number, end: number, newlines: number): void {
    const before = this.#start;
    if (this.#ascii) this.#start += end - i;
    else if (end === this.#text.length) this.#start = this.#textEnd;
    else for (let k = 0; k < newlines; k++) this.#start = this.#buf.indexOf(NEWLINE, this.#start) + 1;
    this.#offset += this.#start - before;
    this.#ti = end;
  }

  /** A bad record to dead letters; the reason names the file, the line and byte offset where it starts. */
  #bad(raw: string, reason: string, line: number, offset: number): void {
    this.#ctx!.deadLetter(raw, `file "${this.#path}" line ${line} (byte ${offset}): ${reason}`);
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
