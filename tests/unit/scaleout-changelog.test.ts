/**
 * The scale-out changelog (lib/scaleout/changelog.ts) and its hooks in the LMDB backend: the changes of a
 * capture, the record codec (byte-identical values, tombstones, the checkpoint record), restore into an
 * environment from the start or from a local copy's offset, and the errors.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isGressError } from "../../lib/index.ts";
import {
  beginRestore,
  CHECKPOINT_KEY,
  type ChangelogCheckpoint,
  type ChangelogEntry,
  decodeChangelogRecord,
  encodeChanges,
  encodeCheckpoint,
  readLocalChangelog,
  writeLocalChangelog,
} from "../../lib/scaleout/changelog.ts";
import { LmdbStateBackend, type StateChange } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-changelog-");
const open = (path = tempDir()): LmdbStateBackend => new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024, durability: "process" });

/** A tiny changelog partition: what a task would have produced, with offsets. */
class Log {
  readonly entries: ChangelogEntry[] = [];
  /** One task checkpoint: capture, records (state then checkpoint record), LMDB commit with the offset. */
  async checkpoint(b: LmdbStateBackend, id: number, fingerprint = "fp-a"): Promise<void> {
    const capture = b.capture();
    for (const r of encodeChanges(b, capture)) this.entries.push({ ...r, offset: this.entries.length });
    const cp: ChangelogCheckpoint = { id, at: 1000 * id, positions: { src: { "in-0": id * 10 } }, sinks: {}, fingerprint, final: false };
    this.entries.push({ ...encodeCheckpoint(cp), offset: this.entries.length });
    const offset = this.entries.length;
    await b.commit(capture, () => writeLocalChangelog(b, { offset, fingerprint, at: cp.at, checkpoint: cp }));
  }
}

/** Byte values, whatever the array type (msgpackr gives Buffers, views into a larger buffer). */
const bytes = (b: Uint8Array | null | undefined): number[] | null | undefined => (b == null ? b : [...b]);

/** Every non-empty table: its size and its entries, sorted. */
const rows = (b: LmdbStateBackend): [string, unknown[]][] =>
  b
    .tableIds()
    .filter((id) => b.table(...(id.split("/") as [string, string])).size > 0)
    .sort()
    .map((id) => {
      const [op, name] = id.split("/") as [string, string];
      const t = b.table<unknown>(op, name);
      return [id, [t.size, ...[...t.entries()].sort((x, y) => String(x[0]).localeCompare(String(y[0])) || String(x[1]).localeCompare(String(y[1])))]];
    });

describe("LmdbStateBackend.changes", () => {
  it("yields the captured rows by table id: puts with their values, deletes only of entries stored below", async () => {
    const b = open();
    const t = b.table<unknown>("win-1", "acc");
    const u = b.table<unknown>("proc-2", "seen");
    t.put("a", 0, { n: 1 });
    t.put("b", 0, null);
    u.put(7, "", new Set([1]));
    await b.commit(b.capture(), () => {});
    t.put("a", 0, { n: 2 });
    t.delete("b", 0);
    t.put("c", 5, 1);
    t.delete("c", 5); // created and deleted between two captures: nothing to log
    u.delete(8, ""); // never existed
    const capture = b.capture();
    const changes = [...b.changes(capture)];
    assert.deepEqual(changes, [
      { table: "win-1/acc", key: "a", ns: 0, deleted: false, value: { n: 2 } },
      { table: "win-1/acc", key: "b", ns: 0, deleted: true, value: undefined },
    ] satisfies StateChange[]);
    await b.commit(capture, () => {});
    assert.throws(
      () => b.changes(capture),
      (e: unknown) => isGressError(e, "ERR_STATE") && /not the one being committed/.test((e as Error).message),
    );
    await b.close();
  });

  it("after a restore from a snapshot, deletes every stored entry the snapshot does not write again", async () => {
    const b = open();
    const t = b.table<number>("op", "t");
    t.put("gone", "", 1);
    t.put("kept", "", 2);
    await b.commit(b.capture(), () => {});
    b.restore({ tables: { "op/t": [["kept", "", 3]], "op/new": [["x", 1, 4]] } });
    const changes = [...b.changes(b.capture())];
    assert.deepEqual(
      changes.map((c) => [c.table, c.key, c.deleted, c.value]),
      [
        ["op/t", "gone", true, undefined],
        ["op/t", "kept", false, 3],
        ["op/new", "x", false, 4],
      ],
    );
    await b.close();
  });

  it("after a restore from a snapshot, tells entries apart exactly, even keys with NULs that look alike as text", async () => {
    const b = open();
    const t = b.table<number>("op", "t");
    t.put("a", "b\u0000$", 1);
    await b.commit(b.capture(), () => {});
    b.restore({ tables: { "op/t": [["a\u0000$b", "", 2]] } });
    const changes = [...b.changes(b.capture())];
    assert.deepEqual(
      changes.map((c) => [c.key, c.ns, c.deleted]),
      [
        ["a", "b\u0000$", true],
        ["a\u0000$b", "", false],
      ],
    );
    await b.close();
  });

  it("refuses a value with an own __proto__ property, as commit does, naming it", async () => {
    const b = open();
    const v = JSON.parse('{"a":{"__proto__":{"x":1}}}');
    b.table<unknown>("op", "t").put("k", "", v);
    const capture = b.capture();
    assert.throws(
      () => encodeChanges(b, capture),
      (e: unknown) => isGressError(e, "ERR_STATE") && /value\.a\.__proto__/.test((e as Error).message),
    );
    await b.close();
  });
});

describe("changelog record codec", () => {
  it("a value's bytes are the bytes LMDB stores for it; keys are [tableId, key, ns]", async () => {
    const b = open();
    const t = b.table<unknown>("op", "t");
    const shared = { n: 1 };
    const values: unknown[] = [
      { a: 1, b: "x", nested: { m: new Map<unknown, unknown>([[1, { a: 1, b: "y" }]]) } },
      [new Set([1, "2"]), new Date(5), 10n ** 30n, Number.NaN, Number.NEGATIVE_INFINITY, undefined, null, new Uint8Array([1, 2, 3])],
      { p: shared, q: shared },
      "",
      0.1,
      null,
    ];
    for (const [i, v] of values.entries()) t.put(`k${i}`, i, v);
    const capture = b.capture();
    const records = encodeChanges(b, capture);
    await b.commit(capture, () => {});
    const no = (b.meta.get(["table", "op/t"]) as { no: number }).no;
    const stateDb = b.root.openDB({ name: "state", cache: false, encoder: { structuredClone: true } } as never);
    for (const [i, r] of records.entries()) {
      const decoded = decodeChangelogRecord(r);
      assert.equal(decoded.kind, "state");
      if (decoded.kind !== "state") continue;
      assert.deepEqual([decoded.change.table, decoded.change.key, decoded.change.ns, decoded.change.deleted], ["op/t", `k${i}`, i, false]);
      assert.deepEqual(decoded.change.value, values[i]);
      assert.deepEqual(bytes(r.value), bytes(stateDb.getBinary([no, `k${i}`, i])), `value ${i}`);
    }
    // Shared references stay shared, as LMDB keeps them.
    const third = decodeChangelogRecord(records[2]!);
    assert.ok(third.kind === "state" && (third.change.value as { p: object; q: object }).p === (third.change.value as { p: object; q: object }).q);
    await b.close();
  });

  it("a delete is a tombstone (null value); a stored null is not", async () => {
    const b = open();
    const t = b.table<unknown>("op", "t");
    t.put("k", "", 1);
    await b.commit(b.capture(), () => {});
    t.delete("k", "");
    t.put("n", "", null);
    const [del, nul] = encodeChanges(b, b.capture());
    assert.equal(del!.value, null);
    assert.deepEqual(decodeChangelogRecord({ ...del!, offset: 4 }), { kind: "state", change: { table: "op/t", key: "k", ns: "", deleted: true, value: undefined } });
    assert.deepEqual(bytes(nul!.value), [0xc0]);
    assert.deepEqual(decodeChangelogRecord(nul!), { kind: "state", change: { table: "op/t", key: "n", ns: "", deleted: false, value: null } });
    await b.close();
  });

  it("equal entries have equal key bytes (compaction keeps the latest), and 1 and '1' differ", async () => {
    const b = open();
    const t = b.table<number>("op", "t");
    t.put(1, "", 1);
    t.put("1", "", 2);
    const c1 = b.capture();
    const first = encodeChanges(b, c1);
    await b.commit(c1, () => {});
    t.put(1, "", 3);
    const second = encodeChanges(b, b.capture());
    assert.notDeepEqual(bytes(first[0]!.key), bytes(first[1]!.key));
    assert.deepEqual(bytes(second[0]!.key), bytes(first.find((r) => (decodeChangelogRecord(r) as { change: StateChange }).change.key === 1)!.key));
    await b.close();
  });

  it("the checkpoint record round-trips under the reserved key", () => {
    const cp: ChangelogCheckpoint = { id: 9, at: 123, positions: { orders: { "orders-3": 41 } }, sinks: { pg: { checkpoint: 9, rows: 2n } }, fingerprint: "abc", topology: "src orders", final: true };
    const r = encodeCheckpoint(cp);
    assert.deepEqual(decodeChangelogRecord(r), { kind: "checkpoint", checkpoint: cp });
    assert.equal(CHECKPOINT_KEY.join("/"), "__gress/checkpoint");
  });

  it("a record it did not write is a StateError naming the offset", () => {
    const bad = (value: Uint8Array | null, key: Uint8Array): unknown => {
      try {
        decodeChangelogRecord({ key, value, offset: 17 });
        return undefined;
      } catch (e) {
        return e;
      }
    };
    const e1 = bad(null, new Uint8Array([0xc1]));
    assert.ok(isGressError(e1, "ERR_STATE") && /offset 17/.test(e1.message), String(e1));
    const e2 = bad(null, new Uint8Array([0xa1, 0x78])); // msgpack string "x": not a tuple
    assert.ok(isGressError(e2, "ERR_STATE") && /not an array/.test(e2.message), String(e2));
    const cpKey = encodeCheckpoint({ id: 1, at: 0, positions: {}, sinks: {}, fingerprint: "f", final: false }).key;
    const e3 = bad(null, cpKey);
    assert.ok(isGressError(e3, "ERR_STATE") && /tombstone/.test(e3.message), String(e3));
  });
});

describe("restore from the changelog", () => {
  it("into a fresh environment gives the state and the last checkpoint record; deletes apply", async () => {
    const src = open();
    const log = new Log();
    const t = src.table<unknown>("op", "t");
    for (let i = 0; i < 50; i++) t.put(`k${i}`, i % 3, { i, tags: new Set([i]) });
    await log.checkpoint(src, 1);
    for (let i = 0; i < 50; i += 2) t.delete(`k${i}`, i % 3);
    src.table<number>("op2", "n").put(1, "", 1);
    await log.checkpoint(src, 2);
    const dst = open();
    const r = beginRestore(dst, { fingerprint: "fp-a" });
    assert.equal(r.from, 0);
    r.apply(log.entries.slice(0, 30));
    r.apply(log.entries.slice(30));
    const result = r.finish(log.entries.length + 1);
    assert.deepEqual(rows(dst), rows(src));
    assert.equal(dst.table<unknown>("op", "t").size, 25);
    assert.equal(result.checkpoint?.id, 2);
    assert.deepEqual([result.from, result.offset, result.applied, result.skipped, result.discarded], [0, log.entries.length + 1, log.entries.length, 0, "none"]);
    assert.equal(readLocalChangelog(dst)?.offset, log.entries.length + 1);
    await src.close();
    await dst.close();
  });

  it("a local copy restores only the records from its offset on", async () => {
    const src = open();
    const log = new Log();
    const t = src.table<number>("op", "t");
    t.put("a", "", 1);
    t.put("b", "", 2);
    await log.checkpoint(src, 1);
    const copyDir = tempDir();
    const copy = open(copyDir);
    beginRestore(copy, { fingerprint: "fp-a" }).apply(log.entries);
    await copy.close();
    const held = log.entries.length;
    t.put("a", "", 10);
    t.delete("b", "");
    t.put("c", "", 3);
    await log.checkpoint(src, 2);
    const again = open(copyDir);
    const r = beginRestore(again, { fingerprint: "fp-a" });
    assert.equal(r.from, held);
    // Given the whole partition, it skips what it holds: re-applying an old record would be wrong only if a
    // later delete were undone, which is what this checks ("b" was deleted after the local copy's offset).
    r.apply(log.entries);
    const result = r.finish();
    assert.equal(result.skipped, held);
    assert.equal(result.applied, log.entries.length - held);
    assert.deepEqual(rows(again), rows(src));
    await src.close();
    await again.close();
  });

  it("a restore interrupted by a crash goes on from the last applied batch", async () => {
    const src = open();
    const log = new Log();
    for (let i = 0; i < 20; i++) src.table<number>("op", "t").put(i, "", i);
    await log.checkpoint(src, 1);
    const dir = tempDir();
    const first = open(dir);
    beginRestore(first, { fingerprint: "fp-a" }).apply(log.entries.slice(0, 7));
    await first.close(); // the "crash": no finish()
    const second = open(dir);
    const r = beginRestore(second, { fingerprint: "fp-a" });
    assert.equal(r.from, 7);
    r.apply(log.entries.slice(7));
    r.finish();
    assert.deepEqual(rows(second), rows(src));
    await src.close();
    await second.close();
  });

  it("discards a local copy of another topology, or an old one, and restores from offset 0", async () => {
    const src = open();
    const log = new Log();
    src.table<number>("op", "t").put("a", "", 1);
    await log.checkpoint(src, 1);
    for (const [options, why] of [
      [{ fingerprint: "fp-a" }, "topology"],
      [{ fingerprint: "fp-a", maxLocalAgeMs: 1000, now: 1_000_000 }, "age"],
    ] as const) {
      const dst = open();
      // A local copy: other state, of topology fp-old (or of fp-a, checkpointed at 0 ms, for the age case).
      dst.table<number>("old", "t").put("zombie", "", 1);
      const c = dst.capture();
      await dst.commit(c, () => writeLocalChangelog(dst, { offset: 99, fingerprint: why === "topology" ? "fp-old" : "fp-a", at: 0 }));
      const r = beginRestore(dst, options);
      assert.equal(r.from, 0);
      r.apply(log.entries);
      const result = r.finish();
      assert.equal(result.discarded, why);
      assert.deepEqual(rows(dst), rows(src), why);
      await dst.close();
    }
    await src.close();
  });

  it("a checkpoint record of another topology is a ConfigError naming both fingerprints; nothing is applied", async () => {
    const src = open();
    const log = new Log();
    src.table<number>("op", "t").put("a", "", 1);
    await log.checkpoint(src, 1, "fp-other");
    const dst = open();
    const r = beginRestore(dst, { fingerprint: "fp-a", topology: "source orders → map-1" });
    assert.throws(
      () => r.apply(log.entries),
      (e: unknown) =>
        isGressError(e, "ERR_CONFIG") &&
        (e as Error).message.startsWith("the changelog's checkpoint 1 (offset 1) has topology fp-other, but this job's topology is fp-a") &&
        (e as Error).message.includes("this job (fp-a):\n    source orders → map-1"),
    );
    assert.equal(dst.table<number>("op", "t").size, 0);
    await src.close();
    await dst.close();
  });

  it("needs a backend without uncommitted changes", async () => {
    const dst = open();
    dst.table<number>("op", "t").put("a", "", 1);
    const log = new Log();
    const src = open();
    src.table<number>("op", "t").put("b", "", 1);
    await log.checkpoint(src, 1);
    assert.throws(
      () => beginRestore(dst, { fingerprint: "fp-a" }).apply(log.entries),
      (e: unknown) => isGressError(e, "ERR_STATE") && /uncommitted/.test((e as Error).message),
    );
    await src.close();
    await dst.close();
  });

  it("an opened table stays valid across a restore, and sees the restored entries", async () => {
    const src = open();
    const log = new Log();
    src.table<number>("op", "t").put("a", "", 1);
    await log.checkpoint(src, 1);
    const dst = open();
    const t = dst.table<number>("op", "t");
    assert.equal(t.get("a", ""), undefined); // cached as absent
    const r = beginRestore(dst, { fingerprint: "fp-a" });
    r.apply(log.entries);
    r.finish();
    assert.deepEqual([t.get("a", ""), t.size], [1, 1]);
    t.put("b", "", 2);
    await dst.commit(dst.capture(), () => {});
    assert.deepEqual(rows(dst), [["op/t", [2, ["a", "", 1], ["b", "", 2]]]]);
    await src.close();
    await dst.close();
  });
});
