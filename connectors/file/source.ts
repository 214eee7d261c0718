/**
 * A replayable NDJSON file source: one JSON value per line. Its position is the byte offset of the first line
 * not yet emitted, so a restored job seeks straight to it and replays exactly what came after the checkpoint.
 * A line that does not parse, or that nests deeper than `maxDepth`, goes to the dead-letter output with the
 * byte offset and the reason; it is never dropped silently, and it does not stop the job. A last line without
 * a final newline is read as a line. A close() during open() closes the file open() was opening.
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
/** Characters of a too deeply nested line kept in its dead letter. */
const PREVIEW = 256;

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
  readonly #parse: (line: string) => T;
  /** The depth bound of the default parse; undefined with the user's own parse. */
  readonly #maxDepth: number | undefined;
  readonly #batch: number;
  readonly #chunk: number;
  readonly #decoder = new TextDecoder();
  #ctx: SourceContext<T> | undefined;
  #file: FileHandle | undefined;
  /** The file being opened: a close() during open() waits for it and closes it. */
  #opening: Promise<FileHandle> | undefined;
  /** File offset of the first byte not yet emitted (the position). */
  #offset = 0;
  /** The file's size when it was opened. */
  #size: number | undefined;
  #buf: Uint8Array = new Uint8Array(0);
  #start = 0;
  #eof = false;
  #paused = false;
  #closed = false;
  #scheduled = false;
  #reading = false;
  #acked = 0;
  /** Counts open() calls: a read or timer of an earlier (closed) run sees a different number and stops. */
  #run = 0;
  /** The last close(): the next open() waits for it, so that one run's handle is released before the next. */
  #closing: Promise<void> = Promise.resolve();

  constructor(options: FileSourceOptions<T>) {
    const o = validate(schema, options, "fileSource");
    this.name = o.name ?? "file";
    this.#path = o.path;
    this.#timestamp = options.timestamp;
    this.#parse = options.parse ?? ((line) => JSON.parse(line) as T);
    this.#maxDepth = options.parse === undefined ? (o.maxDepth ?? DEFAULT_MAX_DEPTH) : undefined;
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
    this.#buf = new Uint8Array(0);
    this.#start = 0;
    this.#offset = pos ?? 0;
    this.#acked = pos ?? 0;
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
    this.#size = await file.stat().then(
      (st) => st.size,
      () => undefined,
    );
    if (this.#closed || run !== this.#run) return;
    this.#pump();
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
    setTimeout(() => {
      if (run !== this.#run) return;
      this.#scheduled = false;
      this.#pump();
    }, 0);
  }

  #pump(): void {
    const ctx = this.#ctx;
    if (ctx === undefined || this.#closed || this.#reading) return;
    for (let n = 0; n < this.#batch; n++) {
      if (this.#paused || this.#closed) return;
      const buf = this.#buf;
      const nl = buf.indexOf(NEWLINE, this.#start);
      if (nl < 0) {
        if (!this.#eof) {
          this.#readMore();
          return;
        }
        if (this.#start < buf.length) this.#emitLine(buf.subarray(this.#start), buf.length - this.#start);
        this.#start = buf.length;
        ctx.end();
        return;
      }
      this.#emitLine(buf.subarray(this.#start, nl), nl + 1 - this.#start);
      this.#start = nl + 1;
    }
    this.#schedule();
  }

  #emitLine(bytes: Uint8Array, consumed: number): void {
    const ctx = this.#ctx!;
    const at = this.#offset;
    // The position moves past the line before it is emitted: a checkpoint taken after it includes it.
    this.#offset += consumed;
    let text = this.#decoder.decode(bytes);
    if (text.endsWith("\r")) text = text.slice(0, -1);
    if (text.trim() === "") return;
    const deep = this.#maxDepth === undefined ? undefined : depthViolation(bytes, this.#maxDepth);
    if (deep !== undefined) {
      ctx.deadLetter(text.slice(0, PREVIEW), `file "${this.#path}" byte ${at}: ${deep}`);
      return;
    }
    let value: T;
    let ts: number | undefined;
    try {
      value = this.#parse(text);
      if (this.#timestamp !== undefined) {
        ts = this.#timestamp(value);
        if (!Number.isFinite(ts)) throw new TypeError(`timestamp must be a finite number, got ${String(ts)}`);
      }
    } catch (err) {
      ctx.deadLetter(text, `file "${this.#path}" byte ${at}: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    ctx.emit(value, ts, this.name);
  }

  #readMore(): void {
    const file = this.#file;
    if (file === undefined) return;
    this.#reading = true;
    const rest = this.#buf.subarray(this.#start);
    const chunk = new Uint8Array(rest.length + Math.max(this.#chunk, rest.length));
    chunk.set(rest);
    const run = this.#run;
    file
      .read(chunk, rest.length, chunk.length - rest.length, this.#offset + rest.length)
      .then(({ bytesRead }) => {
        // Read for a run that was closed (and perhaps opened again since): not this run's bytes.
        if (run !== this.#run || this.#closed) return;
        this.#reading = false;
        this.#buf = chunk.subarray(0, rest.length + bytesRead);
        this.#start = 0;
        if (bytesRead === 0) this.#eof = true;
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
