/**
 * A reference model of keyed event-time windows: what every window result must be, computed from the input
 * records, the watermark sequence and processing-time advances, with none of Gress's machinery (no state
 * backend, no timers, no fast path). It is a plain simulation over maps and arrays, written from the
 * semantics of Flink's WindowOperator as the README describes them for Gress:
 *
 * - Windows are half-open `[start, end)`; a window's last timestamp is `end − 1`. Tumbling and sliding
 *   windows hold every record with `start ≤ ts < end`, for every `start = offset + k·slide`. A session record
 *   opens `[ts, ts + gap)` and merges with every session of its key that overlaps or touches it (Flink's
 *   `TimeWindow.intersects`). A global window is one per key, for all time.
 * - A window is expired once `end − 1 + allowedLateness ≤ watermark`; an expired window is dropped. A record
 *   none of whose windows is alive goes to the late side output (for sessions: whose merged window is expired).
 * - Default trigger (and an explicit `eventTimeTrigger()`): a window fires "on-time" when the watermark first
 *   reaches `end − 1`, if it was created before that; a record added to a window whose `end − 1 ≤ watermark`
 *   re-fires it "late" at once. A merged session is a new window: it fires on-time later if its end is still
 *   ahead of the watermark, and late at once otherwise (Flink's `EventTimeTrigger.onMerge` + `onElement`).
 * - `countTrigger(n, { purge })`: every n-th record added to a window fires it; with purge the contents are
 *   dropped. `processingTimeTrigger(ms)`: the first record of a round sets a deadline `now + ms` in
 *   processing time; reaching it fires and purges the window. Fires of a custom trigger on a time window are
 *   "late" when `end − 1 ≤ watermark` and "early" otherwise; on a global window they are "on-time". A merged
 *   session carries on the triggers' state of the sessions it absorbed (Flink's `Trigger.onMerge`): their
 *   counts add up, and the earliest deadline stays.
 * - Early firings with the default trigger: `everyCount: n` fires "early" on every n-th record a window gets
 *   while its end is ahead of the watermark (a merged session carries over the counts of the sessions it
 *   absorbed, as Flink's `CountTrigger.onMerge` does); `everyMs: t` fires "early", at each processing time
 *   `k·t` (k ≥ 1, from time 0), every window that got a record since the previous tick and whose end is ahead
 *   of the watermark.
 * - A fire emits the window's contents unless they are empty (a purged window emits nothing). A watermark not
 *   later than the current one, or NaN, is ignored.
 *
 * Window contents are summarised as a fingerprint (count, sum and sum of squares of the record ids), so large
 * inputs stay cheap while a lost, duplicated or misplaced record still changes the result.
 * @module
 */

/** Which windows a record belongs to. Session gaps are given per record (`RecordStep.gap`). */
export type ModelAssigner =
  | { readonly kind: "tumbling"; readonly size: number; readonly offset: number }
  | { readonly kind: "sliding"; readonly size: number; readonly slide: number; readonly offset: number }
  | { readonly kind: "session" }
  | { readonly kind: "global" };

/** When windows fire. "default" is the event-time trigger Gress uses when none is given. */
export type ModelTrigger =
  | { readonly kind: "default" }
  | { readonly kind: "eventTime" }
  | { readonly kind: "count"; readonly n: number; readonly purge: boolean }
  | { readonly kind: "processingTime"; readonly intervalMs: number };

/** A windowed aggregation, as configured on a Gress job. */
export interface ModelSpec {
  readonly assigner: ModelAssigner;
  readonly trigger: ModelTrigger;
  readonly latenessMs: number;
  readonly early?: { readonly everyCount?: number; readonly everyMs?: number };
}

/** A record with a unique id; `gap` is its session gap. */
export interface RecordStep {
  readonly kind: "record";
  readonly key: string;
  readonly ts: number;
  readonly id: number;
  readonly gap: number;
}
/** One input step: a record, a watermark, or processing time moving forward by `ms`. */
export type Step = RecordStep | { readonly kind: "watermark"; readonly t: number } | { readonly kind: "time"; readonly ms: number };

/** Count, sum and sum of squares of the ids of a window's records. */
export interface Fingerprint {
  readonly n: number;
  readonly sum: number;
  readonly sq: number;
}

/** A window result. */
export interface ModelResult {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly value: Fingerprint;
  readonly timing: "early" | "on-time" | "late";
}

/** Every window result (in emission order, compare as a multiset) and the ids of the late records. */
export interface ModelOutput {
  readonly results: ModelResult[];
  readonly late: number[];
}

/** The bounds of Gress's global window (finite, so that they serialise). */
const GLOBAL_START = Number.MIN_SAFE_INTEGER;
const GLOBAL_END = Number.MAX_SAFE_INTEGER;

interface ModelWindow {
  start: number;
  end: number;
  n: number;
  sum: number;
  sq: number;
  /** Waits for the watermark to reach end − 1 (created while end − 1 was ahead of it). */
  onTimePending: boolean;
  /** Records since the last early firing (everyCount). */
  earlyCount: number;
  /** Got a record since the last everyMs tick. */
  dirty: boolean;
  /** countTrigger's count. */
  triggerCount: number;
  /** processingTimeTrigger's deadline. */
  due: number | undefined;
}

/** A stable text form of a result, for multiset comparison. */
export function resultId(r: { key: unknown; start: number; end: number; value: Fingerprint; timing: string }): string {
  return `${String(r.key)} [${r.start},${r.end}) n=${r.value.n} sum=${r.value.sum} sq=${r.value.sq} ${r.timing}`;
}

/**
 * Computes the window results of `steps` under `spec`.
 * @param spec the windowing
 * @param steps the input: records, watermarks and processing-time advances, in arrival order
 * @returns the results and the ids of the records sent to the late side output
 */
export function windowModel(spec: ModelSpec, steps: readonly Step[]): ModelOutput {
  const { assigner, trigger, latenessMs } = spec;
  const everyCount = spec.early?.everyCount;
  const everyMs = spec.early?.everyMs;
  const results: ModelResult[] = [];
  const late: number[] = [];
  const byKey = new Map<string, ModelWindow[]>();
  let wm = Number.NEGATIVE_INFINITY;
  let now = 0;

  const isGlobal = assigner.kind === "global";
  const eventTimeFiring = trigger.kind === "default" || trigger.kind === "eventTime";
  const expired = (w: { end: number }): boolean => !isGlobal && w.end - 1 + latenessMs <= wm;
  const customTiming = (w: ModelWindow): ModelResult["timing"] => (isGlobal ? "on-time" : w.end - 1 <= wm ? "late" : "early");
  const fire = (key: string, w: ModelWindow, timing: ModelResult["timing"]): void => {
    if (w.n === 0) return;
    results.push({ key, start: w.start, end: w.end, value: { n: w.n, sum: w.sum, sq: w.sq }, timing });
  };
  const purge = (w: ModelWindow): void => {
    w.n = 0;
    w.sum = 0;
    w.sq = 0;
  };
  const newWindow = (start: number, end: number): ModelWindow => ({
    start,
    end,
    n: 0,
    sum: 0,
    sq: 0,
    onTimePending: eventTimeFiring && !isGlobal && end - 1 > wm,
    earlyCount: 0,
    dirty: false,
    triggerCount: 0,
    due: undefined,
  });

  /** The record has been placed in window `w` (already merged for sessions): add it and let the trigger act. */
  const add = (key: string, w: ModelWindow, id: number): void => {
    w.n += 1;
    w.sum += id;
    w.sq += id * id;
    switch (trigger.kind) {
      case "default":
      case "eventTime":
        if (w.end - 1 <= wm) {
          fire(key, w, "late");
          return;
        }
        break;
      case "count":
        w.triggerCount += 1;
        if (w.triggerCount >= trigger.n) {
          w.triggerCount = 0;
          fire(key, w, customTiming(w));
          if (trigger.purge) purge(w);
        }
        break;
      case "processingTime":
        if (w.due === undefined) w.due = now + trigger.intervalMs;
        break;
    }
    if (everyCount !== undefined && w.end - 1 > wm) {
      w.earlyCount += 1;
      if (w.earlyCount >= everyCount) {
        w.earlyCount = 0;
        fire(key, w, "early");
      }
    }
    if (everyMs !== undefined) w.dirty = true;
  };

  /** The starts of the tumbling or sliding windows that contain `ts`, found by testing containment. */
  const timeWindowStarts = (ts: number, size: number, slide: number, offset: number): number[] => {
    const starts: number[] = [];
    const first = Math.floor((ts - size - offset) / slide) - 1;
    const last = Math.floor((ts - offset) / slide) + 1;
    for (let k = first; k <= last; k++) {
      const start = offset + k * slide;
      if (start <= ts && ts < start + size) starts.push(start);
    }
    return starts;
  };

  const onRecord = (r: RecordStep): void => {
    let windows = byKey.get(r.key);
    if (windows === undefined) byKey.set(r.key, (windows = []));
    const list = windows;
    const find = (start: number, end: number): ModelWindow => {
      let w = list.find((x) => x.start === start && x.end === end);
      if (w === undefined) list.push((w = newWindow(start, end)));
      return w;
    };
    switch (assigner.kind) {
      case "tumbling":
      case "sliding": {
        const slide = assigner.kind === "sliding" ? assigner.slide : assigner.size;
        const alive = timeWindowStarts(r.ts, assigner.size, slide, assigner.offset).filter((s) => !expired({ end: s + assigner.size }));
        if (alive.length === 0) late.push(r.id);
        for (const s of alive) add(r.key, find(s, s + assigner.size), r.id);
        return;
      }
      case "global":
        add(r.key, find(GLOBAL_START, GLOBAL_END), r.id);
        return;
      case "session": {
        const touching = list.filter((w) => w.start <= r.ts + r.gap && w.end >= r.ts);
        const start = Math.min(r.ts, ...touching.map((w) => w.start));
        const end = Math.max(r.ts + r.gap, ...touching.map((w) => w.end));
        if (expired({ end })) {
          late.push(r.id);
          return;
        }
        let target: ModelWindow;
        if (touching.length === 1 && touching[0]!.start === start && touching[0]!.end === end) target = touching[0]!;
        else {
          // A new (merged) window: it holds the contents and counts of the windows it absorbed.
          target = newWindow(start, end);
          for (const w of touching) {
            target.n += w.n;
            target.sum += w.sum;
            target.sq += w.sq;
            target.earlyCount += w.earlyCount;
            target.triggerCount += w.triggerCount;
            if (w.due !== undefined) target.due = target.due === undefined ? w.due : Math.min(target.due, w.due);
            list.splice(list.indexOf(w), 1);
          }
          list.push(target);
        }
        add(r.key, target, r.id);
        return;
      }
    }
  };

  const onWatermark = (t: number): void => {
    if (!(t > wm)) return;
    wm = t;
    for (const [key, list] of byKey) {
      for (const w of [...list]) {
        if (w.onTimePending && w.end - 1 <= wm) {
          w.onTimePending = false;
          fire(key, w, "on-time");
        }
        if (expired(w)) list.splice(list.indexOf(w), 1);
      }
    }
  };

  const onTime = (ms: number): void => {
    const before = now;
    now += ms;
    if (trigger.kind === "processingTime") {
      for (const [key, list] of byKey) {
        for (const w of list) {
          if (w.due !== undefined && w.due <= now) {
            w.due = undefined;
            fire(key, w, customTiming(w));
            purge(w);
          }
        }
      }
    }
    if (everyMs !== undefined && Math.floor(now / everyMs) > Math.floor(before / everyMs)) {
      for (const [key, list] of byKey) {
        for (const w of list) {
          if (w.dirty && w.end - 1 > wm) fire(key, w, "early");
          w.dirty = false;
        }
      }
    }
  };

  for (const step of steps) {
    if (step.kind === "record") onRecord(step);
    else if (step.kind === "watermark") onWatermark(step.t);
    else onTime(step.ms);
  }
  return { results, late };
}
