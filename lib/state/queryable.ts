/**
 * Queryable state: read-only lookups of an operator's keyed state from outside the pipeline, by operator id,
 * state name and key, as Kafka Streams' interactive queries (`job.queryState(...)` in process, and
 * `GET /state/<operator>/<name>?key=...` on `gress run --port`).
 *
 * Consistency: a query reads the live state, between two records, as the operator left it: state that no
 * checkpoint has committed yet, and that a failure and recovery may roll back. An entry whose TTL has passed
 * (by processing time, or by the operator's watermark for event-time TTL) reads as absent even if it was not
 * cleaned up yet. A query never creates state: only tables the operators opened are visible.
 *
 * What a name finds, in order: the value, map or list state `name` of a process (or co-process) function, the
 * broadcast state `name`, else the operator's internal table `name` (e.g. a window's `acc`, the accumulators
 * of the windows in progress by window start).
 * @module
 */
import type { Key } from "../element.ts";
import type { Namespace, StateBackend, StateSnapshot, StateTable, TableOptions } from "./backend.ts";
import { liveValue } from "./keyed.ts";

/**
 * The answer to a state query.
 *
 * @example
 * ```ts
 * import { Job, type QueriedState } from "gress";
 *
 * const job = new Job();
 * const answer: QueriedState | undefined = job.queryState("totals", "total", "ann");
 * if (answer?.kind === "value") console.log(answer.value);
 * ```
 */
export interface QueriedState {
  readonly operator: string;
  readonly name: string;
  readonly key: Key;
  /** `value`, `map` and `list` are process-function state; `broadcast` a broadcast state; `table` an internal table. */
  readonly kind: "value" | "map" | "list" | "broadcast" | "table";
  /** The value; for a map, broadcast state or table, an object of its entries (by map key or namespace). */
  readonly value: unknown;
}

/** The table name of each kind of state, as the operators name them (operators/process.ts, operators/broadcast.ts). */
const KINDS: readonly [QueriedState["kind"], (name: string) => string][] = [
  ["value", (n) => `v:${n}`],
  ["map", (n) => `m:${n}`],
  ["list", (n) => `l:${n}`],
  ["broadcast", (n) => `broadcast:${n}`],
  ["table", (n) => n],
];

// Map entries are stored as "<namespace>\u0000<n|s><map key>" (state/keyed.ts).
const SEP = "\u0000";

/**
 * The state backend as operators see it: the job's backend, and a record of which tables each operator
 * opened, so that queries can find them without opening new ones.
 */
export class QueryableState implements StateBackend {
  readonly #backend: StateBackend;
  readonly #now: () => number;
  readonly #opened = new Map<string, Map<string, StateTable<unknown>>>();

  constructor(backend: StateBackend, now: () => number) {
    this.#backend = backend;
    this.#now = now;
  }

  get kind(): string {
    return this.#backend.kind;
  }
  table<V>(operatorId: string, name: string, options?: TableOptions): StateTable<V> {
    const table = this.#backend.table<V>(operatorId, name, options);
    let tables = this.#opened.get(operatorId);
    if (tables === undefined) this.#opened.set(operatorId, (tables = new Map()));
    tables.set(name, table as StateTable<unknown>);
    return table;
  }
  snapshot(): StateSnapshot {
    return this.#backend.snapshot();
  }
  restore(snapshot: StateSnapshot): void {
    this.#backend.restore(snapshot);
  }
  close(): Promise<void> {
    return this.#backend.close();
  }

  /** Reads state `name` of operator `operator` for `key`; undefined if there is no such state. */
  query(operator: string, name: string, key: Key): QueriedState | undefined {
    const tables = this.#opened.get(operator);
    if (tables === undefined) return undefined;
    const watermark = tables.get("watermark")?.get("", "");
    const time = { processing: this.#now(), event: typeof watermark === "number" ? watermark : Number.NEGATIVE_INFINITY };
    for (const [kind, tableName] of KINDS) {
      const table = tables.get(tableName(name));
      if (table === undefined) continue;
      return { operator, name, key, kind, value: read(kind, table, key, time) };
    }
    return undefined;
  }

  /** Every state an operator opened, by table name. */
  tablesOf(operator: string): string[] {
    return [...(this.#opened.get(operator)?.keys() ?? [])];
  }
}

function read(kind: QueriedState["kind"], table: StateTable<unknown>, key: Key, time: { processing: number; event: number }): unknown {
  switch (kind) {
    case "value":
    case "list":
      return liveValue(table, table.get(key, ""), time);
    case "map":
      return mapEntries(table, table.entriesOf(key), time);
    case "broadcast":
      // The broadcast state is one map under a fixed key: `key` names an entry of it.
      return mapEntries(table, table.entriesOf(""), time)[String(key)];
    default: {
      const out: Record<string, unknown> = {};
      for (const [ns, v] of table.entriesOf(key)) out[String(ns)] = v;
      return out;
    }
  }
}

function mapEntries(table: StateTable<unknown>, entries: Iterable<[Namespace, unknown]>, time: { processing: number; event: number }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [ns, raw] of entries) {
    if (typeof ns !== "string" || !ns.startsWith(SEP)) continue;
    const v = liveValue(table, raw, time);
    if (v !== undefined) out[ns.slice(SEP.length + 1)] = v;
  }
  return out;
}
