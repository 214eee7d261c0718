/**
 * What only the LMDB backend promises, beyond the shared suite (state-backends.test.ts): durability at
 * checkpoints and only at checkpoints, incremental captures, bounded memory, undo logs and roll-back, and clear
 * errors.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isGressError, Job } from "../../lib/index.ts";
import { LmdbStateBackend, type UndoLog } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-lmdb-");
const open = (path: string, extra: Partial<ConstructorParameters<typeof LmdbStateBackend>[0]> = {}): LmdbStateBackend =>
  new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024, ...extra });
const checkpoint = async (b: LmdbStateBackend, undo?: UndoLog): Promise<number> => {
  const c = b.capture();
  await b.commit(c, () => {}, undefined, undo);
  await b.flushed();
  return c.entries;
};

describe("LMDB state backend", () => {
  it("a reopened directory holds exactly the last checkpoint: later writes are not on disk", async () => {
    const dir = tempDir();
    const b = open(dir);
    const t = b.table<number>("op", "t");
    t.put("a", "", 1);
    t.put("b", "", 2);
    await checkpoint(b);
    t.put("a", "", 10);
    t.delete("b", "");
    t.put("c", "", 3);
    await b.close();
    const again = open(dir);
    const t2 = again.table<number>("op", "t");
    assert.deepEqual([t2.get("a", ""), t2.get("b", ""), t2.get("c", ""), t2.size], [1, 2, undefined, 2]);
    await again.close();
  });

  it("a state directory whose name has a dot (a job named pipe.v2) is a directory like any other", async () => {
    const dir = `${tempDir()}/pipe.v2`;
    const b = open(dir);
    b.table<number>("op", "t").put("a", "", 1);
    await checkpoint(b);
    await b.close();
    const again = open(dir);
    assert.equal(again.table<number>("op", "t").get("a", ""), 1);
    await again.close();
  });

  it("checkpoints are incremental: a capture holds only the entries changed since the previous one", async () => {
    const b = open(tempDir());
    const t = b.table<number>("op", "t");
    for (let i = 0; i < 1000; i++) t.put(i, "", i);
    assert.equal(await checkpoint(b), 1000);
    t.put(1, "", -1);
    t.put(1, "", -2);
    t.delete(2, "");
    t.put(5000, "", 5);
    assert.equal(await checkpoint(b), 3);
    assert.equal(await checkpoint(b), 0);
    assert.deepEqual([t.get(1, ""), t.get(2, ""), t.get(5000, ""), t.size], [-2, undefined, 5, 1000]);
    await b.close();
  });

  it("while a capture is being committed, reads see it and new writes go to the next capture", async () => {
    const b = open(tempDir());
    const t = b.table<{ n: number }>("op", "t");
    const v = { n: 1 };
    t.put("a", "", v);
    const c = b.capture();
    // Mutating the live object after the capture must not change what the checkpoint writes.
    v.n = 2;
    t.put("a", "", v);
    const committed = b.commit(c, () => {});
    assert.deepEqual(t.get("a", ""), { n: 2 });
    assert.throws(() => b.capture(), (e: unknown) => isGressError(e, "ERR_STATE"));
    await committed;
    assert.equal(b.dirtyEntries, 1);
    await b.close();
    const again = open(b.path);
    assert.deepEqual(again.table("op", "t").get("a", ""), { n: 1 }, "the checkpoint holds the value at capture time");
    await again.close();
  });

  it("state larger than the cache: memory holds at most cacheEntries decoded values, and every value reads back", async () => {
    const b = open(tempDir(), { cacheEntries: 100 });
    const t = b.table<string>("op", "t");
    for (let i = 0; i < 20_000; i++) t.put(i, "", `value-${i}`);
    await checkpoint(b);
    for (let i = 0; i < 20_000; i++) assert.equal(t.get(i, ""), `value-${i}`);
    assert.ok(b.cachedEntries <= 100, `cache holds ${b.cachedEntries} entries`);
    assert.equal(b.dirtyEntries, 0);
    await b.close();
  });

  it("the read cache keeps entries apart whose key and namespace run together alike (NULs in string keys)", async () => {
    const b = open(tempDir());
    const t = b.table<number>("op", "t");
    t.put("a", "b\u0000$", 1);
    await checkpoint(b);
    // Read first, so that it is cached; then its look-alike must not hit that cache entry.
    assert.equal(t.get("a", "b\u0000$"), 1);
    assert.equal(t.get("a\u0000$b", ""), undefined);
    t.put("a\u0000$b", "", 2);
    await checkpoint(b);
    assert.deepEqual([t.get("a", "b\u0000$"), t.get("a\u0000$b", ""), t.size], [1, 2, 2]);
    await b.close();
  });

  it("reaching maxDirtyEntries asks the listener (the coordinator) for a checkpoint, once per crossing", async () => {
    const b = open(tempDir(), { maxDirtyEntries: 10 });
    let asked = 0;
    b.onDirtyLimit(() => asked++);
    const t = b.table<number>("op", "t");
    for (let i = 0; i < 25; i++) t.put(i, "", i);
    assert.equal(asked, 1);
    await checkpoint(b);
    for (let i = 0; i < 10; i++) t.put(i, "x", i);
    assert.equal(asked, 2);
    await b.close();
  });

  it("without a coordinator, a full dirty set is spilled to disk and marked, and checkpoints refuse that directory", async () => {
    const dir = tempDir();
    const b = open(dir, { maxDirtyEntries: 5 });
    const t = b.table<number>("op", "t");
    for (let i = 0; i < 5; i++) t.put(i, "", i);
    await new Promise((r) => setTimeout(r, 50));
    await b.flushed();
    assert.equal(b.dirtyEntries, 0);
    assert.equal(b.hasUncheckpointedState, true);
    assert.equal(t.get(3, ""), 3);
    await b.close();
    assert.throws(
      () => new Job({ name: "j", state: open(dir), checkpoints: { intervalMs: 100 } }),
      (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && /written without checkpoints/.test((e as Error).message),
    );
  });

  it("bad options are a ConfigError naming the field; storing undefined is a StateError", async () => {
    assert.throws(
      () => new LmdbStateBackend({ path: "", cacheEntries: -1 }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /lmdb state\.path/.test((e as Error).message) && /cacheEntries/.test((e as Error).message),
    );
    const b = open(tempDir());
    assert.throws(() => b.table("op", "t").put("k", "", undefined), (e: unknown) => isGressError(e, "ERR_STATE") && /op\/t/.test((e as Error).message));
    await b.close();
    assert.throws(() => b.table("op", "t"), (e: unknown) => isGressError(e, "ERR_STATE") && /closed/.test((e as Error).message));
  });

  it("a value with an own __proto__ property fails the checkpoint with a StateError naming where, instead of being stored changed", async () => {
    // LMDB's encoder renames such a property to "__proto_" when it reads it back.
    const dir = tempDir();
    const b = open(dir);
    const t = b.table<unknown>("op", "t");
    t.put("fine", "", { a: [1, { b: new Map([["c", "d"]]) }] });
    t.put("bad", "w1", { list: [{ ok: 1 }, JSON.parse('{"__proto__": {"x": 1}}')] });
    await assert.rejects(
      checkpoint(b),
      (e: unknown) =>
        isGressError(e, "ERR_STATE") && /op\/t/.test((e as Error).message) && /"bad"/.test((e as Error).message) && /value\.list\[1\]\.__proto__/.test((e as Error).message),
    );
    await b.close();
    // Nothing of the refused checkpoint reached the disk.
    const again = open(dir);
    assert.equal(again.table<unknown>("op", "t").get("fine", ""), undefined);
    await again.close();
  });

  it("the LMDB backend rolls back through undo logs: changed, deleted, new keys and new tables", async () => {
    const dir = tempDir();
    const b = open(dir);
    const t = b.table<number>("op", "t");
    t.put("a", "", 1);
    t.put("b", "", 2);
    await checkpoint(b, { id: 1, keepFrom: 1 });
    t.put("a", "", 10);
    t.delete("b", "");
    t.put("c", "", 3);
    b.table<string>("op", "new").put("x", 7, "seven");
    await checkpoint(b, { id: 2, keepFrom: 1 });
    t.put("a", "", 100);
    await checkpoint(b, { id: 3, keepFrom: 1 });
    await b.close();

    const again = open(dir);
    assert.ok(again.hasUndo(2) && again.hasUndo(3));
    again.rollback([2, 3], () => again.meta.put("marker", "rolled back"));
    const t2 = again.table<number>("op", "t");
    assert.deepEqual([t2.get("a", ""), t2.get("b", ""), t2.get("c", ""), t2.size], [1, 2, undefined, 2]);
    assert.equal(again.table<string>("op", "new").get("x", 7), undefined);
    assert.equal(again.table<string>("op", "new").size, 0);
    assert.equal(again.meta.get("marker"), "rolled back");
    assert.equal(again.hasUndo(2), false, "the undo logs applied are gone");
    await again.close();

    // The roll-back is durable. Tables opened (and read) before a roll-back see its result; a roll-back is
    // refused while there are uncommitted changes.
    const third = open(dir);
    const t3 = third.table<number>("op", "t");
    assert.equal(t3.get("a", ""), 1);
    assert.equal(t3.size, 2);
    third.rollback([1], () => {});
    assert.deepEqual([t3.get("a", ""), t3.get("b", ""), t3.size], [undefined, undefined, 0]);
    t3.put("a", "", 5);
    assert.throws(() => third.rollback([1], () => {}), (e: unknown) => isGressError(e, "ERR_STATE"));
    await third.close();
  });

  it("undo logs older than keepFrom are dropped in the same commit", async () => {
    const b = open(tempDir());
    const t = b.table<number>("op", "t");
    for (let id = 1; id <= 4; id++) {
      t.put("a", "", id);
      await checkpoint(b, { id, keepFrom: id - 1 });
    }
    assert.deepEqual([1, 2, 3, 4].map((id) => b.hasUndo(id)), [false, false, true, true]);
    await b.close();
  });
});
