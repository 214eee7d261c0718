import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { boundedOutOfOrderness, LATE_DATA, session, type WindowResult } from "../../lib/index.ts";
import { reorderWithin, TestDriver, type Timestamped } from "../../lib/testing/index.ts";

interface Ev {
  readonly key: string;
  readonly gap: number;
  readonly id: number;
}
interface Row {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly ids: number[];
}

/**
 * The reference: sort by time, group by key, and sweep. A record's window is [t, t + gap); windows that
 * touch or overlap belong to one session, so a record joins the current session when t ≤ its end.
 */
function referenceSessions(events: readonly Timestamped<Ev>[]): Row[] {
  const byKey = new Map<string, Timestamped<Ev>[]>();
  for (const e of events) byKey.set(e.value.key, [...(byKey.get(e.value.key) ?? []), e]);
  const rows: Row[] = [];
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.timestamp - b.timestamp);
    let cur: { start: number; end: number; ids: number[] } | undefined;
    for (const e of list) {
      const end = e.timestamp + e.value.gap;
      if (cur !== undefined && e.timestamp <= cur.end) {
        cur.end = Math.max(cur.end, end);
        cur.ids.push(e.value.id);
      } else {
        if (cur !== undefined) rows.push({ key, ...cur });
        cur = { start: e.timestamp, end, ids: [e.value.id] };
      }
    }
    if (cur !== undefined) rows.push({ key, ...cur });
  }
  return normalise(rows);
}

function normalise(rows: readonly Row[]): Row[] {
  return rows
    .map((r) => ({ key: r.key, start: r.start, end: r.end, ids: [...r.ids].sort((a, b) => a - b) }))
    .sort((a, b) => a.key.localeCompare(b.key) || a.start - b.start);
}

const eventsArb = (fixedGap: number | undefined): fc.Arbitrary<Timestamped<Ev>[]> =>
  fc
    .array(
      fc.record({
        key: fc.constantFrom("a", "b", "c"),
        gap: fixedGap === undefined ? fc.integer({ min: 1, max: 40 }) : fc.constant(fixedGap),
        timestamp: fc.integer({ min: 0, max: 400 }),
      }),
      { maxLength: 40 },
    )
    .map((rows) => rows.map((r, id) => ({ value: { key: r.key, gap: r.gap, id }, timestamp: r.timestamp })));

describe("session window properties", () => {
  it("law: session windows (fixed or dynamic gap, any arrival order within the bound) equal the sort-group-split reference model", () => {
    const scenario = fc
      .record({
        fixedGap: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }),
        boundMs: fc.integer({ min: 0, max: 50 }),
        everyRecords: fc.integer({ min: 1, max: 4 }),
      })
      .chain((p) =>
        eventsArb(p.fixedGap).chain((events) =>
          reorderWithin(
            [...events].sort((a, b) => a.timestamp - b.timestamp),
            p.boundMs,
          ).map((arrival) => ({ ...p, events, arrival })),
        ),
      );
    fc.assert(
      fc.property(scenario, ({ fixedGap, boundMs, everyRecords, events, arrival }) => {
        const d = new TestDriver<Timestamped<Ev>, WindowResult<string, number[]>>((s) =>
          s
            // One more millisecond of watermark delay than the disorder: a record exactly at a session's
            // end may then still merge into it (Flink, too, purges a session once the watermark reaches
            // end − 1, and a record at `end` would open a new one).
            .withTimestamps(boundedOutOfOrderness(boundMs + 1, { timestamp: (e) => e.timestamp, everyRecords }))
            .map((e) => e.value)
            .keyBy((e) => e.key)
            .window(fixedGap === undefined ? session<Ev>({ gapOf: (e) => e.gap }) : session<Ev>({ gapMs: fixedGap }))
            .aggregateWith<number[], number[]>({
              create: () => [],
              add: (ids, e) => [...ids, e.id],
              merge: (a, b) => [...a, ...b],
              result: (ids) => ids,
            }),
        );
        for (const e of arrival) d.pipeInput(e, 0);
        d.endInput();
        assert.deepEqual(d.readSideOutput(LATE_DATA), []);
        const out = d.readOutput();
        for (const r of out) assert.equal(r.timing, "on-time");
        assert.deepEqual(normalise(out.map((r) => ({ key: r.key, start: r.start, end: r.end, ids: r.value }))), referenceSessions(events));
      }),
      { numRuns: 1000 },
    );
  });
});
