/**
 * Event-time and processing-time timers of one keyed operator, like Flink's InternalTimerService.
 *
 * Timers are state: each lives in the operator's `__timers` table (so a checkpoint captures it and a restore
 * brings it back), and a binary heap per time domain orders them for firing. Registering the same
 * (key, namespace, time) twice keeps one timer. Deleting removes the table entry; the heap drops it lazily.
 * @module
 */
import type { Clock, CancelTimer } from "./clock.ts";
import type { Key } from "./element.ts";
import type { Namespace, StateBackend, StateTable } from "./state/backend.ts";

/** A due timer. */
export interface Timer {
  readonly time: number;
  readonly key: Key;
  readonly namespace: Namespace;
}

type Domain = "e" | "p";

/** A binary min-heap of timers by time. */
export class TimerHeap<T extends Timer = Timer> {
  readonly #items: T[] = [];
  get size(): number {
    return this.#items.length;
  }
  peek(): T | undefined {
    return this.#items[0];
  }
  push(t: T): void {
    const a = this.#items;
    a.push(t);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.time <= t.time) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = t;
  }
  pop(): T | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (top === undefined || last === undefined || a.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && a[r]!.time < a[l]!.time ? r : l;
      if (a[c]!.time >= last.time) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
    return top;
  }
  clear(): void {
    this.#items.length = 0;
  }
}

// A timer's id inside the table: "<domain>|<time>|<n|s><namespace>". Plain concatenation: this runs once per
// window per key, and JSON.stringify showed up in profiles.
function encode(domain: Domain, time: number, ns: Namespace): string {
  return domain + "|" + time + "|" + (typeof ns === "number" ? "n" : "s") + ns;
}

function decode(id: string): [Domain, number, Namespace] {
  const a = id.indexOf("|");
  const b = id.indexOf("|", a + 1);
  const body = id.slice(b + 2);
  return [id.slice(0, a) as Domain, Number(id.slice(a + 1, b)), id[b + 1] === "n" ? Number(body) : body];
}

/** Timers of one operator. */
export class TimerService {
  readonly #table: StateTable<1>;
  readonly #clock: Clock;
  readonly #event = new TimerHeap();
  readonly #processing = new TimerHeap();
  #cancelWakeup: CancelTimer | undefined;
  #wakeupAt = Number.POSITIVE_INFINITY;
  #onProcessingTime: (timers: Timer[]) => void = () => {};

  constructor(state: StateBackend, operatorId: string, clock: Clock) {
    this.#table = state.table<1>(operatorId, "__timers");
    this.#clock = clock;
    this.reload();
  }

  /** Rebuilds the heaps from the timer table, after a restore. */
  reload(): void {
    this.#event.clear();
    this.#processing.clear();
    for (const [key, ns] of this.#table.entries()) {
      const [domain, time, namespace] = decode(String(ns));
      (domain === "e" ? this.#event : this.#processing).push({ time, key, namespace });
    }
    this.#scheduleWakeup();
  }

  /** Called with the due processing-time timers when the clock reaches them. */
  onProcessingTime(handler: (timers: Timer[]) => void): void {
    this.#onProcessingTime = handler;
  }

  registerEventTime(key: Key, namespace: Namespace, time: number): void {
    this.#register("e", this.#event, key, namespace, time);
  }
  deleteEventTime(key: Key, namespace: Namespace, time: number): void {
    this.#table.delete(key, encode("e", time, namespace));
  }
  registerProcessingTime(key: Key, namespace: Namespace, time: number): void {
    this.#register("p", this.#processing, key, namespace, time);
    this.#scheduleWakeup();
  }
  deleteProcessingTime(key: Key, namespace: Namespace, time: number): void {
    this.#table.delete(key, encode("p", time, namespace));
  }

  /** Number of live timers. */
  get size(): number {
    return this.#table.size;
  }

  /** Removes and returns, in time order, the event-time timers with time ≤ `watermark`. */
  dueEventTimers(watermark: number): Timer[] {
    return this.#drain("e", this.#event, watermark);
  }

  /** Removes and returns the processing-time timers with time ≤ `now`. */
  dueProcessingTimers(now: number): Timer[] {
    return this.#drain("p", this.#processing, now);
  }

  /** Stops the wake-up timer. */
  close(): void {
    this.#cancelWakeup?.();
    this.#cancelWakeup = undefined;
  }

  #register(domain: Domain, heap: TimerHeap, key: Key, namespace: Namespace, time: number): void {
    const id = encode(domain, time, namespace);
    if (this.#table.get(key, id) !== undefined) return;
    this.#table.put(key, id, 1);
    heap.push({ time, key, namespace });
  }

  #drain(domain: Domain, heap: TimerHeap, upTo: number): Timer[] {
    const due: Timer[] = [];
    for (let t = heap.peek(); t !== undefined && t.time <= upTo; t = heap.peek()) {
      heap.pop();
      const id = encode(domain, t.time, t.namespace);
      // Deleted timers are dropped here; a timer registered twice sits in the heap once per push.
      if (this.#table.get(t.key, id) === undefined) continue;
      this.#table.delete(t.key, id);
      due.push(t);
    }
    return due;
  }

  #scheduleWakeup(): void {
    const next = this.#processing.peek();
    if (next === undefined || next.time >= this.#wakeupAt) return;
    this.#cancelWakeup?.();
    this.#wakeupAt = next.time;
    this.#cancelWakeup = this.#clock.setTimer(next.time, () => {
      this.#cancelWakeup = undefined;
      this.#wakeupAt = Number.POSITIVE_INFINITY;
      const due = this.dueProcessingTimers(this.#clock.now());
      if (due.length > 0) this.#onProcessingTime(due);
      this.#scheduleWakeup();
    });
  }
}
