/**
 * The state backend contract. Keyed state lives in tables, one per (operator, state name). A table maps
 * (key, namespace) to a value; the namespace is the window, pattern or map entry the value belongs to, or
 * `""` for plain keyed state.
 *
 * Every backend (memory now, LMDB for production) implements this one interface and passes one shared test
 * suite, so user code never changes when the backend does. Writes are cheap, in-memory operations; a durable
 * backend batches them and makes them durable at checkpoints, never one transaction per event.
 * @module
 */
import { z } from "zod";
import { validate } from "../config.ts";
import type { Key } from "../element.ts";

/**
 * Scope of a value inside a key: a window start, a pattern step, a map-state entry, or "".
 *
 * @example
 * ```ts
 * import { memoryState, type Namespace } from "gress";
 *
 * const ns: Namespace = 60_000; // e.g. a window start; "" where there is none
 * memoryState().table<string>("op", "t").put("key", ns, "value");
 * ```
 */
export type Namespace = string | number;

/**
 * One table of keyed state.
 *
 * @example
 * ```ts
 * import { memoryState, type StateTable } from "gress";
 *
 * // (key, namespace) → value; a window operator uses the window start as namespace.
 * const perWindow: StateTable<number> = memoryState().table("window-1", "acc", { layout: "namespace" });
 * perWindow.put("ann", 0, 2);
 * perWindow.put("ann", 60_000, 5);
 * console.log([...perWindow.entriesOf("ann")]); // [[0, 2], [60000, 5]]
 * ```
 */
export interface StateTable<V> {
  /** The value at (key, ns), or undefined. */
  get(key: Key, ns: Namespace): V | undefined;
  /** Stores a value at (key, ns). Values must be structured-cloneable plain data. */
  put(key: Key, ns: Namespace, value: V): void;
  /** Removes (key, ns). */
  delete(key: Key, ns: Namespace): void;
  /** All (namespace, value) pairs of one key. */
  entriesOf(key: Key): IterableIterator<[Namespace, V]>;
  /** Every (key, namespace, value) in the table. Used for restore, TTL cleanup and snapshots. */
  entries(): IterableIterator<[Key, Namespace, V]>;
  /** Removes every namespace of a key. */
  deleteKey(key: Key): void;
  /** Number of (key, namespace) entries. */
  readonly size: number;
}

/**
 * A serialisable copy of a backend's state, as written by a checkpoint or savepoint.
 *
 * @example
 * ```ts
 * import { memoryState } from "gress";
 *
 * const a = memoryState();
 * a.table<number>("op", "t").put("k", "", 1);
 * // A copy of every table, and back into another backend.
 * const b = memoryState();
 * b.restore(a.snapshot());
 * console.log(b.table<number>("op", "t").get("k", "")); // 1
 * ```
 */
export interface StateSnapshot {
  /** table id → [key, namespace, value] triples */
  readonly tables: Readonly<Record<string, readonly (readonly [Key, Namespace, unknown])[]>>;
}

/**
 * How an operator uses a table, so that a backend can lay it out to suit. Backends may ignore it.
 *
 * @example
 * ```ts
 * import { memoryState, type TableOptions } from "gress";
 *
 * // A hint: the operator works one namespace (window) at a time; the memory backend lays the table out for it.
 * const options: TableOptions = { layout: "namespace" };
 * const table = memoryState().table<number>("window-1", "acc", options);
 * ```
 */
export interface TableOptions {
  /**
   * "key" (default): the operator works one key at a time, across that key's namespaces (process functions,
   * map state, joins). "namespace": it works one namespace at a time, across many keys, as a window operator
   * does with the accumulators of one window. Only the speed differs: every table behaves the same either way.
   */
  readonly layout?: "key" | "namespace";
}

const tableOptionsSchema = z.strictObject({ layout: z.enum(["key", "namespace"]).optional() });

/**
 * Checks the options of `StateBackend.table`; throws a ConfigError naming a bad field. Every backend calls it.
 *
 * @example
 * ```ts
 * import { validateTableOptions } from "gress";
 *
 * // What every backend's table() does with its options: a ConfigError naming the table for a bad one.
 * validateTableOptions({ layout: "namespace" }, "window-1", "acc");
 * ```
 */
export function validateTableOptions(options: TableOptions, operatorId: string, name: string): void {
  validate(tableOptionsSchema, options, `table ${tableId(operatorId, name)}`);
}

/**
 * A keyed state backend.
 *
 * @example
 * ```ts
 * import { memoryState, type StateBackend } from "gress";
 *
 * const backend: StateBackend = memoryState();
 * const counts = backend.table<number>("counter-1", "counts");
 * counts.put("ann", "", 3);
 * console.log(backend.kind, counts.get("ann", "")); // memory 3
 * ```
 */
export interface StateBackend {
  /** "memory", "lmdb", ... */
  readonly kind: string;
  /** Opens (or returns the already open) table `name` of operator `operatorId`. */
  table<V>(operatorId: string, name: string, options?: TableOptions): StateTable<V>;
  /** A consistent copy of all tables. */
  snapshot(): StateSnapshot;
  /** Replaces all state with a snapshot. */
  restore(snapshot: StateSnapshot): void;
  /** Releases resources. */
  close(): Promise<void>;
}

/**
 * The id of a table inside a backend: operator and state name.
 *
 * @example
 * ```ts
 * import { tableId } from "gress";
 *
 * console.log(tableId("window-1", "acc")); // "window-1/acc": how backends and savepoints name a table
 * ```
 */
export function tableId(operatorId: string, name: string): string {
  return `${operatorId}/${name}`;
}
