/**
 * The shared buffer of partial matches (SASE, FlinkCEP). Partial matches are not lists of events: each is a
 * pointer to a node, and a node is (event, step, previous node). Branches of a partial match share every node
 * up to where they split, so a branch costs one node, never a copy of the match so far. Each event is stored
 * once, however many partial matches hold it.
 *
 * The buffer of one key is plain data inside that key's NFA state ({@link KeyBuffer}), so it is stored,
 * checkpointed and restored with it. Nodes and events get increasing ids (node id, event sequence number) and
 * sit in parallel arrays at index `id − base`: adding one appends, and no object is allocated per node or
 * event. Both are reference-counted; a count of zero marks a free slot, and free slots at the front are
 * dropped (the base moves up), so the arrays span only from the oldest live node or event to the newest:
 * state that no partial match can use is not kept beyond that span, and a key whose partial matches are all
 * gone has empty arrays.
 * @module
 */

/** The shared buffer of one key. Plain, structured-cloneable data (part of the key's stored state). */
export interface KeyBuffer {
  /**
   * Node id of index 0 of the node arrays, how many slots at their front are free, and how many slots are in
   * use (the arrays are refilled by index after they empty, so slots past that count are stale).
   */
  nb: number;
  nh: number;
  nn: number;
  /** Per node: event sequence number, step index, previous node id (−1: none), reference count (0: free). */
  nq: number[];
  ns: number[];
  np: number[];
  nr: number[];
  /** As nb, nh, nn for the event arrays. */
  eb: number;
  eh: number;
  en: number;
  /** Per event: value, timestamp, reference count (0: free). */
  ev: unknown[];
  et: number[];
  er: number[];
}

/** One event of a materialised match: its sequence number, step index, value and timestamp. */
export interface MatchedEvent {
  readonly seq: number;
  readonly step: number;
  readonly value: unknown;
  readonly timestamp: number;
}

// Free slots at the front are cut off once they are this many and at least half of the arrays (amortised
// O(1) per slot), or at once when every slot is free.
const COMPACT_AT = 64;

/** Operations on the shared buffer of a key; counts the live events of every key for the operator's gauge. */
export class SharedBuffer {
  /** Live events over all keys. */
  liveEvents = 0;

  /**
   * Stores an event under sequence number `seq` (the next one of the key) with one reference, the caller's:
   * several branches may take the event while it is processed, and one of them being discarded must not free
   * it for the others. The caller drops that reference with {@link unpinEvent} when the event is processed.
   */
  putEvent(b: KeyBuffer, seq: number, value: unknown, timestamp: number): void {
    const i = b.en;
    if (i === 0) b.eb = seq;
    else if (seq !== b.eb + i) throw new Error(`shared buffer: event ${seq} is out of sequence (next is ${b.eb + i})`);
    if (i < b.ev.length) {
      b.ev[i] = value;
      b.et[i] = timestamp;
      b.er[i] = 1;
    } else {
      b.ev.push(value);
      b.et.push(timestamp);
      b.er.push(1);
    }
    b.en = i + 1;
    this.liveEvents++;
  }

  /** Drops the reference {@link putEvent} gave its caller; frees the event if no node holds it. */
  unpinEvent(b: KeyBuffer, seq: number): void {
    this.#dropEvent(b, seq - b.eb);
  }

  /** Adds node `id` (the next one of the key) = (event `seq`, `step`, `prev`) with one reference, the caller's. */
  addNode(b: KeyBuffer, id: number, seq: number, step: number, prev: number): void {
    const ei = seq - b.eb;
    if (ei < 0 || ei >= b.en || b.er[ei] === 0) throw new Error(`shared buffer: event ${seq} is missing`);
    b.er[ei]!++;
    if (prev >= 0) this.retain(b, prev);
    const i = b.nn;
    if (i === 0) b.nb = id;
    else if (id !== b.nb + i) throw new Error(`shared buffer: node ${id} is out of sequence (next is ${b.nb + i})`);
    if (i < b.nq.length) {
      b.nq[i] = seq;
      b.ns[i] = step;
      b.np[i] = prev;
      b.nr[i] = 1;
    } else {
      b.nq.push(seq);
      b.ns.push(step);
      b.np.push(prev);
      b.nr.push(1);
    }
    b.nn = i + 1;
  }

  /** One more reference to node `id`. */
  retain(b: KeyBuffer, id: number): void {
    if (id < 0) return;
    const i = id - b.nb;
    if (i < 0 || i >= b.nn || b.nr[i] === 0) throw new Error(`shared buffer: node ${id} is missing`);
    b.nr[i]!++;
  }

  /** Drops a reference to node `id`; frees the node, and then its predecessors and events, when unused. */
  release(b: KeyBuffer, id: number): void {
    let freedFront = false;
    for (let cur = id; cur >= 0; ) {
      const i = cur - b.nb;
      if (i < 0 || i >= b.nn || b.nr[i] === 0) break;
      if (--b.nr[i]! > 0) break;
      if (i === b.nh) freedFront = true;
      this.#dropEvent(b, b.nq[i]! - b.eb);
      cur = b.np[i]!;
    }
    if (freedFront) compactNodes(b);
  }

  /** The events of the partial match ending at node `id`, oldest first. */
  materialize(b: KeyBuffer, id: number): MatchedEvent[] {
    let n = 0;
    for (let cur = id; cur >= 0; cur = b.np[cur - b.nb]!) n++;
    const out = new Array<MatchedEvent>(n);
    for (let cur = id; cur >= 0; ) {
      const i = cur - b.nb;
      const seq = b.nq[i]!;
      const e = seq - b.eb;
      out[--n] = { seq, step: b.ns[i]!, value: b.ev[e], timestamp: b.et[e]! };
      cur = b.np[i]!;
    }
    return out;
  }

  /**
   * The events of the partial match ending at node `id`, per step (`steps` lists, each oldest first and of
   * its exact size; empty for a step without events), without a {@link MatchedEvent} per event. Sets
   * {@link pathStart} and {@link pathEnd} to the timestamps of its first and last event (NaN if it has none).
   */
  byStep(b: KeyBuffer, id: number, steps: number): unknown[][] {
    const counts = this.#counts;
    for (let s = 0; s < steps; s++) counts[s] = 0;
    let first = Number.NaN;
    let last = Number.NaN;
    for (let cur = id; cur >= 0; ) {
      const i = cur - b.nb;
      counts[b.ns[i]!]!++;
      first = b.et[b.nq[i]! - b.eb]!;
      if (Number.isNaN(last)) last = first;
      cur = b.np[i]!;
    }
    const lists = new Array<unknown[]>(steps);
    for (let s = 0; s < steps; s++) lists[s] = counts[s] === 0 ? [] : new Array(counts[s]);
    for (let cur = id; cur >= 0; ) {
      const i = cur - b.nb;
      const s = b.ns[i]!;
      lists[s]![--counts[s]!] = b.ev[b.nq[i]! - b.eb];
      cur = b.np[i]!;
    }
    this.pathStart = first;
    this.pathEnd = last;
    return lists;
  }
  /** Timestamps of the first and last event of the path last read by {@link byStep}. */
  pathStart: number = Number.NaN;
  pathEnd: number = Number.NaN;
  readonly #counts: number[] = [];

  /** Events accepted by step `step` on the path ending at node `id`, oldest first. */
  eventsOfStep(b: KeyBuffer, id: number, step: number): unknown[] {
    const out: unknown[] = [];
    for (let cur = id; cur >= 0; ) {
      const i = cur - b.nb;
      if (b.ns[i] === step) out.push(b.ev[b.nq[i]! - b.eb]);
      cur = b.np[i]!;
    }
    return out.reverse();
  }

  #dropEvent(b: KeyBuffer, i: number): void {
    if (i < 0 || i >= b.en || b.er[i] === 0) return;
    if (--b.er[i]! > 0) return;
    b.ev[i] = undefined; // the value is not needed any more: let it be collected before the slot is cut off
    this.liveEvents--;
    if (i === b.eh) compactEvents(b);
  }
}

/** Cuts off the free node slots at the front (see the module comment). */
function compactNodes(b: KeyBuffer): void {
  const n = b.nn;
  let k = b.nh;
  while (k < n && b.nr[k] === 0) k++;
  b.nh = k;
  if (k === n) {
    // All free: start again at index 0 of the same arrays.
    b.nb += n;
    b.nh = 0;
    b.nn = 0;
  } else if (k >= COMPACT_AT && 2 * k >= n) {
    b.nb += k;
    b.nq.splice(0, k);
    b.ns.splice(0, k);
    b.np.splice(0, k);
    b.nr.splice(0, k);
    b.nh = 0;
    b.nn -= k;
  }
}

/** Cuts off the free event slots at the front (see the module comment). */
function compactEvents(b: KeyBuffer): void {
  const n = b.en;
  let k = b.eh;
  while (k < n && b.er[k] === 0) k++;
  b.eh = k;
  if (k === n) {
    b.eb += n;
    b.eh = 0;
    b.en = 0;
  } else if (k >= COMPACT_AT && 2 * k >= n) {
    b.eb += k;
    b.ev.splice(0, k);
    b.et.splice(0, k);
    b.er.splice(0, k);
    b.eh = 0;
    b.en -= k;
  }
}
