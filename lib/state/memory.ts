/**
 * The in-memory state backend, for development and tests. Tables are nested Maps, key → namespace → value or,
 * for tables opened with layout "namespace", namespace → key → value; either way the hot path is two hash
 * lookups. Snapshots deep-copy values with structuredClone so a snapshot never aliases live state.
 * @module
 */
import type { Key } from "../element.ts";
import { type Namespace, type StateBackend, type StateSnapshot, type StateTable, type TableOptions, tableId, validateTableOptions } from "./backend.ts";

/**
 * Two-level nested Maps, outer → inner → value, with a cache of the last outer row.
 *
 * With `keepEmptyRows`, an emptied row is kept for a while: a key's row of window state empties and refills
 * once per window, and re-allocating the Map each time showed up as GC pressure. Empty rows are swept once
 * they dominate. Without it (rows by namespace, which do not come back once a window is gone), an emptied row
 * goes at once.
 */
class NestedMaps<O, I, V> {
  readonly rows: Map<O, Map<I, V>> = new Map();
  size = 0;
  readonly #keepEmptyRows: boolean;
  #emptyRows = 0;
  constructor(keepEmptyRows: boolean) {
    this.#keepEmptyRows = keepEmptyRows;
  }
  // Operators read and then write the same row, so the second lookup of the pair is free.
  #lastOuter: O | undefined;
  #lastRow: Map<I, V> | undefined;

  row(outer: O): Map<I, V> | undefined {
    if (outer === this.#lastOuter) return this.#lastRow;
    const row = this.rows.get(outer);
    if (row !== undefined) {
      this.#lastOuter = outer;
      this.#lastRow = row;
    }
    return row;
  }
  get(outer: O, inner: I): V | undefined {
    return this.row(outer)?.get(inner);
  }
  put(outer: O, inner: I, value: V): void {
    let row = this.row(outer);
    if (row === undefined) {
      row = new Map();
      this.rows.set(outer, row);
      this.#lastOuter = outer;
      this.#lastRow = row;
    } else if (row.size === 0 && this.#emptyRows > 0) {
      this.#emptyRows--;
    }
    const before = row.size;
    row.set(inner, value);
    this.size += row.size - before;
  }
  delete(outer: O, inner: I): void {
    const row = this.row(outer);
    if (row === undefined || !row.delete(inner)) return;
    this.size--;
    if (row.size > 0) return;
    if (!this.#keepEmptyRows) this.deleteRow(outer);
    else if (++this.#emptyRows > 1024 && this.#emptyRows * 2 > this.rows.size) this.#sweep();
  }
  /** Removes every entry of one outer row. */
  deleteRow(outer: O): void {
    const row = this.rows.get(outer);
    if (row === undefined) return;
    this.size -= row.size;
    if (row.size === 0 && this.#keepEmptyRows) this.#emptyRows--;
    this.rows.delete(outer);
    if (outer === this.#lastOuter) this.#forget();
  }
  /** Removes `inner` from every row. */
  deleteInner(inner: I): void {
    for (const [outer, row] of this.rows) if (row.has(inner)) this.delete(outer, inner);
  }
  clear(): void {
    this.rows.clear();
    this.size = 0;
    this.#emptyRows = 0;
    this.#forget();
  }
  #sweep(): void {
    for (const [outer, row] of this.rows) if (row.size === 0) this.rows.delete(outer);
    this.#emptyRows = 0;
    this.#forget();
  }
  #forget(): void {
    this.#lastOuter = undefined;
    this.#lastRow = undefined;
  }
}

/** A table laid out key → namespace → value: one key's namespaces are together. */
class KeyMajorTable<V> implements StateTable<V> {
  readonly layout = "key";
  readonly #maps = new NestedMaps<Key, Namespace, V>(true);

  get(key: Key, ns: Namespace): V | undefined {
    return this.#maps.get(key, ns);
  }
  put(key: Key, ns: Namespace, value: V): void {
    this.#maps.put(key, ns, value);
  }
  delete(key: Key, ns: Namespace): void {
    this.#maps.delete(key, ns);
  }
  *entriesOf(key: Key): IterableIterator<[Namespace, V]> {
    const row = this.#maps.row(key);
    if (row !== undefined) yield* [...row];
  }
  *entries(): IterableIterator<[Key, Namespace, V]> {
    for (const [key, row] of [...this.#maps.rows]) for (const [ns, v] of [...row]) yield [key, ns, v];
  }
  deleteKey(key: Key): void {
    this.#maps.deleteRow(key);
  }
  get size(): number {
    return this.#maps.size;
  }
  clear(): void {
    this.#maps.clear();
  }
}

/**
 * A table laid out namespace → key → value: the keys of one namespace (one window) are together, so an
 * operator that works a window at a time across many keys touches one small Map instead of one per key.
 * Operations on one key across its namespaces (entriesOf, deleteKey) visit every namespace.
 */
class NamespaceMajorTable<V> implements StateTable<V> {
  readonly layout = "namespace";
  readonly #maps = new NestedMaps<Namespace, Key, V>(false);

  get(key: Key, ns: Namespace): V | undefined {
    return this.#maps.get(ns, key);
  }
  put(key: Key, ns: Namespace, value: V): void {
    this.#maps.put(ns, key, value);
  }
  delete(key: Key, ns: Namespace): void {
    this.#maps.delete(ns, key);
  }
  *entriesOf(key: Key): IterableIterator<[Namespace, V]> {
    const out: [Namespace, V][] = [];
    for (const [ns, row] of this.#maps.rows) if (row.has(key)) out.push([ns, row.get(key) as V]);
    yield* out;
  }
  *entries(): IterableIterator<[Key, Namespace, V]> {
    for (const [ns, row] of [...this.#maps.rows]) for (const [key, v] of [...row]) yield [key, ns, v];
  }
  deleteKey(key: Key): void {
    this.#maps.deleteInner(key);
  }
  get size(): number {
    return this.#maps.size;
  }
  clear(): void {
    this.#maps.clear();
  }
}

type MemoryTable<V> = KeyMajorTable<V> | NamespaceMajorTable<V>;

/**
 * Keyed state held in the process heap. Lost when the process ends unless snapshotted.
 *
 * @example
 * ```ts
 * import { Job, MemoryStateBackend } from "gress";
 *
 * const state = new MemoryStateBackend();
 * const job = new Job({ state });
 * // Inspect an operator's state in a test, after the job ran.
 * console.log(state.table<number>("window-1", "acc").size);
 * ```
 */
export class MemoryStateBackend implements StateBackend {
  readonly kind = "memory";
  readonly #tables = new Map<string, MemoryTable<unknown>>();
  // Restored rows of tables no operator has opened yet: a table is created when it is first opened, in the
  // layout asked for then, and takes its restored rows with it.
  readonly #restored = new Map<string, readonly (readonly [Key, Namespace, unknown])[]>();

  /** Opens a table. Its layout is fixed when it is first opened; later options do not change it. */
  table<V>(operatorId: string, name: string, options: TableOptions = {}): StateTable<V> {
    validateTableOptions(options, operatorId, name);
    const id = tableId(operatorId, name);
    let table = this.#tables.get(id);
    if (table === undefined) {
      table = options.layout === "namespace" ? new NamespaceMajorTable<unknown>() : new KeyMajorTable<unknown>();
      this.#tables.set(id, table);
      const rows = this.#restored.get(id);
      this.#restored.delete(id);
      if (rows !== undefined) for (const [k, ns, v] of rows) table.put(k, ns, v);
    }
    return table as MemoryTable<V>;
  }
  snapshot(): StateSnapshot {
    const tables: Record<string, [Key, Namespace, unknown][]> = {};
    for (const [id, rows] of this.#restored) tables[id] = rows.map(([k, ns, v]) => [k, ns, structuredClone(v)]);
    for (const [id, table] of this.#tables) tables[id] = [...table.entries()].map(([k, ns, v]) => [k, ns, structuredClone(v)]);
    return { tables };
  }
  restore(snapshot: StateSnapshot): void {
    for (const table of this.#tables.values()) table.clear();
    this.#restored.clear();
    for (const [id, rows] of Object.entries(snapshot.tables)) {
      const copy = rows.map(([k, ns, v]) => [k, ns, structuredClone(v)] as const);
      const table = this.#tables.get(id);
      if (table === undefined) this.#restored.set(id, copy);
      else for (const [k, ns, v] of copy) table.put(k, ns, v);
    }
  }
  async close(): Promise<void> {
    this.#tables.clear();
    this.#restored.clear();
  }
}

/**
 * Creates an in-memory state backend.
 *
 * @example
 * ```ts
 * import { Job, memoryState } from "gress";
 *
 * // The default state backend: keyed state in memory, lost when the process ends.
 * const job = new Job({ state: memoryState() });
 * ```
 */
export function memoryState(): StateBackend {
  return new MemoryStateBackend();
}
