/**
 * Processing time. Operators never call `Date.now()`: they ask the job's {@link Clock}. Production uses
 * {@link SystemClock}; tests use {@link VirtualClock}, which moves only when told to and fires due timers
 * in time order, so processing-time behaviour is deterministic.
 * @module
 */

/**
 * Cancels a scheduled timer.
 *
 * @example
 * ```ts
 * import { type CancelTimer, VirtualClock } from "gress";
 *
 * const clock = new VirtualClock();
 * const cancel: CancelTimer = clock.setTimer(1_000, () => console.log("never"));
 * cancel();
 * clock.advance(2_000); // prints nothing
 * ```
 */
export type CancelTimer = () => void;

/**
 * The source of processing time and processing-time timers.
 *
 * @example
 * ```ts
 * import { type CancelTimer, type Clock, Job } from "gress";
 *
 * // A clock driven by your own test loop: processing time comes only from the job's Clock.
 * class ManualClock implements Clock {
 *   #now = 0;
 *   readonly #timers = new Set<{ at: number; fn: () => void }>();
 *   now(): number {
 *     return this.#now;
 *   }
 *   setTimer(at: number, fn: () => void): CancelTimer {
 *     const t = { at, fn };
 *     this.#timers.add(t);
 *     return () => this.#timers.delete(t);
 *   }
 *   tick(ms: number): void {
 *     this.#now += ms;
 *     for (const t of [...this.#timers]) if (t.at <= this.#now) { this.#timers.delete(t); t.fn(); }
 *   }
 * }
 * const job = new Job({ clock: new ManualClock() });
 * ```
 */
export interface Clock {
  /** Current processing time in epoch milliseconds. */
  now(): number;
  /** Calls `fn` once, when processing time reaches `at`. */
  setTimer(at: number, fn: () => void): CancelTimer;
}

/**
 * Wall-clock time with real timers.
 *
 * @example
 * ```ts
 * import { Job, SystemClock } from "gress";
 *
 * // The default clock of a job: Date.now() and unref'd timers.
 * const job = new Job({ clock: new SystemClock() });
 * console.log(job.clock.now() > 0);
 * ```
 */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
  setTimer(at: number, fn: () => void): CancelTimer {
    const handle = setTimeout(fn, Math.max(0, at - Date.now()));
    // A pending timer must not keep a finished process alive.
    (handle as { unref?: () => void }).unref?.();
    return () => clearTimeout(handle);
  }
}

interface VirtualTimer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * Virtual time for tests. Starts at `start` and moves only through {@link VirtualClock.advance}.
 *
 * @example
 * ```ts
 * import { VirtualClock } from "gress";
 *
 * const clock = new VirtualClock(0);
 * clock.setTimer(1_000, () => console.log("fired at", clock.now()));
 * clock.advance(999); // nothing yet
 * clock.advance(1); // fired at 1000
 * ```
 */
export class VirtualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: VirtualTimer[] = [];

  constructor(start = 0) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  setTimer(at: number, fn: () => void): CancelTimer {
    const timer: VirtualTimer = { at, seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }
  /** Number of timers still pending. */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
  /** Moves time forward by `ms`, firing every due timer in (time, creation) order at its own time. */
  advance(ms: number): void {
    this.advanceTo(this.#now + ms);
  }
  /** Moves time forward to `target` (never backwards). */
  advanceTo(target: number): void {
    for (;;) {
      // Timers scheduled by a firing timer are honoured if they fall due before `target`.
      let next: VirtualTimer | undefined;
      for (const t of this.#timers) {
        if (t.cancelled || t.at > target) continue;
        if (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq)) next = t;
      }
      if (next === undefined) break;
      this.#timers.splice(this.#timers.indexOf(next), 1);
      if (next.at > this.#now) this.#now = next.at;
      next.fn();
    }
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    if (target > this.#now) this.#now = target;
  }
}
