/**
 * CEP benchmark: the sequence A → B → C within W (relaxed contiguity, no skip), keyed by a card-like key,
 * with 70% noise events, swept over W = 1×, 10× and 100× a base window. Each W is measured for the Gress
 * matcher (event time: records sorted until the watermark passes them, all state in keyed state tables)
 * and for a hand-written matcher for this one pattern, on the same pre-generated input in the same process.
 * Both consume the same RxJS element stream. Prints events/s (median of the rounds), the ratios, and the
 * bytes each allocates per event (V8's sampling heap profiler over one extra, untimed run, counting objects
 * that were collected too, so it is every allocation, not what survives).
 *
 *   node --import tsx -e "import('./bench/cep.ts').then(m=>m.run())"
 * @module
 */
import { Session } from "node:inspector";
import { from } from "rxjs";
import { matchElements, pattern } from "../cep/index.ts";
import { type Element, type Key, record, watermark } from "../lib/element.ts";
import { Job } from "../lib/job.ts";
import { hash32 } from "../lib/sources/generator.ts";
import { median } from "./harness.ts";


interface Ev {
  readonly type: "A" | "B" | "C" | "N";
  readonly key: number;
}

const KEYS = 200;
const EVENTS = 400_000;
const ROUNDS = 5;
// One event per ms overall, so each key sees an event every KEYS ms; the base window holds ~10 per key.
const BASE_W = 10 * KEYS;

/** The input: EVENTS records over KEYS keys, a watermark every 100 records. */
export function input(): Element<Ev>[] {
  const out: Element<Ev>[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const h = hash32(7, i);
    const r = h % 100;
    const type = r < 10 ? "A" : r < 20 ? "B" : r < 30 ? "C" : "N";
    const key = (h >>> 8) % KEYS;
    out.push(record<Ev>({ type, key }, i, key));
    // A watermark every 100 records, the default period of the built-in watermark strategies.
    if (i % 100 === 99) out.push(watermark(i));
  }
  out.push(watermark(Number.POSITIVE_INFINITY), { kind: "end" });
  return out;
}

/** CPU time (user + system, all threads of the process: GC helpers included) since `since`, in seconds. */
function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

/** Runs the Gress matcher over `elements`; returns [matches, wall-clock seconds, CPU seconds]. */
export function gress(elements: Element<Ev>[], w: number): [number, number, number] {
  const job = new Job({ name: "bench" });
  const p = pattern<Ev>()
    .begin("a")
    .where((e) => e.type === "A")
    .followedBy("b")
    .where((e) => e.type === "B")
    .followedBy("c")
    .where((e) => e.type === "C")
    .within(w);
  const op = matchElements(job.operator("cep"), p);
  let matches = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  op(from(elements)).subscribe((e) => {
    if (e.kind === "record" && e.value.kind === "match") matches++;
  });
  return [matches, (performance.now() - t0) / 1000, cpuSeconds(c0)];
}

/**
 * The hand-written matcher for exactly this pattern: per key, the start times of partial matches waiting
 * for B and for C. Same semantics: every A starts a match, each waits for the first B, then the first C,
 * and a match must end less than `w` after its A. Records are sorted per key until the watermark passes.
 */
export function handWritten(elements: Element<Ev>[], w: number): [number, number, number] {
  let matches = 0;
  const waitB = new Map<Key, number[]>();
  const waitC = new Map<Key, number[]>();
  const pending: [Key, number, Ev][] = [];
  const onEvent = (key: Key, ts: number, e: Ev): void => {
    const b = waitB.get(key);
    const c = waitC.get(key);
    if (c !== undefined && e.type === "C") {
      for (const start of c) if (ts - start < w) matches++;
      waitC.delete(key);
    }
    if (b !== undefined && e.type === "B") {
      const live = b.filter((start) => ts - start < w);
      if (live.length > 0) {
        const cc = waitC.get(key);
        if (cc === undefined) waitC.set(key, live);
        else cc.push(...live);
      }
      waitB.delete(key);
    }
    if (e.type === "A") {
      const bb = waitB.get(key);
      if (bb === undefined) waitB.set(key, [ts]);
      else bb.push(ts);
    }
  };
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  from(elements).subscribe((el) => {
    if (el.kind === "record") pending.push([el.key!, el.timestamp, el.value]);
    else if (el.kind === "watermark") {
      // Input is in order per key, so the buffer is already sorted: release what the watermark passed.
      let i = 0;
      while (i < pending.length && pending[i]![1] <= el.timestamp) {
        const [k, ts, e] = pending[i]!;
        onEvent(k, ts, e);
        i++;
      }
      pending.splice(0, i);
    }
  });
  return [matches, (performance.now() - t0) / 1000, cpuSeconds(c0)];
}

/**
 * Bytes allocated per event by `work`, from V8's sampling heap profiler (one sample per 4 KiB allocated on
 * average, objects later collected by minor or major GC included): an estimate, to a few percent.
 */
async function allocatedPerEvent(work: () => unknown): Promise<number> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  interface SampleNode {
    selfSize: number;
    children: SampleNode[];
  }
  const total = (n: SampleNode): number => n.children.reduce((s, c) => s + total(c), n.selfSize);
  try {
    await post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    work();
    const { profile } = (await post("HeapProfiler.stopSampling")) as { profile: { head: SampleNode } };
    return total(profile.head) / EVENTS;
  } finally {
    session.disconnect();
  }
}

/** Runs the sweep and prints the table. */
export async function run(): Promise<void> {
  const elements = input();
  console.log(`CEP A→B→C within W, ${KEYS} keys, ${EVENTS} events (70% noise), median of ${ROUNDS} rounds`);
  console.log("ev/s from wall-clock time; cpu: the ratio from the process's CPU time, which a busy machine disturbs less");
  const rows: { mult: number; gr: number; hr: number; gcr: number; hcr: number; matches: number }[] = [];
  for (const mult of [1, 10, 100]) {
    const w = BASE_W * mult;
    const g: number[] = [];
    const h: number[] = [];
    const gc: number[] = [];
    const hc: number[] = [];
    let matches = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const [m1, s1, c1] = gress(elements, w);
      const [m2, s2, c2] = handWritten(elements, w);
      // As the other benchmarks: a run whose result is wrong measures nothing, so it fails.
      if (m1 !== m2) throw new Error(`W = ${w} ms, round ${r + 1}: Gress found ${m1} matches, the hand-written matcher ${m2}; the measurement would be invalid`);
      if (m1 === 0) throw new Error(`W = ${w} ms: no matches at all; the input does not exercise the pattern`);
      g.push(EVENTS / s1);
      h.push(EVENTS / s2);
      gc.push(EVENTS / c1);
      hc.push(EVENTS / c2);
      matches = m1;
    }
    rows.push({ mult, gr: median(g), hr: median(h), gcr: median(gc), hcr: median(hc), matches });
  }
  // Allocation last: the heap profiler is not running (nor has run) while throughput is measured.
  console.log("W        gress ev/s   hand ev/s    gress/hand  cpu g/h  matches  gress B/ev  hand B/ev");
  for (const { mult, gr, hr, gcr, hcr, matches } of rows) {
    const ga = await allocatedPerEvent(() => gress(elements, BASE_W * mult));
    const ha = await allocatedPerEvent(() => handWritten(elements, BASE_W * mult));
    console.log(
      `${String(mult).padStart(3)}×W  ${gr.toExponential(2).padStart(10)}  ${hr.toExponential(2).padStart(10)}  ${(gr / hr).toFixed(3).padStart(10)}  ${(gcr / hcr).toFixed(3).padStart(7)}  ${String(matches).padStart(7)}  ${ga.toFixed(0).padStart(10)}  ${ha.toFixed(0).padStart(9)}`,
    );
  }
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  console.log(`throughput at 100×W / 1×W = ${(last.gr / first.gr).toFixed(2)} (cpu: ${(last.gcr / first.gcr).toFixed(2)})`);
}
