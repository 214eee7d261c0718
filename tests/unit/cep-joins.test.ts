import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Subject } from "rxjs";
import { intervalJoin, tableJoin, windowJoin } from "../../cep/index.ts";
import { type Element, END, Job, LATE_DATA, record, Stream, tumbling, VirtualClock, watermark } from "../../lib/index.ts";

interface Row {
  readonly k: string;
  readonly v: string;
}

/** Two hand-driven inputs and the output of a join between them. */
function harness<O>(build: (left: Stream<Row>, right: Stream<Row>) => Stream<O>) {
  const job = new Job({ name: "join-test", clock: new VirtualClock(0) });
  const l = new Subject<Element<Row>>();
  const r = new Subject<Element<Row>>();
  const out: { value: O; timestamp: number }[] = [];
  const late: unknown[] = [];
  build(new Stream<Row>(job, l), new Stream<Row>(job, r)).elements.subscribe((e) => {
    if (e.kind === "record") out.push({ value: e.value, timestamp: e.timestamp });
    if (e.kind === "side" && e.tag === LATE_DATA.id) late.push(e.value);
  });
  const send = (s: Subject<Element<Row>>, v: Row, ts: number): void => s.next(record(v, ts));
  return {
    job,
    left: (v: string, ts: number, k = "x") => send(l, { k, v }, ts),
    right: (v: string, ts: number, k = "x") => send(r, { k, v }, ts),
    watermark: (w: number) => {
      l.next(watermark(w));
      r.next(watermark(w));
    },
    leftWatermark: (w: number) => l.next(watermark(w)),
    end: () => {
      for (const s of [l, r]) {
        s.next(watermark(Number.POSITIVE_INFINITY));
        s.next(END);
        s.complete();
      }
    },
    take: () => out.splice(0),
    late,
  };
}

describe("interval join", () => {
  it("joins a with every b of the same key where a.ts + lower <= b.ts <= a.ts + upper", () => {
    const h = harness((l, r) => intervalJoin(l.keyBy((x) => x.k), r.keyBy((x) => x.k), { lowerMs: -2, upperMs: 3, uid: "ij" }));
    h.left("a1", 10);
    h.right("b-early", 7);
    h.right("b-lo", 8);
    h.right("b-hi", 13);
    h.right("b-late", 14);
    h.right("other-key", 10, "y");
    h.left("a2", 20);
    const got = h.take().map((o) => `${(o.value as { left: Row }).left.v}-${(o.value as { right: Row }).right.v}@${o.timestamp}`);
    assert.deepEqual(got, ["a1-b-lo@10", "a1-b-hi@13"]);
  });

  it("state is removed once the watermark passes what could still match, and late records are side output", () => {
    const h = harness((l, r) => intervalJoin(l.keyBy((x) => x.k), r.keyBy((x) => x.k), { lowerMs: 0, upperMs: 5, uid: "ij" }));
    h.left("a", 10);
    h.right("b", 12);
    const left = h.job.state.table("ij", "left");
    const right = h.job.state.table("ij", "right");
    h.watermark(11);
    assert.equal(right.size, 1, "b still matches an a at 12 (b.ts − lower = 12 > watermark 11)");
    h.watermark(12);
    assert.equal(right.size, 0, "no a at or before 12 can arrive any more");
    h.watermark(14);
    assert.equal(left.size, 1, "a waits until a.ts + upper = 15");
    h.watermark(15);
    assert.equal(left.size, 0);
    assert.equal(right.size, 0);
    h.left("too-late", 15);
    assert.deepEqual(h.late, [{ k: "x", v: "too-late" }]);
  });

  it("the output watermark is the minimum of both inputs'", () => {
    const watermarks: number[] = [];
    const job = new Job({ name: "wm" });
    const l = new Subject<Element<Row>>();
    const r = new Subject<Element<Row>>();
    intervalJoin(new Stream<Row>(job, l).keyBy((x) => x.k), new Stream<Row>(job, r).keyBy((x) => x.k), { lowerMs: 0, upperMs: 1 }).elements.subscribe((e) => {
      if (e.kind === "watermark") watermarks.push(e.timestamp);
    });
    l.next(watermark(10));
    r.next(watermark(5));
    l.next(watermark(20));
    r.next(watermark(30));
    assert.deepEqual(watermarks, [5, 20]);
  });
});

describe("window join", () => {
  it("pairs the records of the same key and window when the window closes", () => {
    const h = harness((l, r) => windowJoin(l.keyBy((x) => x.k), r.keyBy((x) => x.k), tumbling(10), { uid: "wj" }));
    h.left("a1", 1);
    h.left("a2", 5);
    h.right("b1", 9);
    h.right("b2", 10);
    h.left("a3", 12, "y");
    h.watermark(8);
    assert.deepEqual(h.take(), []);
    h.watermark(9);
    assert.deepEqual(
      h.take().map((o) => o.value),
      [
        { left: { k: "x", v: "a1" }, right: { k: "x", v: "b1" }, start: 0, end: 10 },
        { left: { k: "x", v: "a2" }, right: { k: "x", v: "b1" }, start: 0, end: 10 },
      ],
    );
    h.end();
    assert.deepEqual(h.take(), [], "windows with one side only produce nothing");
    assert.equal(h.job.state.table("wj", "left").size + h.job.state.table("wj", "right").size, 0);
  });
});

describe("stream-table join", () => {
  it("joins each record with the table value valid at its timestamp and cleans old versions", () => {
    const h = harness((l, r) => tableJoin(l.keyBy((x) => x.k), r.keyBy((x) => x.k), { uid: "tj", mode: "left", isDelete: (row) => row.v === "DELETE" }));
    h.right("v1", 1);
    h.right("v2", 10);
    h.left("t5", 5);
    h.left("t12", 12);
    h.right("v3", 11); // arrives after t12, but is older than it: it is the version at 12
    h.right("DELETE", 20);
    h.left("t25", 25);
    h.left("t0", 0);
    h.watermark(30);
    assert.deepEqual(
      h.take().map((o) => `${(o.value as { left: Row }).left.v}:${(o.value as { right?: Row }).right?.v ?? "-"}`),
      ["t0:-", "t5:v1", "t12:v3", "t25:-"],
    );
    assert.equal(h.job.state.table("tj", "versions").size, 0, "only versions that could still be used are kept");
    assert.equal(h.job.state.table("tj", "buffer").size, 0);
  });

  it("inner mode drops records without a table value", () => {
    const h = harness((l, r) => tableJoin(l.keyBy((x) => x.k), r.keyBy((x) => x.k)));
    h.left("t1", 1);
    h.right("v", 2);
    h.left("t3", 3);
    h.end();
    assert.deepEqual(h.take().map((o) => (o.value as { left: Row }).left.v), ["t3"]);
  });
});
