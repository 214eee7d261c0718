/**
 * A first-in first-out buffer of raw records for sources that cannot pause (core NATS subjects: the server
 * pushes whatever is published). It holds records in memory up to `maxMemoryRecords`, then appends them to
 * spill files on disk up to `maxSpillBytes`, then applies its overflow policy. Memory stays bounded whatever
 * the input rate: the records in memory, one write batch and one read chunk (a record larger than the chunk
 * is read alone).
 *
 * Contract:
 * - Order: records come out in the order they went in. Once anything is on disk, new records go to disk
 *   behind it (never to memory ahead of it) until the disk part is drained.
 * - Every record pushed is either shifted out exactly once, or refused by `push` (returning false and
 *   counted in `counts.refused`) because memory and disk were full; nothing else is lost while the process
 *   lives. `clear()` discards what is held and counts it in `counts.discarded`.
 * - Disk use: the spill files together hold at most `maxSpillBytes` (record bytes plus 8 bytes of framing and
 *   the tag). They are split into segments of `segmentBytes`; a segment is deleted as soon as it is read.
 * - Durability: none. The files are a memory extension, not a log: they are not synced, and those of an
 *   earlier process (a crash) are deleted when this buffer first spills. A source that must survive a crash
 *   needs a durable log (the ingest log of the HTTP and WebSocket sources).
 * - Overflow policy when full: `"drop-newest"` (default) refuses the arriving record and counts it, keeping
 *   the older ones; `"fail"` also refuses it, and `push` returns false with `full` set, for the source to
 *   fail the job with {@link SpillBuffer.fullMessage}.
 *
 * Synchronous file I/O (node:fs, in Node, Bun and Deno): a push runs in the NATS subscription callback, and
 * writes go out in batches of `writeBatchBytes`, so it costs one write call per batch.
 * @module
 */
import { closeSync, mkdirSync, openSync, readdirSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { ConfigError, type ConfigIssue } from "../errors.ts";

/**
 * How a {@link SpillBuffer} holds what cannot be emitted now.
 *
 * @example
 * ```ts
 * import type { SpillOptions } from "gress";
 *
 * // 50 000 records in memory, then up to 2 GiB on disk in state/spill; beyond that, new records are refused and counted.
 * const spill: SpillOptions = { dir: "state/spill", maxMemoryRecords: 50_000, maxSpillBytes: 2 * 1024 ** 3, overflow: "drop-newest" };
 * ```
 */
export interface SpillOptions {
  /** Directory of the spill files (created when first needed). Give each source a directory or a name of its own. */
  readonly dir: string;
  /** Records held in memory before spilling. Default 10 000. */
  readonly maxMemoryRecords?: number;
  /** Bytes on disk at most (all segments). Default 1 GiB. */
  readonly maxSpillBytes?: number;
  /** Bytes per spill file; a file is deleted once read. Default min(64 MiB, maxSpillBytes / 4). */
  readonly segmentBytes?: number;
  /** When memory and disk are full: refuse the new record and count it, or do that and fail the job. Default "drop-newest". */
  readonly overflow?: "drop-newest" | "fail";
}

/**
 * What a {@link SpillBuffer} has done so far.
 *
 * @example
 * ```ts
 * import type { SpillCounts } from "gress";
 *
 * // Every record pushed is shifted out, held, refused or discarded.
 * const accounted = (c: SpillCounts, held: number): boolean => c.pushed === c.shifted + held + c.refused + c.discarded;
 * ```
 */
export interface SpillCounts {
  /** Records offered to push(). */
  pushed: number;
  /** Records taken out by shift(). */
  shifted: number;
  /** Records that went to disk. */
  spilled: number;
  /** Records refused because memory and disk were full (the overflow policy). */
  refused: number;
  /** Records dropped by clear(). */
  discarded: number;
}

/**
 * One record held by a {@link SpillBuffer}: its bytes and a short tag (a subject, a key).
 *
 * @example
 * ```ts
 * import type { SpilledRecord } from "gress";
 *
 * const r: SpilledRecord = { tag: "orders.eu", bytes: new TextEncoder().encode('{"id":1}') };
 * ```
 */
export interface SpilledRecord {
  readonly tag: string;
  readonly bytes: Uint8Array;
}

interface Segment {
  readonly path: string;
  fd: number;
  /** Bytes written to the file (excluding the write batch not yet flushed, which belongs to the last segment). */
  size: number;
}

const DEFAULT_MEMORY = 10_000;
const DEFAULT_SPILL = 1024 ** 3;
const READ_CHUNK = 1 << 20;
const WRITE_BATCH = 256 * 1024;
const HEADER = 8;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let instances = 0;

/**
 * Checks spill options; every problem is named in the error (nothing is created).
 * @param options the options to check
 * @param what who the options belong to, for the message (`NATS source "x"`)
 * @returns the options with their defaults
 * @throws ConfigError listing each bad option and why
 *
 * @example
 * ```ts
 * import { spillOptions } from "gress";
 *
 * const checked = spillOptions({ dir: "state/spill", maxMemoryRecords: 1_000 }, 'source "pings"');
 * console.log(checked.maxSpillBytes); // 1073741824
 * ```
 */
export function spillOptions(options: SpillOptions, what: string): Required<SpillOptions> {
  const issues: ConfigIssue[] = [];
  const bad = (key: string, message: string): void => void issues.push({ path: ["spill", key], code: "custom", message });
  const o = options as Partial<SpillOptions> | undefined;
  if (o === undefined || o === null || typeof o !== "object") {
    throw new ConfigError(`${what}: spill must be an object with a "dir"`, [{ path: ["spill"], code: "invalid_type", message: "expected an object" }]);
  }
  if (typeof o.dir !== "string" || o.dir.length === 0) bad("dir", `spill.dir must be a non-empty directory path, got ${JSON.stringify(o.dir)}`);
  const int = (key: keyof SpillOptions, value: unknown, min: number): number => {
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
      bad(key, `spill.${key} must be an integer >= ${min}, got ${typeof value === "number" ? value : JSON.stringify(value)}`);
      return min;
    }
    return value;
  };
  const maxMemoryRecords = int("maxMemoryRecords", o.maxMemoryRecords ?? DEFAULT_MEMORY, 1);
  const maxSpillBytes = int("maxSpillBytes", o.maxSpillBytes ?? DEFAULT_SPILL, 0);
  const segmentBytes = int("segmentBytes", o.segmentBytes ?? Math.max(1, Math.min(64 * 1024 ** 2, Math.floor(maxSpillBytes / 4))), 1);
  if (o.segmentBytes !== undefined && maxSpillBytes > 0 && segmentBytes > maxSpillBytes) {
    bad("segmentBytes", `spill.segmentBytes (${segmentBytes}) must not exceed spill.maxSpillBytes (${maxSpillBytes})`);
  }
  const overflow = o.overflow ?? "drop-newest";
  if (overflow !== "drop-newest" && overflow !== "fail") bad("overflow", `spill.overflow must be "drop-newest" or "fail", got ${JSON.stringify(overflow)}`);
  if (issues.length > 0) throw new ConfigError(`${what}: ${issues.map((i) => i.message).join("; ")}`, issues);
  return { dir: o.dir as string, maxMemoryRecords, maxSpillBytes, segmentBytes, overflow };
}

/**
 * A bounded FIFO of raw records: memory first, then spill files, then the overflow policy (see the module).
 *
 * @example
 * ```ts
 * import { SpillBuffer } from "gress";
 *
 * const buffer = new SpillBuffer({ dir: "state/spill", maxMemoryRecords: 2, maxSpillBytes: 1 << 20 }, "demo");
 * for (let i = 0; i < 5; i++) buffer.push("t", new TextEncoder().encode(String(i))); // 2 in memory, 3 on disk
 * for (let r = buffer.shift(); r !== undefined; r = buffer.shift()) console.log(new TextDecoder().decode(r.bytes)); // 0 1 2 3 4
 * buffer.close();
 * ```
 */
export class SpillBuffer {
  readonly counts: SpillCounts = { pushed: 0, shifted: 0, spilled: 0, refused: 0, discarded: 0 };
  readonly options: Readonly<Required<SpillOptions>>;
  /** Set when a push was refused under the "fail" policy. */
  full = false;
  readonly #name: string;
  readonly #safeName: string;
  readonly #prefix: string;
  #memory: SpilledRecord[] = [];
  #memoryHead = 0;
  readonly #segments: Segment[] = [];
  #nextSegment = 0;
  /** Records on disk or in the write batch, not read yet. */
  #diskRecords = 0;
  /** Bytes of all segment files plus the write batch. */
  #diskBytes = 0;
  #batch: Uint8Array = new Uint8Array(0);
  #batchView: DataView = new DataView(new ArrayBuffer(0));
  #lastTag = "";
  #lastTagBytes: Uint8Array = new Uint8Array(0);
  #readTag = "";
  #readTagBytes: Uint8Array = new Uint8Array(0);
  #batchLength = 0;
  /** Read position in the first segment, and the chunk read from there. */
  #readAt = 0;
  #chunk: Uint8Array = new Uint8Array(0);
  #chunkAt = 0;
  #chunkEnd = 0;
  #prepared = false;

  /**
   * @param options bounds and directory (checked: a ConfigError names each bad one)
   * @param name names the spill files (`<name>-<pid>-<n>-<segment>.spill`) and the error messages
   */
  constructor(options: SpillOptions, name: string) {
    this.options = spillOptions(options, `spill buffer "${name}"`);
    this.#name = name;
    this.#safeName = name.replace(/[^A-Za-z0-9_.-]/g, "_");
    this.#prefix = `${this.#safeName}-${process.pid}-${++instances}-`;
  }

  /** Records held (memory and disk). */
  get size(): number {
    return this.#memory.length - this.#memoryHead + this.#diskRecords;
  }
  /** Records held in memory. */
  get memoryRecords(): number {
    return this.#memory.length - this.#memoryHead;
  }
  /** Records held on disk (or in the write batch on their way there). */
  get diskRecords(): number {
    return this.#diskRecords;
  }
  /** Bytes the spill files take now (with the write batch). */
  get diskBytes(): number {
    return this.#diskBytes;
  }
  /** Why the last push was refused under the "fail" policy. */
  get fullMessage(): string {
    return `${this.#name}: spill buffer full (${this.options.maxMemoryRecords} records in memory, ${this.#diskBytes} of ${this.options.maxSpillBytes} bytes on disk in ${this.options.dir}); raise spill.maxSpillBytes or slow the input`;
  }

  /**
   * Appends a record. The bytes are copied (a view into a larger network buffer would keep it alive).
   * @returns false if it was refused (memory and disk full; counted in `counts.refused`)
   */
  push(tag: string, bytes: Uint8Array): boolean {
    this.counts.pushed++;
    if (this.#diskRecords === 0 && this.memoryRecords < this.options.maxMemoryRecords) {
      this.#memory.push({ tag, bytes: bytes.slice() });
      return true;
    }
    // Sources tag their records with a few distinct strings (a subject): encode each once in a row.
    if (tag !== this.#lastTag) {
      this.#lastTag = tag;
      this.#lastTagBytes = encoder.encode(tag);
    }
    const t = this.#lastTagBytes;
    const frame = HEADER + t.byteLength + bytes.byteLength;
    if (this.#diskBytes + frame > this.options.maxSpillBytes) {
      this.counts.refused++;
      if (this.options.overflow === "fail") this.full = true;
      return false;
    }
    this.#prepare();
    const last = this.#segments.at(-1);
    if (last === undefined || (last.size + this.#batchLength + frame > this.options.segmentBytes && last.size + this.#batchLength > 0)) {
      this.#flush();
      this.#openSegment();
    }
    if (this.#batchLength + frame > this.#batch.byteLength) {
      this.#flush();
      if (frame > this.#batch.byteLength) this.#setBatch(new Uint8Array(Math.max(WRITE_BATCH, frame)));
    }
    this.#batchView.setUint32(this.#batchLength, t.byteLength);
    this.#batchView.setUint32(this.#batchLength + 4, bytes.byteLength);
    this.#batch.set(t, this.#batchLength + HEADER);
    this.#batch.set(bytes, this.#batchLength + HEADER + t.byteLength);
    this.#batchLength += frame;
    this.#diskBytes += frame;
    this.#diskRecords++;
    this.counts.spilled++;
    return true;
  }

  /** Takes the oldest record out, or undefined when empty. */
  shift(): SpilledRecord | undefined {
    if (this.#memoryHead < this.#memory.length) {
      const r = this.#memory[this.#memoryHead] as SpilledRecord;
      this.#memory[this.#memoryHead++] = undefined as unknown as SpilledRecord;
      // Compact now and then, so that the array does not keep the slots of records long gone.
      if (this.#memoryHead === this.#memory.length) {
        this.#memory = [];
        this.#memoryHead = 0;
      } else if (this.#memoryHead >= 4096 && this.#memoryHead * 2 >= this.#memory.length) {
        this.#memory = this.#memory.slice(this.#memoryHead);
        this.#memoryHead = 0;
      }
      this.counts.shifted++;
      return r;
    }
    if (this.#diskRecords === 0) return undefined;
    const r = this.#readRecord();
    this.#diskRecords--;
    this.counts.shifted++;
    if (this.#diskRecords === 0) this.#reset();
    return r;
  }

  /** Drops everything held (counted in `counts.discarded`) and deletes the spill files. */
  clear(): void {
    this.counts.discarded += this.size;
    this.#memory = [];
    this.#memoryHead = 0;
    this.#diskRecords = 0;
    this.#reset();
    this.full = false;
  }

  /** Same as clear(): nothing held survives a close. */
  close(): void {
    this.clear();
  }

  /** The first spill of this buffer: the directory exists, and files an earlier process left behind are gone. */
  #prepare(): void {
    if (this.#prepared) return;
    mkdirSync(this.options.dir, { recursive: true });
    const ours = new RegExp(`^${this.#safeName.replace(/[.]/g, "\\.")}-(\\d+)-\\d+-\\d+\\.spill$`);
    for (const f of readdirSync(this.options.dir)) {
      // Same source name, another process: what a crashed run spilled (not durable, so not replayed).
      const pid = ours.exec(f)?.[1];
      if (pid !== undefined && Number(pid) !== process.pid) rmSync(join(this.options.dir, f), { force: true });
    }
    this.#setBatch(new Uint8Array(WRITE_BATCH));
    this.#prepared = true;
  }

  #setBatch(batch: Uint8Array): void {
    this.#batch = batch;
    this.#batchView = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  }

  #openSegment(): void {
    const path = join(this.options.dir, `${this.#prefix}${this.#nextSegment++}.spill`);
    this.#segments.push({ path, fd: openSync(path, "w+"), size: 0 });
  }

  /** Writes the batch to the last segment. */
  #flush(): void {
    if (this.#batchLength === 0) return;
    const last = this.#segments.at(-1) as Segment;
    let done = 0;
    while (done < this.#batchLength) done += writeSync(last.fd, this.#batch, done, this.#batchLength - done, last.size + done);
    last.size += this.#batchLength;
    this.#batchLength = 0;
  }

  /** `n` bytes of the first segment at the read position, in the chunk. */
  #ensure(n: number): void {
    if (this.#chunkEnd - this.#chunkAt >= n) return;
    let seg = this.#segments[0] as Segment;
    // Done with the first segment: delete it and read the next.
    if (this.#chunkEnd === this.#chunkAt && this.#readAt >= seg.size && this.#segments.length > 1) {
      this.#dropFirst();
      seg = this.#segments[0] as Segment;
    }
    // The reader reached what is still in the write batch of this segment.
    if (this.#segments.length === 1 && this.#readAt + n > seg.size) this.#flush();
    const keep = this.#chunkEnd - this.#chunkAt;
    const size = Math.max(READ_CHUNK, n);
    const next = this.#chunk.byteLength >= size ? this.#chunk : new Uint8Array(size);
    if (next === this.#chunk) next.copyWithin(0, this.#chunkAt, this.#chunkEnd);
    else next.set(this.#chunk.subarray(this.#chunkAt, this.#chunkEnd));
    const want = Math.min(next.byteLength - keep, seg.size - this.#readAt);
    let got = 0;
    while (got < want) {
      const r = readSync(seg.fd, next, keep + got, want - got, this.#readAt + got);
      if (r === 0) throw new Error(`${this.#name}: spill file ${seg.path} ended early (read ${this.#readAt + got} of ${seg.size} bytes)`);
      got += r;
    }
    this.#readAt += got;
    this.#chunk = next;
    this.#chunkAt = 0;
    this.#chunkEnd = keep + got;
    if (this.#chunkEnd < n) throw new Error(`${this.#name}: spill file ${seg.path} holds a truncated record`);
  }

  #readRecord(): SpilledRecord {
    this.#ensure(HEADER);
    const c = this.#chunk;
    const h = this.#chunkAt;
    // Big-endian u32s, as DataView wrote them.
    const tagLength = ((c[h] as number) << 24) | ((c[h + 1] as number) << 16) | ((c[h + 2] as number) << 8) | (c[h + 3] as number);
    const bodyLength = (((c[h + 4] as number) << 24) | ((c[h + 5] as number) << 16) | ((c[h + 6] as number) << 8) | (c[h + 7] as number)) >>> 0;
    this.#ensure(HEADER + tagLength + bodyLength);
    const at = this.#chunkAt + HEADER;
    const tag = this.#tagAt(at, tagLength);
    const bytes = this.#chunk.slice(at + tagLength, at + tagLength + bodyLength);
    this.#chunkAt = at + tagLength + bodyLength;
    // The first segment is read through: delete it now, so that its bytes count no more against the bound.
    if (this.#chunkAt === this.#chunkEnd && this.#segments.length > 1 && this.#readAt >= (this.#segments[0] as Segment).size) this.#dropFirst();
    if (this.#chunk.byteLength > READ_CHUNK && this.#chunkAt === this.#chunkEnd) {
      this.#chunk = new Uint8Array(0);
      this.#chunkAt = this.#chunkEnd = 0;
    }
    return { tag, bytes };
  }

  /** The tag at `at` of the chunk; the same bytes as the last one read give the same string, not a new decode. */
  #tagAt(at: number, length: number): string {
    const last = this.#readTagBytes;
    const c = this.#chunk;
    if (last.byteLength === length) {
      let same = true;
      for (let i = 0; i < length; i++) {
        if (last[i] !== c[at + i]) {
          same = false;
          break;
        }
      }
      if (same) return this.#readTag;
    }
    this.#readTagBytes = c.slice(at, at + length);
    this.#readTag = decoder.decode(this.#readTagBytes);
    return this.#readTag;
  }

  #dropFirst(): void {
    const seg = this.#segments.shift() as Segment;
    closeSync(seg.fd);
    rmSync(seg.path, { force: true });
    this.#diskBytes -= seg.size;
    this.#readAt = 0;
  }

  /** Nothing on disk any more: delete every segment and start over. */
  #reset(): void {
    for (const seg of this.#segments.splice(0)) {
      closeSync(seg.fd);
      rmSync(seg.path, { force: true });
    }
    this.#diskBytes = 0;
    this.#batchLength = 0;
    this.#readAt = 0;
    this.#chunk = new Uint8Array(0);
    this.#chunkAt = this.#chunkEnd = 0;
  }
}
