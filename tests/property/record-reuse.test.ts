import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { boundedOutOfOrderness, type Element, Job, LATE_DATA, operate, session, sinkFn, sliding, type Stream, tumbling } from "../../lib/index.ts";

// Sources refill one record object when the chain after them is transient (see Downstream.transient in
// lib/operate.ts). Whether they do must change no result: each pipeline runs once as is, where the source
// reuses its records, and once behind a pass-through operator that makes no promise, where it does not.

interface Ev {
  readonly k: number;
  readonly v: number;
  readonly at: number;
}
const eventsArb = fc.array(
  fc.record({ k: fc.integer({ min: 0, max: 3 }), v: fc.integer({ min: -50, max: 50 }), at: fc.integer({ min: 0, max: 3_000 }) }),
  { maxLength: 80 },
);

/** Passes every element on and promises nothing about the records: the source then makes a new one per record. */
const opaque = operate<Element<Ev>, Element<Ev>>((down) => ({ next: (e) => down.next(e) }));

const pipelines: Record<string, (s: Stream<Ev>) => Stream<unknown>> = {
  "map, keyBy, tumbling count": (s) =>
    s
      .withTimestamps(boundedOutOfOrderness(100, { timestamp: (e) => e.at, everyRecords: 3 }))
      .map((e) => ({ ...e, v: e.v * 2 }))
      .keyBy((e) => e.k)
      .window(tumbling(500), { allowedLatenessMs: 200 })
      .count(),
  "filter, flatMap, sliding sum": (s) =>
    s
      .withTimestamps(boundedOutOfOrderness(50, { timestamp: (e) => e.at, everyRecords: 1 }))
      .filter((e) => e.v !== 0)
      .flatMap((e) => (e.v > 0 ? [e, e] : [e]))
      .keyBy((e) => e.k)
      .window(sliding(600, 200))
      .sum((e) => e.v),
  "keyBy, session windows with lateness": (s) =>
    s
      .withTimestamps(boundedOutOfOrderness(100, { timestamp: (e) => e.at, everyRecords: 2 }))
      .keyBy((e) => e.k)
      .window(session({ gapMs: 150 }), { allowedLatenessMs: 100 })
      .sum((e) => e.v),
  "keyBy, process with state and timers": (s) =>
    s
      .withTimestamps(boundedOutOfOrderness(0, { timestamp: (e) => e.at, everyRecords: 3 }))
      .keyBy((e) => e.k)
      .process<string>({
        processElement(e, ctx) {
          const seen = ctx.state.list<number>("seen");
          seen.add(e.v);
          ctx.timers.registerEventTime(ctx.timestamp + 100);
          ctx.emit(`${ctx.key}:${e.v}@${ctx.timestamp}`);
        },
        onTimer(t, _domain, ctx) {
          ctx.emit(`${ctx.key} timer ${t}: ${ctx.state.list<number>("seen").get().join(",")}`);
        },
      }),
  "tap, keyBy, tumbling collect": (s) =>
    s
      .withTimestamps(boundedOutOfOrderness(0, { timestamp: (e) => e.at, everyRecords: 2 }))
      .tap(() => {})
      .keyBy((e) => e.k)
      .window(tumbling(300))
      .collectAll(),
};

async function run(events: readonly Ev[], pipeline: (s: Stream<Ev>) => Stream<unknown>, reuse: boolean): Promise<unknown[]> {
  const job = new Job({ name: "reuse" });
  const input = job.fromIterable(events, { timestamp: (e) => e.at });
  const out = pipeline(reuse ? input : input.transform(opaque));
  const results: unknown[] = [];
  out.sinkTo(sinkFn("out", (r) => void results.push(r)));
  out.sideOutput(LATE_DATA).sinkTo(sinkFn("late", (r) => void results.push({ late: r })));
  await job.run();
  return results;
}

describe("record reuse", () => {
  for (const [name, pipeline] of Object.entries(pipelines)) {
    it(`property: ${name} gives the same results whether or not the source reuses its records`, async () => {
      await fc.assert(
        fc.asyncProperty(eventsArb, async (events) => {
          assert.deepEqual(await run(events, pipeline, true), await run(events, pipeline, false));
        }),
        { numRuns: 200 },
      );
    });
  }
});
