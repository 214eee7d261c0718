/**
 * NATS sources.
 *
 * `natsJetStreamSource` reads a JetStream stream through a durable pull consumer with `AckPolicy.All`. Its
 * position is the stream sequence of the last emitted message (`{ [stream]: seq }`). Messages are
 * acknowledged (`ackAck`, which acknowledges everything up to it) only in `ack(positions)`, i.e. after the
 * checkpoint holding that position is durable. On recovery (`open(ctx, from)`) the durable consumer is
 * recreated to deliver from `seq + 1`, so the job replays exactly what the checkpoint did not cover;
 * redeliveries of sequences already emitted in this run are skipped. Backpressure: the source pulls
 * `batch` messages at a time and stops pulling while paused or while the rate limit has no tokens.
 * Without a checkpoint, the source continues after the consumer's acknowledged floor (acks only follow
 * durable checkpoints), or from the start of the stream for a new consumer.
 *
 * `natsCoreSource` subscribes to a core NATS subject: at most once (core NATS cannot replay), and it cannot
 * pause the server's pushes. While the job is paused (or the rate limit has no tokens), messages wait in a
 * bounded buffer: `maxBuffered` messages in memory, then, with `spill`, in spill files on disk up to
 * `spill.maxSpillBytes` (see lib/sources/spill.ts); beyond that a message is refused and counted in
 * `counts.dropped` (or the job fails, with `spill.overflow: "fail"`). Every message received is emitted once,
 * a dead letter, dropped and counted, or still buffered. Buffered messages are emitted in order, in slices
 * that yield to the event loop, so that a long backlog does not starve the subscription.
 *
 * Messages are JSON; bad bytes (invalid UTF-8, malformed JSON, `__proto__`, oversized, schema violations)
 * go to dead letters with the reason and the stream sequence, never crash the job.
 *
 * Both can be opened again after `close()` (a restart): each `open()` is a run of its own (a new connection,
 * once the previous run released its own). The JetStream source recreates the consumer at the `from` it is
 * given (the restored checkpoint's sequence) and drops the closed run's pending acks; the core source
 * subscribes again, and emits first what the closed run had buffered but not emitted.
 * @module
 */
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Subscription } from "@nats-io/transport-node";
import type { z } from "zod";
import { ConfigError, SourceError } from "../../lib/errors.ts";
import { runSoon } from "../../lib/runtime.ts";
import { SpillBuffer, type SpilledRecord, type SpillOptions } from "../../lib/sources/spill.ts";
import { type Positions, type Source, type SourceContext, timestampOf } from "../../lib/source.ts";
import { deadLetterOf, type Decoder, jsonDecoder, TokenBucket, type TokenBucketOptions } from "../ingest/index.ts";
import { type HeldConnection, holdConnection, type NatsConnectOptions } from "./connection.ts";

/**
 * Options shared by the NATS sources.
 *
 * @example
 * ```ts
 * import type { NatsSourceCommon } from "gress/nats";
 * import { z } from "zod";
 *
 * // What both NATS sources take: a name, a schema, a size limit and a rate limit.
 * const common: NatsSourceCommon<{ id: string }> = { name: "ids", schema: z.object({ id: z.string() }), maxMessageBytes: 64 * 1024 };
 * ```
 */
export interface NatsSourceCommon<T> {
  readonly name: string;
  /** Values must match this schema; others go to dead letters. */
  readonly schema?: z.ZodType<T>;
  /** Messages larger than this go to dead letters. Default 1 MiB. */
  readonly maxMessageBytes?: number;
  /** Messages whose arrays and objects nest deeper than this go to dead letters. Default 128. */
  readonly maxDepth?: number;
  /** Token-bucket rate limit in messages per second. */
  readonly rateLimit?: TokenBucketOptions;
}

/**
 * Options of {@link natsJetStreamSource}.
 *
 * @example
 * ```ts
 * import { type NatsJetStreamSourceOptions, natsJetStreamSource } from "gress/nats";
 *
 * type Reading = { device: string; at: number };
 * // Only subject readings.eu.>, 256 messages per pull, and the event time from the message.
 * const options: NatsJetStreamSourceOptions<Reading> = {
 *   name: "eu-readings",
 *   servers: ["nats://localhost:4222"],
 *   stream: "READINGS",
 *   durable: "eu-job",
 *   filterSubject: "readings.eu.>",
 *   batch: 256,
 *   timestamp: (r) => r.at,
 * };
 * const source = natsJetStreamSource(options);
 * ```
 */
export type NatsJetStreamSourceOptions<T> = NatsSourceCommon<T> &
  NatsConnectOptions & {
    /** The JetStream stream. It must exist. */
    readonly stream: string;
    /** Durable consumer name. Default: the source name. */
    readonly durable?: string;
    /** Only subjects matching this filter. */
    readonly filterSubject?: string;
    /** Messages per pull. Default 256. */
    readonly batch?: number;
    /** How long one pull waits for messages, ms (at least 1000). Default 1000. */
    readonly expiresMs?: number;
    /** Unacknowledged messages the server allows (must cover a checkpoint interval). Default 1 000 000. */
    readonly maxAckPending?: number;
    /** Ack wait before the server redelivers, ms. Default 10 minutes. */
    readonly ackWaitMs?: number;
    /** Event time of a message. Default: its JetStream publish time. */
    readonly timestamp?: (value: T, msg: JsMsg) => number;
  };

/**
 * Counts of a NATS source.
 *
 * @example
 * ```ts
 * import type { NatsSourceCounts } from "gress/nats";
 *
 * const lossRate = (c: NatsSourceCounts): number => (c.received === 0 ? 0 : (c.deadLetters + c.dropped) / c.received);
 * ```
 */
export interface NatsSourceCounts {
  received: number;
  emitted: number;
  deadLetters: number;
  /** Redeliveries of already emitted sequences that were skipped. */
  skipped: number;
  /** Core NATS only: messages dropped because the buffer (memory and spill files) was full. */
  dropped: number;
}

/**
 * Counts of a core NATS source: those of every NATS source, and what went to the spill files.
 *
 * @example
 * ```ts
 * import type { NatsCoreSourceCounts } from "gress/nats";
 *
 * // Every message received is emitted, a dead letter, dropped, or still buffered.
 * const unaccounted = (c: NatsCoreSourceCounts, buffered: number): number => c.received - c.emitted - c.deadLetters - c.dropped - buffered;
 * ```
 */
export interface NatsCoreSourceCounts extends NatsSourceCounts {
  /** Messages that went to the spill files while the job was paused. */
  spilled: number;
}

const newCounts = (): NatsSourceCounts => ({ received: 0, emitted: 0, deadLetters: 0, skipped: 0, dropped: 0 });

/**
 * A JetStream source; `counts` are exact.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { type NatsJetStreamSource, natsJetStreamSource } from "gress/nats";
 *
 * const source: NatsJetStreamSource<unknown> = natsJetStreamSource({ name: "in", servers: "localhost:4222", stream: "IN" });
 * const job = new Job();
 * job.source(source).sinkTo({ name: "s", write() {} });
 * await job.run();
 * console.log(source.counts.received, source.counts.deadLetters);
 * ```
 */
export interface NatsJetStreamSource<T> extends Source<T> {
  readonly counts: NatsSourceCounts;
}

/**
 * A replayable source over a JetStream stream (durable pull consumer).
 * @param options connection, stream, durable, schema, batch size
 * @returns the source
 *
 * @example
 * ```ts
 * import { Job, sinkFn } from "gress";
 * import { natsJetStreamSource } from "gress/nats";
 *
 * type Reading = { device: string; celsius: number };
 * const job = new Job({ name: "iot" });
 * // A durable JetStream consumer: messages are acknowledged only after the checkpoint that covers them.
 * job
 *   .source(natsJetStreamSource<Reading>({ name: "readings", servers: "localhost:4222", stream: "READINGS", durable: "iot" }))
 *   .sinkTo(sinkFn("print", (r) => console.log(r.device, r.celsius)));
 * ```
 */
export function natsJetStreamSource<T = unknown>(options: NatsJetStreamSourceOptions<T>): NatsJetStreamSource<T> {
  const name = options.name;
  const stream = options.stream;
  const durable = options.durable ?? name;
  const batch = options.batch ?? 256;
  const expires = Math.max(1000, options.expiresMs ?? 1000);
  const decode: Decoder<T> = jsonDecoder<T>({
    ...(options.schema !== undefined ? { schema: options.schema } : {}),
    ...(options.maxMessageBytes !== undefined ? { maxBytes: options.maxMessageBytes } : {}),
    ...(options.maxDepth !== undefined ? { maxDepth: options.maxDepth } : {}),
  });
  const counts = newCounts();
  /** The current run: what one open() acquired, until its close(). A restart opens a new one. */
  let session: JetStreamSession | undefined;
  /** The last close(): the next open() waits for it, so that the durable consumer is recreated only once it released. */
  let closing: Promise<void> = Promise.resolve();
  let lastSeq = 0;
  let lastMsg: JsMsg | undefined;
  /** Messages at positions handed to checkpoints, waiting for their ack. */
  const toAck = new Map<number, JsMsg>();

  const waitWhilePaused = async (s: JetStreamSession): Promise<void> => {
    while (s.paused && !s.closed) await new Promise<void>((r) => (s.wake = r));
  };

  const run = async (s: JetStreamSession, ctx: SourceContext<T>): Promise<void> => {
    const nc = (s.held as HeldConnection).nc;
    const js = jetstream(nc);
    const consumer = await js.consumers.get(stream, durable);
    const bucket = options.rateLimit !== undefined ? new TokenBucket(options.rateLimit, ctx.clock) : undefined;
    while (!s.closed) {
      await waitWhilePaused(s);
      if (s.closed) break;
      let max = batch;
      if (bucket !== undefined) {
        const wait = bucket.delayFor(1);
        if (wait > 0) {
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
        max = Math.max(1, Math.min(batch, Math.floor(bucket.tokens)));
        bucket.take(max);
      }
      const messages = await consumer.fetch({ max_messages: max, expires });
      s.stopFetch = () => messages.stop();
      // Closed while the pull was being set up: close() could not stop it yet.
      if (s.closed) messages.stop();
      for await (const m of messages) {
        // A pause takes effect between messages: the rest of this pull (at most `batch`) waits here.
        if (s.paused) await waitWhilePaused(s);
        if (s.closed) break;
        counts.received++;
        if (m.seq <= lastSeq) {
          counts.skipped++;
          continue;
        }
        const d = decode(m.data);
        if (!d.ok) {
          counts.deadLetters++;
          ctx.deadLetter(deadLetterOf(name, stream, m.seq, m.data), d.reason);
        } else {
          const ts = options.timestamp === undefined ? Number(m.info.timestampNanos / 1_000_000) : timestampOf(ctx, d.value, options.timestamp, m);
          // A timestamp function that failed reported the value through ctx.userError already.
          if (ts === undefined) counts.deadLetters++;
          else {
            counts.emitted++;
            ctx.emit(d.value, ts, stream);
          }
        }
        lastSeq = m.seq;
        lastMsg = m;
      }
      s.stopFetch = undefined;
    }
  };

  const openSource = async (s: JetStreamSession, ctx: SourceContext<T>, from: Positions | undefined): Promise<void> => {
    // A restart: the previous run released its connection first.
    await closing;
    if (s.closed) return;
    // The job may have been under pressure before the source was subscribed.
    s.paused = ctx.paused;
    s.held = await holdConnection(options, name);
    // Closed while connecting: close() waits for this and releases the connection.
    if (s.closed) return;
    const jsm = await jetstreamManager(s.held.nc);
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.All,
      ack_wait: (options.ackWaitMs ?? 600_000) * 1_000_000,
      max_ack_pending: options.maxAckPending ?? 1_000_000,
      ...(options.filterSubject !== undefined ? { filter_subject: options.filterSubject } : {}),
    };
    const position = from?.[stream];
    let start: number;
    if (position !== undefined) {
      if (typeof position !== "number" || !Number.isSafeInteger(position) || position < 0) {
        throw new SourceError(`NATS source "${name}": checkpoint position of stream "${stream}" must be a sequence number, got ${JSON.stringify(position)}`);
      }
      start = position;
    } else {
      // No checkpoint: continue after what an earlier run acknowledged (acks only follow durable checkpoints).
      const info = await jsm.consumers.info(stream, durable).catch(() => undefined);
      start = info?.ack_floor.stream_seq ?? 0;
    }
    lastSeq = start;
    lastMsg = undefined;
    // The deliver policy of a consumer cannot change, and unacknowledged deliveries would only come back
    // after ack_wait: recreate the consumer so it delivers right after `start`, now.
    await jsm.consumers.delete(stream, durable).catch(() => false);
    await jsm.consumers.add(
      stream,
      start > 0 ? { ...config, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start + 1 } : { ...config, deliver_policy: DeliverPolicy.All },
    );
    if (s.closed) return;
    run(s, ctx).catch((e: unknown) => {
      if (!s.closed) ctx.fail(new SourceError(`NATS source "${name}" failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
    });
  };

  return {
    name,
    counts,
    open(ctx, from) {
      // A new run: messages the previous one delivered were acknowledged up to its last checkpoint at most;
      // this run replays from `from`, so their pending acks (on a released connection) are dropped.
      toAck.clear();
      // A checkpoint taken while this run opens records where it starts, never the closed run's position.
      const given = from?.[stream];
      lastSeq = typeof given === "number" ? given : 0;
      lastMsg = undefined;
      const s: JetStreamSession = { closed: false, paused: false, held: undefined, opening: undefined, wake: undefined, stopFetch: undefined };
      session = s;
      s.opening = openSource(s, ctx, from);
      return s.opening;
    },
    pause() {
      if (session !== undefined) session.paused = true;
    },
    resume() {
      if (session === undefined) return;
      session.paused = false;
      session.wake?.();
    },
    positions(): Positions {
      if (lastMsg !== undefined) toAck.set(lastMsg.seq, lastMsg);
      return { [stream]: lastSeq };
    },
    async ack(positions) {
      const seq = positions[stream];
      if (typeof seq !== "number") return;
      let target: JsMsg | undefined;
      for (const [s, m] of toAck) {
        if (s <= seq) {
          if (target === undefined || s > target.seq) target = m;
          toAck.delete(s);
        }
      }
      // AckAll: acknowledging the newest covered message acknowledges every one before it.
      if (target !== undefined) await target.ackAck();
    },
    close() {
      const s = session;
      if (s === undefined || s.closed) return closing;
      s.closed = true;
      s.wake?.();
      s.stopFetch?.();
      closing = (async () => {
        // A close that comes while open() is still connecting releases the connection open() got.
        await s.opening?.catch(() => {});
        await s.held?.release();
      })();
      return closing;
    },
  };
}

/** Buffered messages emitted per turn of the event loop. */
const DRAIN_SLICE = 1024;

/** What one open() of a core NATS source holds until its close(). */
interface CoreSession {
  closed: boolean;
  /** Subscribed: buffered messages may be emitted. */
  live: boolean;
  held: HeldConnection | undefined;
  sub: Subscription | undefined;
  opening: Promise<void> | undefined;
}

/** What one open() of a JetStream source holds until its close(). */
interface JetStreamSession {
  closed: boolean;
  paused: boolean;
  held: HeldConnection | undefined;
  opening: Promise<void> | undefined;
  wake: (() => void) | undefined;
  stopFetch: (() => void) | undefined;
}

/**
 * Options of {@link natsCoreSource}.
 *
 * @example
 * ```ts
 * import { type NatsCoreSourceOptions, natsCoreSource } from "gress/nats";
 *
 * // A queue group spreads the subject's messages over the jobs that join it.
 * const options: NatsCoreSourceOptions<{ host: string }> = { name: "pings", servers: "localhost:4222", subject: "ping.>", queue: "pingers", maxBuffered: 10_000 };
 * const source = natsCoreSource(options);
 * ```
 */
export type NatsCoreSourceOptions<T> = NatsSourceCommon<T> &
  NatsConnectOptions & {
    readonly subject: string;
    /** Queue group, to share the subject among several jobs. */
    readonly queue?: string;
    /** Messages held in memory while paused; beyond it they spill (with `spill`) or are dropped and counted. Default 10 000. */
    readonly maxBuffered?: number;
    /**
     * Spill to disk what does not fit in memory while the job is paused: the directory, the bound on disk, and
     * what happens beyond it (default: drop the newest and count it). Its `maxMemoryRecords` defaults to `maxBuffered`.
     */
    readonly spill?: SpillOptions;
  };

/**
 * A core NATS source; `counts.dropped` counts what the pause buffer could not hold.
 *
 * @example
 * ```ts
 * import { type NatsCoreSource, natsCoreSource } from "gress/nats";
 *
 * const source: NatsCoreSource<unknown> = natsCoreSource({ name: "events", servers: "localhost:4222", subject: "events.>" });
 * // Messages dropped because the buffer was full while the job was paused (core NATS cannot be paused).
 * console.log(source.counts.dropped, source.buffered.memory, source.buffered.disk);
 * ```
 */
export interface NatsCoreSource<T> extends Source<T> {
  readonly counts: NatsCoreSourceCounts;
  /** Messages waiting to be emitted: in memory, on disk, and the bytes the spill files take. */
  readonly buffered: { readonly memory: number; readonly disk: number; readonly diskBytes: number };
}

/**
 * An at-most-once source over a core NATS subject.
 * @param options connection, subject, schema
 * @returns the source (no positions: it cannot replay)
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { natsCoreSource } from "gress/nats";
 *
 * // Core NATS subjects, at most once: what arrives while the job is down is lost. While a slow sink holds the
 * // job, 50 000 messages wait in memory, then up to 4 GiB on disk; beyond that they are dropped and counted.
 * const job = new Job();
 * const pings = job.source(
 *   natsCoreSource<{ host: string }>({
 *     name: "pings",
 *     servers: "localhost:4222",
 *     subject: "ping.>",
 *     maxBuffered: 50_000,
 *     spill: { dir: "state/pings-spill", maxSpillBytes: 4 * 1024 ** 3 },
 *   }),
 * );
 * ```
 */
export function natsCoreSource<T = unknown>(options: NatsCoreSourceOptions<T>): NatsCoreSource<T> {
  const maxBuffered = options.maxBuffered ?? 10_000;
  if (!Number.isSafeInteger(maxBuffered) || maxBuffered < 1) {
    throw new ConfigError(`NATS source "${options.name}": maxBuffered must be an integer >= 1, got ${maxBuffered}`, [
      { path: ["maxBuffered"], code: "too_small", message: "must be an integer >= 1" },
    ]);
  }
  // Kept across a restart: messages received but not yet emitted go to the next run instead of being lost.
  // Without `spill` it holds `maxBuffered` messages in memory only (it never touches its directory).
  const buffer = new SpillBuffer(
    options.spill !== undefined
      ? { maxMemoryRecords: maxBuffered, ...options.spill }
      : { dir: "(no spill directory: spill not configured)", maxMemoryRecords: maxBuffered, maxSpillBytes: 0 },
    `NATS source "${options.name}"`,
  );
  const decode = jsonDecoder<T>({
    ...(options.schema !== undefined ? { schema: options.schema } : {}),
    ...(options.maxMessageBytes !== undefined ? { maxBytes: options.maxMessageBytes } : {}),
    ...(options.maxDepth !== undefined ? { maxDepth: options.maxDepth } : {}),
  });
  const counts: NatsCoreSourceCounts = { ...newCounts(), spilled: 0 };
  /** The current run: what one open() acquired, until its close(). A restart opens a new one. */
  let session: CoreSession | undefined;
  /** The last close(): the next open() waits for it, so that one run's subscription ends before the next starts. */
  let closing: Promise<void> = Promise.resolve();
  let ctxRef: SourceContext<T> | undefined;
  let bucket: TokenBucket | undefined;
  let paused = false;
  let drainScheduled = false;
  let n = 0;
  const deliver = (data: Uint8Array, subject: string): void => {
    const ctx = ctxRef as SourceContext<T>;
    n++;
    const d = decode(data);
    if (d.ok) {
      counts.emitted++;
      ctx.emit(d.value, undefined, options.name);
    } else {
      counts.deadLetters++;
      ctx.deadLetter(deadLetterOf(options.name, subject, n, data), d.reason);
    }
  };
  return {
    name: options.name,
    counts,
    get buffered() {
      return { memory: buffer.memoryRecords, disk: buffer.diskRecords, diskBytes: buffer.diskBytes };
    },
    spillStats() {
      return { memoryRecords: buffer.memoryRecords, diskRecords: buffer.diskRecords, diskBytes: buffer.diskBytes, spilled: counts.spilled, dropped: counts.dropped };
    },
    open(ctx) {
      const s: CoreSession = { closed: false, live: false, held: undefined, sub: undefined, opening: undefined };
      session = s;
      s.opening = openSource(s, ctx);
      return s.opening;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      scheduleDrain();
    },
    close() {
      const s = session;
      if (s === undefined || s.closed) return closing;
      s.closed = true;
      closing = (async () => {
        // A close that comes while open() is still connecting releases the connection open() got.
        await s.opening?.catch(() => {});
        s.sub?.unsubscribe();
        await s.held?.release();
      })();
      return closing;
    },
  };
  async function openSource(s: CoreSession, ctx: SourceContext<T>): Promise<void> {
    await closing;
    if (s.closed) return;
    ctxRef = ctx;
    paused = ctx.paused;
    if (options.rateLimit !== undefined) bucket = new TokenBucket(options.rateLimit, ctx.clock);
    s.held = await holdConnection(options, options.name);
    if (s.closed) return;
    s.sub = s.held.nc.subscribe(options.subject, {
      ...(options.queue !== undefined ? { queue: options.queue } : {}),
      callback: (err, msg) => {
        if (s.closed) return;
        if (err !== null) return ctx.fail(new SourceError(`NATS source "${options.name}": ${err.message}`, { cause: err }));
        counts.received++;
        // Over the rate limit, a subject that cannot pause buffers like a paused job does.
        const limited = bucket !== undefined && !bucket.tryTake(1);
        if (paused || limited || buffer.size > 0) {
          const spilledBefore = buffer.counts.spilled;
          if (!buffer.push(msg.subject, msg.data)) {
            counts.dropped++;
            if (buffer.full) return ctx.fail(new SourceError(buffer.fullMessage));
          }
          counts.spilled += buffer.counts.spilled - spilledBefore;
          if (limited && bucket !== undefined) setTimeout(drain, bucket.delayFor(1));
          else if (!paused) scheduleDrain();
          return;
        }
        deliver(msg.data, msg.subject);
      },
    });
    await s.held.nc.flush();
    s.live = true;
    // What an earlier run received and could not emit.
    drain();
  }
  function scheduleDrain(): void {
    if (drainScheduled) return;
    drainScheduled = true;
    runSoon(() => {
      drainScheduled = false;
      drain();
    });
  }
  function drain(): void {
    // Only into a run that is open: a closed run's context takes nothing any more.
    const s = session;
    if (s === undefined || s.closed || !s.live) return;
    // A slice at a time: the subscription's callbacks (new messages), timers and checkpoints get their turn.
    for (let i = 0; !paused && buffer.size > 0; i++) {
      if (i === DRAIN_SLICE) {
        scheduleDrain();
        return;
      }
      if (bucket !== undefined && !bucket.tryTake(1)) {
        setTimeout(drain, bucket.delayFor(1));
        return;
      }
      const m = buffer.shift() as SpilledRecord;
      deliver(m.bytes, m.tag);
    }
  }
}
