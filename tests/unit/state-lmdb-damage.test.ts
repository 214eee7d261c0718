// A damaged LMDB state file is refused at start with a StateError naming the file — never mapped (a truncated
// file would crash the process with SIGBUS, a damaged header with SIGSEGV) and never silently used.
import assert from "node:assert/strict";
import { openSync, closeSync, readFileSync, readSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { latestCheckpoint, recordCheckpoint } from "../../lib/checkpoint/storage.ts";
import { isGressError } from "../../lib/errors.ts";
import { lmdbState } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-lmdb-damage-");
const JOB = "damage-marker-job";

/** A state directory with three checkpoints of 4,000 entries each; returns its data file. */
async function stateDir(): Promise<{ dir: string; file: string }> {
  const dir = tempDir();
  const b = lmdbState({ path: dir, mapSize: 1 << 26 });
  const t = b.table<{ v: number; s: string }>("op", "t");
  for (let cp = 1; cp <= 3; cp++) {
    for (let i = 0; i < 4000; i++) t.put(`k${i}`, "", { v: i * cp, s: "x".repeat(40) });
    const c = b.capture();
    await b.commit(c, () => recordCheckpoint(b.meta, { id: cp, job: JOB, at: 0, positions: { src: { p0: cp } }, sinks: {}, final: false, changedEntries: 4000 }, 1));
  }
  await b.flushed();
  await b.close();
  return { dir, file: join(dir, "data.mdb") };
}

/**
 * Raises the newest meta's last page number by `by` in place (what LMDB writes when the final pages of a
 * transaction were allocated and freed again, so never written); returns the new number.
 */
function bumpLastPage(file: string, by: number): number {
  const fd = openSync(file, "r+");
  try {
    const page = Buffer.alloc(8192);
    readSync(fd, page, 0, 8192, 0);
    const at = page.readBigUInt64LE(152) > page.readBigUInt64LE(4096 + 152) ? 0 : 4096;
    const last = page.readBigUInt64LE(at + 144) + BigInt(by);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(last);
    writeSync(fd, b, 0, 8, at + 144);
    return Number(last);
  } finally {
    closeSync(fd);
  }
}

function refused(dir: string, file: string, why: RegExp): void {
  assert.throws(
    () => lmdbState({ path: dir, mapSize: 1 << 26 }),
    (e: unknown) => {
      assert.ok(isGressError(e, "ERR_STATE"), `a StateError, got ${String(e)}`);
      const m = (e as Error).message;
      assert.ok(m.includes(`"${file}"`), `names the file: ${m}`);
      assert.match(m, why);
      return true;
    },
  );
}

describe("LMDB state: a damaged data file is detected at start", () => {
  it("an intact directory opens with its checkpoint and state", async () => {
    const { dir } = await stateDir();
    const b = lmdbState({ path: dir, mapSize: 1 << 26 });
    try {
      assert.equal(latestCheckpoint(b.meta)?.id, 3);
      assert.deepEqual(b.table<{ v: number }>("op", "t").get("k10", "")?.v, 30);
    } finally {
      await b.close();
    }
  });

  it("a file truncated to half its size is refused (it would crash with SIGBUS when mapped)", async () => {
    const { dir, file } = await stateDir();
    truncateSync(file, Math.floor(statSync(file).size / 2));
    refused(dir, file, /truncated: \d+ bytes \(\d+ pages of \d+\), but its last transaction uses page \d+/);
  });

  it("a file that ends before its meta's last page opens when no page it uses is missing (pages allocated and freed in one transaction are never written)", async () => {
    // LMDB records mt_next_pgno - 1 as the last page at commit; pages taken from the end of the file and
    // freed again before the commit (loose pages) are never written, so after a SIGKILL the file can be
    // shorter than last page + 1 pages. Here the newest meta's last page is moved 3 pages past the end of
    // the file, which is the same state: LMDB opens it and reads every entry.
    const { dir, file } = await stateDir();
    const pages = statSync(file).size / 4096;
    const lastPage = bumpLastPage(file, 3);
    assert.equal(lastPage, pages + 2, "the newest meta names 3 pages past the end of the file");
    const b = lmdbState({ path: dir, mapSize: 1 << 26 });
    try {
      assert.equal(latestCheckpoint(b.meta)?.id, 3);
      const t = b.table<{ v: number; s: string }>("op", "t");
      for (let i = 0; i < 4000; i++) assert.equal(t.get(`k${i}`, "")?.v, i * 3, `entry k${i}`);
      for (let i = 0; i < 4000; i++) t.put(`k${i}`, "", { v: i * 4, s: "y".repeat(40) });
      await b.commit(b.capture(), () => recordCheckpoint(b.meta, { id: 4, job: JOB, at: 0, positions: { src: { p0: 4 } }, sinks: {}, final: false, changedEntries: 4000 }, 1));
      await b.flushed();
    } finally {
      await b.close();
    }
    const again = lmdbState({ path: dir, mapSize: 1 << 26 });
    try {
      assert.equal(latestCheckpoint(again.meta)?.id, 4);
      assert.equal(again.table<{ v: number }>("op", "t").get("k3999", "")?.v, 3999 * 4);
    } finally {
      await again.close();
    }
  });

  it("a file cut inside the overflow pages of a large value is refused", async () => {
    const { dir, file } = await stateDir();
    const b = lmdbState({ path: dir, mapSize: 1 << 26 });
    b.table<{ v: number; s: string }>("op", "big").put("big", "", { v: 1, s: "z".repeat(200_000) });
    await b.commit(b.capture(), () => recordCheckpoint(b.meta, { id: 4, job: JOB, at: 0, positions: { src: { p0: 4 } }, sinks: {}, final: false, changedEntries: 1 }, 1));
    await b.flushed();
    await b.close();
    // The value's overflow run (at least 49 pages; LMDB's layout for this sequence is deterministic) is found
    // by its page header; the file is cut just before the run's last page, whatever follows the run.
    const bytes = readFileSync(file);
    let run: { first: number; count: number } | undefined;
    for (let p = 2; p < bytes.length / 4096; p++) {
      const at = p * 4096;
      if (Number(bytes.readBigUInt64LE(at)) === p && (bytes.readUInt16LE(at + 18) & 0x04) !== 0 && bytes.readUInt32LE(at + 20) >= 49) run = { first: p, count: bytes.readUInt32LE(at + 20) };
    }
    assert.ok(run !== undefined, "the large value is stored in an overflow run");
    truncateSync(file, (run.first + run.count - 1) * 4096);
    refused(dir, file, /truncated: \d+ bytes \(\d+ pages of 4096\), but its last transaction uses page \d+/);
  });

  it("a branch page of the state that no longer carries its own page number is refused", async () => {
    const { dir, file } = await stateDir();
    // The walk reads every branch page the newest transaction reaches (leaf pages only where they can refer to
    // other pages). The state's 4,000 entries need a branch page; of the branch pages in the file, the one
    // written last is the state's live root (the main and free-page trees fit on one leaf page each).
    const bytes = readFileSync(file);
    let page = -1;
    for (let p = 2; p < bytes.length / 4096; p++) {
      const at = p * 4096;
      if (Number(bytes.readBigUInt64LE(at)) !== p || (bytes.readUInt16LE(at + 18) & 0x01) === 0) continue;
      if (page < 0 || bytes.readBigUInt64LE(at + 8) > bytes.readBigUInt64LE(page * 4096 + 8)) page = p;
    }
    assert.ok(page > 1, "the state has a branch page");
    const fd = openSync(file, "r+");
    try {
      writeSync(fd, Buffer.alloc(8, 0xee), 0, 8, page * 4096);
    } finally {
      closeSync(fd);
    }
    refused(dir, file, new RegExp(`page ${page} \\(database "state"\\) does not carry its own page number`));
  });

  it("a file truncated inside its header, or to nothing, is refused", async () => {
    for (const size of [5000, 100, 0]) {
      const { dir, file } = await stateDir();
      truncateSync(file, size);
      refused(dir, file, /truncated/);
    }
  });

  it("a damaged header page is refused (either of the two)", async () => {
    for (const at of [0, 4096]) {
      const { dir, file } = await stateDir();
      const bytes = readFileSync(file);
      bytes.fill(0xab, at, at + 4096);
      writeFileSync(file, bytes);
      refused(dir, file, /not an LMDB header/);
    }
  });

  it("a flipped bit in the checkpoint metadata is refused instead of used", async () => {
    const { dir, file } = await stateDir();
    const bytes = readFileSync(file);
    let flipped = 0;
    for (let at = bytes.indexOf(JOB); at >= 0; at = bytes.indexOf(JOB, at + 1)) {
      bytes[at + 2]! ^= 0x01;
      flipped++;
    }
    assert.ok(flipped > 0, "the job name is stored in the file");
    writeFileSync(file, bytes);
    refused(dir, file, /checkpoint metadata does not match the digest/);
  });
});
