/**
 * The LMDB state backend, for production: keyed state in an LMDB environment on disk (npm `lmdb`), read
 * through its memory map, so state may be larger than RAM.
 *
 * Reads and writes never make a transaction per event. Reads look, in order, at
 *  1. the dirty set — entries written since the last checkpoint capture (a tombstone marks a delete);
 *  2. the committing set — the entries captured by the checkpoint being written now;
 *  3. a bounded cache of decoded values (and of known-absent entries);
 *  4. LMDB itself (a memory-mapped B-tree lookup).
 * Writes go to the dirty set only. LMDB therefore holds exactly the state of the last completed checkpoint,
 * which is what makes recovery a matter of opening the directory. Memory is bounded by the cache size plus
 * the dirty set; when the dirty set reaches `maxDirtyEntries` the backend asks its checkpoint coordinator
 * for an early checkpoint (without one it spills the set to disk, marked as not belonging to a checkpoint).
 *
 * Checkpoints: {@link LmdbStateBackend.capture} (synchronous, at the barrier) freezes the dirty set into the
 * committing set with values deep-copied; {@link LmdbStateBackend.commit} writes it — only what changed, so
 * checkpoints are incremental — together with the caller's metadata (checkpoint id, source positions, sink
 * handles) in one LMDB transaction, and {@link LmdbStateBackend.flushed} resolves once that is on disk.
 *
 * Layout: database `state` maps `[tableNo, key, namespace]` (ordered-binary) to msgpack values (structured
 * clone: Map, Set, Date, bigint survive); database `meta` holds the table registry (`["table", id]` →
 * `{ no, size }`) and whatever the checkpoint storage puts there.
 *
 * Damaged files: LMDB maps `data.mdb` into memory and trusts it, so a truncated file would crash the process
 * (SIGBUS) and a damaged header would crash it or be used as it is. Before mapping, the backend checks the
 * file's two header (meta) pages and walks the B-trees of the newest transaction (reading, never mapping):
 * every page they reach must be inside the file and carry a valid header (leaf pages are read only where they
 * can refer to overflow pages or subtrees, so the cost is the branch pages of a large state); after opening,
 * it reads the whole `meta` database back and compares it with a digest every write transaction stores
 * (`["integrity"]`). Either failure is a StateError naming the file — the state is never silently used or
 * replaced. (Damage inside the state pages themselves is not detected at start: that would mean reading
 * all of the state.)
 *
 * @example
 * ```ts
 * const job = new Job({ name: "fraud", state: lmdbState({ path: "./state/fraud" }), checkpoints: { intervalMs: 1000 } });
 * ```
 * @module
 */
import { open } from "lmdb";
// lmdb's ESM declaration file is invalid under NodeNext (`export =`, TS1203), which a project that does not
// skip library checks would see through Gress's .d.ts; its CommonJS one declares the same API.
// biome-ignore syntax/correctness/noTypeOnlyImportAttributes: valid since TypeScript 5.3
import type { Database, Key as LmdbKey, RootDatabase } from "lmdb" with { "resolution-mode": "require" };
import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { validate } from "../config.ts";
import type { Key } from "../element.ts";
import { StateError } from "../errors.ts";
import { type Namespace, type StateBackend, type StateSnapshot, type StateTable, type TableOptions, tableId, validateTableOptions } from "./backend.ts";

/**
 * Options of the LMDB backend.
 *
 * @example
 * ```ts
 * import { type LmdbStateOptions, lmdbState } from "gress";
 *
 * // A larger read cache, and at most 100 000 dirty entries before a checkpoint is forced.
 * const options: LmdbStateOptions = { path: "state/big", cacheEntries: 50_000, maxDirtyEntries: 100_000, durability: "fsync" };
 * const state = lmdbState(options);
 * ```
 */
export interface LmdbStateOptions {
  /** Directory of the LMDB environment; created if missing. */
  readonly path: string;
  /** Maximum size of the memory map in bytes (virtual; the file grows as needed). Default 16 GiB. */
  readonly mapSize?: number;
  /** Decoded values (and known-absent entries) kept in memory. Default 100 000. */
  readonly cacheEntries?: number;
  /** Dirty entries at which an early checkpoint is requested (or the set is spilled). Default 1 000 000. */
  readonly maxDirtyEntries?: number;
  /**
   * "fsync" (default): a commit is flushed with fsync and survives power loss. "process": no fsync — the
   * state survives the process being killed but not the machine losing power. Checkpoints wait for `flushed`
   * in both cases.
   */
  readonly durability?: "fsync" | "process";
}

const optionsSchema = z.strictObject({
  path: z.string().min(1),
  mapSize: z.number().int().min(1 << 20).optional(),
  cacheEntries: z.number().int().nonnegative().optional(),
  maxDirtyEntries: z.number().int().positive().optional(),
  durability: z.enum(["fsync", "process"]).optional(),
});

const TOMBSTONE: unique symbol = Symbol("deleted");
const ABSENT: unique symbol = Symbol("absent");
type Slot = unknown;
type Layer = Map<Key, Map<Namespace, Slot>>;

/** The entries a checkpoint captured: frozen copies, ready to be written. */
export interface StateCapture {
  /** Number of changed (key, namespace) entries, deletes included. */
  readonly entries: number;
  /** Sequence number of the capture. */
  readonly seq: number;
}

interface CaptureData extends StateCapture {
  readonly rows: [no: number, key: Key, ns: Namespace, value: Slot][];
  readonly sizes: [id: string, no: number, size: number][];
  readonly cleared: boolean;
}

interface TableInfo {
  readonly no: number;
  size: number;
}

/** Where a commit records what it replaces: under checkpoint `id`, keeping the logs from `keepFrom` on. */
export interface UndoLog {
  readonly id: number;
  readonly keepFrom: number;
}

/**
 * One changed entry of a capture, named by table id (not the environment's table number, which another
 * environment assigns differently): a put of `value`, or a delete when `deleted` is true (`value` undefined).
 * The unit of a changelog (see `lib/scaleout/changelog.ts`).
 */
export interface StateChange {
  readonly table: string;
  readonly key: Key;
  readonly ns: Namespace;
  readonly deleted: boolean;
  readonly value: unknown;
}

const isPrimitive = (v: unknown): boolean => v === null || (typeof v !== "object" && typeof v !== "function");

/** One table: a view over the backend's layers for one table number. */
class LmdbTable<V> implements StateTable<V> {
  readonly id: string;
  readonly no: number;
  readonly #b: LmdbStateBackend;
  readonly #info: TableInfo;
  dirty: Layer = new Map();
  dirtyCount = 0;
  committing: Layer | undefined;

  constructor(backend: LmdbStateBackend, id: string, info: TableInfo) {
    this.#b = backend;
    this.id = id;
    this.no = info.no;
    this.#info = info;
  }

  #layered(key: Key, ns: Namespace): Slot | typeof ABSENT {
    const d = this.dirty.get(key)?.get(ns);
    if (d !== undefined) return d;
    const c = this.committing?.get(key)?.get(ns);
    if (c !== undefined) return c;
    return ABSENT;
  }

  get(key: Key, ns: Namespace): V | undefined {
    const slot = this.#layered(key, ns);
    if (slot !== ABSENT) return slot === TOMBSTONE ? undefined : (slot as V);
    return this.#b.readStored(this.no, key, ns) as V | undefined;
  }
  #exists(key: Key, ns: Namespace): boolean {
    const slot = this.#layered(key, ns);
    if (slot !== ABSENT) return slot !== TOMBSTONE;
    return this.#b.storedExists(this.no, key, ns);
  }
  #setDirty(key: Key, ns: Namespace, slot: Slot): void {
    let row = this.dirty.get(key);
    if (row === undefined) this.dirty.set(key, (row = new Map()));
    const before = row.size;
    row.set(ns, slot);
    if (row.size > before) {
      this.dirtyCount++;
      this.#b.dirtyGrew();
    }
  }
  /** True when (key, ns) exists below the dirty layer: in the checkpoint being committed, or on disk. */
  #existsBelow(key: Key, ns: Namespace): boolean {
    const c = this.committing?.get(key)?.get(ns);
    if (c !== undefined) return c !== TOMBSTONE;
    return this.#b.storedExists(this.no, key, ns);
  }
  put(key: Key, ns: Namespace, value: V): void {
    if (value === undefined) throw new StateError(`state table "${this.id}": cannot store undefined at (${String(key)}, ${String(ns)}); use delete`);
    if (!this.#exists(key, ns)) this.#info.size++;
    this.#setDirty(key, ns, value);
  }
  delete(key: Key, ns: Namespace): void {
    const row = this.dirty.get(key);
    const d = row?.get(ns);
    if (d === TOMBSTONE) return;
    if (d !== undefined) {
      this.#info.size--;
      // Created since the last capture and never stored below: forget it instead of writing a tombstone,
      // so short-lived entries (a window opened and fired between two checkpoints) cost the disk nothing.
      if (this.#existsBelow(key, ns)) row!.set(ns, TOMBSTONE);
      else {
        row!.delete(ns);
        if (row!.size === 0) this.dirty.delete(key);
        this.dirtyCount--;
        this.#b.dirtyShrank();
      }
      return;
    }
    if (!this.#existsBelow(key, ns)) return;
    this.#info.size--;
    this.#setDirty(key, ns, TOMBSTONE);
  }
  *entriesOf(key: Key): IterableIterator<[Namespace, V]> {
    const out = new Map<Namespace, Slot>();
    for (const [ns, v] of this.#b.storedEntriesOf(this.no, key)) out.set(ns, v);
    for (const layer of [this.committing, this.dirty]) {
      const row = layer?.get(key);
      if (row !== undefined) for (const [ns, v] of row) out.set(ns, v);
    }
    for (const [ns, v] of out) if (v !== TOMBSTONE) yield [ns, v as V];
  }
  *entries(): IterableIterator<[Key, Namespace, V]> {
    const dirty = this.dirty;
    const committing = this.committing;
    const shadowed = (k: Key, ns: Namespace): boolean => dirty.get(k)?.has(ns) === true || committing?.get(k)?.has(ns) === true;
    // Overlay entries first (copied, so callers may write while iterating), then LMDB's, minus shadowed.
    const overlay: [Key, Namespace, V][] = [];
    for (const [k, row] of committing ?? []) {
      for (const [ns, v] of row) if (v !== TOMBSTONE && dirty.get(k)?.has(ns) !== true) overlay.push([k, ns, v as V]);
    }
    for (const [k, row] of dirty) for (const [ns, v] of row) if (v !== TOMBSTONE) overlay.push([k, ns, v as V]);
    yield* overlay;
    for (const [k, ns, v] of this.#b.storedEntries(this.no)) if (!shadowed(k, ns)) yield [k, ns, v as V];
  }
  deleteKey(key: Key): void {
    for (const [ns] of [...this.entriesOf(key)]) this.delete(key, ns);
  }
  get size(): number {
    return this.#info.size;
  }
  /** Freezes the dirty layer into the committing layer; returns its rows with values deep-copied. */
  freeze(rows: [number, Key, Namespace, Slot][]): void {
    if (this.dirtyCount === 0) {
      this.committing = undefined;
      return;
    }
    for (const [k, row] of this.dirty) {
      for (const [ns, v] of row) rows.push([this.no, k, ns, v === TOMBSTONE || isPrimitive(v) ? v : structuredClone(v)]);
    }
    this.committing = this.dirty;
    this.dirty = new Map();
    this.dirtyCount = 0;
  }
  reset(): void {
    this.dirty = new Map();
    this.dirtyCount = 0;
    this.committing = undefined;
    this.#info.size = 0;
  }
}

/**
 * Keyed state in LMDB with a dirty set, a committing set and a bounded cache. See the module comment.
 *
 * @example
 * ```ts
 * import { Job, type LmdbStateBackend, lmdbState } from "gress";
 *
 * const state: LmdbStateBackend = lmdbState({ path: "state/orders" });
 * const job = new Job({ name: "orders", state, checkpoints: { intervalMs: 5_000 } });
 * ```
 */
export class LmdbStateBackend implements StateBackend {
  readonly kind = "lmdb";
  readonly path: string;
  readonly root: RootDatabase;
  /** Metadata database shared with the checkpoint storage (same environment, same transactions). */
  readonly meta: Database<unknown, LmdbKey>;
  readonly #state: Database<unknown, LmdbKey>;
  /** Undo logs: per checkpoint, the values its commit replaced, so that older checkpoints stay restorable. */
  readonly #undo: Database<unknown, LmdbKey>;
  readonly #tables = new Map<string, LmdbTable<unknown>>();
  readonly #infos = new Map<string, TableInfo>();
  // A two-generation cache: new entries go to `young`; when it holds half the budget it becomes `old` and the
  // previous old generation is dropped. A hit in `old` moves the entry back to `young`. O(1), no LRU list.
  #young = new Map<string, Slot>();
  #old = new Map<string, Slot>();
  readonly #cacheCap: number;
  readonly #dirtyLimit: number;
  #nextNo = 1;
  #dirtyTotal = 0;
  #captureSeq = 0;
  #committing: CaptureData | undefined;
  #cleared = false;
  #closed = false;
  #spilling = false;
  #onDirtyLimit: (() => void) | undefined;
  /** Cache statistics, for the benchmark and metrics. */
  readonly stats: { hits: number; misses: number; reads: number } = { hits: 0, misses: 0, reads: 0 };

  constructor(options: LmdbStateOptions) {
    const o = validate(optionsSchema, options, "lmdb state");
    this.path = o.path;
    this.#cacheCap = o.cacheEntries ?? 100_000;
    this.#dirtyLimit = o.maxDirtyEntries ?? 1_000_000;
    try {
      mkdirSync(o.path, { recursive: true });
    } catch (err) {
      throw new StateError(`cannot open LMDB state at "${o.path}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    checkDataFile(o.path);
    try {
      this.root = open({
        path: o.path,
        // lmdb takes a path with an extension ("state/pipe.v2") for a file; the state is always a directory.
        noSubdir: false,
        mapSize: o.mapSize ?? 16 * 1024 ** 3,
        maxDbs: 8,
        noSync: o.durability === "process",
        cache: false,
      });
      this.#state = this.root.openDB({ name: "state", cache: false, encoder: { structuredClone: true } } as never);
      this.meta = this.root.openDB({ name: "meta", cache: false, encoder: { structuredClone: true } } as never);
      this.#undo = this.root.openDB({ name: "undo", cache: false, encoder: { structuredClone: true } } as never);
    } catch (err) {
      throw new StateError(`cannot open LMDB state at "${o.path}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.#verifyMeta();
    this.#loadInfos();
  }

  /** Digest of every entry of `meta` but the digest itself (keys and stored bytes), in key order. */
  #metaDigest(): string {
    let h = new Fnv();
    for (const key of this.meta.getKeys({})) {
      if (key === INTEGRITY) continue;
      h = h.text(JSON.stringify(key) ?? "").bytes(this.meta.getBinary(key) ?? new Uint8Array(0));
    }
    return h.hex();
  }

  /** Inside a write transaction, after its last write to `meta`: stores the digest that {@link #verifyMeta} checks. */
  #sealMeta(): void {
    this.meta.put(INTEGRITY, this.#metaDigest());
  }

  /**
   * Reads `meta` back whole and compares it with the stored digest. State written before the digest existed
   * (no `integrity` entry) is accepted as it is.
   */
  #verifyMeta(): void {
    const file = join(this.path, "data.mdb");
    let stored: unknown;
    let actual: string;
    try {
      stored = this.meta.get(INTEGRITY);
      actual = this.#metaDigest();
      // Decoding every value finds damage the digest would only report as a mismatch.
      for (const { value } of this.meta.getRange({})) void value;
    } catch (err) {
      throw new StateError(`LMDB state file "${file}" is damaged: reading its checkpoint metadata failed (${err instanceof Error ? err.message : String(err)}); restore the state directory from a backup or a savepoint`, {
        cause: err,
        details: { file },
      });
    }
    if (stored !== undefined && stored !== actual) {
      throw new StateError(`LMDB state file "${file}" is damaged: its checkpoint metadata does not match the digest written with it; restore the state directory from a backup or a savepoint`, {
        details: { file },
      });
    }
  }

  #loadInfos(): void {
    this.#infos.clear();
    for (const { key, value } of this.meta.getRange({ start: ["table"], end: ["table\u0000"] })) {
      const id = (key as [string, string])[1];
      const info = value as TableInfo;
      this.#infos.set(id, { no: info.no, size: info.size });
      if (info.no >= this.#nextNo) this.#nextNo = info.no + 1;
    }
  }

  /** Opens a table. The layout hint is checked, but this backend does not use it. */
  table<V>(operatorId: string, name: string, options: TableOptions = {}): StateTable<V> {
    validateTableOptions(options, operatorId, name);
    this.#open();
    const id = tableId(operatorId, name);
    let table = this.#tables.get(id);
    if (table === undefined) {
      let info = this.#infos.get(id);
      if (info === undefined) this.#infos.set(id, (info = { no: this.#nextNo++, size: 0 }));
      table = new LmdbTable(this, id, info);
      this.#tables.set(id, table);
    }
    return table as LmdbTable<V>;
  }

  /** Ids of every table, including tables known from disk that nobody opened yet. */
  tableIds(): string[] {
    return [...this.#infos.keys()];
  }

  /** Values held by the read cache (at most `cacheEntries`). */
  get cachedEntries(): number {
    return this.#young.size + this.#old.size;
  }

  /** Entries changed since the last capture. */
  get dirtyEntries(): number {
    return this.#dirtyTotal;
  }

  /** Called (once per crossing) when the dirty set reaches `maxDirtyEntries`. Set by the checkpoint coordinator. */
  onDirtyLimit(listener: (() => void) | undefined): void {
    this.#onDirtyLimit = listener;
  }

  /** @internal */
  dirtyShrank(): void {
    this.#dirtyTotal--;
  }

  /** @internal bookkeeping of the tables */
  dirtyGrew(): void {
    if (++this.#dirtyTotal !== this.#dirtyLimit) return;
    if (this.#onDirtyLimit !== undefined) this.#onDirtyLimit();
    else if (this.#committing === undefined && !this.#spilling) this.#spill();
  }

  #spill(): void {
    // No coordinator: keep memory bounded by writing the dirty set out. It belongs to no checkpoint, so it is
    // marked and a coordinator refuses to recover from it.
    this.#spilling = true;
    queueMicrotask(() => {
      if (this.#committing !== undefined || this.#closed) {
        this.#spilling = false;
        return;
      }
      const capture = this.capture();
      this.commit(capture, () => this.meta.put("uncheckpointed", true)).then(
        () => (this.#spilling = false),
        () => (this.#spilling = false),
      );
    });
  }

  /** True when the directory holds state written without a checkpoint (by a job that ran without checkpoints). */
  get hasUncheckpointedState(): boolean {
    return this.meta.get("uncheckpointed") === true;
  }

  #cacheKey(no: number, key: Key, ns: Namespace): string {
    // A string key is length-prefixed: with a separator only, ("a", "b\0$") and ("a\0$b", "") were one entry.
    return `${no}${typeof key === "number" ? `#${key}\u0000` : `$${key.length}:${key}`}${typeof ns === "number" ? "#" : "$"}${ns}`;
  }
  /** @internal read of the checkpointed value through the cache */
  readStored(no: number, key: Key, ns: Namespace): unknown {
    this.stats.reads++;
    if (this.#cleared) return undefined;
    if (this.#cacheCap === 0) {
      this.stats.misses++;
      return this.#state.get([no, key, ns]);
    }
    const ck = this.#cacheKey(no, key, ns);
    const cached = this.#cached(ck);
    if (cached !== undefined) {
      this.stats.hits++;
      return cached === ABSENT ? undefined : cached;
    }
    this.stats.misses++;
    const v = this.#state.get([no, key, ns]);
    this.#remember(ck, v === undefined ? ABSENT : v);
    return v;
  }
  #cached(ck: string): Slot | undefined {
    const y = this.#young.get(ck);
    if (y !== undefined) return y;
    const o = this.#old.get(ck);
    if (o !== undefined) {
      this.#old.delete(ck);
      this.#remember(ck, o);
    }
    return o;
  }
  #remember(ck: string, v: Slot): void {
    this.#young.set(ck, v);
    if (this.#young.size >= this.#cacheCap >> 1 || this.#young.size >= this.#cacheCap) {
      this.#old = this.#young;
      this.#young = new Map();
    }
  }
  #uncache(ck: string): void {
    this.#young.delete(ck);
    this.#old.delete(ck);
  }
  /** @internal */
  storedExists(no: number, key: Key, ns: Namespace): boolean {
    if (this.#cleared) return false;
    if (this.#cacheCap > 0) {
      const cached = this.#cached(this.#cacheKey(no, key, ns));
      if (cached !== undefined) return cached !== ABSENT;
    }
    return this.#state.doesExist([no, key, ns]);
  }
  /** @internal */
  *storedEntriesOf(no: number, key: Key): IterableIterator<[Namespace, unknown]> {
    if (this.#cleared) return;
    for (const { key: k, value } of this.#state.getRange({ start: [no, key] })) {
      const [n, kk, ns] = k as [number, Key, Namespace];
      if (n !== no || kk !== key) return;
      yield [ns, value];
    }
  }
  /** @internal */
  *storedEntries(no: number): IterableIterator<[Key, Namespace, unknown]> {
    if (this.#cleared) return;
    for (const { key: k, value } of this.#state.getRange({ start: [no], end: [no + 1] })) {
      const [, kk, ns] = k as [number, Key, Namespace];
      yield [kk, ns, value];
    }
  }

  /**
   * Freezes every change since the last capture (synchronously, at the barrier). Until {@link commit}
   * resolves, reads see the frozen values; writes go to a fresh dirty set. One capture at a time.
   */
  capture(): StateCapture {
    this.#open();
    if (this.#committing !== undefined) throw new StateError("a state capture is still being committed");
    const rows: [number, Key, Namespace, Slot][] = [];
    for (const t of this.#tables.values()) t.freeze(rows);
    const sizes: [string, number, number][] = [];
    for (const [id, info] of this.#infos) sizes.push([id, info.no, info.size]);
    const capture: CaptureData = { entries: rows.length, seq: ++this.#captureSeq, rows, sizes, cleared: this.#cleared };
    this.#dirtyTotal = 0;
    this.#committing = capture;
    return { entries: capture.entries, seq: capture.seq };
  }

  /**
   * Writes a capture and the caller's metadata (`writeMeta` runs inside the transaction and may put into
   * {@link meta}) in one LMDB transaction. Resolves when the transaction is committed (visible); await
   * {@link flushed} for durability. `midway` runs inside the transaction after half of the rows. With `undo`,
   * the same transaction records what the capture replaces under `undo.id`, and drops the undo logs of
   * checkpoints before `undo.keepFrom`; see {@link rollback}.
   */
  commit(capture: StateCapture, writeMeta: () => void, midway?: () => void, undo?: UndoLog): Promise<void> {
    const data = this.#committing;
    if (data === undefined || data.seq !== capture.seq) return Promise.reject(new StateError(`state capture ${capture.seq} is not the one being committed`));
    const unstorable = unstorableRow(data);
    if (unstorable !== undefined) return Promise.reject(unstorable);
    const state = this.#state;
    const half = data.rows.length >> 1;
    // A child transaction, not transaction(): lmdb-js commits what a transaction() callback wrote before it threw
    // (the batch it runs in commits anyway), so a throw from writeMeta, midway or an encoder would leave half a
    // checkpoint on disk under the previous checkpoint's metadata. A child transaction is aborted by the throw.
    const written = this.root.childTransaction(() => {
      if (undo !== undefined) this.#writeUndo(data, undo);
      if (data.cleared) state.clearSync();
      let n = 0;
      for (const [no, key, ns, v] of data.rows) {
        if (n++ === half) midway?.();
        if (v === TOMBSTONE) state.remove([no, key, ns]);
        else state.put([no, key, ns], v);
      }
      if (data.rows.length === 0) midway?.();
      for (const [id, no, size] of data.sizes) this.meta.put(["table", id], { no, size });
      writeMeta();
      this.#sealMeta();
    });
    return Promise.resolve(written).then(
      () => {
        if (data.cleared) this.#cleared = false;
        // Cached values of the rows just written are stale now (reads went to the upper layers until here).
        if (this.cachedEntries > 0) for (const [no, key, ns] of data.rows) this.#uncache(this.#cacheKey(no, key, ns));
        this.#committing = undefined;
        for (const t of this.#tables.values()) t.committing = undefined;
      },
      (err: unknown) => {
        throw new StateError(`LMDB commit of state capture ${data.seq} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      },
    );
  }

  /**
   * The entries `capture` changed, by table id, for a changelog: call it between {@link capture} and
   * {@link commit} (the disk still holds the previous checkpoint then). After a full replacement (a
   * {@link restore} from a snapshot) it first yields a delete for every stored entry the capture does not
   * write again, so that applying the changes to a copy of the previous state gives the captured state. Values
   * are the capture's frozen copies (do not modify them). Throws the StateError {@link commit} would reject with
   * for a value LMDB cannot store faithfully. Not on the per-record path: single-process checkpoints never call it.
   */
  changes(capture: StateCapture): IterableIterator<StateChange> {
    this.#open();
    const data = this.#committing;
    if (data === undefined || data.seq !== capture.seq) throw new StateError(`state capture ${capture.seq} is not the one being committed`);
    const unstorable = unstorableRow(data);
    if (unstorable !== undefined) throw unstorable;
    const ids = new Map<number, string>();
    for (const [id, no] of data.sizes) ids.set(no, id);
    // Read now, not when iterated: the caller may commit (and so change the disk) before it finishes iterating.
    const gone: StateChange[] = [];
    if (data.cleared) {
      // Exact keys (not the cache's string keys): table number → key → namespaces.
      const written = new Map<number, Map<Key, Set<Namespace>>>();
      for (const [no, key, ns] of data.rows) {
        let keys = written.get(no);
        if (keys === undefined) written.set(no, (keys = new Map()));
        let nss = keys.get(key);
        if (nss === undefined) keys.set(key, (nss = new Set()));
        nss.add(ns);
      }
      for (const { key } of this.#state.getRange({})) {
        const [no, k, ns] = key as [number, Key, Namespace];
        if (written.get(no)?.get(k)?.has(ns) !== true) gone.push({ table: ids.get(no) ?? `#${no}`, key: k, ns, deleted: true, value: undefined });
      }
    }
    return changesOf(gone, data.rows, ids);
  }

  /**
   * Writes `changes` straight to disk, in one synchronous transaction with `writeMeta`, bypassing the dirty
   * set: how a scale-out task restores its state from a changelog. A delete of an absent entry is a no-op;
   * table sizes follow. With `reset`, every stored entry, undo log and meta entry is dropped first (in the
   * same transaction), for a restore from the start. Only while nothing is uncommitted (see {@link rollback});
   * opened tables stay valid. Returns the number of changes applied.
   */
  applyChanges(changes: Iterable<StateChange>, writeMeta: () => void = () => {}, options: { readonly reset?: boolean } = {}): number {
    this.#open();
    if (this.#dirtyTotal > 0 || this.#committing !== undefined || this.#cleared) {
      throw new StateError(`LMDB state at "${this.path}" can only apply changes while it holds no uncommitted changes`);
    }
    const state = this.#state;
    const meta = this.meta;
    let n = 0;
    this.root.transactionSync(() => {
      if (options.reset === true) {
        state.clearSync();
        this.#undo.clearSync();
        for (const { key } of [...meta.getRange({})]) meta.remove(key);
        // Opened tables keep their numbers (their objects hold them), now empty; the others are forgotten.
        for (const id of [...this.#infos.keys()]) {
          if (this.#tables.has(id)) this.#infos.get(id)!.size = 0;
          else this.#infos.delete(id);
        }
      }
      const touched = new Set<string>();
      for (const c of changes) {
        let info = this.#infos.get(c.table);
        if (info === undefined) this.#infos.set(c.table, (info = { no: this.#nextNo++, size: 0 }));
        touched.add(c.table);
        const k = [info.no, c.key, c.ns];
        const existed = state.doesExist(k);
        if (c.deleted) {
          if (existed) {
            state.remove(k);
            info.size--;
          }
        } else {
          state.put(k, c.value);
          if (!existed) info.size++;
        }
        n++;
      }
      const all = options.reset === true ? this.#infos.keys() : touched;
      for (const id of all) {
        const info = this.#infos.get(id)!;
        meta.put(["table", id], { no: info.no, size: info.size });
      }
      writeMeta();
      this.#sealMeta();
    });
    this.#young.clear();
    this.#old.clear();
    return n;
  }

  /** Inside the commit transaction, before the rows are written: what they replace, and the table sizes. */
  #writeUndo(data: CaptureData, undo: UndoLog): void {
    const log = this.#undo;
    // Before a full clear (a savepoint restore) nothing can be rolled back to.
    if (data.cleared) log.clearSync();
    else {
      for (const [no, key, ns] of data.rows) {
        const before = this.#state.get([no, key, ns]);
        log.put([undo.id, no, key, ns], before === undefined ? [0] : [1, before]);
      }
      log.put(
        [undo.id, -1],
        data.sizes.map(([id]) => [id, this.meta.get(["table", id]) ?? null]),
      );
    }
    for (const { key } of [...log.getRange({ end: [undo.keepFrom] })]) log.remove(key);
  }

  /** True if checkpoint `id` was committed with an undo log that is still kept. */
  hasUndo(id: number): boolean {
    return this.#undo.doesExist([id, -1]);
  }

  /**
   * Takes the state back to what it was before the commits of checkpoints `ids`, newest first, by applying
   * their undo logs, and runs `writeMeta` — all in one transaction, so a crash leaves either the old or the
   * rolled-back state. Only while nothing is uncommitted: on a freshly opened backend, or with opened tables
   * that hold no changes (recovery rolls back after the pipeline was built when a sink lost a transaction).
   */
  rollback(ids: readonly number[], writeMeta: () => void): void {
    this.#open();
    if (this.#dirtyTotal > 0 || this.#committing !== undefined || this.#cleared) {
      throw new StateError(`LMDB state at "${this.path}" can only be rolled back while it holds no uncommitted changes`);
    }
    for (const id of ids) if (!this.hasUndo(id)) throw new StateError(`LMDB state at "${this.path}" has no undo log for checkpoint ${id}`);
    this.root.transactionSync(() => {
      for (const id of [...ids].sort((a, b) => b - a)) {
        for (const { key, value } of [...this.#undo.getRange({ start: [id], end: [id + 1] })]) {
          const [, no, k, ns] = key as [number, number, Key, Namespace];
          if (no === -1) {
            for (const [table, info] of value as [string, TableInfo | null][]) {
              if (info === null) this.meta.remove(["table", table]);
              else this.meta.put(["table", table], info);
            }
          } else {
            const [present, before] = value as [0] | [1, unknown];
            if (present === 1) this.#state.put([no, k, ns], before);
            else this.#state.remove([no, k, ns]);
          }
          this.#undo.remove(key);
        }
      }
      writeMeta();
      this.#sealMeta();
    });
    // Opened tables keep their info objects and numbers; their sizes come from the rolled-back registry.
    const opened = [...this.#tables.keys()].map((id) => [id, this.#infos.get(id)] as const);
    this.#loadInfos();
    for (const [id, info] of opened) {
      if (info === undefined) continue;
      info.size = this.#infos.get(id)?.size ?? 0;
      this.#infos.set(id, info);
      if (info.no >= this.#nextNo) this.#nextNo = info.no + 1;
    }
    this.#young.clear();
    this.#old.clear();
  }

  /**
   * Drops every change since the last completed commit (the dirty set, and a capture whose commit was not
   * started), so that reads see the last checkpoint again: for a job restarting in the same process. The
   * tables stay valid. Not while a commit is being written (the coordinator waits for it first).
   */
  discardUncommitted(): void {
    this.#open();
    for (const t of this.#tables.values()) {
      t.dirty = new Map();
      t.dirtyCount = 0;
      t.committing = undefined;
    }
    this.#dirtyTotal = 0;
    this.#committing = undefined;
    this.#cleared = false;
    // Table sizes as the last commit recorded them (tables created since then are empty).
    for (const [id, info] of this.#infos) {
      const stored = this.meta.get(["table", id]) as TableInfo | undefined;
      info.size = stored?.size ?? 0;
    }
  }

  /** Resolves when every committed transaction is flushed to disk. */
  flushed(): Promise<void> {
    return Promise.resolve(this.root.flushed).then(() => undefined);
  }

  snapshot(): StateSnapshot {
    this.#open();
    const tables: Record<string, [Key, Namespace, unknown][]> = {};
    for (const id of this.tableIds()) {
      const [op, ...rest] = id.split("/");
      const t = this.table<unknown>(op ?? "", rest.join("/"));
      tables[id] = [...t.entries()].map(([k, ns, v]) => [k, ns, isPrimitive(v) ? v : structuredClone(v)]);
    }
    return { tables };
  }

  /** Replaces all state with a snapshot: the disk state is dropped at the next commit, the rows become dirty. */
  restore(snapshot: StateSnapshot): void {
    this.#open();
    if (this.#committing !== undefined) throw new StateError("cannot restore while a checkpoint is being committed");
    this.#cleared = true;
    this.#young.clear();
    this.#old.clear();
    this.#dirtyTotal = 0;
    for (const t of this.#tables.values()) t.reset();
    for (const info of this.#infos.values()) info.size = 0;
    for (const [id, rows] of Object.entries(snapshot.tables)) {
      const [operatorId, ...rest] = id.split("/");
      const table = this.table<unknown>(operatorId ?? "", rest.join("/"));
      for (const [k, ns, v] of rows) table.put(k, ns, isPrimitive(v) ? v : structuredClone(v));
    }
  }

  /**
   * Every (table id, key, namespace, value) stored on disk — the state of the last completed checkpoint —
   * read in one LMDB read transaction, so the rows and `readMeta` below are one consistent snapshot.
   * `use` runs with a reader of the meta database bound to the same transaction.
   */
  readCheckpointed<R>(use: (rows: () => IterableIterator<[string, Key, Namespace, unknown]>, readMeta: (key: LmdbKey) => unknown) => R): R {
    this.#open();
    const txn = this.root.useReadTransaction();
    try {
      const names = new Map<number, string>();
      for (const { key, value } of this.meta.getRange({ start: ["table"], end: ["table\u0000"], transaction: txn })) {
        names.set((value as TableInfo).no, (key as [string, string])[1]);
      }
      const state = this.#state;
      function* rows(): IterableIterator<[string, Key, Namespace, unknown]> {
        for (const { key, value } of state.getRange({ transaction: txn })) {
          const [no, k, ns] = key as [number, Key, Namespace];
          yield [names.get(no) ?? `#${no}`, k, ns, value];
        }
      }
      return use(rows, (key) => this.meta.get(key, { transaction: txn }));
    } finally {
      txn.done();
    }
  }

  /**
   * Replaces everything on disk with `rows`, synchronously, in batches of `batch` rows (so memory stays
   * bounded), then runs `writeMeta` in the last transaction. Until that transaction commits the directory is
   * marked as holding uncheckpointed state, so an interrupted import is never mistaken for a checkpoint.
   */
  importSync(rows: Iterable<readonly [string, Key, Namespace, unknown]>, writeMeta: () => void, batch = 20_000): number {
    this.#open();
    if (this.#committing !== undefined) throw new StateError("cannot import while a checkpoint is being committed");
    const meta = this.meta;
    this.root.transactionSync(() => {
      this.#state.clearSync();
      for (const { key } of meta.getRange()) meta.remove(key);
      meta.put("uncheckpointed", true);
      this.#sealMeta();
    });
    this.#tables.clear();
    this.#infos.clear();
    this.#young.clear();
    this.#old.clear();
    this.#dirtyTotal = 0;
    this.#cleared = false;
    this.#nextNo = 1;
    let pending: (readonly [string, Key, Namespace, unknown])[] = [];
    let total = 0;
    const flush = (): void => {
      const chunk = pending;
      pending = [];
      this.root.transactionSync(() => {
        for (const [id, key, ns, value] of chunk) {
          let info = this.#infos.get(id);
          if (info === undefined) this.#infos.set(id, (info = { no: this.#nextNo++, size: 0 }));
          info.size++;
          this.#state.put([info.no, key, ns], value);
        }
      });
    };
    for (const row of rows) {
      pending.push(row);
      total++;
      if (pending.length >= batch) flush();
    }
    flush();
    this.root.transactionSync(() => {
      for (const [id, info] of this.#infos) meta.put(["table", id], { no: info.no, size: info.size });
      meta.remove("uncheckpointed");
      writeMeta();
      this.#sealMeta();
    });
    return total;
  }

  /** Drops the cache (the next reads are cold). For benchmarks. */
  dropCache(): void {
    this.#young.clear();
    this.#old.clear();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#tables.clear();
    this.#young.clear();
    this.#old.clear();
    await this.root.close();
  }

  #open(): void {
    if (this.#closed) throw new StateError(`LMDB state at "${this.path}" is closed`);
  }
}

const INTEGRITY = "integrity";

/** FNV-1a, 64 bits as two 32-bit lanes, over text and bytes. */
class Fnv {
  #a = 0x811c9dc5;
  #b = 0x050c5d1f;
  #byte(c: number): void {
    this.#a = Math.imul(this.#a ^ c, 0x01000193);
    this.#b = Math.imul(this.#b ^ c, 0x01000193) ^ (this.#a >>> 13);
  }
  text(s: string): this {
    for (let i = 0; i < s.length; i++) this.#byte(s.charCodeAt(i) & 0xffff);
    this.#byte(0);
    return this;
  }
  bytes(b: Uint8Array): this {
    for (let i = 0; i < b.length; i++) this.#byte(b[i]!);
    this.#byte(b.length & 0xff);
    return this;
  }
  hex(): string {
    return (this.#a >>> 0).toString(16).padStart(8, "0") + (this.#b >>> 0).toString(16).padStart(8, "0");
  }
}

// The on-disk layout of lmdb-js's LMDB build (dependencies/lmdb/libraries/liblmdb/mdb.c, data version 2).
// A page starts with a 24-byte header: page number (u64) at 0, txnid (u64) at 8, pad at 16, flags (u16) at 18,
// then either lower/upper free-space bounds (u16, u16) or, on an overflow page, its page count (u32) at 20.
// Page 0 and page 1 hold an MDB_meta after that header: magic at 24, version at 28, the free DB's MDB_db at 48
// (its md_pad is the page size), the main DB's at 96, the last page number at 144, the txnid at 152. A third,
// "flushed" copy of the meta (overlapping sync) starts at half a page, its fields from the map size on.
const MDB_MAGIC = 0xbeefc0de;
const MDB_DATA_VERSION = 2;
const PAGE_HEADER = 24;
const META = { magic: 24, version: 28, freeDb: 48, mainDb: 96, txnId: 152 } as const;
// MDB_db: md_flags (u16) at 4, md_depth (u16) at 6, md_overflow_pages (u64) at 24, md_root (u64) at 40; 48 bytes.
const DB_RECORD = { flags: 4, depth: 6, overflowPages: 24, root: 40, size: 48 } as const;
const MDB_DUPSORT = 0x04;
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_OVERFLOW = 0x04;
const P_META = 0x08;
const P_LEAF2 = 0x20;
// Leaf node flags: data on overflow pages, data is an MDB_db (a named database or a tree of duplicates).
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
const NODE_HEADER = 8;

/** A little-endian u64 as a number: exact below 2^53, Infinity above (no page number is that large). */
function u64(view: DataView, at: number): number {
  const hi = view.getUint32(at + 4, true);
  return hi >= 0x20_0000 ? Number.POSITIVE_INFINITY : hi * 0x1_0000_0000 + view.getUint32(at, true);
}

/**
 * Refuses a `data.mdb` that LMDB would crash on or misread. LMDB maps the file and follows page numbers
 * blindly, so a page it can reach that lies past the end of the file is a SIGBUS, and a damaged header a
 * SIGSEGV. The check reads (never maps) the two header pages, takes the newest meta by transaction id as LMDB
 * does, and walks every B-tree of that transaction — the free-page DB, the main DB, each named database in it
 * and any tree of duplicates — checking that each page it reaches (and each overflow page run) lies inside
 * the file and carries the header its parent implies. The meta's last page number is not a size requirement:
 * pages allocated and freed again in one transaction are never written, so a healthy file may end before it.
 * Cost: one read per branch page, and per leaf page only of trees whose leaves can refer to other pages (the
 * free-page and main DBs, and databases holding overflow values or sorted duplicates); leaf pages read in
 * runs of consecutive pages. A 1M-entry state of small values (172 MB) takes a few milliseconds.
 * A missing file is a new environment.
 */
function checkDataFile(dir: string): void {
  const file = join(dir, "data.mdb");
  if (!existsSync(file)) return;
  const damaged = (why: string): StateError =>
    new StateError(`LMDB state file "${file}" is damaged: ${why}; restore the state directory from a backup or a savepoint, or remove it to start without state`, {
      details: { file },
    });
  const size = statSync(file).size;
  const fd = openSync(file, "r");
  try {
    const read = (at: number, length: number): DataView => {
      const buf = new Uint8Array(length);
      const n = readSync(fd, buf, 0, length, at);
      if (n < length) throw damaged(`it is truncated (${size} bytes, shorter than its header)`);
      return new DataView(buf.buffer);
    };
    const first = read(0, 160);
    if (first.getUint32(META.magic, true) !== MDB_MAGIC || (first.getUint16(18, true) & P_META) === 0) throw damaged("its first header page is not an LMDB header");
    const version = first.getUint32(META.version, true);
    // Another data version has another layout; LMDB refuses it itself with a version error, without mapping.
    if ((version & 0xffff) !== MDB_DATA_VERSION) return;
    const pageSize = first.getUint32(META.freeDb, true);
    if (pageSize < 512 || pageSize > 65_536 || (pageSize & (pageSize - 1)) !== 0) throw damaged(`its header names an impossible page size (${pageSize})`);
    const second = read(pageSize, 160);
    if (second.getUint32(META.magic, true) !== MDB_MAGIC || second.getUint32(META.version, true) !== version) throw damaged("header page 1 is not an LMDB header");
    // LMDB reads both metas (and, with overlapping sync, the flushed copy at half a page, which holds an
    // older or the same transaction unless damaged) and uses the one with the highest transaction id.
    const flushed = new DataView(new ArrayBuffer(160));
    readSync(fd, new Uint8Array(flushed.buffer), 0, 160, pageSize / 2);
    let newest = first;
    for (const meta of [second, flushed]) if (meta.getBigUint64(META.txnId, true) > newest.getBigUint64(META.txnId, true)) newest = meta;
    const which = newest === first ? "header page 0" : newest === second ? "header page 1" : "the flushed header copy";
    const walk = new TreeWalk(fd, pageSize, size, damaged);
    walk.tree(newest, META.freeDb, `the free-page list of ${which}`, true);
    walk.tree(newest, META.mainDb, `the main database of ${which}`, true);
  } finally {
    closeSync(fd);
  }
}

/** Reads each B-tree page of one LMDB transaction once, checking that it is inside the file and well-formed. */
class TreeWalk {
  readonly fd: number;
  readonly pageSize: number;
  readonly size: number;
  readonly pages: number;
  readonly damaged: (why: string) => StateError;
  #visited = 0;
  constructor(fd: number, pageSize: number, size: number, damaged: (why: string) => StateError) {
    this.fd = fd;
    this.pageSize = pageSize;
    this.size = size;
    this.pages = Math.floor(size / pageSize);
    this.damaged = damaged;
  }

  /**
   * Walks the tree whose MDB_db record is at `at` in `record`. Its leaf pages are read only if they can refer
   * to other pages (`readLeaves`, or a database with overflow values or sorted duplicates); otherwise only
   * their page numbers are checked, which keeps the cost to the branch pages of a large state.
   */
  tree(record: DataView, at: number, what: string, readLeaves: boolean): void {
    // An empty tree's root is P_INVALID, all bits set.
    if (record.getUint32(at + DB_RECORD.root, true) === 0xffff_ffff && record.getUint32(at + DB_RECORD.root + 4, true) === 0xffff_ffff) return;
    const root = u64(record, at + DB_RECORD.root);
    const depth = record.getUint16(at + DB_RECORD.depth, true);
    if (depth < 1 || depth > 64) throw this.damaged(`${what} has an impossible depth (${depth})`);
    const leaves = readLeaves || u64(record, at + DB_RECORD.overflowPages) > 0 || (record.getUint16(at + DB_RECORD.flags, true) & MDB_DUPSORT) !== 0;
    this.#page(this.#pgno(root, what), 1, depth, leaves, what);
  }

  #pgno(n: number, what: string): number {
    if (n >= this.pages) {
      throw this.damaged(`it is truncated: ${this.size} bytes (${this.pages} pages of ${this.pageSize}), but its last transaction uses page ${n} (${what})`);
    }
    return n;
  }

  /** Reads `count` consecutive pages (one read), each checked to carry its own page number. */
  #read(first: number, count: number, what: string): DataView[] {
    // Each page of a snapshot has one parent, so a walk that reads more pages than the file has loops.
    this.#visited += count;
    if (this.#visited > this.pages) throw this.damaged(`${what} refers to pages more than once`);
    const buf = new Uint8Array(this.pageSize * count);
    readSync(this.fd, buf, 0, buf.length, first * this.pageSize);
    const views: DataView[] = [];
    for (let i = 0; i < count; i++) {
      const page = new DataView(buf.buffer, i * this.pageSize, this.pageSize);
      if (u64(page, 0) !== first + i) throw this.damaged(`page ${first + i} (${what}) does not carry its own page number`);
      views.push(page);
    }
    return views;
  }

  #page(pgno: number, level: number, depth: number, readLeaves: boolean, what: string): void {
    if (level === depth && !readLeaves) return;
    this.#visit(this.#read(pgno, 1, what)[0]!, pgno, level, depth, readLeaves, what);
  }

  /** Children that are leaves, read in runs of consecutive pages (leaves are mostly written in key order). */
  #leaves(children: number[], depth: number, readLeaves: boolean, what: string): void {
    if (!readLeaves) return;
    for (let i = 0; i < children.length; ) {
      let n = 1;
      while (i + n < children.length && n < 256 && children[i + n] === children[i]! + n) n++;
      const views = this.#read(children[i]!, n, what);
      for (let j = 0; j < n; j++) this.#visit(views[j]!, children[i]! + j, depth, depth, readLeaves, what);
      i += n;
    }
  }

  #visit(page: DataView, pgno: number, level: number, depth: number, readLeaves: boolean, what: string): void {
    const flags = page.getUint16(18, true);
    const branch = level < depth;
    if (branch ? (flags & P_BRANCH) === 0 : (flags & (P_LEAF | P_LEAF2)) === 0) throw this.damaged(`page ${pgno} (${what}) is not a ${branch ? "branch" : "leaf"} page`);
    if ((flags & P_LEAF2) !== 0) return; // fixed-size duplicates: keys only, no references
    const lower = page.getUint16(20, true);
    const upper = page.getUint16(22, true);
    if (lower > upper || upper > this.pageSize - PAGE_HEADER || (lower & 1) !== 0) throw this.damaged(`page ${pgno} (${what}) has an impossible free-space range`);
    const children: number[] = [];
    for (let i = 0; i < lower >> 1; i++) {
      const node = page.getUint16(PAGE_HEADER + 2 * i, true) + PAGE_HEADER;
      if (node + NODE_HEADER > this.pageSize) throw this.damaged(`page ${pgno} (${what}) has a node outside the page`);
      const lo = page.getUint16(node, true);
      const hi = page.getUint16(node + 2, true);
      const nodeFlags = page.getUint16(node + 4, true);
      const data = node + NODE_HEADER + page.getUint16(node + 6, true);
      if (data > this.pageSize) throw this.damaged(`page ${pgno} (${what}) has a key outside the page`);
      if (branch) {
        // A branch node's child page number is 48 bits: lo, hi and the flags word.
        children.push(this.#pgno(lo + hi * 0x1_0000 + nodeFlags * 0x1_0000_0000, what));
        continue;
      }
      const dataSize = lo + hi * 0x1_0000;
      if ((nodeFlags & F_BIGDATA) !== 0) {
        if (data + 8 > this.pageSize) throw this.damaged(`page ${pgno} (${what}) has a value outside the page`);
        this.#overflow(u64(page, data), dataSize, what);
      } else if (data + dataSize > this.pageSize) {
        throw this.damaged(`page ${pgno} (${what}) has a value outside the page`);
      } else if ((nodeFlags & F_SUBDATA) !== 0) {
        if (dataSize < DB_RECORD.size) throw this.damaged(`page ${pgno} (${what}) has a short database record`);
        // A named database's key is its name (lmdb-js stores it with a trailing NUL).
        const key = new TextDecoder().decode(new Uint8Array(page.buffer, page.byteOffset + node + NODE_HEADER, data - node - NODE_HEADER)).replace(/\0+$/, "");
        this.tree(page, data, what.startsWith("the main database") ? `database ${JSON.stringify(key)}` : `duplicates in ${what}`, false);
      }
    }
    if (level + 1 === depth) this.#leaves(children, depth, readLeaves, what);
    else for (const child of children) this.#page(child, level + 1, depth, readLeaves, what);
  }

  /** An overflow run: its first page has the header, and the run of pages must fit in the file. */
  #overflow(first: number, dataSize: number, what: string): void {
    const pgno = this.#pgno(first, what);
    const page = this.#read(pgno, 1, what)[0]!;
    const count = page.getUint32(20, true);
    if ((page.getUint16(18, true) & P_OVERFLOW) === 0 || count < Math.ceil((PAGE_HEADER + dataSize) / this.pageSize)) {
      throw this.damaged(`page ${pgno} (${what}) is not the overflow page run of a ${dataSize}-byte value`);
    }
    this.#pgno(pgno + count - 1, what);
  }
}

/**
 * Opens (or creates) an LMDB state backend.
 *
 * @example
 * ```ts
 * import { Job, lmdbState } from "gress";
 *
 * // Durable keyed state in LMDB; needed for checkpoints. State may be larger than memory.
 * const job = new Job({ name: "fraud", state: lmdbState({ path: "state/fraud" }), checkpoints: { intervalMs: 1_000 } });
 * ```
 */
export function lmdbState(options: LmdbStateOptions): LmdbStateBackend {
  return new LmdbStateBackend(options);
}

function* changesOf(gone: readonly StateChange[], rows: CaptureData["rows"], ids: ReadonlyMap<number, string>): IterableIterator<StateChange> {
  yield* gone;
  for (const [no, key, ns, v] of rows) {
    const table = ids.get(no) ?? `#${no}`;
    yield v === TOMBSTONE ? { table, key, ns, deleted: true, value: undefined } : { table, key, ns, deleted: false, value: v };
  }
}

/**
 * LMDB's encoder (msgpackr) renames an own "__proto__" property to "__proto_" on the way back: the error for
 * the first captured value that has one (naming it), rather than store something else than was written.
 */
function unstorableRow(data: CaptureData): StateError | undefined {
  for (const [no, key, ns, v] of data.rows) {
    const below = v === TOMBSTONE || isPrimitive(v) ? undefined : protoKeyPath(v);
    if (below === undefined) continue;
    const at = `value${below}`;
    const table = data.sizes.find((x) => x[1] === no)?.[0] ?? `#${no}`;
    return new StateError(
      `state table "${table}", key ${JSON.stringify(key)}, namespace ${JSON.stringify(ns)}: the value has an own "__proto__" property at ${at}, which the LMDB backend cannot store faithfully; rename that property`,
    );
  }
  return undefined;
}

/**
 * The path below `v` (like `.list[1].__proto__`) of the first own "__proto__" property inside it, or undefined
 * if there is none: msgpack (LMDB's encoder, and the scale-out shuffle's) cannot carry such a value faithfully. The path is put together only on the way back from a hit: the usual walk allocates nothing.
 */
export function protoKeyPath(v: unknown): string | undefined {
  if (v === null || typeof v !== "object" || ArrayBuffer.isView(v) || v instanceof Date) return undefined;
  if (v instanceof Map) {
    for (const [k, x] of v) {
      const inKey = protoKeyPath(k);
      if (inKey !== undefined) return `<key>${inKey}`;
      const inValue = protoKeyPath(x);
      if (inValue !== undefined) return `.get(${JSON.stringify(String(k))})${inValue}`;
    }
    return undefined;
  }
  if (v instanceof Set) {
    for (const x of v) {
      const at = protoKeyPath(x);
      if (at !== undefined) return `<element>${at}`;
    }
    return undefined;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const at = protoKeyPath(v[i]);
      if (at !== undefined) return `[${i}]${at}`;
    }
    return undefined;
  }
  if (Object.hasOwn(v, "__proto__")) return ".__proto__";
  for (const k of Object.keys(v)) {
    const at = protoKeyPath((v as Record<string, unknown>)[k]);
    if (at !== undefined) return `.${k}${at}`;
  }
  return undefined;
}
