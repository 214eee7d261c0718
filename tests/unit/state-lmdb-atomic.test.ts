/**
 * A checkpoint's LMDB transaction is all or nothing even when something inside it throws (metadata that cannot
 * be written, a failpoint): none of its rows reach the disk, and the directory still holds the previous
 * checkpoint. lmdb-js's transaction() keeps the writes made before a throw, so this guards the child
 * transaction that LmdbStateBackend.commit uses.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-lmdb-atomic-");
const open = (path: string): LmdbStateBackend => new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024 });

describe("LMDB checkpoint atomicity", () => {
  for (const where of ["writeMeta", "midway"] as const) {
    it(`a throw from ${where} writes none of the checkpoint's rows and keeps the previous checkpoint`, async () => {
      const dir = tempDir();
      const b = open(dir);
      const t = b.table<number>("op", "t");
      for (let i = 0; i < 100; i++) t.put(i, "", i);
      const first = b.capture();
      await b.commit(first, () => b.meta.put("checkpoint", 1));
      await b.flushed();
      for (let i = 0; i < 100; i++) t.put(i, "", 1000 + i);
      t.delete(0, "");
      const second = b.capture();
      const boom = (): void => {
        throw new Error(`${where} failed`);
      };
      await assert.rejects(
        where === "writeMeta" ? b.commit(second, boom) : b.commit(second, () => b.meta.put("checkpoint", 2), boom),
        new RegExp(`${where} failed`),
      );
      await b.close().catch(() => {});
      const again = open(dir);
      const t2 = again.table<number>("op", "t");
      const values = Array.from({ length: 100 }, (_, i) => t2.get(i, ""));
      assert.deepEqual(values, Array.from({ length: 100 }, (_, i) => i), "the rows are the first checkpoint's");
      assert.equal(again.meta.get("checkpoint"), 1);
      await again.close();
    });
  }
});
