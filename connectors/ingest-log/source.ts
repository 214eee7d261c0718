/**
 * A source backed by an {@link IngestLog}: the common half of every push connector that cannot replay on
 * its own (WebSocket, HTTP). The connector calls `append` with what it received and acknowledges its sender
 * only when the returned promise resolves — the entry is then on disk. The job reads entries back in log
 * order; the position after the last emitted entry is the source's checkpoint position, and `ack` truncates
 * the log up to a checkpointed position.
 *
 * Each entry stores the receive time and a small connector-defined metadata string next to the body, so a
 * replay emits the same records with the same timestamps.
 *
 * Closing: `close()` may come while `open()` is still opening the log or replaying it (the job failed on a
 * replayed record, or was cancelled). `open()` then stops at its next step without calling `onOpen`, and
 * `close()` waits for it before calling `onClose` and closing the log, so nothing it acquired stays open.
 *
 * Opening again (a restart): `open()` after `close()` waits for that close to finish, reopens the log and
 * replays it from the `from` position the job hands it (the restored checkpoint's), or from the log's start
 * without one, then calls `onOpen` again (the connector accepts input again). Entries appended to the log
 * but not emitted by the closed run are replayed from the log; an append of the closed run that resolves late
 * is not emitted twice.
 *
 * Flow control: `pressured` is true while the job paused the source, while it is replaying, while more than
 * `maxBacklog` entries wait to be emitted, or while the log holds more than `maxLogBytes`. Connectors watch
 * it (`onPressure`) and hold their senders back: WebSocket pauses its sockets, HTTP answers 429.
 * @module
 */
import type { Decoded } from "../ingest/index.ts";
import { runSoon } from "../../lib/runtime.ts";
import { type Positions, type Source, type SourceContext, timestampOf } from "../../lib/source.ts";
import { comparePositions, IngestLog, type LogPosition, toLogPosition } from "./index.ts";

/** One record decoded from a log entry: the value or the reason it is bad, and the raw input for dead letters. */
export interface LoggedRecord<T> {
  readonly decoded: Decoded<T>;
  readonly raw: unknown;
}

/** An entry as stored: receive time, connector metadata, body. */
export interface LoggedEntry {
  readonly receivedAt: number;
  readonly meta: string;
  readonly body: Uint8Array;
}

/** Options of {@link LoggedSource}. */
export interface LoggedSourceOptions<T> {
  readonly name: string;
  /** Directory of the ingest log; one per source. */
  readonly dir: string;
  /** Turns a stored entry into records. Must be deterministic: replays call it again. */
  readonly decode: (entry: LoggedEntry) => Iterable<LoggedRecord<T>>;
  /** Event time of a record. Default: the time the entry was received. */
  readonly timestamp?: (value: T, entry: LoggedEntry) => number;
  /** Entries waiting to be emitted before senders are held back. Default 1024. */
  readonly maxBacklog?: number;
  /** Log size (bytes not yet truncated by a checkpoint) at which senders are held back. Default 1 GiB. */
  readonly maxLogBytes?: number;
  /** Segment size of the log. Default 64 MiB. */
  readonly segmentBytes?: number;
  /** fsync before acknowledging. Default true. */
  readonly fsync?: boolean;
  /** Called for every retained entry while the log is opened (also those before the start position). */
  readonly onRetained?: (entry: LoggedEntry, next: LogPosition) => void;
  /** Called first in open(), with the job's context (set up rate limits, clocks). */
  readonly beforeOpen?: (ctx: SourceContext<T>) => void;
  /** Called once the log is open and replay is under way: start accepting input here. */
  readonly onOpen?: () => void | Promise<void>;
  /** Called on close, before the log closes: stop accepting input here. */
  readonly onClose?: () => void | Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Encodes an entry: `[f64 receivedAt][u32 metaLength][meta][body]`. */
export function encodeEntry(entry: LoggedEntry): Uint8Array {
  const meta = enc.encode(entry.meta);
  const out = new Uint8Array(12 + meta.byteLength + entry.body.byteLength);
  const view = new DataView(out.buffer);
  view.setFloat64(0, entry.receivedAt, true);
  view.setUint32(8, meta.byteLength, true);
  out.set(meta, 12);
  out.set(entry.body, 12 + meta.byteLength);
  return out;
}

/** Decodes an entry written by {@link encodeEntry}. */
export function decodeEntry(payload: Uint8Array): LoggedEntry {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const metaLength = view.getUint32(8, true);
  return {
    receivedAt: view.getFloat64(0, true),
    meta: dec.decode(payload.subarray(12, 12 + metaLength)),
    body: payload.subarray(12 + metaLength),
  };
}

/** Counts of a logged source. */
export interface LoggedSourceCounts {
  /** Entries made durable by `append`. */
  appended: number;
  /** Records emitted downstream. */
  emitted: number;
  /** Bad records, not emitted: sent to dead letters (or, for a failing timestamp function under onUserError "fail", the one that failed the job). */
  deadLetters: number;
}

/** A replayable source over a durable ingest log. */
export class LoggedSource<T> implements Source<T> {
  readonly name: string;
  readonly counts: LoggedSourceCounts = { appended: 0, emitted: 0, deadLetters: 0 };
  readonly #options: LoggedSourceOptions<T>;
  readonly #maxBacklog: number;
  readonly #maxLogBytes: number;
  readonly #listeners = new Set<(pressured: boolean) => void>();
  #log: IngestLog | undefined;
  #ctx: SourceContext<T> | undefined;
  #opening: Promise<void> | undefined;
  /** Entries appended while live, not yet emitted. */
  #tail: { payload: Uint8Array; next: LogPosition }[] = [];
  #position: LogPosition | undefined;
  #live = false;
  #paused = false;
  /** Counts open() calls; `#closedRun` is the last run close() ended. A closed run's replay stops. */
  #run = 0;
  #closedRun = 0;
  #scheduled = false;
  #wasPressured = true;
  /** The last close(): the next open() waits for it (the log and the connector's server are released first). */
  #closing: Promise<void> = Promise.resolve();

  constructor(options: LoggedSourceOptions<T>) {
    this.name = options.name;
    this.#options = options;
    this.#maxBacklog = options.maxBacklog ?? 1024;
    this.#maxLogBytes = options.maxLogBytes ?? 1 << 30;
  }

  /** The ingest log (after open). */
  get log(): IngestLog | undefined {
    return this.#log;
  }

  /** True while senders should be held back. */
  get pressured(): boolean {
    const log = this.#log;
    return (
      this.#closed ||
      log === undefined ||
      !this.#live ||
      this.#paused ||
      this.#tail.length >= this.#maxBacklog ||
      log.bytes >= this.#maxLogBytes
    );
  }

  /** Subscribes to changes of `pressured`; returns the unsubscribe function. */
  onPressure(listener: (pressured: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Makes entries durable. Resolves with their positions once they are on disk — only then may the sender be
   * acknowledged. Rejects if the source is not open or the log failed.
   */
  async append(entries: readonly LoggedEntry[]): Promise<LogPosition[]> {
    const log = this.#log;
    if (log === undefined || this.#closed) throw new Error(`source "${this.name}" is not open`);
    const payloads = entries.map(encodeEntry);
    const positions = await log.append(payloads);
    this.counts.appended += entries.length;
    // The run that appended was closed meanwhile: the entries are in the log, and the next run replays them.
    if (log !== this.#log || this.#closed) return positions;
    for (const [i, payload] of payloads.entries()) this.#tail.push({ payload, next: positions[i] as LogPosition });
    this.#schedule();
    this.#notify();
    return positions;
  }

  /** The current run was closed (or none was opened yet). */
  get #closed(): boolean {
    return this.#closedRun === this.#run;
  }

  open(ctx: SourceContext<T>, from?: Positions): Promise<void> {
    // A run starts with nothing of a previous (closed) run: its tail is in the log and is replayed from `from`.
    const run = ++this.#run;
    this.#live = false;
    this.#tail = [];
    // Until the replay emits, a checkpoint records where this run starts (never the closed run's position).
    try {
      this.#position = from?.[this.name] !== undefined ? toLogPosition(from[this.name], `source "${this.name}" position`) : undefined;
    } catch (err) {
      return Promise.reject(err);
    }
    this.#opening = this.#open(ctx, from, run);
    return this.#opening;
  }

  async #open(ctx: SourceContext<T>, from: Positions | undefined, run: number): Promise<void> {
    // After a restart: the closed run's log and server are released first.
    await this.#closing;
    if (this.#stopped(ctx, run)) return;
    this.#options.beforeOpen?.(ctx);
    this.#ctx = ctx;
    // The job may have been under pressure before the source was subscribed.
    this.#paused = ctx.paused;
    const log = await IngestLog.open(this.#options.dir, {
      ...(this.#options.segmentBytes !== undefined ? { segmentBytes: this.#options.segmentBytes } : {}),
      ...(this.#options.fsync !== undefined ? { fsync: this.#options.fsync } : {}),
    });
    this.#log = log;
    // Closed while the log was opening: close() waits for this and closes the log.
    if (this.#stopped(ctx, run)) return;
    const start = from?.[this.name] !== undefined ? toLogPosition(from[this.name], `source "${this.name}" position`) : log.start;
    // Replay: every retained entry is shown to onRetained (idempotency keys), those after `start` are emitted.
    const replay: { payload: Uint8Array; next: LogPosition }[] = [];
    let before = log.start;
    for await (const e of log.read()) {
      if (this.#stopped(ctx, run)) return;
      this.#options.onRetained?.(decodeEntry(e.payload), e.next);
      if (comparePositions(before, start) >= 0) replay.push({ payload: e.payload.slice(), next: e.next });
      before = e.next;
      if (replay.length >= this.#maxBacklog) {
        // Bounded memory: emit what we have before reading on.
        await this.#emitReplay(replay.splice(0), run);
      }
    }
    await this.#emitReplay(replay, run);
    // The job may have failed on a replayed record (or been cancelled) meanwhile: then accepting input (an HTTP
    // server, a WebSocket listener) would start after close() and keep the process alive.
    if (this.#stopped(ctx, run)) return;
    if (this.#position === undefined || comparePositions(this.#position, log.start) < 0) this.#position = comparePositions(start, log.start) >= 0 ? start : log.start;
    this.#live = true;
    await this.#options.onOpen?.();
    this.#notify();
  }

  /** Closed, or the job's stream ended (failed, cancelled): open() goes no further. */
  #stopped(ctx: SourceContext<T>, run: number): boolean {
    return this.#closedRun >= run || ctx.ended;
  }

  async #emitReplay(batch: { payload: Uint8Array; next: LogPosition }[], run: number): Promise<void> {
    for (const e of batch) {
      while (this.#paused && this.#closedRun < run) await new Promise((r) => setTimeout(r, 5));
      if (this.#closedRun >= run) return;
      this.#emit(e.payload, e.next);
    }
  }

  #emit(payload: Uint8Array, next: LogPosition): void {
    const ctx = this.#ctx;
    if (ctx === undefined) return;
    const entry = decodeEntry(payload);
    for (const r of this.#options.decode(entry)) {
      if (r.decoded.ok) {
        const stamp = this.#options.timestamp;
        const ts = stamp === undefined ? entry.receivedAt : timestampOf(ctx, r.decoded.value, stamp, entry);
        if (ts === undefined) {
          // The timestamp function failed; ctx.userError reported the value.
          this.counts.deadLetters++;
          continue;
        }
        this.counts.emitted++;
        ctx.emit(r.decoded.value, ts, this.name);
      } else {
        this.counts.deadLetters++;
        ctx.deadLetter(r.raw, r.decoded.reason);
      }
    }
    this.#position = next;
  }

  #schedule(): void {
    if (this.#scheduled || !this.#live || this.#paused || this.#closed) return;
    this.#scheduled = true;
    runSoon(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    // A bounded batch per turn so checkpoints and pause requests get their turn.
    for (let n = 0; n < 256 && this.#tail.length > 0; n++) {
      if (this.#paused || this.#closed) return;
      const e = this.#tail.shift() as { payload: Uint8Array; next: LogPosition };
      if (this.#position !== undefined && comparePositions(e.next, this.#position) <= 0) continue;
      this.#emit(e.payload, e.next);
    }
    if (this.#tail.length > 0) this.#schedule();
    this.#notify();
  }

  #notify(): void {
    const p = this.pressured;
    if (p === this.#wasPressured) return;
    this.#wasPressured = p;
    for (const l of this.#listeners) l(p);
  }

  pause(): void {
    this.#paused = true;
    this.#notify();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#schedule();
    this.#notify();
  }

  positions(): Positions {
    const p = this.#position ?? this.#log?.start ?? { segment: 1, offset: 0 };
    return { [this.name]: { segment: p.segment, offset: p.offset } };
  }

  async ack(positions: Positions): Promise<void> {
    const p = positions[this.name];
    // A checkpoint that completes after close() truncates nothing: the next run's acks do it.
    if (p === undefined || this.#log === undefined || this.#closed) return;
    await this.#log.truncate(toLogPosition(p, `source "${this.name}" ack`));
    this.#notify();
  }

  close(): Promise<void> {
    if (this.#closed) return this.#closing;
    this.#closedRun = this.#run;
    this.#live = false;
    this.#notify();
    const opening = this.#opening;
    this.#closing = (async () => {
      // A close that comes while open() is under way waits for it first (it stops at its next step, see
      // #stopped): whatever open() started — the log, an onOpen that was already starting a server — is then
      // there to be closed.
      await opening?.catch(() => {});
      await this.#options.onClose?.();
      await this.#log?.close();
    })();
    return this.#closing;
  }
}

/** The Source methods of a connector built on a LoggedSource, bound to it (spread them into the connector). */
export function loggedSourceMethods<T>(logged: LoggedSource<T>): Pick<Source<T>, "open" | "pause" | "resume" | "close"> & Required<Pick<Source<T>, "positions" | "ack">> {
  return {
    open: (ctx, from) => logged.open(ctx, from),
    pause: () => logged.pause(),
    resume: () => logged.resume(),
    positions: () => logged.positions(),
    ack: (p) => logged.ack(p),
    close: () => logged.close(),
  };
}
