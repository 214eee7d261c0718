import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type Element, Job, type Source, type SourceContext, VirtualClock } from "../../lib/index.ts";
import { type StrategyParams, strategyOf, strategyParamsArb } from "../support/watermark-strategies.ts";

// Watermarks generated in the source (`job.source(s, { watermarks })`) must be exactly those of a
// `withTimestamps` right after the source: the same records, dead letters and watermarks, in the same order,
// whatever the splits, announcements, idleness, heartbeats and processing time do.

interface Ev {
  readonly at: number;
}
type Op =
  | { readonly kind: "record"; readonly split: string; readonly at: number }
  | { readonly kind: "bad"; readonly split: string }
  | { readonly kind: "advance"; readonly ms: number }
  | { readonly kind: "announce"; readonly splits: readonly string[] };

const splitArb = fc.constantFrom("p0", "p1", "p2");
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("record" as const), split: splitArb, at: fc.integer({ min: 0, max: 5000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("bad" as const), split: splitArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 1500 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("announce" as const), splits: fc.uniqueArray(splitArb, { minLength: 1 }) }) },
);

/** A source the test drives by hand through its context. */
class ManualSource implements Source<Ev> {
  readonly name = "manual";
  ctx: SourceContext<Ev> | undefined;
  readonly opened: Promise<void>;
  #opened: () => void = () => {};
  constructor() {
    this.opened = new Promise<void>((resolve) => (this.#opened = resolve));
  }
  open(ctx: SourceContext<Ev>): void {
    this.ctx = ctx;
    this.#opened();
  }
  pause(): void {}
  resume(): void {}
  close(): void {}
}

function show(e: Element<Ev>): string {
  if (e.kind === "record") return `record ${e.value.at}@${e.timestamp} ${e.split}`;
  if (e.kind === "watermark") return `watermark ${e.timestamp}`;
  if (e.kind === "side") return `side ${e.tag} ${e.reason}`;
  if (e.kind === "splits") return `splits ${e.splits.join(",")}`;
  return e.kind;
}

async function run(place: "source" | "operator", params: StrategyParams, ops: readonly Op[]): Promise<string[]> {
  const clock = new VirtualClock(1_000);
  const job = new Job({ name: "wm", clock });
  const source = new ManualSource();
  const stream = place === "source" ? job.source(source, { watermarks: strategyOf<Ev>(params) }) : job.source(source).withTimestamps(strategyOf<Ev>(params));
  const out: string[] = [];
  let failure: unknown;
  const sub = stream.elements.subscribe({ next: (e) => out.push(show(e)), error: (e: unknown) => (failure = e) });
  await source.opened;
  const ctx = source.ctx!;
  for (const [i, op] of ops.entries()) {
    if (op.kind === "record") ctx.emit({ at: op.at }, i, op.split);
    // A value without a finite `at` is bad input: it must go to dead letters in both placements.
    else if (op.kind === "bad") ctx.emit({ at: Number.NaN }, i, op.split);
    else if (op.kind === "advance") clock.advance(op.ms);
    else ctx.announceSplits(op.splits);
  }
  ctx.end();
  sub.unsubscribe();
  assert.equal(failure, undefined);
  assert.equal(clock.pendingTimers, 0, "the periodic watermark check stops with the stream");
  return out;
}

describe("watermarks generated in the source", () => {
  it("property: the same records, dead letters and watermarks, in the same order, as withTimestamps after the source", async () => {
    await fc.assert(
      fc.asyncProperty(strategyParamsArb, fc.array(opArb, { maxLength: 60 }), async (params, ops) => {
        const inSource = await run("source", params, ops);
        const asOperator = await run("operator", params, ops);
        assert.deepEqual(inSource, asOperator);
        assert.equal(inSource.at(-2), "watermark Infinity", "the end of input closes event time");
        const records = ops.filter((o) => o.kind === "record").length;
        assert.equal(inSource.filter((s) => s.startsWith("record ")).length, records, "every good record comes out");
        const bad = ops.filter((o) => o.kind === "bad").length;
        assert.equal(inSource.filter((s) => s.startsWith("side dead-letter watermarks-1: ")).length, bad, "every bad one is a dead letter");
      }),
      { numRuns: 200 },
    );
  });
});
