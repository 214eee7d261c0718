/**
 * A transactional NDJSON file sink: exactly-once output through two-phase commit.
 *
 * Records of the current transaction go to a hidden temporary file (`.<prefix>-<run>-<n>.inprogress`).
 * `preCommit(checkpointId)` flushes and fsyncs it and returns a handle naming it and its final name
 * (`<prefix>-<checkpointId>.ndjson`); `commit` renames it there atomically — idempotent: a commit whose temp
 * file is gone but whose final file exists did already happen — and `abort` deletes it. On open, leftover
 * temporary files (transactions that never reached a durable checkpoint) are deleted; the coordinator has
 * re-committed the restored checkpoint's pending handles before that. Readers see only committed part files.
 * A committed part file is never overwritten: the job numbers its checkpoints above the highest part file in
 * the directory (`committedCheckpoint`, asked at every start), and a commit that would replace one fails.
 *
 * Without checkpoints, the records are committed as one part file at the end of a bounded input.
 *
 * A value that has no line — `format` throws (JSON.stringify of a cyclic or too deeply nested value), or gives
 * something other than one line of text (`undefined`, text with a line break) — is refused by `write` with a
 * BadRecordError, so it goes to dead letters instead of failing the job or breaking the file.
 *
 * @example
 * ```ts
 * stream.sinkTo(fileSink({ dir: "out", prefix: "alerts" }))
 * ```
 * @module
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { SinkError } from "../../lib/errors.ts";
import { encodeRecord, type Sink } from "../../lib/sink.ts";

/**
 * Options of {@link fileSink}.
 *
 * @example
 * ```ts
 * import { type FileSinkOptions, fileSink } from "gress/file";
 *
 * type Row = { id: number; name: string };
 * // Part files named "users-<checkpoint>-....ndjson" in out/, one CSV-like line per row.
 * const options: FileSinkOptions<Row> = { dir: "out", name: "users", prefix: "users", format: (r) => `${r.id},${r.name}` };
 * const sink = fileSink(options);
 * ```
 */
export interface FileSinkOptions<T> {
  /** Output directory; created if missing. */
  readonly dir: string;
  /** Sink name, unique in the job. Default "file". */
  readonly name?: string;
  /** Part-file prefix. Default: the sink name. */
  readonly prefix?: string;
  /** One line per value (without the newline). Default JSON.stringify. */
  readonly format?: (value: T) => string;
}

/**
 * What preCommit hands to the coordinator: file names relative to the output directory.
 *
 * @example
 * ```ts
 * import type { FileSinkHandle } from "gress/file";
 *
 * // What the file sink's pre-commit returns and a checkpoint records: the temporary file and its final name.
 * const describe = (h: FileSinkHandle): string => `${h.records} records: ${h.temp} -> ${h.final}`;
 * ```
 */
export interface FileSinkHandle {
  readonly temp: string;
  readonly final: string;
  readonly records: number;
}

const schema = z.strictObject({
  dir: z.string().min(1),
  name: z.string().min(1).optional(),
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, '_', '.' or '-'")
    .optional(),
  format: z.function().optional(),
});

const FLUSH_BYTES = 256 * 1024;

interface Txn {
  readonly temp: string;
  readonly fd: number;
  records: number;
}

/**
 * The transactional file sink.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { type FileSink, fileSink } from "gress/file";
 *
 * const sink: FileSink<{ id: number }> = fileSink({ dir: "out", prefix: "ids" });
 * fromIterable([{ id: 1 }]).sinkTo(sink);
 * ```
 */
export class FileSink<T> implements Sink<T> {
  readonly name: string;
  readonly dir: string;
  readonly prefix: string;
  /** write keeps no record object (see Sink.keepsRecords). */
  readonly keepsRecords = false;
  readonly #format: (value: T) => string;
  readonly #run = crypto.randomUUID().slice(0, 8);
  #seq = 0;
  #txn: Txn | undefined;
  #buf: string[] = [];
  #bytes = 0;

  constructor(options: FileSinkOptions<T>) {
    const o = validate(schema, options, "fileSink");
    this.name = o.name ?? "file";
    this.dir = o.dir;
    this.prefix = o.prefix ?? this.name.replace(/[^A-Za-z0-9_.-]/g, "_");
    this.#format = options.format ?? ((v) => JSON.stringify(v));
  }

  /** The line of a value: one line of text, or a throw that makes the record a dead letter (see encodeRecord). */
  readonly #line = (value: T): string => {
    const text = this.#format(value) as unknown;
    if (typeof text !== "string") throw new TypeError(`a line must be a string, got ${typeof text}`);
    // A line break would split the record into two lines that a reader parses as two records (or none).
    if (text.includes("\n")) throw new TypeError("a line must not contain a line break");
    return text;
  };

  open(): void {
    mkdirSync(this.dir, { recursive: true });
    const stale = new RegExp(`^\\.${escapeRegExp(this.prefix)}-.*\\.inprogress$`);
    for (const f of readdirSync(this.dir)) if (stale.test(f)) unlinkSync(join(this.dir, f));
  }

  write(value: T): void {
    const line = `${encodeRecord("format", this.#line, value)}\n`;
    const txn = (this.#txn ??= this.#begin());
    txn.records++;
    this.#buf.push(line);
    this.#bytes += line.length;
    if (this.#bytes >= FLUSH_BYTES) this.#flushBuffer(txn);
  }

  async preCommit(checkpointId: number): Promise<FileSinkHandle | null> {
    const txn = this.#txn;
    if (txn === undefined) return null;
    this.#txn = undefined;
    this.#flushBuffer(txn);
    fsyncSync(txn.fd);
    closeSync(txn.fd);
    return { temp: txn.temp, final: `${this.prefix}-${String(checkpointId).padStart(12, "0")}.ndjson`, records: txn.records };
  }

  async commit(checkpointId: number, handle: unknown): Promise<void> {
    if (handle === null || handle === undefined) return;
    const h = checkHandle(handle, this.name);
    const temp = join(this.dir, h.temp);
    const final = join(this.dir, h.final);
    if (existsSync(temp)) {
      // Checkpoint ids are not reused (see committedCheckpoint), so a part file there is another job's or run's.
      if (existsSync(final)) {
        throw new SinkError(`file sink "${this.name}": cannot commit checkpoint ${checkpointId}: "${h.final}" already exists in "${this.dir}" and would be overwritten (does another job write there with prefix "${this.prefix}"?)`);
      }
      renameSync(temp, final);
      syncDir(this.dir);
    } else if (!existsSync(final)) {
      throw new SinkError(`file sink "${this.name}": cannot commit checkpoint ${checkpointId}: neither "${h.temp}" nor "${h.final}" exists in "${this.dir}"`);
    }
  }

  /** The highest checkpoint id of a committed part file in `dir`: the job's checkpoint ids continue above it. */
  async committedCheckpoint(): Promise<number | undefined> {
    if (!existsSync(this.dir)) return undefined;
    const part = new RegExp(`^${escapeRegExp(this.prefix)}-(\\d{12})\\.ndjson$`);
    let top: number | undefined;
    for (const f of readdirSync(this.dir)) {
      const m = part.exec(f);
      if (m !== null) top = Math.max(top ?? 0, Number(m[1]));
    }
    return top;
  }

  async abort(_checkpointId: number, handle: unknown): Promise<void> {
    if (handle === null || handle === undefined) return;
    const temp = join(this.dir, checkHandle(handle, this.name).temp);
    if (existsSync(temp)) unlinkSync(temp);
  }

  /** End of a bounded input: what no checkpoint committed (a job without checkpoints) becomes a part file. */
  flush(): void {
    const txn = this.#txn;
    if (txn === undefined) return;
    this.#txn = undefined;
    this.#flushBuffer(txn);
    fsyncSync(txn.fd);
    closeSync(txn.fd);
    renameSync(join(this.dir, txn.temp), join(this.dir, `${this.prefix}-end-${this.#run}-${this.#seq}.ndjson`));
    syncDir(this.dir);
  }

  /** Drops an uncommitted transaction (a cancelled job); committed files stay. */
  close(): void {
    const txn = this.#txn;
    if (txn === undefined) return;
    this.#txn = undefined;
    this.#buf = [];
    this.#bytes = 0;
    closeSync(txn.fd);
    const temp = join(this.dir, txn.temp);
    if (existsSync(temp)) unlinkSync(temp);
  }

  #begin(): Txn {
    const temp = `.${this.prefix}-${this.#run}-${++this.#seq}.inprogress`;
    return { temp, fd: openSync(join(this.dir, temp), "w"), records: 0 };
  }

  #flushBuffer(txn: Txn): void {
    if (this.#buf.length === 0) return;
    writeSync(txn.fd, this.#buf.join(""));
    this.#buf = [];
    this.#bytes = 0;
  }
}

function checkHandle(handle: unknown, name: string): FileSinkHandle {
  const h = handle as FileSinkHandle;
  if (typeof h !== "object" || typeof h.temp !== "string" || typeof h.final !== "string" || h.temp.includes("/") || h.final.includes("/")) {
    throw new SinkError(`file sink "${name}": not a file sink transaction handle: ${JSON.stringify(handle)}`);
  }
  return h;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Not every platform can fsync a directory; the rename itself is atomic.
  }
}

/**
 * Creates a transactional NDJSON file sink.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { fileSink } from "gress/file";
 *
 * // NDJSON part files: written to a temporary file, renamed into place when the checkpoint commits.
 * fromIterable([{ id: 1 }, { id: 2 }]).sinkTo(fileSink({ dir: "out", prefix: "ids" }));
 * ```
 */
export function fileSink<T>(options: FileSinkOptions<T>): FileSink<T> {
  return new FileSink(options);
}

/**
 * The committed part files of a file sink, in name order (checkpoint order).
 *
 * @example
 * ```ts
 * import { committedFiles } from "gress/file";
 *
 * // The committed part files of a file sink, in order (temporary files are not listed).
 * for (const file of committedFiles("out", "ids")) console.log(file);
 * ```
 */
export function committedFiles(dir: string, prefix: string): string[] {
  if (!existsSync(dir)) return [];
  const part = new RegExp(`^${escapeRegExp(prefix)}-.*\\.ndjson$`);
  return readdirSync(dir)
    .filter((f) => part.test(f))
    .sort();
}

/**
 * Every line of the committed part files of a file sink, parsed.
 *
 * @example
 * ```ts
 * import { readCommitted } from "gress/file";
 *
 * // Every value of the committed part files of a file sink (not the temporary ones), in file order.
 * const rows = readCommitted<{ id: number }>("out", "ids");
 * ```
 */
export function readCommitted<T = unknown>(dir: string, prefix: string): T[] {
  const out: T[] = [];
  for (const f of committedFiles(dir, prefix)) {
    for (const line of readFileSync(join(dir, f), "utf8").split("\n")) if (line !== "") out.push(JSON.parse(line) as T);
  }
  return out;
}
