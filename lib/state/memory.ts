/**
 * The in-memory state backend, for development and tests. Tables are nested Maps (key → namespace → value),
 * which makes the hot path two hash lookups. Snapshots deep-copy values with structuredClone so a snapshot
 * never aliases live state.
 * @module
 */
import type { Key } from "../element.ts";
import { type Namespace, type StateBackend, type StateSnapshot, type StateTable, tableId } from "./backend.ts";

class MemoryTable<V> implements StateTable<V> {
  readonly rows: Map<Key, Map<Namespace, V>> = new Map();
  #size = 0;
  #emptyRows = 0;
  // The row of the last key touched: operators read and then write the same key, so the second lookup of
  // the pair is free.
  #lastKey: Key | undefined;
  #lastRow: Map<Namespace, V> | undefined;

  #row(key: Key): Map<Namespace, V> | undefined {
    if (key === this.#lastKey) return this.#lastRow;
    const row = this.rows.get(key);
    if (row !== undefined) {
      this.#lastKey = key;
      this.#lastRow = row;
    }
    return row;
  }
  get(key: Key, ns: Namespace): V | undefined {
    return this.#row(key)?.get(ns);
  }
  put(key: Key, ns: Namespace, value: V): void {
    let row = this.#row(key);
    if (row === undefined) {
      row = new Map();
      this.rows.set(key, row);
      this.#lastKey = key;
      this.#lastRow = row;
    } else if (row.size === 0 && this.#emptyRows > 0) {
      this.#emptyRows--;
    }
    const before = row.size;
    row.set(ns, value);
    this.#size += row.size - before;
  }
  delete(key: Key, ns: Namespace): void {
    const row = this.#row(key);
    if (row === undefined || !row.delete(ns)) return;
    this.#size--;
    // An emptied row is kept for a while: window state empties and refills a key's row once per window, and
    // re-allocating the Map each time showed up as GC pressure. Empty rows are swept once they dominate.
    if (row.size === 0 && ++this.#emptyRows > 1024 && this.#emptyRows * 2 > this.rows.size) this.#sweep();
  }
  #sweep(): void {
    for (const [key, row] of this.rows) if (row.size === 0) this.rows.delete(key);
    this.#emptyRows = 0;
    this.#lastKey = undefined;
    this.#lastRow = undefined;
  }
  #dropRow(key: Key): void {
    this.rows.delete(key);
    if (key === this.#lastKey) {
      this.#lastKey = undefined;
      this.#lastRow = undefined;
    }
  }
  *entriesOf(key: Key): IterableIterator<[Namespace, V]> {
    const row = this.#row(key);
    if (row !== undefined) yield* [...row];
  }
  *entries(): IterableIterator<[Key, Namespace, V]> {
    for (const [key, row] of [...this.rows]) for (const [ns, v] of [...row]) yield [key, ns, v];
  }
  deleteKey(key: Key): void {
    const row = this.rows.get(key);
    if (row === undefined) return;
    this.#size -= row.size;
    this.#dropRow(key);
  }
  get size(): number {
    return this.#size;
  }
  clear(): void {
    this.rows.clear();
    this.#size = 0;
    this.#emptyRows = 0;
    this.#lastKey = undefined;
    this.#lastRow = undefined;
  }
}

/** Keyed state held in the process heap. Lost when the process ends unless snapshotted. */
export class MemoryStateBackend implements StateBackend {
  readonly kind = "memory";
  readonly #tables = new Map<string, MemoryTable<unknown>>();

  table<V>(operatorId: string, name: string): StateTable<V> {
    const id = tableId(operatorId, name);
    let table = this.#tables.get(id);
    if (table === undefined) {
      table = new MemoryTable();
      this.#tables.set(id, table);
    }
    return table as MemoryTable<V>;
  }
  snapshot(): StateSnapshot {
    const tables: Record<string, [Key, Namespace, unknown][]> = {};
    for (const [id, table] of this.#tables) tables[id] = [...table.entries()].map(([k, ns, v]) => [k, ns, structuredClone(v)]);
    return { tables };
  }
  restore(snapshot: StateSnapshot): void {
    for (const table of this.#tables.values()) table.clear();
    for (const [id, rows] of Object.entries(snapshot.tables)) {
      const [operatorId, ...rest] = id.split("/");
      const table = this.table<unknown>(operatorId ?? "", rest.join("/"));
      for (const [k, ns, v] of rows) table.put(k, ns, structuredClone(v));
    }
  }
  async close(): Promise<void> {
    this.#tables.clear();
  }
}

/** Creates an in-memory state backend. */
export function memoryState(): StateBackend {
  return new MemoryStateBackend();
}
