/**
 * The shared buffer of partial matches (SASE, FlinkCEP). Partial matches are not lists of events: each is a
 * pointer to a node, and a node is (event, step, previous node). Branches of a partial match share every node
 * up to where they split, so a branch costs one node, never a copy of the match so far. Each event is stored
 * once, however many partial matches hold it.
 *
 * Nodes and events are reference-counted and live in two keyed state tables (namespace = node id / event
 * sequence number), so a checkpoint covers them. A node or event is deleted the moment its count drops to
 * zero: state that no partial match can use is never kept.
 * @module
 */
import type { Key } from "../lib/element.ts";
import type { StateTable } from "../lib/state/backend.ts";

/** A stored event: value, timestamp, reference count. */
export type StoredEvent = [value: unknown, timestamp: number, refs: number];
/** A stored node: event sequence number, step index, previous node (−1: none), reference count. */
export type StoredNode = [seq: number, step: number, prev: number, refs: number];

/** One event of a materialised match: its sequence number, step index, value and timestamp. */
export interface MatchedEvent {
  readonly seq: number;
  readonly step: number;
  readonly value: unknown;
  readonly timestamp: number;
}

/** Shared buffer of one operator, over its `events` and `nodes` tables. */
export class SharedBuffer {
  readonly events: StateTable<StoredEvent>;
  readonly nodes: StateTable<StoredNode>;

  constructor(events: StateTable<StoredEvent>, nodes: StateTable<StoredNode>) {
    this.events = events;
    this.nodes = nodes;
  }

  /**
   * Stores an event under its sequence number with one reference, the caller's: several branches may take
   * the event while it is processed, and one of them being discarded must not free it for the others. The
   * caller drops that reference with {@link unpinEvent} when the event is processed.
   */
  putEvent(key: Key, seq: number, value: unknown, timestamp: number): void {
    this.events.put(key, seq, [value, timestamp, 1]);
  }

  /** Drops the reference {@link putEvent} gave its caller; frees the event if no node holds it. */
  unpinEvent(key: Key, seq: number): void {
    const e = this.events.get(key, seq);
    if (e === undefined) return;
    if (--e[2] > 0) this.events.put(key, seq, e);
    else this.events.delete(key, seq);
  }

  /** Adds node `id` = (event `seq`, `step`, `prev`) with one reference (the caller's). */
  addNode(key: Key, id: number, seq: number, step: number, prev: number): void {
    const e = this.events.get(key, seq);
    if (e === undefined) throw new Error(`shared buffer: event ${seq} of key ${String(key)} is missing`);
    e[2]++;
    this.events.put(key, seq, e);
    if (prev >= 0) this.retain(key, prev);
    this.nodes.put(key, id, [seq, step, prev, 1]);
  }

  /** One more reference to node `id`. */
  retain(key: Key, id: number): void {
    if (id < 0) return;
    const n = this.nodes.get(key, id);
    if (n === undefined) throw new Error(`shared buffer: node ${id} of key ${String(key)} is missing`);
    n[3]++;
    this.nodes.put(key, id, n);
  }

  /** Drops a reference to node `id`; frees the node, and then its predecessors and events, when unused. */
  release(key: Key, id: number): void {
    let cur = id;
    while (cur >= 0) {
      const n = this.nodes.get(key, cur);
      if (n === undefined) return;
      if (--n[3] > 0) {
        this.nodes.put(key, cur, n);
        return;
      }
      this.nodes.delete(key, cur);
      const e = this.events.get(key, n[0]);
      if (e !== undefined) {
        if (--e[2] > 0) this.events.put(key, n[0], e);
        else this.events.delete(key, n[0]);
      }
      cur = n[2];
    }
  }

  /** The events of the partial match ending at node `id`, oldest first. */
  materialize(key: Key, id: number): MatchedEvent[] {
    const out: MatchedEvent[] = [];
    for (let cur = id; cur >= 0; ) {
      const n = this.nodes.get(key, cur)!;
      const e = this.events.get(key, n[0])!;
      out.push({ seq: n[0], step: n[1], value: e[0], timestamp: e[1] });
      cur = n[2];
    }
    return out.reverse();
  }

  /** Events accepted by step `step` on the path ending at node `id`, oldest first. */
  eventsOfStep(key: Key, id: number, step: number): unknown[] {
    const out: unknown[] = [];
    for (let cur = id; cur >= 0; ) {
      const n = this.nodes.get(key, cur)!;
      if (n[1] === step) out.push(this.events.get(key, n[0])![0]);
      cur = n[2];
    }
    return out.reverse();
  }
}
