import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { lastValueFrom, toArray } from "rxjs";
import {
  boundedOutOfOrderness,
  type GeneratorSource,
  generator,
  hash32,
  Job,
  LATE_DATA,
  type NexmarkEvent,
  nexmark,
  type Positions,
  rides,
  type StreamRecord,
  sinkFn,
  tumbling,
  uniform,
  VirtualClock,
} from "../../lib/index.ts";

/** Runs a generator source to its end in a fresh job and returns its records. */
async function drain<T>(source: GeneratorSource<T>, from?: Positions, clock?: VirtualClock): Promise<StreamRecord<T>[]> {
  const job = new Job({ name: "gen", ...(clock ? { clock } : {}) });
  return lastValueFrom(
    job
      .source(source, from ? { from } : {})
      .records()
      .pipe(toArray()),
  );
}

describe("generator source", () => {
  it("the same seed gives the same events; a different seed gives different ones", async () => {
    const make = (seed: number) => nexmark({ seed, count: 500 });
    const a = await drain(make(7));
    const b = await drain(make(7));
    const c = await drain(make(8));
    assert.equal(a.length, 500);
    assert.deepEqual(a, b);
    assert.notDeepEqual(
      a.map((r) => r.value),
      c.map((r) => r.value),
    );
  });

  it("event(i) is exactly the i-th emitted record", async () => {
    const src = rides({ seed: 3, count: 200, splits: 3, maxDelayMs: 500 });
    const recs = await drain(src);
    for (const i of [0, 1, 57, 199]) {
      const e = src.event(i);
      assert.deepEqual([recs[i]?.value, recs[i]?.timestamp, recs[i]?.split], [e.value, e.timestamp, e.split]);
    }
  });

  it("seeking to a position replays exactly the tail, and positions() reports the next index", async () => {
    const full = await drain(nexmark({ seed: 11, count: 300 }));
    const resumed = nexmark({ seed: 11, count: 300 });
    const tail = await drain(resumed, { nexmark: 123 });
    assert.deepEqual(tail, full.slice(123));
    assert.deepEqual(resumed.positions(), { nexmark: 300 });
  });

  it("rejects a position that is not a non-negative integer", async () => {
    await assert.rejects(drain(nexmark({ count: 10 }), { nexmark: -1 }), /position must be a non-negative integer/);
  });

  it("event time advances by 1000/eventsPerSecond per event from startTime", async () => {
    const recs = await drain(generator({ count: 4, startTime: 1_000, eventsPerSecond: 4, make: (i) => i }));
    assert.deepEqual(
      recs.map((r) => r.timestamp),
      [1_000, 1_250, 1_500, 1_750],
    );
  });

  it("disorder stays within maxDelayMs", async () => {
    const recs = await drain(generator({ count: 2000, maxDelayMs: 300, make: (i) => i }));
    let max = Number.NEGATIVE_INFINITY;
    let worst = 0;
    for (const r of recs) {
      worst = Math.max(worst, max - r.timestamp);
      max = Math.max(max, r.timestamp);
    }
    assert.ok(worst > 0, "some disorder is produced");
    assert.ok(worst <= 300, `disorder ${worst} within the bound`);
  });

  it("spreads events over splits round-robin", async () => {
    const recs = await drain(generator({ name: "g", count: 6, splits: 3, make: (i) => i }));
    assert.deepEqual(
      recs.map((r) => r.split),
      ["g-0", "g-1", "g-2", "g-0", "g-1", "g-2"],
    );
  });

  it("nexmark keeps the 1:3:46 person:auction:bid proportion", async () => {
    const recs = await drain(nexmark({ count: 5000 }));
    const counts: Record<NexmarkEvent["type"], number> = { person: 0, auction: 0, bid: 0 };
    for (const r of recs) counts[r.value.type]++;
    assert.deepEqual(counts, { person: 100, auction: 300, bid: 4600 });
  });

  it("ratePerSecond throttles emission on the job's clock", async () => {
    const clock = new VirtualClock(0);
    const job = new Job({ name: "rate", clock });
    const got: number[] = [];
    job
      .source(generator({ count: 100, ratePerSecond: 10, make: (i) => i }))
      .toObservable()
      .subscribe((v) => got.push(v));
    const settle = () => new Promise((r) => setTimeout(r, 5));
    await settle();
    assert.equal(got.length, 0, "nothing is due at time 0");
    clock.advance(1000);
    await settle();
    assert.equal(got.length, 10);
    clock.advance(500);
    await settle();
    assert.equal(got.length, 15);
  });

  it("hash32 and uniform are pure functions of (seed, index, salt)", () => {
    assert.equal(hash32(1, 2, 3), hash32(1, 2, 3));
    assert.notEqual(hash32(1, 2, 3), hash32(1, 2, 4));
    const u = uniform(9, 9);
    assert.ok(u >= 0 && u < 1);
  });

  it("events out of order within maxDelayMs over several splits are never late for a watermark with that bound", async () => {
    const job = new Job({ name: "gen-windows" });
    const windowed = job
      .source(generator({ count: 5000, splits: 4, maxDelayMs: 200, make: (i) => i }))
      .withTimestamps(boundedOutOfOrderness(200, { everyRecords: 7 }))
      .keyBy((i) => i % 3)
      .window(tumbling(1000))
      .count();
    let total = 0;
    let late = 0;
    windowed.sinkTo(sinkFn("counts", (r) => void (total += r.value)));
    windowed.sideOutput(LATE_DATA).sinkTo(sinkFn("late", () => void late++));
    await job.run();
    assert.equal(late, 0);
    assert.equal(total, 5000);
  });
});
