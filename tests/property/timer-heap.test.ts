import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type Timer, TimerHeap } from "../../lib/timers.ts";

// A random interleaving of pushes (with few distinct times, so that times repeat) and pops.
const operations = fc.array(fc.oneof(fc.integer({ min: -5, max: 20 }).map((time) => ({ push: time })), fc.constant({ pop: true as const })), {
  maxLength: 200,
});

describe("TimerHeap", () => {
  it("law: pops the earliest time first, timers of equal time in the order they were pushed, and counts exactly", () => {
    fc.assert(
      fc.property(operations, (ops) => {
        const heap = new TimerHeap<Timer>();
        // Model: a list kept sorted by time, stable for equal times.
        const model: Timer[] = [];
        let n = 0;
        for (const op of ops) {
          if ("push" in op) {
            const t: Timer = { time: op.push, key: n++, namespace: "" };
            heap.push(t);
            let i = model.length;
            while (i > 0 && model[i - 1]!.time > t.time) i--;
            model.splice(i, 0, t);
          } else {
            assert.equal(heap.peek(), model[0]);
            assert.equal(heap.pop(), model.shift());
          }
          assert.equal(heap.size, model.length);
        }
        const rest: Timer[] = [];
        for (let t = heap.pop(); t !== undefined; t = heap.pop()) rest.push(t);
        assert.deepEqual(rest, model);
        assert.equal(heap.size, 0);
        assert.equal(heap.peek(), undefined);
      }),
      { numRuns: 300 },
    );
  });
});
