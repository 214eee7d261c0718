import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isGressError, type ProcessFunction, type StateOptions } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { type Ev, ev, processDriver } from "../support/keyed-driver.ts";


describe("ValueState", () => {
  it("keeps one value per key", () => {
    const d = processDriver<[string, number]>({
      processElement(e, ctx) {
        const total = ctx.state.value<number>("total");
        const next = (total.value() ?? 0) + e.v;
        total.update(next);
        ctx.emit([ctx.key, next]);
      },
    });
    d.pipeInput(ev("a", 1), 1).pipeInput(ev("b", 10), 2).pipeInput(ev("a", 2), 3).pipeInput(ev("b", 5), 4);
    assert.deepEqual(d.readOutput(), [
      ["a", 1],
      ["b", 10],
      ["a", 3],
      ["b", 15],
    ]);
  });

  it("clear() removes the current key's value only", () => {
    const d = processDriver<number | null>({
      processElement(e, ctx) {
        const s = ctx.state.value<number>("s");
        if (e.v < 0) s.clear();
        else if (e.v > 0) s.update(e.v);
        ctx.emit(s.value() ?? null);
      },
    });
    d.pipeInput(ev("a", 1), 1).pipeInput(ev("b", 2), 1).pipeInput(ev("a", -1), 1).pipeInput(ev("b", 0), 1).pipeInput(ev("a", 0), 1);
    assert.deepEqual(d.readOutput(), [1, 2, null, 2, null]);
  });

  it("state with the same name in two process operators is separate", () => {
    const counting: ProcessFunction<Ev, string, Ev> = {
      processElement(e, ctx) {
        const n = ctx.state.value<number>("n");
        n.update((n.value() ?? 0) + 1);
        ctx.emit({ k: e.k, v: n.value() ?? 0 });
      },
    };
    const d = new TestDriver<Ev, Ev>((s) =>
      s
        .keyBy((e) => e.k)
        .process(counting)
        .filter((e) => e.v === 1)
        .keyBy((e) => e.k)
        .process(counting),
    );
    d.pipeInput(ev("a"), 1).pipeInput(ev("a"), 2);
    assert.deepEqual(d.readOutput(), [{ k: "a", v: 1 }]);
  });
});

describe("MapState", () => {
  it("stores entries per key; number and string map keys stay distinct", () => {
    const d = processDriver<[string | number, string][]>({
      processElement(e, ctx) {
        const m = ctx.state.map<string | number, string>("m");
        m.put(e.v, `num${e.v}`);
        m.put(String(e.v), `str${e.v}`);
        ctx.emit(m.entries().sort((x, y) => String(x[1]).localeCompare(String(y[1]))));
      },
    });
    d.pipeInput(ev("a", 1), 1).pipeInput(ev("b", 2), 1);
    assert.deepEqual(d.readOutput(), [
      [
        [1, "num1"],
        ["1", "str1"],
      ],
      [
        [2, "num2"],
        ["2", "str2"],
      ],
    ]);
  });

  it("get, has, delete, keys and clear", () => {
    const d = processDriver<unknown>({
      processElement(_e, ctx) {
        const m = ctx.state.map<string, number>("m");
        m.put("x", 1);
        m.put("y", 2);
        m.put("x", 3);
        const before = { x: m.get("x"), hasY: m.has("y"), keys: m.keys().sort() };
        m.delete("y");
        const afterDelete = { hasY: m.has("y"), keys: m.keys() };
        m.clear();
        ctx.emit({ before, afterDelete, afterClear: m.entries() });
      },
    });
    d.pipeInput(ev("a"), 1);
    assert.deepEqual(d.readOutput(), [
      { before: { x: 3, hasY: true, keys: ["x", "y"] }, afterDelete: { hasY: false, keys: ["x"] }, afterClear: [] },
    ]);
  });
});

describe("ListState", () => {
  it("add, addAll, update, get and clear per key", () => {
    const d = processDriver<number[]>({
      processElement(e, ctx) {
        const l = ctx.state.list<number>("l");
        if (e.v === -1) l.clear();
        else if (e.v === -2) l.update([7, 8]);
        else if (e.v === -3) l.addAll([1, 2]);
        else l.add(e.v);
        ctx.emit(l.get());
      },
    });
    d.pipeInput(ev("a", 5), 1)
      .pipeInput(ev("a", 6), 1)
      .pipeInput(ev("b", 9), 1)
      .pipeInput(ev("a", -3), 1)
      .pipeInput(ev("a", -1), 1)
      .pipeInput(ev("b", -2), 1);
    assert.deepEqual(d.readOutput(), [[5], [5, 6], [9], [5, 6, 1, 2], [], [7, 8]]);
  });

  it("get() returns a copy: mutating it does not change the state", () => {
    const d = processDriver<number[]>({
      processElement(e, ctx) {
        const l = ctx.state.list<number>("l");
        l.add(e.v);
        l.get().push(999);
        ctx.emit(l.get());
      },
    });
    d.pipeInput(ev("a", 1), 1).pipeInput(ev("a", 2), 1);
    assert.deepEqual(d.readOutput(), [[1], [1, 2]]);
  });
});

describe("state TTL", () => {
  const ttlDriver = (options: StateOptions) =>
    processDriver<number | null>({
      processElement(e, ctx) {
        const s = ctx.state.value<number>("s", options);
        const before = s.value() ?? null;
        if (e.v !== 0) s.update(e.v);
        ctx.emit(before);
      },
    });

  it("processing-time TTL: an entry expires ttl ms after its last write", () => {
    const d = ttlDriver({ ttl: { ms: 1000, time: "processing" } });
    d.pipeInput(ev("a", 1), 0);
    d.advanceProcessingTime(999).pipeInput(ev("a", 0), 0);
    d.advanceProcessingTime(1).pipeInput(ev("a", 0), 0);
    assert.deepEqual(d.readOutput(), [null, 1, null]);
  });

  it("processing time is the default TTL time", () => {
    const d = ttlDriver({ ttl: { ms: 10 } });
    d.pipeInput(ev("a", 1), 0).advanceProcessingTime(10).pipeInput(ev("a", 0), 0);
    assert.deepEqual(d.readOutput(), [null, null]);
  });

  it("a write renews the lifetime", () => {
    const d = ttlDriver({ ttl: { ms: 1000 } });
    d.pipeInput(ev("a", 1), 0).advanceProcessingTime(800).pipeInput(ev("a", 2), 0);
    d.advanceProcessingTime(800).pipeInput(ev("a", 0), 0);
    assert.deepEqual(d.readOutput(), [null, 1, 2]);
  });

  it("refreshOnRead: a read renews the lifetime too", () => {
    const d = ttlDriver({ ttl: { ms: 1000, refreshOnRead: true } });
    d.pipeInput(ev("a", 1), 0);
    d.advanceProcessingTime(800).pipeInput(ev("a", 0), 0);
    d.advanceProcessingTime(800).pipeInput(ev("a", 0), 0);
    d.advanceProcessingTime(1000).pipeInput(ev("a", 0), 0);
    assert.deepEqual(d.readOutput(), [null, 1, 1, null]);
  });

  it("event-time TTL: an entry written at event time t expires once event time (watermark or later record time) reaches t + ttl", () => {
    const d = ttlDriver({ ttl: { ms: 100, time: "event" } });
    // Written before any watermark exists.
    d.pipeInput(ev("a", 1), 0);
    d.pipeInput(ev("a", 0), 50);
    d.advanceWatermark(99).pipeInput(ev("a", 0), 99);
    d.advanceWatermark(100).pipeInput(ev("a", 0), 101);
    assert.deepEqual(d.readOutput(), [null, 1, 1, null]);
  });

  it("event-time TTL does not move with processing time", () => {
    const d = ttlDriver({ ttl: { ms: 100, time: "event" } });
    d.advanceWatermark(1000).pipeInput(ev("a", 1), 1001);
    d.advanceProcessingTime(1_000_000).pipeInput(ev("a", 0), 1002);
    d.advanceWatermark(1100).pipeInput(ev("a", 0), 1102);
    assert.deepEqual(d.readOutput(), [null, 1, null]);
  });

  it("TTL applies to map entries and lists", () => {
    const d = processDriver<[number | undefined, number[]]>({
      processElement(e, ctx) {
        const m = ctx.state.map<string, number>("m", { ttl: { ms: 100 } });
        const l = ctx.state.list<number>("l", { ttl: { ms: 100 } });
        const seen: [number | undefined, number[]] = [m.get("x"), l.get()];
        if (e.v !== 0) {
          m.put("x", e.v);
          l.add(e.v);
        }
        ctx.emit(seen);
      },
    });
    d.pipeInput(ev("a", 1), 0).advanceProcessingTime(50).pipeInput(ev("a", 0), 0);
    d.advanceProcessingTime(100).pipeInput(ev("a", 0), 0);
    assert.deepEqual(d.readOutput(), [
      [undefined, []],
      [1, [1]],
      [undefined, []],
    ]);
  });

  it("an invalid TTL is a ConfigError naming the field, and the record is dead-lettered", async () => {
    const { DEAD_LETTERS } = await import("../../lib/index.ts");
    const d = processDriver<number>({
      processElement(_e, ctx) {
        ctx.state.value<number>("s", { ttl: { ms: -5 } });
        ctx.emit(1);
      },
    });
    d.pipeInput(ev("a"), 0);
    assert.deepEqual(d.readOutput(), []);
    const [dead] = d.readSideRecords(DEAD_LETTERS);
    assert.match(dead?.reason ?? "", /state\.ttl\.ms/);
    const strict = new TestDriver<Ev, number>(
      (s) =>
        s.keyBy((e) => e.k).process({
          processElement(_e, ctx) {
            ctx.state.value<number>("s", { ttl: { ms: 0 } });
          },
        }),
      { onUserError: "fail" },
    );
    assert.throws(
      () => strict.pipeInput(ev("a"), 0),
      (e: unknown) => isGressError(e, "ERR_USER_FUNCTION") && isGressError(e.cause, "ERR_CONFIG"),
    );
  });
});
