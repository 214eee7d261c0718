import type { Aggregator } from "../aggregate.ts";
import { type Element, type Key, MIN_WATERMARK, record, sideRecord, type StreamRecord, type Watermark } from "../element.ts";
import type { OperatorContext } from "../operator-context.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { Downstream, OperatorBody } from "../operate.ts";
import type { StateTable } from "../state/backend.ts";
import { windowStart } from "../windows/assigners.ts";
import type { KeyOf } from "./key-by.ts";
import { handleUserError } from "./user-error.ts";
import type { FireTiming, WindowResult } from "./window-result.ts";

/** A window with state: the keys that have an accumulator in it, in the order of their first record. */
interface AlignedWindow {
  readonly start: number;
  readonly keys: Key[];
  /** Its on-time result went out; it stays until its cleanup time for late updates. */
  fired: boolean;
}

/** What the aligned window body needs from its operator. */
export interface AlignedWindowsConfig<T, A, R> {
  readonly ctx: OperatorContext;
  readonly agg: Aggregator<T, A, R>;
  readonly accs: StateTable<A>;
  readonly wmState: StateTable<number>;
  readonly size: number;
  /** The slide of sliding windows; equal to `size` for tumbling windows. */
  readonly slide: number;
  readonly offset: number;
  readonly lateness: number;
  readonly lateTag: string;
}

/**
 * The body of a window operator for tumbling and sliding windows with the default event-time trigger and no
 * early firing, the common case. These windows are aligned: every key's window [start, end) closes at the
 * same watermark. So instead of a timer per key and window, the body keeps per window the keys that have an
 * accumulator in it, and fires a window in one pass over them. Accumulators stay in keyed state (the table
 * `accs`, by key and window start), and the per-window key lists are rebuilt from it after a restore.
 *
 * Results are the same as the general window body's with an explicit event-time trigger: on-time results at
 * the watermark that passes a window's last timestamp (windows in start order, keys in the order they first
 * came), late updates for records within the allowed lateness, the late side output beyond it.
 *
 * A class rather than closures, like the other hot operator bodies, so its methods are one function in every
 * job and V8 keeps inlining them.
 */
export class AlignedWindows<T, A, R> implements OperatorBody<Element<T>> {
  readonly #ctx: OperatorContext;
  readonly #m: OperatorMetrics;
  readonly #agg: Aggregator<T, A, R>;
  readonly #accs: StateTable<A>;
  readonly #wmState: StateTable<number>;
  readonly #size: number;
  readonly #slide: number;
  readonly #offset: number;
  readonly #lateness: number;
  readonly #lateTag: string;
  readonly #downstream: Downstream<Element<WindowResult<Key, R>>>;
  /** Applies the key selector itself (a keyBy fused into this operator), or undefined to read `record.key`. */
  readonly #keys: KeyOf<T> | undefined;
  #wm: number;
  readonly #windows = new Map<number, AlignedWindow>();
  /** Starts of `#windows`, ascending: the order in which they fire. */
  readonly #starts: number[] = [];
  // The tumbling window of the previous record: most records fall into the same one, and two comparisons are
  // cheaper than the division that finds a window.
  #lastStart = Number.NaN;
  #lastWindow: AlignedWindow | undefined;

  constructor(config: AlignedWindowsConfig<T, A, R>, downstream: Downstream<Element<WindowResult<Key, R>>>, keys: KeyOf<T> | undefined) {
    this.#ctx = config.ctx;
    this.#m = config.ctx.metrics;
    this.#agg = config.agg;
    this.#accs = config.accs;
    this.#wmState = config.wmState;
    this.#size = config.size;
    this.#slide = config.slide;
    this.#offset = config.offset;
    this.#lateness = config.lateness;
    this.#lateTag = config.lateTag;
    this.#downstream = downstream;
    this.#keys = keys;
    this.#wm = this.#wmState.get("", "") ?? MIN_WATERMARK;
    // After a restore the accumulators are back: derive which windows hold which keys from them.
    for (const [key, start] of this.#accs.entries()) this.#open(start as number).keys.push(key);
    this.#m.buffered = this.#accs.size;
  }

  /** It keeps values in accumulators and emits new records; it keeps no record object and passes none on. */
  get records(): "consume" {
    return "consume";
  }

  next(e: Element<T>): void {
    if (e.kind === "record") this.#onRecord(e);
    else if (e.kind === "watermark") this.#onWatermark(e);
    else this.#downstream.next(e);
  }

  #onRecord(e: StreamRecord<T>): void {
    // Fused with the keyBy before it, the operator applies the key selector itself; a record without a valid
    // key went to dead letters there.
    const keys = this.#keys;
    const key = keys === undefined ? e.key : keys.keyOf(e, this.#downstream);
    if (key === undefined && keys !== undefined) return;
    this.#m.recordsIn++;
    try {
      if (key === undefined) throw new TypeError(`window operator "${this.#ctx.id}" needs a keyed stream`);
      if (!Number.isFinite(e.timestamp)) throw new TypeError(`record timestamp must be a finite number, got ${e.timestamp}`);
      if (this.#slide === this.#size) this.#tumbling(e, key);
      else this.#sliding(e, key);
    } catch (err) {
      handleUserError(this.#ctx, this.#downstream, e, err);
    }
  }

  #tumbling(rec: StreamRecord<T>, key: Key): void {
    const ts = rec.timestamp;
    const size = this.#size;
    if (!(ts >= this.#lastStart && ts < this.#lastStart + size)) {
      this.#lastStart = windowStart(ts, size, this.#offset);
      this.#lastWindow = undefined;
    }
    if (this.#lastStart + size - 1 + this.#lateness <= this.#wm) {
      this.#late(rec);
      return;
    }
    this.#lastWindow = this.#fold(rec, key, this.#lastStart, this.#lastWindow);
  }

  /** A record of a sliding window goes to each of its size/slide windows that is not past its lateness. */
  #sliding(rec: StreamRecord<T>, key: Key): void {
    const ts = rec.timestamp;
    let placed = false;
    for (let start = windowStart(ts, this.#slide, this.#offset); start > ts - this.#size; start -= this.#slide) {
      if (start + this.#size - 1 + this.#lateness <= this.#wm) continue;
      this.#fold(rec, key, start, this.#windows.get(start));
      placed = true;
    }
    if (!placed) this.#late(rec);
  }

  /** Folds a record into window `start` (`window` if the caller has it) and re-fires a window that fired already. */
  #fold(rec: StreamRecord<T>, key: Key, start: number, window: AlignedWindow | undefined): AlignedWindow | undefined {
    const accs = this.#accs;
    const agg = this.#agg;
    const existing = accs.get(key, start);
    const acc = agg.add(existing ?? agg.create(), rec.value);
    accs.put(key, start, acc);
    let w = window;
    if (existing === undefined) {
      if (w === undefined) w = this.#open(start);
      w.keys.push(key);
      this.#m.buffered = accs.size;
    }
    // Within the allowed lateness: the window fired already, so this re-fires it as a late update.
    const last = start + this.#size - 1;
    if (last <= this.#wm) this.#emit(key, start, last + 1, acc, "late");
    return w;
  }

  /** Late for every window it belongs to: the record goes to the late side output, counted. */
  #late(rec: StreamRecord<T>): void {
    this.#m.lateRecords++;
    this.#downstream.next(sideRecord(this.#lateTag, rec.value, rec.timestamp, `late: watermark ${this.#wm} passed the window's allowed lateness`));
  }

  #open(start: number): AlignedWindow {
    let w = this.#windows.get(start);
    if (w === undefined) {
      w = { start, keys: [], fired: start + this.#size - 1 <= this.#wm };
      this.#windows.set(start, w);
      const starts = this.#starts;
      let i = starts.length;
      while (i > 0 && starts[i - 1]! > start) i--;
      starts.splice(i, 0, start);
    }
    return w;
  }

  #onWatermark(e: Watermark): void {
    // Not later than the current one (or NaN): nothing to do, as in the general window body.
    if (!(e.timestamp > this.#wm)) return;
    this.#wm = e.timestamp;
    this.#m.watermark = e.timestamp;
    this.#wmState.put("", "", e.timestamp);
    this.#fire();
    this.#m.buffered = this.#accs.size;
    this.#downstream.next(e);
  }

  /** Fires the windows the watermark closed, and drops those past their cleanup time. */
  #fire(): void {
    const accs = this.#accs;
    const wm = this.#wm;
    let dropped = 0;
    for (const start of this.#starts) {
      const last = start + this.#size - 1;
      if (last > wm) break;
      const w = this.#windows.get(start)!;
      const purge = last + this.#lateness <= wm;
      if (!w.fired) {
        w.fired = true;
        for (const key of w.keys) {
          const acc = accs.get(key, start);
          if (acc !== undefined) this.#emit(key, start, last + 1, acc, "on-time");
          if (purge) accs.delete(key, start);
        }
      } else if (purge) {
        for (const key of w.keys) accs.delete(key, start);
      }
      if (!purge) continue;
      this.#windows.delete(start);
      if (w === this.#lastWindow) this.#lastWindow = undefined;
      dropped++;
    }
    if (dropped > 0) this.#starts.splice(0, dropped);
  }

  #emit(key: Key, start: number, end: number, acc: A, timing: FireTiming): void {
    this.#m.recordsOut++;
    const value: WindowResult<Key, R> = { key, start, end, value: this.#agg.result(acc), timing };
    this.#downstream.next(record(value, end - 1, key));
  }
}
