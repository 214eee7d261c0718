/**
 * Async I/O benchmark (issue 20): every record calls a function that resolves after a fixed delay (5 ms),
 * with up to 1,000 calls in flight. Gress' `mapAsync` (unordered, then ordered) against a hand-written RxJS
 * `mergeMap(fn, 1000)` doing the same calls on the same input in the same run; and the ordered mode's cost
 * against the unordered one. With 1,000 calls of 5 ms in flight the ceiling is 200,000 calls/s for both.
 *
 * mergeMap has no backpressure: `from(array)` hands it the whole input at once, and it buffers what it cannot
 * start yet (in an array it shifts from). For scale, a last line compares with a bare promise pump (a
 * counter and a loop, no RxJS, no ordering, no checkpoints): the cost of the call itself and the timers.
 *
 * Run: `npm run bench -- async`
 * @module
 */
import { from, mergeMap, type Observable } from "rxjs";
import { Job, sinkFn } from "../lib/index.ts";
import { compare, fmt } from "./harness.ts";

const N = 50_000;
const DELAY_MS = 5;
const CONCURRENCY = 1_000;

/** The external call: resolves with a value derived from the input after DELAY_MS. */
function call(x: number): Promise<number> {
  return new Promise((resolve) => setTimeout(resolve, DELAY_MS, x * 2 + 1));
}

function drain<T>(obs: Observable<T>): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    obs.subscribe({ next: () => void n++, error: reject, complete: () => resolve(n) });
  });
}

/** Throws unless a workload produced one output per input (so every call was made and awaited). */
function check(what: string, got: number): void {
  if (got !== N) throw new Error(`${what}: ${got} outputs, expected ${N}; the measurement would be invalid`);
}

export async function run(): Promise<void> {
  const input = Array.from({ length: N }, (_, i) => i);
  console.log(`${fmt(N)} records, each a call resolving after ${DELAY_MS} ms, ${fmt(CONCURRENCY)} in flight`);
  let sum = 0;
  const gress = (ordered: boolean) => async (): Promise<number> => {
    const job = new Job({ name: "bench-async" });
    let out = 0;
    job
      .fromIterable(input)
      .mapAsync(call, { concurrency: CONCURRENCY, ordered })
      .sinkTo(
        sinkFn("count", (v) => {
          out++;
          sum += v;
        }),
      );
    await job.run();
    check(`gress mapAsync (${ordered ? "ordered" : "unordered"})`, out);
    return N;
  };
  const rx = async (): Promise<number> => {
    check("rx mergeMap", await drain(from(input).pipe(mergeMap(call, CONCURRENCY))));
    return N;
  };
  const pump = async (): Promise<number> => {
    let inFlight = 0;
    let next = 0;
    let done = 0;
    await new Promise<void>((resolve) => {
      const fill = (): void => {
        while (inFlight < CONCURRENCY && next < N) {
          inFlight++;
          void call(input[next++]!).then((v) => {
            sum += v;
            inFlight--;
            if (++done === N) resolve();
            else fill();
          });
        }
      };
      fill();
    });
    check("promise pump", done);
    return N;
  };
  const results = [
    await compare("mapAsync unordered vs mergeMap", gress(false), rx),
    await compare("mapAsync ordered vs mergeMap", gress(true), rx),
    await compare("mapAsync ordered vs unordered", gress(true), gress(false)),
    await compare("mapAsync unordered vs promise pump", gress(false), pump),
  ];
  if (sum === 0) throw new Error("no output");
  const [unordered, ordered] = results;
  console.log(
    `target: unordered ≥ 0.8× mergeMap: ${unordered!.ratio.toFixed(2)}× · ordered ≥ 0.8× mergeMap: ${ordered!.ratio.toFixed(2)}×`,
  );
}
