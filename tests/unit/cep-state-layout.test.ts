/**
 * The matcher keeps each key's NFA state and the records the watermark has not passed as live objects in
 * memory and writes what changed to the state backend at checkpoint barriers. These tests drive the operator
 * on the LMDB backend (which copies values at a capture, so a change after one reaches the next checkpoint
 * only if it is written again) and reopen the directory, as a restart after a crash does.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Subject } from "rxjs";
import { match, matchElements, type PatternResult, pattern } from "../../cep/index.ts";
import { barrier, type Element, isGressError, Job, record, watermark } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { MemoryStateBackend } from "../../lib/state/memory.ts";
import { tempDirs } from "../support/temp.ts";

interface Ev {
  readonly t: string;
  readonly id: number;
}
const tempDir = tempDirs("gress-cep-layout-");
const open = (path: string): LmdbStateBackend => new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024 });
const checkpoint = async (b: LmdbStateBackend): Promise<void> => {
  await b.commit(b.capture(), () => {});
  await b.flushed();
};
const abc = () =>
  pattern<Ev>()
    .begin("a")
    .where((e) => e.t === "A")
    .followedBy("b")
    .where((e) => e.t === "B")
    .followedBy("c")
    .where((e) => e.t === "C")
    .within(1_000);

/** A matcher with uid "m" on `state`: push elements in, read results out. */
function matcher(state: LmdbStateBackend): { push(e: Element<Ev>): void; results: string[] } {
  const job = new Job({ state });
  const input = new Subject<Element<Ev>>();
  const results: string[] = [];
  input.pipe(matchElements(job.operator("cep", "m"), abc())).subscribe((e: Element<PatternResult<Ev, string>>) => {
    if (e.kind !== "record") return;
    const r = e.value;
    const ids = Object.values(r.events)
      .flat()
      .map((x) => x.id)
      .join(" ");
    results.push(`${r.kind} ${String(r.key)}: ${ids}`);
  });
  return { push: (e) => input.next(e), results };
}

describe("CEP matcher state on a backend that copies at checkpoints", () => {
  it("a change made after one checkpoint is in the next: the barrier writes the key's state again", async () => {
    const dir = tempDir();
    const first = open(dir);
    const m = matcher(first);
    m.push(record({ t: "A", id: 1 }, 1, "k"));
    m.push(watermark(1));
    m.push(barrier(1));
    await checkpoint(first);
    // The partial match moves on after checkpoint 1: only the second barrier can carry that to disk.
    m.push(record({ t: "B", id: 2 }, 2, "k"));
    m.push(watermark(2));
    m.push(barrier(2));
    await checkpoint(first);
    // Not checkpointed: lost in the "crash".
    m.push(record({ t: "X", id: 3 }, 3, "k"));
    await first.close();

    const second = open(dir);
    const r = matcher(second);
    r.push(record({ t: "C", id: 4 }, 4, "k"));
    r.push(watermark(4));
    assert.deepEqual(r.results, ["match k: 1 2 4"]);
    await second.close();
  });

  it("records the watermark has not passed, in order and out of order, are restored and matched in timestamp order", async () => {
    const dir = tempDir();
    const first = open(dir);
    const m = matcher(first);
    m.push(record({ t: "A", id: 1 }, 10, "k"));
    m.push(barrier(1));
    await checkpoint(first);
    // After checkpoint 1: C in order, then B behind it (the out-of-order part of the buffer), another key.
    m.push(record({ t: "C", id: 3 }, 30, "k"));
    m.push(record({ t: "B", id: 2 }, 20, "k"));
    m.push(record({ t: "A", id: 5 }, 15, "j"));
    m.push(barrier(2));
    await checkpoint(first);
    await first.close();

    const second = open(dir);
    const r = matcher(second);
    r.push(record({ t: "B", id: 6 }, 40, "j"));
    r.push(record({ t: "C", id: 7 }, 50, "j"));
    r.push(watermark(100));
    assert.deepEqual(r.results.sort(), ["match j: 5 6 7", "match k: 1 2 3"]);
    assert.equal(second.table("m", "pending").size, 0, "the released buffer leaves no row");
    assert.equal(second.table("m", "partials").size, 0, "completed keys leave no row");
    await second.close();
  });
});

describe("CEP matcher state in memory", () => {
  const show = (r: PatternResult<Ev, string>): string =>
    `${r.kind} ${String(r.key)}: ${Object.values(r.events)
      .flat()
      .map((x) => x.id)
      .join(" ")}`;

  it("keys whose state emptied start again correctly, also after their slots were swept", () => {
    // 3 000 keys complete a match, so their state empties (more than the 1 024 empty slots kept before a
    // sweep), then each matches again.
    const keys = 3_000;
    const d = new TestDriver<Ev & { k: number }, PatternResult<Ev, string>>((s) => match(s.keyBy((e) => e.k), abc(), { uid: "m" }));
    for (const round of [0, 1]) {
      const t0 = round * 10;
      for (let k = 0; k < keys; k++) d.pipeInput({ k, t: "A", id: 1 }, t0 + 1);
      for (let k = 0; k < keys; k++) d.pipeInput({ k, t: "B", id: 2 }, t0 + 2);
      for (let k = 0; k < keys; k++) d.pipeInput({ k, t: "C", id: 3 }, t0 + 3);
      d.advanceWatermark(t0 + 3);
      const out = d.readOutput().map(show);
      assert.equal(out.length, keys, `round ${round}: one match per key`);
      assert.equal(new Set(out).size, keys);
      assert.ok(out.every((r) => /^match \d+: 1 2 3$/.test(r)));
      assert.equal(d.job.state.table("m", "partials").size, 0, `round ${round}: no state left`);
    }
  });

  it("records behind the buffer's last timestamp with equal timestamps are put in the comparator's order", () => {
    // x at 6 arrives first; b and a at 5 arrive behind it (out of order), b before a. The comparator puts a
    // first, so a next b matches; arrival order alone would not.
    const ab = () =>
      pattern<Ev>()
        .begin("a")
        .where((e) => e.t === "A")
        .next("b")
        .where((e) => e.t === "B");
    const run = (comparator?: (x: Ev, y: Ev) => number): string[] => {
      const d = new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s.keyBy(() => "k"), ab(), comparator === undefined ? {} : { comparator }));
      d.pipeInput({ t: "X", id: 1 }, 6).pipeInput({ t: "B", id: 2 }, 5).pipeInput({ t: "A", id: 3 }, 5).advanceWatermark(10);
      return d.readOutput().map(show);
    };
    assert.deepEqual(run(), []);
    assert.deepEqual(run((x, y) => x.t.localeCompare(y.t)), ["match k: 3 2"]);
  });
});

describe("CEP matcher state written by the earlier layout", () => {
  const start = (state: MemoryStateBackend): unknown => {
    try {
      new TestDriver<Ev, PatternResult<Ev, string>>((s) => match(s.keyBy(() => "k"), abc(), { uid: "m" }), { state }).pipeInput({ t: "A", id: 1 }, 1);
    } catch (err) {
      return err;
    }
    return undefined;
  };
  it("partial matches without their shared buffer are refused with a StateError, not read as empty", () => {
    const state = new MemoryStateBackend();
    state.table("m", "partials").put("k", "", { p: [{ s: 1, n: 0, st: 1, ss: 0, pt: 1 }], c: [], seq: 1, nid: 1 });
    const err = start(state);
    assert.ok(isGressError(err, "ERR_STATE"), String(err));
    assert.match((err as Error).message, /older layout/);
  });
  it("buffered records stored per key are refused with a StateError, not dropped", () => {
    const state = new MemoryStateBackend();
    state.table("m", "pending").put("k", "", { t: [5], v: [{ t: "A", id: 1 }] });
    const err = start(state);
    assert.ok(isGressError(err, "ERR_STATE"), String(err));
    assert.match((err as Error).message, /older layout/);
  });
});
