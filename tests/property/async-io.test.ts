/**
 * Properties of mapAsync / flatMapAsync under random call latencies: the results equal the synchronous map of
 * the same function (as sequences when ordered, as multisets when not, per key for "per-key"), no result
 * crosses a watermark, and never more than `concurrency` calls are in flight. The input is pushed all at once
 * (a source that cannot be paused), so records also wait in the operator for free slots.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Subject } from "rxjs";
import { END, type Element, Job, record, Stream, watermark } from "../../lib/index.ts";

type Step = { readonly kind: "record"; readonly n: number; readonly key: string; readonly delay: number } | { readonly kind: "watermark" };

const steps = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant("record" as const), n: fc.integer({ min: 0, max: 999 }), key: fc.constantFrom("a", "b", "c"), delay: fc.integer({ min: 0, max: 4 }) }) },
    { weight: 1, arbitrary: fc.constant({ kind: "watermark" as const }) },
  ),
  { maxLength: 40 },
);

/** What the function computes, synchronously. */
const f = (n: number): number => n * 3 + 1;

interface Run {
  /** The output, records as "key:value" and watermarks as "|". */
  readonly out: string[];
  readonly maxInFlight: number;
}

/** Runs the steps through mapAsync (records get timestamps 1, 2, ...; a watermark is the last timestamp so far). */
async function runAsync(input: readonly Step[], ordered: boolean | "per-key", concurrency: number, many: boolean): Promise<Run> {
  let inFlight = 0;
  let maxInFlight = 0;
  const call = async (s: { n: number; delay: number }): Promise<number> => {
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    await new Promise((r) => setTimeout(r, s.delay));
    inFlight--;
    return f(s.n);
  };
  const subject = new Subject<Element<Step & { kind: "record" }>>();
  const keyed = new Stream<Step & { kind: "record" }>(new Job(), subject).keyBy((s) => s.key);
  const mapped = many
    ? keyed.flatMapAsync(async (s) => [await call(s), -1], { ordered, concurrency })
    : keyed.mapAsync(call, { ordered, concurrency });
  const out: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    mapped.elements.subscribe({
      next: (e) => {
        if (e.kind === "record") out.push(`${e.key}:${e.value}`);
        else if (e.kind === "watermark") out.push("|");
      },
      error: reject,
      complete: resolve,
    });
  });
  let t = 0;
  for (const s of input) {
    if (s.kind === "record") subject.next(record(s, ++t, s.key));
    else subject.next(watermark(t));
  }
  subject.next(END);
  subject.complete();
  await done;
  return { out, maxInFlight };
}

/** The synchronous reference: the same function applied in input order. */
function reference(input: readonly Step[], many: boolean): string[] {
  return input.flatMap((s) => (s.kind === "watermark" ? ["|"] : many ? [`${s.key}:${f(s.n)}`, `${s.key}:-1`] : [`${s.key}:${f(s.n)}`]));
}

/** Splits an output at its watermarks: the results between two watermarks, one list per segment. */
function segments(out: readonly string[]): string[][] {
  const result: string[][] = [[]];
  for (const x of out) {
    if (x === "|") result.push([]);
    else result[result.length - 1]!.push(x);
  }
  return result;
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();
const perKey = (xs: readonly string[]): Record<string, string[]> => {
  const by: Record<string, string[]> = {};
  for (const x of xs) (by[x.split(":")[0]!] ??= []).push(x);
  return by;
};

describe("mapAsync properties (random latencies)", () => {
  const concurrency = fc.integer({ min: 1, max: 8 });

  it("ordered: the output equals the synchronous map, watermarks included, as a sequence", async () => {
    await fc.assert(
      fc.asyncProperty(steps, concurrency, fc.boolean(), async (input, c, many) => {
        const run = await runAsync(input, true, c, many);
        assert.deepEqual(run.out, reference(input, many));
        assert.ok(run.maxInFlight <= c, `${run.maxInFlight} calls in flight with concurrency ${c}`);
      }),
      { numRuns: 40 },
    );
  });

  it("unordered: between two watermarks, the same results as the synchronous map, as a multiset", async () => {
    await fc.assert(
      fc.asyncProperty(steps, concurrency, fc.boolean(), async (input, c, many) => {
        const run = await runAsync(input, false, c, many);
        const got = segments(run.out);
        const want = segments(reference(input, many));
        assert.equal(got.length, want.length, "the same watermarks");
        for (const [i, seg] of got.entries()) assert.deepEqual(sorted(seg), sorted(want[i]!), `segment ${i}: no result crossed a watermark`);
        assert.ok(run.maxInFlight <= c, `${run.maxInFlight} calls in flight with concurrency ${c}`);
      }),
      { numRuns: 40 },
    );
  });

  it('"per-key": per segment the same multiset, and each key in input order', async () => {
    await fc.assert(
      fc.asyncProperty(steps, concurrency, async (input, c) => {
        const run = await runAsync(input, "per-key", c, false);
        const got = segments(run.out);
        const want = segments(reference(input, false));
        assert.equal(got.length, want.length);
        for (const [i, seg] of got.entries()) assert.deepEqual(sorted(seg), sorted(want[i]!));
        assert.deepEqual(perKey(run.out.filter((x) => x !== "|")), perKey(reference(input, false).filter((x) => x !== "|")));
        assert.ok(run.maxInFlight <= c);
      }),
      { numRuns: 40 },
    );
  });

  it("unordered with slow early calls really reorders (the property above is not vacuous)", async () => {
    const input: Step[] = [
      { kind: "record", n: 1, key: "a", delay: 20 },
      { kind: "record", n: 2, key: "a", delay: 0 },
    ];
    const run = await runAsync(input, false, 2, false);
    assert.deepEqual(run.out, ["a:7", "a:4"]);
  });
});
