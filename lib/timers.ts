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

/**
 * A due timer.
 *
 * @example
 * ```ts
 * import type { Timer } from "gress";
 *
 * // A timer belongs to a key and a namespace (the window, or "" in a process function).
 * const t: Timer = { time: 60_000, key: "ann", namespace: "" };
 * ```
 */
export interface Timer {
  readonly time: number;
  readonly key: Key;
  readonly namespace: Namespace;
}

type Domain = "e" | "p";

/**
 * A priority queue of timers by time. Timers often share a time (every key's window of a tumbling window ends
 * at once), so the queue keeps a binary min-heap of the distinct times and, per time, the timers in the order
 * they were added. Adding a timer at a time already queued is one hash lookup instead of a sift through the
 * heap, and timers of equal time come out in insertion order, which keeps firing deterministic.
 */
export class TimerHeap<T extends Timer = Timer> {
  readonly #times: number[] = [];
  readonly #buckets = new Map<number, { readonly items: T[]; at: number }>();
  #size = 0;

  get size(): number {
    return this.#size;
  }
  peek(): T | undefined {
    const time = this.#times[0];
    if (time === undefined) return undefined;
    const b = this.#buckets.get(time)!;
    return b.items[b.at];
  }
  push(t: T): void {
    const b = this.#buckets.get(t.time);
    this.#size++;
    if (b !== undefined) {
      b.items.push(t);
      return;
    }
    this.#buckets.set(t.time, { items: [t], at: 0 });
    const a = this.#times;
    a.push(t.time);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= t.time) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = t.time;
  }
  pop(): T | undefined {
    const time = this.#times[0];
    if (time === undefined) return undefined;
    const b = this.#buckets.get(time)!;
    const top = b.items[b.at++]!;
    this.#size--;
    if (b.at === b.items.length) {
      this.#buckets.delete(time);
      this.#popTime();
    }
    return top;
  }
  clear(): void {
    this.#times.length = 0;
    this.#buckets.clear();
    this.#size = 0;
  }
  #popTime(): void {
    const a = this.#times;
    const last = a.pop();
    if (last === undefined || a.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && a[r]! < a[l]! ? r : l;
      if (a[c]! >= last) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
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

/**
 * Timers of one operator.
 *
 * @example
 * ```ts
 * import { memoryState, TimerService, VirtualClock } from "gress";
 *
 * // The timers of one operator, kept in its state (so checkpoints cover them).
 * const timers = new TimerService(memoryState(), "my-operator", new VirtualClock());
 * timers.registerEventTime("ann", "", 5_000);
 * console.log(timers.dueEventTimers(10_000)); // [{ time: 5000, key: "ann", namespace: "" }]
 * ```
 */
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
