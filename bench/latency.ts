/**
 * Latency benchmark (issue 15): p50/p99/p99.9 end-to-end latency of a stateless pipeline and of a keyed 1-s
 * tumbling count, at 50% and 90% of the maximum throughput measured first, each next to a hand-written RxJS
 * pipeline doing the same work on the same paced input in the same run.
 *
 * Input is paced by a schedule: record i is due at t0 + i / rate. Latency is measured from that due time, not
 * from the moment the record was actually handed over, so a pipeline that falls behind is charged for the
 * wait (no coordinated omission). A stateless result's latency is its record's; a window result's is measured
 * from the due time of the window's end (when its last record could have arrived). Gress's own sampled
 * histogram (gress_end_to_end_latency_seconds) is printed beside, as a check of the metric.
 *
 * Run: `npm run bench -- latency`. Target: stateless p99 < 100 ms at 90% load.
 * @module
 */
import { filter, map, Observable, type OperatorFunction, Subject } from "rxjs";
import { boundedOutOfOrderness, Job, type Source, type SourceContext, sinkFn, tumbling } from "../lib/index.ts";
import { fmt } from "./harness.ts";

interface Event {
  readonly i: number;
  readonly key: number;
  readonly price: number;
  /** Due time, ms since the run's start: also the event time. */
  readonly at: number;
}

const KEYS = 100;
const WINDOW = 1_000;
const RUN_MS = 3_000;

function event(i: number, at: number): Event {
  const x = ((Math.imul(i + 1, 2654435761) ^ 0x5bd1e995) >>> 0);
  return { i, key: x % KEYS, price: (x >>> 8) % 1000, at };
}

/**
 * Emits events on a schedule of `rate` per second (Infinity: as fast as the consumer takes them, 1024 per
 * event-loop turn) for `ms`, calling `emit`; then `end`. `at` is the due time relative to `t0`.
 */
function pace(rate: number, ms: number, emit: (e: Event) => void, end: () => void, paused: () => boolean = () => false): { t0: number; stop(): void } {
  const t0 = performance.now();
  let i = 0;
  let stopped = false;
  const total = Number.isFinite(rate) ? Math.floor((rate * ms) / 1000) : Number.POSITIVE_INFINITY;
  const turn = (): void => {
    if (stopped) return;
    const now = performance.now() - t0;
    if (!paused()) {
      const due = Number.isFinite(rate) ? Math.min(total, Math.floor((now * rate) / 1000)) : i + 1024;
      for (; i < due; i++) emit(event(i, Number.isFinite(rate) ? (i * 1000) / rate : now));
    }
    if (i >= total || (!Number.isFinite(rate) && now >= ms)) {
      stopped = true;
      end();
      return;
    }
    setImmediate(turn);
  };
  setImmediate(turn);
  return {
    t0,
    stop: () => {
      stopped = true;
    },
  };
}

/** Latencies in ms, and the percentiles of them. */
class Latencies {
  #values = new Float64Array(1 << 16);
  #n = 0;
  add(ms: number): void {
    if (this.#n === this.#values.length) {
      const bigger = new Float64Array(this.#values.length * 2);
      bigger.set(this.#values);
      this.#values = bigger;
    }
    this.#values[this.#n++] = ms;
  }
  get count(): number {
    return this.#n;
  }
  percentile(p: number): number {
    const sorted = this.#values.slice(0, this.#n).sort();
    return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  }
}

type Kind = "stateless" | "window";

interface Result {
  readonly events: number;
  readonly seconds: number;
  readonly latencies: Latencies;
  /** Gress's own sampled p99 from gress_end_to_end_latency_seconds, in ms (NaN for the baseline). */
  readonly sampledP99: number;
}

/** A Gress source driven by `pace`. */
function pacedSource(rate: number, ms: number, onStart: (t0: number) => void): Source<Event> {
  let run: { stop(): void } | undefined;
  let paused = false;
  return {
    name: "paced",
    open(ctx: SourceContext<Event>) {
      const r = pace(
        rate,
        ms,
        (e) => ctx.emit(e, e.at),
        () => ctx.end(),
        () => paused,
      );
      onStart(r.t0);
      run = r;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
    },
    close() {
      run?.stop();
    },
  };
}

async function gress(kind: Kind, rate: number, ms: number): Promise<Result> {
  const latencies = new Latencies();
  let t0 = 0;
  const job = new Job({ name: `latency-${kind}` });
  const input = job.source(
    pacedSource(rate, ms, (t) => (t0 = t)),
    kind === "window" ? { watermarks: boundedOutOfOrderness(0, { timestamp: (e: Event) => e.at }) } : {},
  );
  const started = performance.now();
  if (kind === "stateless") {
    input
      .map((e) => ({ ...e, price: e.price * 1.1 }))
      .filter((e) => e.price > 10)
      .sinkTo(
        sinkFn("out", (e) => {
          latencies.add(performance.now() - t0 - e.at);
        }),
      );
  } else {
    input
      .keyBy((e) => e.key)
      .window(tumbling(WINDOW))
      .count()
      .sinkTo(
        sinkFn("out", (w) => {
          latencies.add(performance.now() - t0 - w.end);
        }),
      );
  }
  await job.run();
  const seconds = (performance.now() - started) / 1000;
  return { events: job.metrics.source("paced").emitted, seconds, latencies, sampledP99: job.metrics.sink("out").latency("written").quantile(0.99) * 1000 };
}

/** Hand-written tumbling count per key: emitted when event time passes the window's end. */
function tumblingCount(): OperatorFunction<Event, { key: number; end: number; count: number }> {
  return (source) =>
    new Observable((sub) => {
      const windows = new Map<number, Map<number, number>>();
      const flush = (upTo: number): void => {
        for (const [start, counts] of windows) {
          if (start + WINDOW > upTo) continue;
          for (const [key, count] of counts) sub.next({ key, end: start + WINDOW, count });
          windows.delete(start);
        }
      };
      let maxAt = Number.NEGATIVE_INFINITY;
      return source.subscribe({
        next(e) {
          const start = e.at - (e.at % WINDOW);
          let counts = windows.get(start);
          if (counts === undefined) windows.set(start, (counts = new Map()));
          counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
          if (e.at > maxAt) {
            maxAt = e.at;
            flush(maxAt);
          }
        },
        error: (err: unknown) => sub.error(err),
        complete() {
          flush(Number.POSITIVE_INFINITY);
          sub.complete();
        },
      });
    });
}

function baseline(kind: Kind, rate: number, ms: number): Promise<Result> {
  const latencies = new Latencies();
  const input = new Subject<Event>();
  let emitted = 0;
  let t0 = 0;
  const started = performance.now();
  return new Promise((resolve) => {
    const done = (): void => resolve({ events: emitted, seconds: (performance.now() - started) / 1000, latencies, sampledP99: Number.NaN });
    if (kind === "stateless") {
      input
        .pipe(
          map((e) => ({ ...e, price: e.price * 1.1 })),
          filter((e) => e.price > 10),
        )
        .subscribe({ next: (e) => latencies.add(performance.now() - t0 - e.at), complete: done });
    } else {
      input.pipe(tumblingCount()).subscribe({ next: (w) => latencies.add(performance.now() - t0 - w.end), complete: done });
    }
    t0 = pace(
      rate,
      ms,
      (e) => {
        emitted++;
        input.next(e);
      },
      () => input.complete(),
    ).t0;
  });
}

const ms = (x: number): string => (Number.isNaN(x) ? "-" : x < 10 ? x.toFixed(2) : x.toFixed(1));

function line(label: string, r: Result): string {
  const l = r.latencies;
  // The metric starts at the source's emit, so it leaves out the wait before the paced source emitted a record.
  const sampled = Number.isNaN(r.sampledP99) ? "" : `   (gress_end_to_end_latency_seconds, emit → written: p99 ${ms(r.sampledP99)} ms)`;
  return `  ${label.padEnd(9)} ${fmt(r.events / r.seconds).padStart(10)} ev/s   p50 ${ms(l.percentile(50)).padStart(7)} ms   p99 ${ms(l.percentile(99)).padStart(7)} ms   p99.9 ${ms(l.percentile(99.9)).padStart(7)} ms   ${fmt(l.count)} results${sampled}`;
}

export async function run(): Promise<void> {
  console.log(`paced input, ${RUN_MS / 1000} s per run; latency from each record's due time (window results: from the window's end)`);
  let stateless99At90 = Number.NaN;
  for (const kind of ["stateless", "window"] as const) {
    await gress(kind, Number.POSITIVE_INFINITY, 500); // warm-up
    const max = await gress(kind, Number.POSITIVE_INFINITY, RUN_MS);
    const maxRate = max.events / max.seconds;
    console.log(`\n${kind === "stateless" ? "stateless map/filter" : `keyed 1-s tumbling count, ${KEYS} keys`}: maximum ${fmt(maxRate)} ev/s (Gress, unpaced)`);
    for (const load of [0.5, 0.9]) {
      const rate = Math.floor(maxRate * load);
      console.log(` at ${load * 100}% = ${fmt(rate)} ev/s:`);
      const b = await baseline(kind, rate, RUN_MS);
      const g = await gress(kind, rate, RUN_MS);
      console.log(line("gress", g));
      console.log(line("rxjs", b));
      if (kind === "stateless" && load === 0.9) stateless99At90 = g.latencies.percentile(99);
    }
  }
  console.log(`\ntarget: stateless p99 < 100 ms at 90% load (${stateless99At90 < 100 ? "met" : "NOT met"}: ${ms(stateless99At90)} ms)`);
}
