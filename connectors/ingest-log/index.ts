/**
 * A durable ingest log: what makes a non-replayable source (WebSocket, HTTP) replayable. The source appends
 * what it receives, waits until the append is on disk (fsync), and only then acknowledges the sender. The
 * job reads the log back in order; the position after each entry goes into the checkpoint, and once a
 * checkpoint is durable the source truncates everything before its position.
 *
 * Layout: a directory of append-only segment files `<20-digit number>.seg`. Each entry is a frame
 * `[u32 length][u32 crc32][payload]` (little endian). A position is `{ segment, offset }`: the segment number
 * and the byte offset of the next frame in it. Concurrent appends share one write and one fsync (group
 * commit). On open, a torn frame at the end of the last segment (a crash mid-write) is cut off; it was never
 * acknowledged, so nothing acknowledged is lost.
 *
 * @example
 * ```ts
 * const log = await IngestLog.open("/var/lib/gress/http-clicks");
 * const [pos] = await log.append([new TextEncoder().encode('{"a":1}')]); // durable now: acknowledge
 * for await (const e of log.read()) console.log(e.payload, e.next);
 * await log.truncate(pos); // after the checkpoint that contains pos is durable
 * ```
 * @module
 */
import { mkdir, open, readdir, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { SourceError } from "../../lib/errors.ts";

/** A place in the log: the next frame to read is at byte `offset` of segment `segment`. */
export interface LogPosition {
  readonly segment: number;
  readonly offset: number;
}

/** One entry read back from the log, with the position just after it. */
export interface LogEntry {
  readonly payload: Uint8Array;
  readonly next: LogPosition;
}

/** Options of {@link IngestLog.open}. */
export interface IngestLogOptions {
  /** A segment is closed and a new one started once it reaches this size. Default 64 MiB. */
  readonly segmentBytes?: number;
  /** fsync every append before it resolves. Default true; false only for tests and benchmarks. */
  readonly fsync?: boolean;
}

const HEADER = 8;
const MAX_ENTRY = 0x7fff_ffff;

/** An append-only, fsynced, segmented log on local disk. */
export class IngestLog {
  readonly dir: string;
  readonly segmentBytes: number;
  readonly #fsync: boolean;
  /** Segment numbers on disk, ascending. The last one is the active segment. */
  readonly #segments: number[];
  #active: FileHandle;
  #activeSize: number;
  #retained: number;
  #queue: { frames: Uint8Array[]; resolve: (p: LogPosition[]) => void; reject: (e: unknown) => void }[] = [];
  #writing = false;
  #closed = false;
  #failure: unknown;

  private constructor(dir: string, options: Required<IngestLogOptions>, segments: number[], active: FileHandle, activeSize: number, retained: number) {
    this.dir = dir;
    this.segmentBytes = options.segmentBytes;
    this.#fsync = options.fsync;
    this.#segments = segments;
    this.#active = active;
    this.#activeSize = activeSize;
    this.#retained = retained;
  }

  /** Opens (or creates) the log in `dir`, repairing a torn tail. */
  static async open(dir: string, options: IngestLogOptions = {}): Promise<IngestLog> {
    const opts = { segmentBytes: options.segmentBytes ?? 64 << 20, fsync: options.fsync ?? true };
    if (!(opts.segmentBytes >= HEADER + 1)) throw new RangeError(`ingest log: segmentBytes must be > ${HEADER}, got ${opts.segmentBytes}`);
    await mkdir(dir, { recursive: true });
    const segments = (await readdir(dir))
      .filter((f) => /^\d{20}\.seg$/.test(f))
      .map((f) => Number(f.slice(0, 20)))
      .sort((a, b) => a - b);
    if (segments.length === 0) segments.push(1);
    let retained = 0;
    for (const s of segments.slice(0, -1)) retained += (await stat(join(dir, segmentName(s)))).size;
    const last = segments[segments.length - 1] as number;
    const fh = await open(join(dir, segmentName(last)), "a+");
    const valid = await validPrefix(fh);
    const size = (await fh.stat()).size;
    if (valid < size) {
      await fh.truncate(valid);
      await fh.sync();
    }
    await fh.close();
    // "r+" rather than "a": positional writes must land where we say, on every runtime.
    const active = await open(join(dir, segmentName(last)), "r+");
    if (opts.fsync) await syncDir(dir);
    return new IngestLog(dir, opts, segments, active, valid, retained + valid);
  }

  /** The position of the oldest retained entry. */
  get start(): LogPosition {
    return { segment: this.#segments[0] as number, offset: 0 };
  }

  /** The position after the last durable entry. */
  get end(): LogPosition {
    return { segment: this.#segments[this.#segments.length - 1] as number, offset: this.#activeSize };
  }

  /** Bytes retained on disk (all segments). */
  get bytes(): number {
    return this.#retained;
  }

  /**
   * Appends entries and resolves, once they are durable, with the position after each. Appends made while
   * another is being written share the next write and fsync.
   */
  append(payloads: readonly Uint8Array[]): Promise<LogPosition[]> {
    if (this.#closed) return Promise.reject(new SourceError(`ingest log ${this.dir} is closed`));
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const frames: Uint8Array[] = [];
    for (const p of payloads) {
      if (p.byteLength > MAX_ENTRY) return Promise.reject(new RangeError(`ingest log: entry of ${p.byteLength} bytes is too large`));
      frames.push(frame(p));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ frames, resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        try {
          const results = await this.#write(batch.map((b) => b.frames));
          for (const [i, b] of batch.entries()) b.resolve(results[i] as LogPosition[]);
        } catch (e) {
          // A failed write leaves the file in an unknown state: refuse further appends instead of guessing.
          this.#failure = new SourceError(`ingest log ${this.dir}: write failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
          for (const b of batch) b.reject(this.#failure);
          for (const b of this.#queue) b.reject(this.#failure);
          this.#queue = [];
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  async #write(groups: Uint8Array[][]): Promise<LogPosition[][]> {
    const results: LogPosition[][] = [];
    let chunks: Uint8Array[] = [];
    let chunkBytes = 0;
    const flush = async (): Promise<void> => {
      if (chunkBytes === 0) return;
      const buf = concat(chunks, chunkBytes);
      let written = 0;
      while (written < buf.byteLength) {
        const r = await this.#active.write(buf, written, buf.byteLength - written, this.#activeSize + written);
        written += r.bytesWritten;
      }
      if (this.#fsync) await this.#active.datasync();
      this.#activeSize += buf.byteLength;
      this.#retained += buf.byteLength;
      chunks = [];
      chunkBytes = 0;
    };
    for (const group of groups) {
      const positions: LogPosition[] = [];
      for (const f of group) {
        if (this.#activeSize + chunkBytes > 0 && this.#activeSize + chunkBytes + f.byteLength > this.segmentBytes) {
          await flush();
          await this.#roll();
        }
        chunks.push(f);
        chunkBytes += f.byteLength;
        positions.push({ segment: this.#segments[this.#segments.length - 1] as number, offset: this.#activeSize + chunkBytes });
      }
      results.push(positions);
    }
    await flush();
    return results;
  }

  async #roll(): Promise<void> {
    await this.#active.close();
    const next = (this.#segments[this.#segments.length - 1] as number) + 1;
    this.#active = await open(join(this.dir, segmentName(next)), "w+");
    this.#segments.push(next);
    this.#activeSize = 0;
    if (this.#fsync) await syncDir(this.dir);
  }

  /**
   * Reads entries from `from` (default: the oldest retained) up to the end as it was durable at each step.
   * Throws a SourceError if `from` was truncated away or a frame is corrupt.
   */
  async *read(from: LogPosition = this.start): AsyncGenerator<LogEntry> {
    const first = this.#segments[0] as number;
    if (from.segment < first) {
      throw new SourceError(`ingest log ${this.dir}: position ${from.segment}:${from.offset} was truncated (oldest segment is ${first})`);
    }
    let segment = from.segment;
    let offset = from.offset;
    for (;;) {
      const active = this.#segments[this.#segments.length - 1] as number;
      if (segment > active) return;
      const limit = segment === active ? this.#activeSize : Number.POSITIVE_INFINITY;
      const fh = await open(join(this.dir, segmentName(segment)), "r");
      try {
        const size = Math.min(limit, (await fh.stat()).size);
        if (offset > size) throw new SourceError(`ingest log ${this.dir}: position ${segment}:${offset} is past the end of the segment (${size})`);
        const reader = new ChunkReader(fh, offset, size);
        for (;;) {
          const header = await reader.take(HEADER);
          if (header === undefined) break;
          const view = new DataView(header.buffer, header.byteOffset, HEADER);
          const len = view.getUint32(0, true);
          const crc = view.getUint32(4, true);
          const payload = await reader.take(len);
          if (payload === undefined || crc32(payload) !== crc) {
            throw new SourceError(`ingest log ${this.dir}: corrupt entry in segment ${segment} at offset ${offset}`);
          }
          offset += HEADER + len;
          yield { payload, next: { segment, offset } };
        }
      } finally {
        await fh.close();
      }
      // The segment may have grown while we yielded (and may have been closed since): read on if it did.
      const isActive = segment === this.#segments[this.#segments.length - 1];
      const durable = isActive ? this.#activeSize : (await stat(join(this.dir, segmentName(segment)))).size;
      if (offset < durable) continue;
      if (isActive) return;
      segment++;
      offset = 0;
    }
  }

  /** Deletes every segment that lies entirely before `position`. The active segment is never deleted. */
  async truncate(position: LogPosition): Promise<void> {
    while (this.#segments.length > 1 && (this.#segments[0] as number) < position.segment) {
      const s = this.#segments.shift() as number;
      const path = join(this.dir, segmentName(s));
      this.#retained -= (await stat(path)).size;
      await rm(path, { force: true });
    }
  }

  /** Waits for pending appends and closes the active segment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#writing || this.#queue.length > 0) await new Promise((r) => setTimeout(r, 1));
    await this.#active.close();
  }
}

/** Compares two positions: negative if a is before b. */
export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.segment !== b.segment ? a.segment - b.segment : a.offset - b.offset;
}

/** Parses a position stored in a checkpoint, or throws a SourceError naming what was wrong. */
export function toLogPosition(value: unknown, where: string): LogPosition {
  const v = value as { segment?: unknown; offset?: unknown } | null;
  if (typeof v === "object" && v !== null && Number.isSafeInteger(v.segment) && Number.isSafeInteger(v.offset)) {
    return { segment: v.segment as number, offset: v.offset as number };
  }
  throw new SourceError(`${where}: expected a log position {segment, offset}, got ${JSON.stringify(value)}`);
}

function segmentName(n: number): string {
  return `${String(n).padStart(20, "0")}.seg`;
}

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.byteLength, true);
  view.setUint32(4, crc32(payload), true);
  out.set(payload, HEADER);
  return out;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Length of the prefix of a segment made of whole, checksum-valid frames. */
async function validPrefix(fh: FileHandle): Promise<number> {
  const size = (await fh.stat()).size;
  const reader = new ChunkReader(fh, 0, size);
  let valid = 0;
  for (;;) {
    const header = await reader.take(HEADER);
    if (header === undefined) return valid;
    const view = new DataView(header.buffer, header.byteOffset, HEADER);
    const len = view.getUint32(0, true);
    if (len > size - valid - HEADER) return valid;
    const payload = await reader.take(len);
    if (payload === undefined || crc32(payload) !== view.getUint32(4, true)) return valid;
    valid += HEADER + len;
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes a new segment's directory entry durable. Not every platform lets a directory be opened; then the
  // file's own fsync is all we can do.
  try {
    const d = await open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* best effort */
  }
}

/** Sequential reads from a file through a 1 MiB buffer. */
class ChunkReader {
  readonly #fh: FileHandle;
  readonly #end: number;
  #pos: number;
  #buf: Uint8Array = new Uint8Array(0);
  #at = 0;

  constructor(fh: FileHandle, start: number, end: number) {
    this.#fh = fh;
    this.#pos = start;
    this.#end = end;
  }

  /** The next `n` bytes, or undefined if fewer than `n` remain before the end. */
  async take(n: number): Promise<Uint8Array | undefined> {
    const have = this.#buf.byteLength - this.#at;
    if (have >= n) {
      const out = this.#buf.subarray(this.#at, this.#at + n);
      this.#at += n;
      return out;
    }
    if (have + (this.#end - this.#pos) < n) return undefined;
    const size = Math.max(n, 1 << 20);
    const next = new Uint8Array(Math.min(size, have + (this.#end - this.#pos)));
    next.set(this.#buf.subarray(this.#at), 0);
    let filled = have;
    while (filled < n) {
      const want = Math.min(next.byteLength - filled, this.#end - this.#pos);
      const r = await this.#fh.read(next, filled, want, this.#pos);
      if (r.bytesRead === 0) return undefined;
      filled += r.bytesRead;
      this.#pos += r.bytesRead;
    }
    this.#buf = next.subarray(0, filled);
    this.#at = n;
    return this.#buf.subarray(0, n);
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = (CRC_TABLE[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
