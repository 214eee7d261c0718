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
 * - **Restore progress.** A restore that reads records and takes 100 ms or more writes a log line (`options.log`, default stderr
 *   with the worker's "gress: " prefix) when it ends, and one every `progressEveryMs` (5 s) while it runs: the
 *   task, the records applied, the offsets, the time and the rate, and how long the first record took to come
 *   (a reader's group join and first fetch). {@link restoreProgress} and {@link restoreMetrics} give the same
 *   numbers per task as a metric. The task and job are the names of the environment's directory and its parent
 *   (`<state>/<job>/<task>/`). Cost: one clock read and a map update per applied batch.
 * @module
 */
import { basename, dirname } from "node:path";
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
  /** Where the progress lines go (restores of 100 ms or more). Default: stderr, prefixed "gress: ". */
  readonly log?: (message: string) => void;
  /** A progress line every this many ms while the restore runs. Default 5 000. */
  readonly progressEveryMs?: number;
  /** Milliseconds of a monotonic clock, for the durations. Default `performance.now`. */
  readonly clock?: () => number;
}

/** A restore's progress, as the log line and {@link restoreMetrics} report it. */
export interface RestoreProgress {
  /** The job and task: the names of the environment's parent directory and directory (`<state>/<job>/<task>/`). */
  readonly job: string;
  readonly task: string;
  /** The offset the restore reads from. */
  readonly from: number;
  /** The next offset to apply. */
  readonly offset: number;
  /** The changelog's end offset, once {@link ChangelogRestore.finish} was given it. */
  readonly end: number | undefined;
  /** Records applied (checkpoint records included) and skipped. */
  readonly applied: number;
  readonly skipped: number;
  /** Milliseconds since the restore began (until it finished, once it has). */
  readonly elapsedMs: number;
  /** Milliseconds from the restore's beginning to its first applied batch (the reader's join and first fetch). */
  readonly firstRecordMs: number | undefined;
  readonly done: boolean;
}

/** Restores of less than this write no log line (a small changelog, a test's in-memory log); nor do those that read nothing. */
const LOG_MIN_MS = 100;

/** Per environment path: the latest restore's progress and the records applied by all its restores in this process. */
const progress = new Map<string, { latest: RestoreProgress; total: number }>();

/** The latest restore of each task in this process (running or done), for status pages and tests. */
export function restoreProgress(): RestoreProgress[] {
  return [...progress.values()].map((p) => p.latest);
}

const label = (v: string): string => v.replace(/["\\\n]/g, "_");

/**
 * The restore metrics of this process in the Prometheus text format, one series per task (`extraLabels`, e.g.
 * `worker="0"`, are added to each): `gress_task_restore_entries_total` (records applied by every restore of
 * the task in this process), `gress_task_restore_active` (1 while a restore runs),
 * `gress_task_restore_last_entries` and `gress_task_restore_last_seconds` (the latest restore, so far or in all).
 */
export function restoreMetrics(extraLabels = ""): string[] {
  const lines = [
    "# HELP gress_task_restore_entries_total Changelog records a task applied while restoring its state.",
    "# TYPE gress_task_restore_entries_total counter",
    "# HELP gress_task_restore_active 1 while the task restores its state from its changelog.",
    "# TYPE gress_task_restore_active gauge",
    "# HELP gress_task_restore_last_entries Changelog records the task's latest restore applied.",
    "# TYPE gress_task_restore_last_entries gauge",
    "# HELP gress_task_restore_last_seconds Duration of the task's latest restore (so far, while it runs).",
    "# TYPE gress_task_restore_last_seconds gauge",
  ];
  for (const { latest: p, total } of progress.values()) {
    const l = `{job="${label(p.job)}",task="${label(p.task)}"${extraLabels === "" ? "" : `,${extraLabels}`}}`;
    lines.push(
      `gress_task_restore_entries_total${l} ${total}`,
      `gress_task_restore_active${l} ${p.done ? 0 : 1}`,
      `gress_task_restore_last_entries${l} ${p.applied}`,
      `gress_task_restore_last_seconds${l} ${(p.elapsedMs / 1000).toFixed(3)}`,
    );
  }
  return lines;
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
  /** Milliseconds from {@link beginRestore} to the first {@link ChangelogRestore.finish}. */
  readonly durationMs: number;
  /** Milliseconds from {@link beginRestore} to the first applied batch, or undefined when none was. */
  readonly firstRecordMs: number | undefined;
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
  readonly #clock: () => number;
  readonly #began: number;
  #firstRecordMs: number | undefined;
  #lastLog: number;
  #end: number | undefined;
  #done = false;
  #elapsedAtFinish: number | undefined;
  readonly #path: string;

  /** Use {@link beginRestore}. */
  constructor(backend: LmdbStateBackend, options: RestoreOptions) {
    this.#backend = backend;
    this.#options = options;
    this.#clock = options.clock ?? (() => performance.now());
    this.#began = this.#clock();
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
    this.#lastLog = this.#began;
    this.#path = backend.path;
    const before = progress.get(this.#path);
    progress.set(this.#path, { latest: this.progress, total: before?.total ?? 0 });
  }

  /** Where the restore stands now (also what {@link restoreProgress} reports). */
  get progress(): RestoreProgress {
    return {
      job: basename(dirname(this.#path)),
      task: basename(this.#path),
      from: this.from,
      offset: this.#next,
      end: this.#end,
      applied: this.#applied,
      skipped: this.#skipped,
      elapsedMs: this.#elapsed,
      firstRecordMs: this.#firstRecordMs,
      done: this.#done,
    };
  }

  get #elapsed(): number {
    return this.#elapsedAtFinish ?? this.#clock() - this.#began;
  }

  /** Updates the metric; writes a progress line when one is due (`final`: the restore ended). */
  #report(appliedNow: number, final: boolean): void {
    const entry = progress.get(this.#path);
    const latest = this.progress;
    if (entry === undefined) progress.set(this.#path, { latest, total: appliedNow });
    else {
      entry.latest = latest;
      entry.total += appliedNow;
    }
    const now = this.#clock();
    const every = this.#options.progressEveryMs ?? 5000;
    // At the end: a line for a restore that read records and took a while, or that logged progress before.
    const due = final ? (latest.applied + latest.skipped > 0 && latest.elapsedMs >= LOG_MIN_MS) || this.#lastLog !== this.#began : now - this.#lastLog >= every;
    if (!due) return;
    this.#lastLog = now;
    const rate = latest.elapsedMs > 0 ? Math.round((latest.applied * 1000) / latest.elapsedMs) : 0;
    const first = latest.firstRecordMs === undefined ? "no record read" : `first record after ${latest.firstRecordMs.toFixed(0)} ms`;
    const log = this.#options.log ?? ((m: string) => console.error(`gress: ${m}`));
    log(
      final
        ? `task ${latest.task} of "${latest.job}": restored ${latest.applied} changelog records (${latest.skipped} skipped) from offset ${latest.from} to ${latest.offset} in ${latest.elapsedMs.toFixed(0)} ms, ${rate} records/s (${first})`
        : `task ${latest.task} of "${latest.job}": restoring, ${latest.applied} changelog records applied from offset ${latest.from}, now at ${latest.offset}, ${(latest.elapsedMs / 1000).toFixed(1)} s, ${rate} records/s`,
    );
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
    this.#firstRecordMs ??= this.#clock() - this.#began;
    this.#report(applied, false);
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
    if (!this.#done) {
      this.#end = endOffset;
      this.#done = true;
      this.#elapsedAtFinish = this.#clock() - this.#began;
      this.#report(0, true);
    }
    return {
      from: this.from,
      offset,
      applied: this.#applied,
      skipped: this.#skipped,
      checkpoint: this.#checkpoint,
      discarded: this.#discarded,
      durationMs: this.#elapsed,
      firstRecordMs: this.#firstRecordMs,
    };
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
