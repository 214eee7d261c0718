/**
 * The Kafka source: a consumer group member whose splits are the partitions it is assigned. Each record is
 * emitted with `split = "<topic>-<partition>"`, so `withTimestamps` keeps one watermark per partition and
 * merges them by minimum. The record's timestamp is the Kafka message timestamp.
 *
 * Positions are `{ "<topic>-<partition>": nextOffset }`. They go into the checkpoint; `open(ctx, from)` seeks
 * to them on recovery, and `ack(positions)` commits them to the group only after the checkpoint is durable
 * (for monitoring and lag tools; recovery never trusts the group's offsets over the checkpoint's).
 *
 * Flow control: `pause()` pauses fetching (consumer.pause); a batch in progress stops at the next message,
 * and the rest is fetched again after `resume()`. A token bucket (`rateLimit`) bounds the rate.
 * Bad bytes (see connectors/ingest) go to the dead-letter output with the reason; they are counted and the
 * job goes on.
 *
 * Group membership: the job must be its consumer group's only member. Its keyed state and offsets live in
 * its own checkpoints, so a partition assigned to another member would be read without its state. Every
 * partition with data is announced as a split at open (so its watermark counts from the start). An
 * assignment that leaves partitions to another member stops reading (the consumer is paused) and waits up
 * to `otherMemberWaitMs` for the group to hand everything to this job: after a SIGKILL the previous
 * incarnation stays a member until its session times out (kafkajs 2.2.4 has no static membership to take
 * its place at once). Once the assignment is complete again the partitions are sought to the job's own
 * positions and reading resumes; if it is not, the job fails with a SourceError naming the partitions.
 * Handing a partition's state over to another job through the checkpoint is not implemented.
 *
 * Scale-out (lib/scaleout/): a task binds the source (`BIND_TASK`) to its routed client before the job runs.
 * The source then reads only the task's partitions, from batches the worker's group consumer hands it, and its
 * group offsets are committed in the task's Kafka transaction, not by `ack`. The rest is as above.
 * @module
 */
import { z } from "zod";
import type { CancelTimer } from "../../lib/clock.ts";
import { validate } from "../../lib/config.ts";
import { SourceError } from "../../lib/errors.ts";
import type { Positions, Source, SourceContext, SourceProgress } from "../../lib/source.ts";
import { BIND_TASK, SOURCE_BOUNDED, SOURCE_TOPICS, type TaskBindable } from "../../lib/scaleout/task-io.ts";
import { type AsyncDecoder, type Decoded, type Decoder, deadLetterOf, jsonDecoder } from "../ingest/decode.ts";
import { TokenBucket, type TokenBucketOptions } from "../ingest/token-bucket.ts";
import type { KafkaBatch, KafkaClient, KafkaConsumer, PartitionOffset } from "./client.ts";
import { isKafkaClientOption, type KafkaClientName, resolveKafkaClient } from "./default-client.ts";

/** Messages of a batch decoded at a time before they are emitted (see `handle`). */
const DECODE_RUN = 256;

/**
 * Options of {@link kafkaSource}.
 *
 * @example
 * ```ts
 * import { type Job } from "gress";
 * import { jsonDecoder, type KafkaSourceOptions, kafkaSource } from "gress/kafka";
 *
 * type Click = { user: string; at: number };
 * // A consumer group over one topic; offsets go into the job's checkpoints and are committed after them.
 * const options: KafkaSourceOptions<Click> = {
 *   name: "clicks",
 *   brokers: ["localhost:9092"],
 *   topics: ["clicks"],
 *   groupId: "click-counter",
 *   decode: jsonDecoder<Click>(),
 *   startFrom: "earliest",
 * };
 * export default (job: Job) => job.source(kafkaSource(options));
 * ```
 */
export interface KafkaSourceOptions<T> {
  /** Source name, unique in the job (metrics, checkpoints). */
  readonly name: string;
  /** Broker addresses, e.g. ["127.0.0.1:9092"]; or give `client`. */
  readonly brokers?: readonly string[];
  /**
   * A client to use, or which built-in client to make from `brokers`: "platformatic" (@platformatic/kafka, the
   * default) or "kafkajs".
   */
  readonly client?: KafkaClient | KafkaClientName;
  readonly topics: readonly string[];
  readonly groupId: string;
  /** Turns message bytes into a value. Default: JSON (see `jsonDecoder`); `registryDecoder` (gress/registry) reads Avro, Protobuf and JSON Schema records. */
  readonly decode?: Decoder<T> | AsyncDecoder<T>;
  /** Where a partition with no checkpointed or committed position starts. Default "earliest". */
  readonly startFrom?: "earliest" | "latest";
  /** Read up to the end offsets seen at open, then end the input (a bounded source). Default false. */
  readonly bounded?: boolean;
  /** Per-source ingestion rate limit. */
  readonly rateLimit?: TokenBucketOptions;
  /** Only committed transactional data (read_committed). Default true. */
  readonly readCommitted?: boolean;
  /** Group session timeout. A restarted job rejoins faster with a short one. Default 10 000. */
  readonly sessionTimeoutMs?: number;
  /** Commit checkpointed offsets to the group in ack(). Default true. */
  readonly commitOffsets?: boolean;
  /**
   * How long an assignment that leaves partitions to another group member is waited out (a killed previous
   * incarnation whose session has not expired yet) before the job fails. Default 3 × sessionTimeoutMs + 5 s.
   */
  readonly otherMemberWaitMs?: number;
}

const optionsSchema = z.strictObject({
  name: z.string().min(1),
  brokers: z.array(z.string().min(1)).min(1).optional(),
  client: z.custom<KafkaClient | KafkaClientName>(isKafkaClientOption, 'a KafkaClient, "platformatic" or "kafkajs"').optional(),
  topics: z.array(z.string().min(1)).min(1),
  groupId: z.string().min(1),
  decode: z.function().optional(),
  startFrom: z.enum(["earliest", "latest"]).optional(),
  bounded: z.boolean().optional(),
  rateLimit: z.strictObject({ ratePerSecond: z.number().positive(), burst: z.number().min(1).optional() }).optional(),
  readCommitted: z.boolean().optional(),
  sessionTimeoutMs: z.number().int().min(1000).optional(),
  commitOffsets: z.boolean().optional(),
  otherMemberWaitMs: z.number().int().nonnegative().optional(),
});

/**
 * The split name of a partition.
 *
 * @example
 * ```ts
 * import { splitOf } from "gress/kafka";
 *
 * console.log(splitOf("orders", 3)); // "orders-3": the split (and watermark) of a topic partition
 * ```
 */
export function splitOf(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

/**
 * Parses a split name back into topic and partition (topics may contain '-', partitions may not).
 *
 * @example
 * ```ts
 * import { parseSplit } from "gress/kafka";
 *
 * console.log(parseSplit("orders-3")); // { topic: "orders", partition: 3 }
 * ```
 */
export function parseSplit(split: string): { topic: string; partition: number } | undefined {
  const i = split.lastIndexOf("-");
  const partition = Number(split.slice(i + 1));
  return i <= 0 || !Number.isInteger(partition) || partition < 0 ? undefined : { topic: split.slice(0, i), partition };
}

/**
 * A Kafka source.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { jsonDecoder, kafkaSource } from "gress/kafka";
 * import { z } from "zod";
 *
 * const Ride = z.object({ zone: z.string(), at: z.number() });
 * const job = new Job({ name: "surge" });
 * // Messages that are not JSON or do not fit the schema become dead letters, with the reason.
 * const rides = job.source(kafkaSource({ name: "rides", brokers: ["127.0.0.1:9092"], topics: ["rides"], groupId: "surge", decode: jsonDecoder({ schema: Ride }) }));
 * ```
 * @param options topics, group, decoding, limits
 * @returns a replayable source
 */
export function kafkaSource<T = unknown>(options: KafkaSourceOptions<T>): Source<T> {
  const o = validate(optionsSchema, options, "kafkaSource");
  const name = o.name;
  const decode: Decoder<T> | AsyncDecoder<T> = options.decode ?? (jsonDecoder() as Decoder<T>);
  let ownClient = options.client === undefined || typeof options.client === "string";
  let client: KafkaClient | undefined = typeof options.client === "string" ? undefined : options.client;
  let consumer: KafkaConsumer | undefined;
  /** The consumer's start (connect, join, first fetch); close() waits for it, or a late join would leak. */
  let starting: Promise<void> | undefined;
  /** open() reading the end offsets (connecting the admin client); close() waits for it too, for the same reason. */
  let reading: Promise<void> | undefined;
  let ctxRef: SourceContext<T> | undefined;
  let bucket: TokenBucket | undefined;
  let paused = false;
  let closed = false;
  let finished = false;
  let sought = false;
  /**
   * Set while the rate limit holds the source: its partitions are paused until the bucket has a token again.
   * Not a wait inside the batch handler: that would hold the consumer's fetch loop, which a scale-out worker
   * shares among all its tasks (one task's limit stalled the others for tens of seconds).
   */
  let throttled: CancelTimer | undefined;
  /**
   * Next offset per split: everything before it was emitted (or dead-lettered). Each in an object of its own,
   * so that the per-message path moves it with a field store instead of a map update.
   */
  const next = new Map<string, { offset: number }>();
  const nextOf = (split: string): number => next.get(split)?.offset ?? 0;
  const moveTo = (split: string, offset: number): void => {
    const at = next.get(split);
    if (at === undefined) next.set(split, { offset });
    else at.offset = offset;
  };
  /** End offsets of a bounded source. */
  let ends: Map<string, number> | undefined;
  /** Per split, its end as the last fetch saw it, and how far control records moved the fetch (consumer lag). */
  const logEnds = new Map<string, number>();
  const pastMarkers = new Map<string, number>();
  /** Splits whose last batch the handler stopped early (so a batch-end event must not advance them). */
  const stoppedEarly = new Set<string>();
  /** While another group member holds some partitions: since when, and the timer that gives up. */
  let shared: { readonly since: number; readonly giveUp: ReturnType<typeof setTimeout> } | undefined;
  const otherMemberWaitMs = o.otherMemberWaitMs ?? 3 * (o.sessionTimeoutMs ?? 10_000) + 5000;

  const checkEnd = (): void => {
    if (ends === undefined || finished || closed) return;
    for (const [split, end] of ends) if (nextOf(split) < end) return;
    finished = true;
    ctxRef?.end();
  };

  const throttle = (ms: number): void => {
    const clock = ctxRef?.clock;
    if (throttled !== undefined || clock === undefined) return;
    consumer?.pause(o.topics);
    throttled = clock.setTimer(clock.now() + ms, () => {
      throttled = undefined;
      if (!paused && !closed && shared === undefined) consumer?.resume(o.topics);
    });
  };

  const handle = async (batch: KafkaBatch): Promise<number> => {
    const ctx = ctxRef;
    const split = splitOf(batch.topic, batch.partition);
    const messages = batch.messages;
    const first = messages[0];
    if (batch.highWatermark !== undefined) logEnds.set(split, batch.highWatermark);
    // Until the checkpointed positions are sought, a batch may come from the group's offsets: take nothing.
    if (ctx === undefined || first === undefined || !sought) return first?.offset ?? 0;
    stoppedEarly.delete(split);
    let position = next.get(split);
    // The messages are decoded a run at a time, then emitted: two small loops, whose code and data do not
    // evict each other at every message as one loop's would. A run ends after a decoder's promise (a schema
    // registry lookup), which is awaited when its turn to be emitted comes. Decoding has no side effects: a
    // message decoded and not emitted (the source was paused) is fetched and decoded again.
    const decoded: (Decoded<T> | Promise<Decoded<T>> | undefined)[] = new Array(Math.min(messages.length, DECODE_RUN));
    for (let i = 0; i < messages.length; ) {
      let n = 0;
      while (n < decoded.length && i + n < messages.length) {
        const m = messages[i + n] as (typeof messages)[number];
        // A fetch that started before the seek to the checkpointed position took effect: skip what came before.
        const d = position !== undefined && m.offset < position.offset ? undefined : decode(m.value);
        decoded[n++] = d;
        if (d instanceof Promise) {
          // Handled here: when the source stops before its turn comes, it is never awaited, and a rejection
          // nobody handles would end the process.
          d.catch(() => {});
          break;
        }
      }
      for (let q = 0; q < n; q++, i++) {
        const m = messages[i] as (typeof messages)[number];
        let d = decoded[q];
        decoded[q] = undefined;
        if (d === undefined) continue;
        if (closed || finished || paused || ctx.paused || shared !== undefined) {
          stoppedEarly.add(split);
          return m.offset;
        }
        if (bucket !== undefined) {
          const delay = bucket.delayFor(1);
          if (delay > 0) {
            // The rest of the batch is fetched again once the bucket has a token (see `throttled`).
            stoppedEarly.add(split);
            throttle(delay);
            return m.offset;
          }
          bucket.take(1);
        }
        if (d instanceof Promise) {
          // A decoder that must ask first (a schema registry, once per schema id): nothing moved yet, so on
          // close or pause this message is read again.
          try {
            d = await d;
          } catch (err) {
            // Not the record's fault (the registry is unreachable): fail the job, which restarts from its last
            // checkpoint and reads this record again. Thrown back to the client, it would retry the batch forever.
            stoppedEarly.add(split);
            ctx.fail(err);
            return m.offset;
          }
          if (closed || paused || ctx.paused) {
            stoppedEarly.add(split);
            return m.offset;
          }
        }
        // The position moves before the emit: a checkpoint triggered by the emit's side effects sees it.
        if (position === undefined) {
          position = { offset: m.offset + 1 };
          next.set(split, position);
        } else position.offset = m.offset + 1;
        if (d.ok) ctx.emit(d.value, m.timestamp, split);
        else ctx.deadLetter(deadLetterOf(name, split, m.offset, m.value), d.reason);
      }
    }
    checkEnd();
    return (messages[messages.length - 1] as (typeof messages)[number]).offset + 1;
  };

  const source: Source<T> & TaskBindable = {
    name,
    [SOURCE_TOPICS]: o.topics,
    [SOURCE_BOUNDED]: o.bounded === true,
    [BIND_TASK](io) {
      // A scale-out task: its routed client (the task's partitions only; see the module comment).
      client = io.client;
      ownClient = false;
    },
    async open(ctx, from) {
      ctxRef = ctx;
      // Opened again after close() (the job restarted after a failure, or runs again): start clean.
      closed = false;
      finished = false;
      sought = false;
      paused = false;
      next.clear();
      logEnds.clear();
      pastMarkers.clear();
      ends = undefined;
      stoppedEarly.clear();
      if (options.rateLimit !== undefined) bucket = new TokenBucket(options.rateLimit, ctx.clock);
      if (client === undefined) {
        if (o.brokers === undefined) throw new SourceError(`kafka source "${name}": give brokers or a client`);
        client = resolveKafkaClient(o.brokers, `gress-${name}`, o.client);
      }
      const seeks: PartitionOffset[] = [];
      for (const [split, offset] of Object.entries(from ?? {})) {
        const tp = parseSplit(split);
        if (tp === undefined || typeof offset !== "number" || !Number.isInteger(offset) || offset < 0) {
          throw new SourceError(`kafka source "${name}": bad checkpointed position ${JSON.stringify(split)}: ${JSON.stringify(offset)}`);
        }
        moveTo(split, offset);
        seeks.push({ ...tp, offset });
      }
      // Every partition with data to read is announced before its first record, so that a partition fetched
      // later is not late against one fetched first (the job is the group's only member, see above).
      const latest = new Map<string, number>();
      const offsetsOf = client;
      reading = (async () => {
        for (const topic of o.topics) for (const [partition, end] of await offsetsOf.endOffsets(topic)) latest.set(splitOf(topic, partition), end);
      })();
      await reading;
      // Closed while reading them (the job failed early): close() waited for this and releases the client.
      if (closed) return;
      ctx.announceSplits([...latest].filter(([split, end]) => end > nextOf(split)).map(([split]) => split));
      if (o.bounded === true) {
        ends = latest;
        checkEnd();
        if (finished) return;
      }
      consumer = client.consumer({
        groupId: o.groupId,
        topics: o.topics,
        fromBeginning: (o.startFrom ?? "earliest") === "earliest",
        ...(o.readCommitted === undefined ? {} : { readCommitted: o.readCommitted }),
        ...(o.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: o.sessionTimeoutMs }),
      });
      // A consumer that failed for good (records it cannot read) fails the job, which says why; it would not heal.
      consumer.onFailure?.((err) => {
        if (!closed) ctx.fail(new SourceError(`kafka source "${name}": ${err.message}`, { cause: err }));
      });
      consumer.onPositionAdvanced((t) => {
        // Control records (transaction markers) move the fetch position without a message; for a bounded
        // source that is how the end of a partition that ends in a marker is reached.
        const split = splitOf(t.topic, t.partition);
        if (stoppedEarly.has(split)) return;
        // A transaction's commit marker is no record to read: it does not count as lag.
        if (sought && t.offset > nextOf(split)) pastMarkers.set(split, t.offset);
        if (ends === undefined) return;
        const end = ends.get(split);
        if (end !== undefined && t.offset >= end && nextOf(split) < t.offset) {
          moveTo(split, t.offset);
          checkEnd();
        }
      });
      consumer.onAssignment((assigned) => {
        // State and checkpointed offsets are local to this job, so a partition owned by another group member
        // would be read without its state, or the two would both process it. Wait (bounded) for the group to
        // settle on this job alone, reading nothing meanwhile; then refuse loudly.
        const c = consumer;
        if (c === undefined || closed) return;
        const mine = new Set(assigned.map((a) => splitOf(a.topic, a.partition)));
        const missing = [...latest.keys()].filter((split) => !mine.has(split));
        if (missing.length === 0) {
          if (shared !== undefined) clearTimeout(shared.giveUp);
          const wasShared = shared !== undefined;
          shared = undefined;
          // After the first assignment (whose seeks open() makes), a partition handed out again would restart
          // from the group's offsets, and kafkajs forgets seeks and pauses when it restarts its consumer after
          // a crash: seek every partition to this job's own position, and pause again if paused.
          if (sought) {
            for (const [split, at] of next) {
              const tp = parseSplit(split);
              if (tp !== undefined) c.seek({ ...tp, offset: at.offset });
            }
          }
          if (paused || throttled !== undefined) c.pause(o.topics);
          else if (wasShared) c.resume(o.topics);
          return;
        }
        if (shared !== undefined) return;
        c.pause(o.topics);
        const since = Date.now();
        const giveUp = setTimeout(() => {
          ctx.fail(
            new SourceError(
              `kafka source "${name}": consumer group "${o.groupId}" still has another member, which holds ${missing.join(", ")}, after waiting ${Date.now() - since} ms (otherMemberWaitMs). ` +
                "A Gress job must be its group's only member: keyed state and offsets live in the job's checkpoints, and handing partitions over between jobs is not supported. " +
                "Stop the other member, or give this job a groupId of its own.",
            ),
          );
        }, otherMemberWaitMs);
        shared = { since, giveUp };
      });
      try {
        const c = consumer;
        starting = c.start(handle);
        await starting;
        if (closed) return;
        for (const s of seeks) c.seek(s);
        sought = true;
        if (paused || throttled !== undefined || shared !== undefined) c.pause(o.topics);
      } catch (err) {
        if (closed) return;
        throw new SourceError(`kafka source "${name}" failed to start: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    },
    pause() {
      if (paused) return;
      paused = true;
      consumer?.pause(o.topics);
    },
    resume() {
      if (!paused) return;
      paused = false;
      if (shared === undefined && throttled === undefined) consumer?.resume(o.topics);
    },
    positions(): Positions {
      return Object.fromEntries(Array.from(next, ([split, at]) => [split, at.offset]));
    },
    // A bounded source knows its end: the offsets read so far of the end offsets seen at open (for gress run's
    // progress bar). Offsets count transaction markers too, so "records" is approximate with transactions.
    progress(): SourceProgress | undefined {
      if (ends === undefined) return undefined;
      let done = 0;
      let total = 0;
      for (const [split, end] of ends) {
        total += end;
        done += Math.min(end, nextOf(split));
      }
      return { done, total, unit: "records" };
    },
    // Consumer lag per partition, from the ends the fetches carried (per batch; see KafkaBatch.highWatermark).
    lag(): ReadonlyMap<string, number> {
      const out = new Map<string, number>();
      for (const [split, end] of logEnds) {
        const at = next.get(split);
        if (at !== undefined) out.set(split, Math.max(0, end - Math.max(at.offset, pastMarkers.get(split) ?? 0)));
      }
      return out;
    },
    async ack(positions) {
      if (o.commitOffsets === false || consumer === undefined) return;
      const offsets: PartitionOffset[] = [];
      for (const [split, offset] of Object.entries(positions)) {
        const tp = parseSplit(split);
        if (tp !== undefined && typeof offset === "number") offsets.push({ ...tp, offset });
      }
      // Best effort: the group's offsets are for monitoring; a rebalance in progress must not fail a checkpoint.
      if (offsets.length > 0) await consumer.commit(offsets).catch(() => undefined);
    },
    async close() {
      closed = true;
      if (shared !== undefined) clearTimeout(shared.giveUp);
      shared = undefined;
      throttled?.();
      throttled = undefined;
      await reading?.catch(() => {});
      const c = consumer;
      consumer = undefined;
      await starting?.catch(() => {});
      await c?.stop();
      if (ownClient) {
        const own = client;
        client = undefined;
        await own?.close();
      }
    },
  };
  return source;
}
