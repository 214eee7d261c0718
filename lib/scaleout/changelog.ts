/**
 * The changelog of a scale-out task: one compacted Kafka topic partition per task that holds the task's
 * keyed state, so that the task can move to another worker (docs/SCALE-OUT.md, section 5).
 *
 * Contract (for the task runtime):
 * - **Records.** One record per changed state entry. Key: msgpack `[tableId, key, namespace]` (the table's id
 *   string, never its per-environment number), deterministic bytes so that compaction keeps the latest value
 *   of an entry. Value: the msgpack bytes LMDB itself stores for the value (structured clone: Map, Set, Date,
 *   bigint, typed arrays, shared and cyclic references; byte-identical to the `state` database), or `null`
 *   for a delete (a Kafka tombstone). A stored `null` value is the bytes of msgpack nil, not a tombstone.
 * - **Checkpoint record.** Under the reserved key `["__gress", "checkpoint"]` (a table id always has a "/",
 *   so it cannot collide): {@link ChangelogCheckpoint}, the id, source positions, the other sinks' pre-commit
 *   handles and the topology fingerprint. Written last in each task transaction, so compaction keeps the
 *   latest one.
 * - **Sending a checkpoint.** Between `backend.capture()` and `backend.commit()`: send
 *   `encodeChanges(backend, capture)` then `encodeCheckpoint(cp)` in the task's transaction; after the Kafka
 *   commit, `backend.commit(capture, () => writeLocalChangelog(backend, { offset, fingerprint, at, checkpoint }))`
 *   where `offset` is the changelog's next offset after the checkpoint record.
 * - **Restore.** `const r = beginRestore(backend, { fingerprint })`, read the partition (read_committed) from
 *   `r.from` to its end, `r.apply(batch)` for each batch (one LMDB transaction each, resumable after a crash),
 *   then `r.finish(endOffset)`. A local copy restores only the records at or after its offset; a copy of
 *   another topology, or older than `maxLocalAgeMs` (compaction may have dropped tombstones since), is
 *   discarded and restored from offset 0. A checkpoint record of another topology is a ConfigError.
 * @module
 */
import { Packr, Unpackr } from "msgpackr";
import type { Key } from "../element.ts";
import { StateError } from "../errors.ts";
import type { Positions } from "../source.ts";
import type { Namespace } from "../state/backend.ts";
import type { LmdbStateBackend, StateCapture, StateChange } from "../state/lmdb.ts";
import { checkSameTopology } from "./fingerprint.ts";

/** A record to produce to (or read from) the changelog: key bytes and value bytes, `null` for a tombstone. */
export interface ChangelogRecord {
  readonly key: Uint8Array;
  readonly value: Uint8Array | null;
}

/** A changelog record read back, with its offset in the task's changelog partition. */
export interface ChangelogEntry extends ChangelogRecord {
  readonly offset: number;
}

/** The reserved changelog key of the checkpoint record. */
export const CHECKPOINT_KEY: readonly ["__gress", "checkpoint"] = ["__gress", "checkpoint"];

/** What a task checkpoint records in its changelog besides the state changes. */
export interface ChangelogCheckpoint {
  readonly id: number;
  /** Processing time when the checkpoint was triggered. */
  readonly at: number;
  /** Source name → that source's positions. */
  readonly positions: Readonly<Record<string, Positions>>;
  /** Sink name → the handle its preCommit returned (non-Kafka sinks, re-committed by a new owner). */
  readonly sinks: Readonly<Record<string, unknown>>;
  /** The topology fingerprint (lib/scaleout/fingerprint.ts). */
  readonly fingerprint: string;
  /** The topology's human-readable description, shown when a fingerprint does not match. */
  readonly topology?: string;
  /** True for the checkpoint taken when every source had ended. */
  readonly final: boolean;
}

/** A changelog record decoded: a state change, or the checkpoint record. */
export type DecodedChangelogRecord = { readonly kind: "state"; readonly change: StateChange } | { readonly kind: "checkpoint"; readonly checkpoint: ChangelogCheckpoint };

/** What a local environment holds of the changelog (in its `meta`, under "changelog"). */
export interface LocalChangelog {
  /** The next changelog offset the environment has not applied. */
  readonly offset: number;
  readonly fingerprint: string;
  /** Processing time of the last checkpoint the environment holds (for the tombstone-retention check). */
  readonly at: number;
  /** The last checkpoint record the environment holds, if any. */
  readonly checkpoint?: ChangelogCheckpoint;
}

// Keys: plain msgpack (no records, no structured clone), so equal keys are equal bytes. Values: the options
// LMDB's `state` database uses (lib/state/lmdb.ts: structured clone; copied buffers on the way back).
const keyPackr = new Packr({ useRecords: false });
const valuePackr = new Packr({ structuredClone: true });
const valueUnpackr = new Unpackr({ structuredClone: true, copyBuffers: true });
const checkpointKeyBytes = keyPackr.pack(CHECKPOINT_KEY);

const LOCAL_META_KEY = "changelog";

/** The changelog record of one state change. */
export function encodeStateChange(change: StateChange): ChangelogRecord {
  return {
    key: keyPackr.pack([change.table, change.key, change.ns]),
    value: change.deleted ? null : valuePackr.pack(change.value),
  };
}

/**
 * The changelog records of a capture, in capture order: call between `backend.capture()` and
 * `backend.commit()`. Throws a StateError for a value LMDB could not store either.
 */
export function encodeChanges(backend: LmdbStateBackend, capture: StateCapture): ChangelogRecord[] {
  const out: ChangelogRecord[] = [];
  for (const change of backend.changes(capture)) out.push(encodeStateChange(change));
  return out;
}

/** The checkpoint record, under {@link CHECKPOINT_KEY}. */
export function encodeCheckpoint(checkpoint: ChangelogCheckpoint): ChangelogRecord {
  return { key: new Uint8Array(checkpointKeyBytes), value: valuePackr.pack(checkpoint) };
}

const isKey = (v: unknown): v is Key => typeof v === "string" || typeof v === "number";

/** Decodes one changelog record; a StateError (naming the offset, when known) for one this codec did not write. */
export function decodeChangelogRecord(record: ChangelogRecord | ChangelogEntry): DecodedChangelogRecord {
  const where = "offset" in record ? ` at offset ${record.offset}` : "";
  const bad = (why: string, cause?: unknown): StateError => new StateError(`changelog record${where} is not a Gress changelog record: ${why}`, { cause });
  let key: unknown;
  try {
    key = keyPackr.unpack(record.key);
  } catch (err) {
    throw bad("its key is not msgpack", err);
  }
  if (!Array.isArray(key)) throw bad("its key is not an array");
  const decodeValue = (): unknown => {
    try {
      return valueUnpackr.unpack(record.value!);
    } catch (err) {
      throw bad("its value is not msgpack", err);
    }
  };
  if (key.length === 2 && key[0] === CHECKPOINT_KEY[0] && key[1] === CHECKPOINT_KEY[1]) {
    if (record.value === null) throw bad("the checkpoint record is a tombstone");
    const cp = decodeValue() as Partial<ChangelogCheckpoint> | null;
    if (cp === null || typeof cp !== "object" || typeof cp.id !== "number" || typeof cp.fingerprint !== "string" || typeof cp.positions !== "object") {
      throw bad("the checkpoint record lacks its id, fingerprint or positions");
    }
    return { kind: "checkpoint", checkpoint: cp as ChangelogCheckpoint };
  }
  const [table, k, ns] = key as unknown[];
  if (key.length !== 3 || typeof table !== "string" || !isKey(k) || !isKey(ns)) throw bad("its key is not [tableId, key, namespace]");
  if (record.value === null) return { kind: "state", change: { table, key: k, ns: ns as Namespace, deleted: true, value: undefined } };
  return { kind: "state", change: { table, key: k, ns: ns as Namespace, deleted: false, value: decodeValue() } };
}

/** What the environment holds of the changelog, or undefined for one that never held a changelog. */
export function readLocalChangelog(backend: LmdbStateBackend): LocalChangelog | undefined {
  const v = backend.meta.get(LOCAL_META_KEY) as LocalChangelog | undefined;
  return v !== undefined && typeof v === "object" && typeof v.offset === "number" ? v : undefined;
}

/** Records what the environment holds of the changelog. Call inside a commit's `writeMeta`. */
export function writeLocalChangelog(backend: LmdbStateBackend, local: LocalChangelog): void {
  backend.meta.put(LOCAL_META_KEY, local);
}

/** Options of {@link beginRestore}. */
export interface RestoreOptions {
  /** This job's topology fingerprint: a local copy of another one is discarded, a checkpoint record of another one refused. */
  readonly fingerprint: string;
  /** This job's topology description, for the mismatch error. */
  readonly topology?: string;
  /** A local copy whose last checkpoint is older than this (the changelog's `delete.retention.ms`) is discarded. */
  readonly maxLocalAgeMs?: number;
  /** Processing time now (default `Date.now()`), for `maxLocalAgeMs`. */
  readonly now?: number;
}

/** The outcome of a restore. */
export interface RestoreResult {
  /** The offset the restore read from (the local copy's offset, or 0). */
  readonly from: number;
  /** The offset the environment now holds (the next one to read). */
  readonly offset: number;
  /** Records applied (checkpoint records included). */
  readonly applied: number;
  /** Records given that were before the environment's offset, and ignored. */
  readonly skipped: number;
  /** The last checkpoint record the environment holds, or undefined when the changelog has none. */
  readonly checkpoint: ChangelogCheckpoint | undefined;
  /** Why the local copy was not used, when it was not: "none", "topology", "age". */
  readonly discarded: "none" | "topology" | "age" | undefined;
}

/**
 * A restore in progress (see the module comment): read from {@link ChangelogRestore.from}, apply batches in
 * offset order, then finish. Apply needs a backend that holds no uncommitted changes.
 */
export class ChangelogRestore {
  readonly #backend: LmdbStateBackend;
  readonly #options: RestoreOptions;
  /** The offset to read the changelog from. */
  readonly from: number;
  readonly #discarded: RestoreResult["discarded"];
  #reset: boolean;
  #next: number;
  #at: number;
  #checkpoint: ChangelogCheckpoint | undefined;
  #applied = 0;
  #skipped = 0;

  /** Use {@link beginRestore}. */
  constructor(backend: LmdbStateBackend, options: RestoreOptions) {
    this.#backend = backend;
    this.#options = options;
    const local = readLocalChangelog(backend);
    const now = options.now ?? Date.now();
    let discarded: RestoreResult["discarded"];
    if (local === undefined) discarded = "none";
    else if (local.fingerprint !== options.fingerprint) discarded = "topology";
    else if (options.maxLocalAgeMs !== undefined && now - local.at > options.maxLocalAgeMs) discarded = "age";
    this.#discarded = discarded;
    // Anything else in the environment (another topology, a stale copy, state of a single-process run) goes.
    this.#reset = discarded !== undefined;
    this.from = discarded === undefined ? local!.offset : 0;
    this.#next = this.from;
    this.#at = discarded === undefined ? local!.at : 0;
    this.#checkpoint = discarded === undefined ? local!.checkpoint : undefined;
  }

  /** Records applied so far (progress). */
  get applied(): number {
    return this.#applied;
  }

  /**
   * Applies a batch of records (in offset order) in one LMDB transaction, with the offset after its last
   * record, so that a restore interrupted by a crash goes on from there. Records before the environment's
   * offset are skipped. A checkpoint record of another topology is a ConfigError, and nothing of the batch is
   * applied.
   */
  apply(batch: readonly ChangelogEntry[]): void {
    const changes: StateChange[] = [];
    let checkpoint = this.#checkpoint;
    let next = this.#next;
    let applied = 0;
    for (const entry of batch) {
      if (entry.offset < next) {
        this.#skipped++;
        continue;
      }
      const decoded = decodeChangelogRecord(entry);
      if (decoded.kind === "state") changes.push(decoded.change);
      else {
        this.#checkTopology(decoded.checkpoint, entry.offset);
        checkpoint = decoded.checkpoint;
      }
      next = entry.offset + 1;
      applied++;
    }
    if (applied === 0) return;
    const at = checkpoint?.at ?? this.#at;
    this.#backend.applyChanges(changes, () => this.#writeLocal(next, at, checkpoint), { reset: this.#reset });
    this.#reset = false;
    this.#next = next;
    this.#at = at;
    this.#checkpoint = checkpoint;
    this.#applied += applied;
  }

  /**
   * Ends the restore at `endOffset` (the partition's end offset as read, after transaction markers), recording
   * it as the environment's offset, and returns the outcome.
   */
  finish(endOffset?: number): RestoreResult {
    const offset = Math.max(this.#next, endOffset ?? this.#next);
    if (this.#reset || offset !== this.#next) {
      this.#backend.applyChanges([], () => this.#writeLocal(offset, this.#at, this.#checkpoint), { reset: this.#reset });
      this.#reset = false;
      this.#next = offset;
    }
    return { from: this.from, offset, applied: this.#applied, skipped: this.#skipped, checkpoint: this.#checkpoint, discarded: this.#discarded };
  }

  #writeLocal(offset: number, at: number, checkpoint: ChangelogCheckpoint | undefined): void {
    const local: LocalChangelog = checkpoint === undefined ? { offset, fingerprint: this.#options.fingerprint, at } : { offset, fingerprint: this.#options.fingerprint, at, checkpoint };
    writeLocalChangelog(this.#backend, local);
  }

  #checkTopology(cp: ChangelogCheckpoint, offset: number): void {
    const o = this.#options;
    checkSameTopology(
      { fingerprint: o.fingerprint, description: o.topology ?? "(no description)" },
      { fingerprint: cp.fingerprint, description: cp.topology },
      `the changelog's checkpoint ${cp.id} (offset ${offset})`,
    );
  }
}

/** Starts restoring `backend` from its changelog; see {@link ChangelogRestore}. */
export function beginRestore(backend: LmdbStateBackend, options: RestoreOptions): ChangelogRestore {
  return new ChangelogRestore(backend, options);
}
