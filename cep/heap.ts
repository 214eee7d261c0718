/**
 * A min-heap of (time, key) entries: the in-memory index the CEP matcher and the joins use to find which keys
 * have buffered events or timeouts due when the watermark moves. It is derived data: the keyed state tables
 * are the truth, and the heap is rebuilt from them when an operator starts (after a restore too). Entries
 * are dropped lazily: a popped entry whose key no longer has anything due is simply ignored.
 * @module
 */
import type { Key } from "../lib/element.ts";

/** A min-heap ordered by time. */
export class TimeHeap {
  readonly #times: number[] = [];
  readonly #keys: Key[] = [];

  get size(): number {
    return this.#times.length;
  }
  /** Time of the earliest entry, or Infinity. */
  peekTime(): number {
    return this.#times.length > 0 ? this.#times[0]! : Number.POSITIVE_INFINITY;
  }
  push(time: number, key: Key): void {
    const t = this.#times;
    const k = this.#keys;
    let i = t.length;
    t.push(time);
    k.push(key);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p]! <= time) break;
      t[i] = t[p]!;
      k[i] = k[p]!;
      i = p;
    }
    t[i] = time;
    k[i] = key;
  }
  /** Removes the earliest entry and returns its key. */
  pop(): Key | undefined {
    const t = this.#times;
    const k = this.#keys;
    if (t.length === 0) return undefined;
    const top = k[0];
    const lastT = t.pop()!;
    const lastK = k.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && t[r]! < t[l]! ? r : l;
        if (t[c]! >= lastT) break;
        t[i] = t[c]!;
        k[i] = k[c]!;
        i = c;
      }
      t[i] = lastT;
      k[i] = lastK;
    }
    return top;
  }
  clear(): void {
    this.#times.length = 0;
    this.#keys.length = 0;
  }
}
