import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  boundedOutOfOrderness,
  LATE_DATA,
  sliding,
  tumbling,
  type WindowAssigner,
  type WindowResult,
} from "../../lib/index.ts";
import { reorderWithin, TestDriver, type Timestamped, timestampedEvents } from "../../lib/testing/index.ts";

interface Ev {
  readonly key: string;
  readonly id: number;
}
type Res = WindowResult<string, number[]>;

const evArb: fc.Arbitrary<Ev> = fc.record({ key: fc.constantFrom("a", "b", "c"), id: fc.nat(1000) });

// Small sizes often, so records fall on window edges and an off-by-one in lateness shows.
const sizeArb = fc.oneof(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 80 }));
const assignerArb: fc.Arbitrary<{ label: string; make: () => WindowAssigner<Ev> }> = fc.oneof(
  sizeArb.map((size) => ({ label: `tumbling(${size})`, make: () => tumbling<Ev>(size) })),
  fc
    .tuple(sizeArb, sizeArb)
    .map(([a, b]) => [Math.max(a, b), Math.min(a, b)] as const)
    .map(([size, slide]) => ({ label: `sliding(${size}, ${slide})`, make: () => sliding<Ev>(size, slide) })),
);

/** Runs events (in arrival order) through withTimestamps → keyBy → window → collectAll, to the end. */
function runWindows(events: readonly Timestamped<Ev>[], assigner: WindowAssigner<Ev>, boundMs: number, everyRecords: number) {
  const d = new TestDriver<Timestamped<Ev>, Res>((s) =>
    s
      .withTimestamps(boundedOutOfOrderness(boundMs, { timestamp: (e) => e.timestamp, everyRecords }))
      .map((e) => e.value)
      .keyBy((e) => e.key)
      .window(assigner)
      .aggregateWith<number[], number[]>({
        create: () => [],
        add: (ids, e) => [...ids, e.id],
        merge: (a, b) => [...a, ...b],
        result: (ids) => [...ids].sort((x, y) => x - y),
      }),
  );
  for (const e of events) d.pipeInput(e, 0);
  d.endInput();
  const results = d.readOutput().sort((x, y) => x.key.localeCompare(y.key) || x.start - y.start);
  return { results, late: d.readSideOutput(LATE_DATA) };
}

describe("window properties", () => {
  it("law: any arrival order within the out-of-orderness bound gives the same window results as in-order input (tumbling and sliding)", () => {
    const scenario = fc
      .record({
        events: timestampedEvents(evArb, { maxLength: 40, maxGapMs: 12 }),
        boundMs: fc.integer({ min: 0, max: 30 }),
        everyRecords: fc.integer({ min: 1, max: 5 }),
        assigner: assignerArb,
      })
      .chain(({ events, boundMs, everyRecords, assigner }) => {
        const sorted = [...events].sort((a, b) => a.timestamp - b.timestamp);
        return reorderWithin(sorted, boundMs).map((arrival) => ({ sorted, arrival, boundMs, everyRecords, assigner }));
      });
    fc.assert(
      fc.property(scenario, ({ sorted, arrival, boundMs, everyRecords, assigner }) => {
        const inOrder = runWindows(sorted, assigner.make(), boundMs, everyRecords);
        const shuffled = runWindows(arrival, assigner.make(), boundMs, everyRecords);
        assert.deepEqual(shuffled.late, [], "nothing within the bound is late");
        assert.deepEqual(inOrder.late, []);
        assert.deepEqual(shuffled.results, inOrder.results);
        for (const r of shuffled.results) assert.equal(r.timing, "on-time");
      }),
      { numRuns: 1000 },
    );
  });

  it("law: every record is in a final window result or counted as late (Σ final counts + late side output = input count)", () => {
    const scenario = fc.record({
      // Disorder up to 300 ms against a watermark bound of at most 50 ms: many records are late.
      events: timestampedEvents(fc.constantFrom("a", "b"), { maxLength: 60, maxGapMs: 40, maxDisorderMs: 300 }),
      boundMs: fc.integer({ min: 0, max: 50 }),
      latenessMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 200 })),
      size: fc.integer({ min: 1, max: 100 }),
      everyRecords: fc.integer({ min: 1, max: 4 }),
    });
    fc.assert(
      fc.property(scenario, ({ events, boundMs, latenessMs, size, everyRecords }) => {
        const d = new TestDriver<Timestamped<string>, WindowResult<string, number>>((s) =>
          s
            .withTimestamps(boundedOutOfOrderness(boundMs, { timestamp: (e) => e.timestamp, everyRecords }))
            .keyBy((e) => e.value)
            .window(tumbling(size), { allowedLatenessMs: latenessMs })
            .count(),
        );
        for (const e of events) d.pipeInput(e, 0);
        d.endInput();
        const finals = new Map<string, number>();
        for (const r of d.readOutput()) {
          const id = `${r.key}|${r.start}`;
          const before = finals.get(id) ?? 0;
          assert.ok(r.value > before, "a re-fired result only grows");
          finals.set(id, r.value);
        }
        const late = d.readSideOutput(LATE_DATA).length;
        let inWindows = 0;
        for (const n of finals.values()) inWindows += n;
        assert.equal(inWindows + late, events.length);
        assert.equal(d.job.metrics.operator("window-1").lateRecords, late);
      }),
      { numRuns: 600 },
    );
  });

  it("law: with sliding windows every record is in some final window result or in the late side output, never both", () => {
    const scenario = fc.record({
      events: timestampedEvents(evArb, { maxLength: 50, maxGapMs: 30, maxDisorderMs: 200 }),
      boundMs: fc.integer({ min: 0, max: 40 }),
      latenessMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 150 })),
      assigner: assignerArb,
      everyRecords: fc.integer({ min: 1, max: 4 }),
    });
    fc.assert(
      fc.property(scenario, ({ events, boundMs, latenessMs, assigner, everyRecords }) => {
        const withIds = events.map((e, i) => ({ value: { key: e.value.key, id: i }, timestamp: e.timestamp }));
        const d = new TestDriver<Timestamped<Ev>, WindowResult<string, Ev[]>>((s) =>
          s
            .withTimestamps(boundedOutOfOrderness(boundMs, { timestamp: (e) => e.timestamp, everyRecords }))
            .map((e) => e.value)
            .keyBy((e) => e.key)
            .window(assigner.make(), { allowedLatenessMs: latenessMs })
            .collectAll(),
        );
        for (const e of withIds) d.pipeInput(e, 0);
        d.endInput();
        const finals = new Map<string, number[]>();
        for (const r of d.readOutput()) finals.set(`${r.key}|${r.start}`, r.value.map((e) => e.id));
        const inWindows = new Set([...finals.values()].flat());
        const late = d.readSideOutput(LATE_DATA).map((e) => (e as Ev).id);
        for (const id of late) assert.equal(inWindows.has(id), false, `record ${id} is both late and in a window`);
        assert.deepEqual(
          [...inWindows, ...late].sort((a, b) => a - b),
          withIds.map((e) => e.value.id),
        );
      }),
      { numRuns: 400 },
    );
  });
});
