/**
 * What crosses a shuffle (a repartition topic) in a scale-out job, and how a downstream task merges the
 * watermarks of its upstream tasks (docs/SCALE-OUT.md, section 6).
 *
 * Contract (for the task runtime):
 * - **Record key** ({@link encodeShuffleKey}): the bytes the partitioner hashes (murmur2, as the Kafka
 *   clients do): the UTF-8 of a string key; a number key is 0xff then its float64 (big-endian), so that `1`
 *   and `"1"` land apart (0xff never occurs in UTF-8).
 * - **Record value** (msgpack, structured clone for the user's value, as LMDB stores state):
 *   `[0, key, value, timestamp]` a record; `[1, upstreamTask, watermark]` the watermark of an upstream task;
 *   `[2, upstreamTask]` the end of an upstream task's input; `[3, upstreamTask]` the upstream task is idle (its
 *   input has delivered nothing for its watermark strategy's `idleTimeoutMs`: Flink's WatermarkStatus.IDLE; its
 *   next watermark makes it active again). {@link encodeShuffleRecord} / {@link decodeShuffleRecord}. An
 *   upstream task sends its watermark (and its END and IDLE) to *every* partition of the topic, in the same
 *   transaction as its records, so a watermark follows the records sent before it.
 * - **Merge** ({@link UpstreamWatermarks}): a downstream task's input watermark from one repartition topic is
 *   the minimum over its upstream tasks that have not ended and are not idle (marked IDLE and no watermark
 *   since, or, with a merge `idleTimeoutMs`, no watermark for that long in processing time); it holds until
 *   every upstream task has reported once (a watermark, IDLE or END), holds while every remaining one is idle,
 *   never goes back, and is +∞ (the end) once every upstream
 *   task has sent END. Time is passed in (`now`), so it is pure; `snapshot()` is plain data for the task's
 *   checkpoint, and `UpstreamWatermarks.restore` gives every upstream task a fresh idle window.
 *   (lib/split-watermarks.ts does not fit: it generates watermarks from records with a strategy and a timer;
 *   here the watermarks arrive ready-made, per upstream task.)
 * - **Partition** ({@link shufflePartition}): `toPositive(murmur2(keyBytes)) % partitions`, the Java client's
 *   mapping ({@link murmur2}), computed here and sent explicitly, so it does not depend on the Kafka client.
 * - **Topic** ({@link repartitionTopic}): `gress-<job>-<n>-repartition` for the job's n-th shuffle (n ≥ 1; the
 *   changelog of the input sub-topology is `gress-<job>-0-changelog`).
 *
 * The runtime side (lib/scaleout/shuffle-io.ts) writes and reads these records inside scale-out tasks.
 * @module
 */
import { Packr, Unpackr } from "msgpackr";
import type { Decoded } from "../../connectors/ingest/decode.ts";
import { type Key, MAX_WATERMARK, MIN_WATERMARK } from "../element.ts";
import { BadRecordError, SourceError } from "../errors.ts";
import { protoKeyPath } from "../state/lmdb.ts";

/** The repartition topic of a job's n-th shuffle (n ≥ 1, in the order the pipeline builds its keyBys). */
export function repartitionTopic(job: string, n: number): string {
  return `gress-${job}-${n}-repartition`;
}

/**
 * Kafka's murmur2 (the Java client's `Utils.murmur2`, which kafkajs and @platformatic/kafka's compatibility
 * partitioner reproduce): a signed 32-bit hash of `data`.
 */
export function murmur2(data: Uint8Array): number {
  const m = 0x5bd1e995;
  const length = data.length;
  let h = (0x9747b28c ^ length) | 0;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = (data[i] as number) | ((data[i + 1] as number) << 8) | ((data[i + 2] as number) << 16) | ((data[i + 3] as number) << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const rest = length & 3;
  if (rest === 3) h ^= (data[whole + 2] as number) << 16;
  if (rest >= 2) h ^= (data[whole + 1] as number) << 8;
  if (rest >= 1) h = Math.imul(h ^ (data[whole] as number), m);
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition of a shuffled record with key bytes `keyBytes` (from {@link encodeShuffleKey}) among `partitions`. */
export function shufflePartition(keyBytes: Uint8Array, partitions: number): number {
  return (murmur2(keyBytes) & 0x7fffffff) % partitions;
}

/** A Kafka source decoder for a repartition topic: bytes this codec did not write become dead letters with the reason. */
export function shuffleDecoder(topic: string): (bytes: Uint8Array | null) => Decoded<ShuffleRecord> {
  return (bytes) => {
    if (bytes === null) return { ok: false, reason: `a record of repartition topic "${topic}" has no value` };
    try {
      return { ok: true, value: decodeShuffleRecord(bytes, `a record of repartition topic "${topic}"`) };
    } catch (err) {
      return { ok: false, reason: err instanceof Error ? err.message : String(err) };
    }
  };
}

/** An element of a repartition topic, decoded. */
export type ShuffleRecord =
  | { readonly kind: "record"; readonly key: Key; readonly value: unknown; readonly timestamp: number }
  | { readonly kind: "watermark"; readonly task: string; readonly watermark: number }
  | { readonly kind: "end"; readonly task: string }
  | { readonly kind: "idle"; readonly task: string };

const packr = new Packr({ structuredClone: true });
const unpackr = new Unpackr({ structuredClone: true, copyBuffers: true });
const utf8 = new TextEncoder();

/** The Kafka record key of a shuffled record: what the partitioner hashes. */
export function encodeShuffleKey(key: Key): Uint8Array {
  if (typeof key === "string") return utf8.encode(key);
  const out = new Uint8Array(9);
  out[0] = 0xff;
  new DataView(out.buffer).setFloat64(1, key === 0 ? 0 : key); // -0 and 0 are one key, as in a Map
  return out;
}

/**
 * The Kafka record value of a shuffle element. A BadRecordError (for the dead letters) for a value with an own
 * "__proto__" property, which msgpack would rename on the way back.
 */
export function encodeShuffleRecord(r: ShuffleRecord): Uint8Array {
  switch (r.kind) {
    case "record": {
      const at = r.value !== null && typeof r.value === "object" ? protoKeyPath(r.value) : undefined;
      if (at !== undefined) {
        throw new BadRecordError(`a record with key ${JSON.stringify(r.key)} cannot cross a shuffle: its value has an own "__proto__" property at value${at}, which would not arrive as it was sent; rename that property`);
      }
      return packr.pack([0, r.key, r.value, r.timestamp]);
    }
    case "watermark":
      return packr.pack([1, r.task, r.watermark]);
    case "end":
      return packr.pack([2, r.task]);
    case "idle":
      return packr.pack([3, r.task]);
  }
}

/**
 * Decodes a repartition topic's record value; a SourceError naming `where` (e.g. "topic-3 offset 17") for
 * bytes this codec did not write (an internal topic written by something else, or by another release).
 */
export function decodeShuffleRecord(bytes: Uint8Array, where = "a repartition record"): ShuffleRecord {
  const bad = (why: string, cause?: unknown): SourceError => new SourceError(`${where} is not a Gress shuffle record: ${why}`, { cause });
  let v: unknown;
  try {
    v = unpackr.unpack(bytes);
  } catch (err) {
    throw bad("not msgpack", err);
  }
  if (!Array.isArray(v)) throw bad("not an array");
  const [tag, a, b, c] = v as unknown[];
  if (tag === 0 && v.length === 4 && (typeof a === "string" || typeof a === "number") && typeof c === "number") return { kind: "record", key: a, value: b, timestamp: c };
  if (tag === 1 && v.length === 3 && typeof a === "string" && typeof b === "number") return { kind: "watermark", task: a, watermark: b };
  if (tag === 2 && v.length === 2 && typeof a === "string") return { kind: "end", task: a };
  if (tag === 3 && v.length === 2 && typeof a === "string") return { kind: "idle", task: a };
  throw bad(`unknown shape (tag ${JSON.stringify(tag)}, ${v.length} fields)`);
}

/**
 * The serialisable state of an {@link UpstreamWatermarks}: per upstream task, its last watermark (null before
 * any), whether it ended, and `idle: true` when it is marked idle (absent: active).
 */
export interface UpstreamWatermarkState {
  readonly current: number;
  readonly upstream: Readonly<Record<string, { readonly watermark: number | null; readonly ended: boolean; readonly idle?: boolean }>>;
}

interface Upstream {
  watermark: number | undefined;
  lastAt: number;
  ended: boolean;
  /** Marked IDLE by the task itself, and no watermark since. */
  idle: boolean;
}

/**
 * The input watermark of a downstream task over its upstream tasks (see the module comment). Each method
 * returns the new merged watermark when it advanced, else undefined.
 */
export class UpstreamWatermarks {
  readonly #upstream = new Map<string, Upstream>();
  readonly #idleTimeoutMs: number | undefined;
  #current = MIN_WATERMARK;

  /**
   * @param upstreamTasks the ids of every upstream task that writes into this task's partition
   * @param idleTimeoutMs processing time without a watermark after which an upstream task is idle (left out of
   *   the minimum until its next watermark); undefined: never idle. Keep it longer than a rebalance.
   * @param now processing time now (starts every task's idle window)
   */
  constructor(upstreamTasks: readonly string[], idleTimeoutMs: number | undefined, now: number) {
    if (upstreamTasks.length === 0) throw new RangeError("a shuffle has at least one upstream task");
    for (const t of upstreamTasks) this.#upstream.set(t, { watermark: undefined, lastAt: now, ended: false, idle: false });
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  /** Rebuilds the merge from a snapshot, with a fresh idle window for every upstream task. */
  static restore(state: UpstreamWatermarkState, idleTimeoutMs: number | undefined, now: number): UpstreamWatermarks {
    const w = new UpstreamWatermarks(Object.keys(state.upstream), idleTimeoutMs, now);
    for (const [t, s] of Object.entries(state.upstream)) {
      const u = w.#upstream.get(t)!;
      u.watermark = s.watermark ?? undefined;
      u.ended = s.ended;
      u.idle = s.idle === true;
    }
    w.#current = state.current;
    return w;
  }

  /** The merged watermark emitted so far (MIN_WATERMARK before the first). */
  get current(): number {
    return this.#current;
  }

  /** True once every upstream task has sent END. */
  get ended(): boolean {
    return this.#current === MAX_WATERMARK;
  }

  /**
   * Upstream task `task` reported `watermark`: it is active (again). A lower watermark than it reported before
   * does not lower its own; a task back from idle below the merged watermark holds it there until it catches up.
   */
  onWatermark(task: string, watermark: number, now: number): number | undefined {
    const u = this.#get(task);
    if (!u.ended) {
      if (u.watermark === undefined || watermark > u.watermark) u.watermark = watermark;
      u.lastAt = now;
      u.idle = false;
    }
    return this.#merge(now);
  }

  /** Upstream task `task` is idle: left out of the minimum (it counts as having reported) until its next watermark. */
  onIdle(task: string, now: number): number | undefined {
    const u = this.#get(task);
    if (!u.ended) u.idle = true;
    return this.#merge(now);
  }

  /** Upstream task `task` ended its input: it no longer holds the watermark back. */
  onEnd(task: string, now: number): number | undefined {
    this.#get(task).ended = true;
    return this.#merge(now);
  }

  /** Re-evaluates idleness at `now` (call periodically): an upstream task turning idle may let the watermark advance. */
  tick(now: number): number | undefined {
    return this.#merge(now);
  }

  /** The state to keep in the task's checkpoint. */
  snapshot(): UpstreamWatermarkState {
    const upstream: Record<string, { watermark: number | null; ended: boolean; idle?: true }> = {};
    // `idle` only when set: the state of a merge that never saw IDLE keeps its earlier shape.
    for (const [t, u] of this.#upstream) upstream[t] = u.idle ? { watermark: u.watermark ?? null, ended: u.ended, idle: true } : { watermark: u.watermark ?? null, ended: u.ended };
    return { current: this.#current, upstream };
  }

  #get(task: string): Upstream {
    const u = this.#upstream.get(task);
    if (u === undefined) throw new SourceError(`shuffle element from unknown upstream task "${task}" (expected one of ${[...this.#upstream.keys()].join(", ")}): the topology changed without a new job name?`);
    return u;
  }

  #merge(now: number): number | undefined {
    let min = MAX_WATERMARK;
    let open = 0;
    let active = 0;
    for (const u of this.#upstream.values()) {
      if (u.ended) continue;
      open++;
      if (u.idle) continue; // reported, idle: left out
      if (u.watermark === undefined) return undefined; // not every upstream task has reported yet
      if (this.#idleTimeoutMs !== undefined && now - u.lastAt >= this.#idleTimeoutMs) continue;
      active++;
      if (u.watermark < min) min = u.watermark;
    }
    if (open > 0 && active === 0) return undefined; // every remaining upstream task is idle: hold
    if (min <= this.#current) return undefined;
    this.#current = min;
    return min;
  }
}
