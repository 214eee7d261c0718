import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { maxDisorder, reorderWithin, timestampedEvents } from "../../lib/testing/index.ts";

describe("testing arbitraries", () => {
  it("law: timestampedEvents never arrive more than maxDisorderMs behind an earlier arrival", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 500 }).chain((bound) =>
          timestampedEvents(fc.nat(), { maxLength: 60, maxGapMs: 100, maxDisorderMs: bound }).map((events) => ({ bound, events })),
        ),
        ({ bound, events }) => {
          assert.ok(maxDisorder(events) <= bound, `disorder ${maxDisorder(events)} > ${bound}`);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("law: reorderWithin is a permutation whose disorder stays within the bound", () => {
    const scenario = fc
      .record({
        timestamps: fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 60 }),
        bound: fc.integer({ min: 0, max: 200 }),
      })
      .chain(({ timestamps, bound }) => {
        const sorted = timestamps.sort((a, b) => a - b).map((timestamp, value) => ({ value, timestamp }));
        return reorderWithin(sorted, bound).map((arrival) => ({ sorted, arrival, bound }));
      });
    fc.assert(
      fc.property(scenario, ({ sorted, arrival, bound }) => {
        assert.ok(maxDisorder(arrival) <= bound);
        assert.deepEqual(
          arrival.map((e) => e.value).sort((a, b) => a - b),
          sorted.map((e) => e.value),
        );
      }),
      { numRuns: 200 },
    );
  });
});
