/**
 * Shared benchmark harness: runs a workload and its baseline alternately for several rounds (so machine
 * noise hits both alike), and reports the median events/s of each and the ratio of the medians.
 * @module
 */

/** One measured workload: returns the number of events it processed. */
export type Workload = () => Promise<number> | number;

/** Result of comparing a workload with its baseline. */
export interface Comparison {
  readonly name: string;
  readonly gress: number;
  readonly baseline: number;
  readonly ratio: number;
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function rate(w: Workload): Promise<number> {
  const t0 = performance.now();
  const n = await w();
  return n / ((performance.now() - t0) / 1000);
}

/** Runs `gress` and `baseline` alternately for `rounds` rounds after one warm-up each; prints and returns. */
export async function compare(name: string, gress: Workload, baseline: Workload, rounds = 5): Promise<Comparison> {
  await gress();
  await baseline();
  const g: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    b.push(await rate(baseline));
    g.push(await rate(gress));
  }
  const result = { name, gress: median(g), baseline: median(b), ratio: median(g) / median(b) };
  console.log(
    `${name.padEnd(34)} gress ${fmt(result.gress)} ev/s   baseline ${fmt(result.baseline)} ev/s   ratio ${result.ratio.toFixed(2)}x   (median of ${rounds})`,
  );
  return result;
}

/** Formats events/s with thousands separators. */
export function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
