/**
 * Core benchmark (issue 2): a stateless map/filter pipeline and a keyed tumbling count, each against a
 * hand-written plain-RxJS pipeline doing the same work on the same pre-generated events.
 *
 * Run: `npm run bench -- core`
 * @module
 */
import { filter, from, map, Observable, type OperatorFunction } from "rxjs";
import { boundedOutOfOrderness, Job, sinkFn, tumbling } from "../lib/index.ts";
import { compare, fmt } from "./harness.ts";

interface Event {
  readonly key: number;
  readonly price: number;
  readonly ts: number;
}

const N = 2_000_000;
const WINDOW = 1_000;

function events(KEYS: number): Event[] {
  const out: Event[] = new Array(N);
  let x = 12345;
  for (let i = 0; i < N; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    // 10 events per ms of event time: a 1 s window holds 10 000 events over 1 000 keys.
    out[i] = { key: x % KEYS, price: (x >>> 8) % 1000, ts: Math.floor(i / 10) };
  }
  return out;
}

/** Hand-written tumbling count: a map per open window, emitted when event time passes its end. */
function tumblingCount(size: number): OperatorFunction<Event, [number, number, number]> {
  return (source) =>
    new Observable<[number, number, number]>((sub) => {
      const windows = new Map<number, Map<number, number>>();
      let maxTs = Number.NEGATIVE_INFINITY;
      const flush = (upTo: number): void => {
        for (const [start, counts] of windows) {
          if (start + size - 1 > upTo) continue;
          for (const [k, c] of counts) sub.next([k, start, c]);
          windows.delete(start);
        }
      };
      return source.subscribe({
        next(e) {
          const start = e.ts - (e.ts % size);
          let counts = windows.get(start);
          if (counts === undefined) windows.set(start, (counts = new Map()));
          counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
          if (e.ts > maxTs) {
            maxTs = e.ts;
            flush(maxTs - 1);
          }
        },
        error: (err) => sub.error(err),
        complete() {
          flush(Number.POSITIVE_INFINITY);
          sub.complete();
        },
      });
    });
}

function drain<T>(obs: Observable<T>): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    obs.subscribe({ next: () => void n++, error: reject, complete: () => resolve(n) });
  });
}

export async function run(): Promise<void> {
  // 1 000 keys: each key's window holds ~10 events, so per-window work (timers, firing) dominates.
  // 10 keys: ~1 000 events per key and window, so per-record work dominates.
  for (const keys of [1_000, 10]) await workloads(keys);
}

/** Throws unless a workload produced the expected number of outputs (so every input event was processed). */
function check(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what}: ${got} outputs, expected ${want}; the measurement would be invalid`);
}

async function workloads(KEYS: number): Promise<void> {
  const input = events(KEYS);
  // Expected outputs, computed directly: records passing the filter, and (key, window) pairs.
  const mapFilterOut = input.filter((e) => e.price * 1.1 > 500).length;
  const windowsOut = new Set(input.map((e) => `${e.key}|${e.ts - (e.ts % WINDOW)}`)).size;
  console.log(`${fmt(N)} events, ${KEYS} keys, ${WINDOW} ms tumbling windows, 10 events per ms of event time`);

  const mapFilterGress = async (): Promise<number> => {
    const job = new Job({ name: "bench-map-filter" });
    let out = 0;
    job
      .fromIterable(input, { timestamp: (e) => e.ts })
      .map((e) => ({ key: e.key, price: e.price * 1.1, ts: e.ts }))
      .filter((e) => e.price > 500)
      .sinkTo(sinkFn("count", () => void out++));
    await job.run();
    check("gress map/filter", out, mapFilterOut);
    return N;
  };
  const mapFilterRx = async (): Promise<number> => {
    const out = await drain(
      from(input).pipe(
        map((e) => ({ key: e.key, price: e.price * 1.1, ts: e.ts })),
        filter((e) => e.price > 500),
      ),
    );
    check("rx map/filter", out, mapFilterOut);
    return N;
  };
  // Event time and watermarks generated in the source (Flink's `fromSource(source, strategy)`), and, for
  // comparison, by a `withTimestamps` operator right after it: the same results either way.
  const tumblingGress = (watermarksIn: "source" | "operator") => async (): Promise<number> => {
    const job = new Job({ name: "bench-tumbling" });
    let out = 0;
    const strategy = boundedOutOfOrderness<Event>(0);
    const input$ =
      watermarksIn === "source"
        ? job.fromIterable(input, { timestamp: (e) => e.ts, watermarks: strategy })
        : job.fromIterable(input, { timestamp: (e) => e.ts }).withTimestamps(strategy);
    input$
      .keyBy((e) => e.key)
      .window(tumbling(WINDOW))
      .count()
      .sinkTo(sinkFn("count", () => void out++));
    await job.run();
    check("gress tumbling count", out, windowsOut);
    return N;
  };
  const tumblingRx = async (): Promise<number> => {
    check("rx tumbling count", await drain(from(input).pipe(tumblingCount(WINDOW))), windowsOut);
    return N;
  };

  const all = [
    await compare("stateless map/filter", mapFilterGress, mapFilterRx),
    await compare(`keyed tumbling count, ${KEYS} keys`, tumblingGress("source"), tumblingRx),
    await compare("  same, withTimestamps operator", tumblingGress("operator"), tumblingRx),
  ];
  console.log(
    `targets: ratio >= 0.5x (${all.every((c) => c.ratio >= 0.5) ? "met" : "NOT met"}), > 1M ev/s (${all.every((c) => c.gress > 1e6) ? "met" : "NOT met"})`,
  );
}
