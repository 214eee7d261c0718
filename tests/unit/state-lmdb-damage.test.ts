// A damaged LMDB state file is refused at start with a StateError naming the file — never mapped (a truncated
// file would crash the process with SIGBUS, a damaged header with SIGSEGV) and never silently used.
import assert from "node:assert/strict";
import { readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
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
    refused(dir, file, /truncated: \d+ bytes, but its last transaction uses \d+ bytes/);
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
