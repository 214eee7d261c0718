/**
 * Laws of the shuffle: the per-upstream-task watermark merge against a model that recomputes the merged
 * watermark from the whole history at every step; snapshot/restore at any point changes nothing (without
 * idleness, which restarts on restore); and the record codec round-trips any element.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { MAX_WATERMARK } from "../../lib/index.ts";
import { decodeShuffleRecord, encodeShuffleRecord, type ShuffleRecord, UpstreamWatermarks } from "../../lib/scaleout/shuffle.ts";

type Ev = { readonly kind: "wm"; readonly task: number; readonly w: number; readonly dt: number } | { readonly kind: "end"; readonly task: number; readonly dt: number } | { readonly kind: "tick"; readonly dt: number };

const evArb = (tasks: number): fc.Arbitrary<Ev> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("wm" as const), task: fc.nat(tasks - 1), w: fc.integer({ min: -50, max: 1000 }), dt: fc.nat(400) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("end" as const), task: fc.nat(tasks - 1), dt: fc.nat(400) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("tick" as const), dt: fc.nat(1500) }) },
  );
const scenarioArb = fc.integer({ min: 1, max: 4 }).chain((tasks) =>
  fc.record({
    tasks: fc.constant(tasks),
    idle: fc.option(fc.integer({ min: 1, max: 2000 }), { nil: undefined }),
    events: fc.array(evArb(tasks), { maxLength: 60 }),
  }),
);

const id = (t: number): string => `0_${t}`;

/**
 * The model: after event i (at time now), from the history alone — each task's highest watermark and the time
 * of its last one, both before its first END — the candidate is: nothing while a task that has not ended never
 * reported; +∞ when all ended; nothing when all that remain are idle; else the minimum of the active ones.
 * The output is the candidate when it is above every earlier output.
 */
function model(tasks: number, idle: number | undefined, events: readonly Ev[]): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  let emitted = Number.NEGATIVE_INFINITY;
  let now = 0;
  const timed = events.map((e) => ({ e, at: (now += e.dt) }));
  for (let i = 0; i < timed.length; i++) {
    const at = timed[i]!.at;
    const history = timed.slice(0, i + 1);
    let candidate: number | undefined;
    let waiting = false;
    const active: number[] = [];
    let open = 0;
    for (let t = 0; t < tasks; t++) {
      const endAt = history.findIndex(({ e }) => e.kind === "end" && e.task === t);
      const before = endAt < 0 ? history : history.slice(0, endAt);
      const wms = before.filter(({ e }) => e.kind === "wm" && e.task === t);
      if (endAt >= 0) continue;
      open++;
      if (wms.length === 0) {
        waiting = true;
        continue;
      }
      const lastAt = wms[wms.length - 1]!.at;
      if (idle !== undefined && at - lastAt >= idle) continue;
      active.push(Math.max(...wms.map(({ e }) => (e as { w: number }).w)));
    }
    if (waiting) candidate = undefined;
    else if (open === 0) candidate = MAX_WATERMARK;
    else if (active.length === 0) candidate = undefined;
    else candidate = Math.min(...active);
    if (candidate !== undefined && candidate > emitted) {
      emitted = candidate;
      out.push(candidate);
    } else out.push(undefined);
  }
  return out;
}

function step(w: UpstreamWatermarks, e: Ev, now: number): number | undefined {
  if (e.kind === "wm") return w.onWatermark(id(e.task), e.w, now);
  if (e.kind === "end") return w.onEnd(id(e.task), now);
  return w.tick(now);
}

describe("shuffle laws", () => {
  it("law: the merged watermark equals the model at every step (minimum over reported, active, open upstream tasks; monotone; +∞ at the end)", () => {
    fc.assert(
      fc.property(scenarioArb, ({ tasks, idle, events }) => {
        const w = new UpstreamWatermarks(
          Array.from({ length: tasks }, (_, t) => id(t)),
          idle,
          0,
        );
        let now = 0;
        const got = events.map((e) => step(w, e, (now += e.dt)));
        assert.deepEqual(got, model(tasks, idle, events));
        assert.equal(w.ended, got.includes(MAX_WATERMARK));
      }),
      { numRuns: 500 },
    );
  });

  it("law: without idleness, a snapshot and restore at any step changes no later output", () => {
    fc.assert(
      fc.property(
        scenarioArb.chain((s) => fc.tuple(fc.constant(s), fc.nat(s.events.length))),
        ([{ tasks, events }, cut]) => {
          const ids = Array.from({ length: tasks }, (_, t) => id(t));
          const whole = new UpstreamWatermarks(ids, undefined, 0);
          let a = new UpstreamWatermarks(ids, undefined, 0);
          let now = 0;
          for (const [i, e] of events.entries()) {
            now += e.dt;
            if (i === cut) a = UpstreamWatermarks.restore(structuredClone(a.snapshot()), undefined, now);
            assert.equal(step(a, e, now), step(whole, e, now), `event ${i}`);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("law: every shuffle element round-trips through its bytes", () => {
    const key = fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true }).filter((x) => !Object.is(x, -0)));
    // JSON values as a JSON source would give them (plain prototypes), without the "__proto__" keys refused on encode.
    const value = fc
      .jsonValue()
      .map((v) => JSON.parse(JSON.stringify(v)) as unknown)
      .filter((v) => !JSON.stringify(v).includes('"__proto__"'));
    const plain = { noNullPrototype: true } as const;
    const element: fc.Arbitrary<ShuffleRecord> = fc.oneof(
      fc.record({ kind: fc.constant("record" as const), key, value, timestamp: fc.integer() }, plain),
      fc.record({ kind: fc.constant("watermark" as const), task: fc.string(), watermark: fc.double({ noNaN: true }).filter((x) => !Object.is(x, -0)) }, plain),
      fc.record({ kind: fc.constant("end" as const), task: fc.string() }, plain),
    );
    fc.assert(
      fc.property(element, (e) => {
        assert.deepStrictEqual(decodeShuffleRecord(encodeShuffleRecord(e)), e);
      }),
      { numRuns: 500 },
    );
  });
});
