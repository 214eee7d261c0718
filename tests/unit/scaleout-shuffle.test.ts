/**
 * The scale-out shuffle (lib/scaleout/shuffle.ts): the repartition record codec and the merge of upstream
 * tasks' watermarks in a downstream task.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isGressError, MAX_WATERMARK, MIN_WATERMARK } from "../../lib/index.ts";
import { decodeShuffleRecord, encodeShuffleKey, encodeShuffleRecord, type ShuffleRecord, UpstreamWatermarks } from "../../lib/scaleout/shuffle.ts";

describe("shuffle record codec", () => {
  it("records, watermarks and ends round-trip; values as structured clone", () => {
    const elements: ShuffleRecord[] = [
      { kind: "record", key: "ann", value: { total: 3n, seen: new Set(["a"]), at: new Date(7), m: new Map([[1, [null]]]) }, timestamp: 1_700_000_000_123 },
      { kind: "record", key: 42, value: null, timestamp: -5 },
      { kind: "record", key: "", value: undefined, timestamp: 0 },
      { kind: "watermark", task: "0_3", watermark: MIN_WATERMARK },
      { kind: "watermark", task: "0_3", watermark: 1_234.5 },
      { kind: "end", task: "1_11" },
    ];
    for (const e of elements) assert.deepEqual(decodeShuffleRecord(encodeShuffleRecord(e)), e);
  });

  it("a value with an own __proto__ property is a BadRecordError naming the key and the path", () => {
    const value = JSON.parse('{"user":{"__proto__":{"admin":true}}}');
    assert.throws(
      () => encodeShuffleRecord({ kind: "record", key: "k1", value, timestamp: 0 }),
      (e: unknown) => isGressError(e, "ERR_BAD_RECORD") && /"k1"/.test((e as Error).message) && /value\.user\.__proto__/.test((e as Error).message),
    );
  });

  it("keys: the UTF-8 of a string, a number tagged so that 1 and '1' differ; -0 is 0", () => {
    assert.deepEqual([...encodeShuffleKey("ab")], [0x61, 0x62]);
    assert.notDeepEqual([...encodeShuffleKey(1)], [...encodeShuffleKey("1")]);
    assert.deepEqual([...encodeShuffleKey(-0)], [...encodeShuffleKey(0)]);
    assert.deepEqual([...encodeShuffleKey(1)], [0xff, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
  });

  it("bytes it did not write are a SourceError naming where they came from", () => {
    for (const [bytes, why] of [
      [new Uint8Array([0x92, 0x01]), /not msgpack/],
      [new Uint8Array([0x01]), /not an array/],
      [encodeArray([7, "x"]), /unknown shape \(tag 7, 2 fields\)/],
      [encodeArray([1, "0_1"]), /unknown shape \(tag 1, 2 fields\)/],
    ] as const) {
      assert.throws(
        () => decodeShuffleRecord(bytes, "gress-j-keyBy-2-repartition-3 offset 9"),
        (e: unknown) => isGressError(e, "ERR_SOURCE") && /gress-j-keyBy-2-repartition-3 offset 9 is not a Gress shuffle record/.test((e as Error).message) && why.test((e as Error).message),
      );
    }
  });
});

/** msgpack fixarray of small ints and short strings (enough for the malformed shapes above). */
function encodeArray(items: (number | string)[]): Uint8Array {
  const out = [0x90 | items.length];
  for (const x of items) {
    if (typeof x === "number") out.push(x);
    else out.push(0xa0 | x.length, ...new TextEncoder().encode(x));
  }
  return new Uint8Array(out);
}

describe("UpstreamWatermarks", () => {
  it("holds until every upstream task has reported, then gives the minimum; never goes back", () => {
    const w = new UpstreamWatermarks(["0_0", "0_1", "0_2"], undefined, 0);
    assert.equal(w.onWatermark("0_0", 100, 1), undefined);
    assert.equal(w.onWatermark("0_1", 50, 2), undefined);
    assert.equal(w.onWatermark("0_2", 70, 3), 50);
    assert.equal(w.onWatermark("0_1", 200, 4), 70);
    assert.equal(w.onWatermark("0_2", 60, 5), undefined); // lower than it reported: ignored
    assert.equal(w.current, 70);
    assert.equal(w.onWatermark("0_2", 300, 6), 100);
  });

  it("leaves idle upstream tasks out, holds while all are idle, and takes one back when it reports", () => {
    const w = new UpstreamWatermarks(["a", "b"], 1000, 0);
    w.onWatermark("a", 10, 0);
    assert.equal(w.onWatermark("b", 500, 100), 10);
    assert.equal(w.tick(999), undefined);
    assert.equal(w.tick(1000), 500); // "a" idle since 0
    assert.equal(w.tick(5000), undefined); // both idle: hold
    assert.equal(w.onWatermark("a", 20, 5001), undefined); // "a" back, but behind: the watermark does not go back
    assert.equal(w.onWatermark("a", 800, 5002), 800); // "b" is idle: "a" alone
  });

  it("an ended upstream task no longer holds back; END from every one is the end (+∞)", () => {
    const w = new UpstreamWatermarks(["a", "b"], undefined, 0);
    assert.equal(w.onEnd("a", 1), undefined); // "b" has not reported
    assert.equal(w.onWatermark("b", 40, 2), 40);
    assert.equal(w.onWatermark("a", 900, 3), undefined); // after its END: ignored
    assert.equal(w.ended, false);
    assert.equal(w.onEnd("b", 4), MAX_WATERMARK);
    assert.equal(w.ended, true);
  });

  it("snapshot and restore keep the watermarks and ends, and give every upstream task a fresh idle window", () => {
    const w = new UpstreamWatermarks(["a", "b", "c"], 1000, 0);
    w.onWatermark("a", 10, 0);
    w.onWatermark("b", 30, 0);
    w.onEnd("c", 0);
    assert.equal(w.current, 10);
    const state = structuredClone(w.snapshot());
    assert.deepEqual(state, { current: 10, upstream: { a: { watermark: 10, ended: false }, b: { watermark: 30, ended: false }, c: { watermark: null, ended: true } } });
    const r = UpstreamWatermarks.restore(state, 1000, 50_000);
    assert.equal(r.current, 10);
    assert.equal(r.tick(50_999), undefined); // "a" is not idle yet on the new worker
    assert.equal(r.onWatermark("b", 40, 50_500), undefined); // "a" (10) still holds it back
    assert.equal(r.tick(51_000), 40); // "a" idle after 1000 ms without a watermark
  });

  it("an element of an unknown upstream task is a SourceError naming it", () => {
    const w = new UpstreamWatermarks(["0_0"], undefined, 0);
    assert.throws(
      () => w.onWatermark("9_9", 1, 0),
      (e: unknown) => isGressError(e, "ERR_SOURCE") && /"9_9"/.test((e as Error).message),
    );
  });
});
