import assert from "node:assert/strict";
import { appendFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { comparePositions, crc32, IngestLog, type LogEntry } from "../../connectors/ingest-log/index.ts";
import { tempDirs } from "../support/temp.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const tempDir = tempDirs("gress-ingest-log-");
async function collect(it: AsyncIterable<LogEntry>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of it) out.push(dec.decode(e.payload));
  return out;
}

describe("ingest log", () => {
  it("crc32 matches the IEEE check value", () => {
    assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
  });

  it("reads back what was appended, in order, with the position after each entry", async () => {
    const log = await IngestLog.open(await tempDir());
    const positions = await log.append(["a", "bb", "ccc"].map((s) => enc.encode(s)));
    assert.deepEqual(positions, [
      { segment: 1, offset: 9 },
      { segment: 1, offset: 19 },
      { segment: 1, offset: 30 },
    ]);
    assert.deepEqual(log.end, { segment: 1, offset: 30 });
    assert.deepEqual(await collect(log.read()), ["a", "bb", "ccc"]);
    await log.close();
  });

  it("replays from a position: only entries after it", async () => {
    const log = await IngestLog.open(await tempDir());
    const [, second] = await log.append(["1", "2", "3", "4"].map((s) => enc.encode(s)));
    assert.deepEqual(await collect(log.read(second)), ["3", "4"]);
    await log.close();
  });

  it("concurrent appends are all durable, each resolves with its own positions, in call order", async () => {
    const log = await IngestLog.open(await tempDir());
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append([enc.encode(`m${i}`)])));
    for (let i = 1; i < results.length; i++) {
      assert.ok(comparePositions(results[i - 1]?.[0] ?? log.start, results[i]?.[0] ?? log.start) < 0);
    }
    assert.deepEqual(await collect(log.read()), Array.from({ length: 50 }, (_, i) => `m${i}`));
    await log.close();
  });

  it("survives reopening: entries persist and appends continue after them", async () => {
    const dir = await tempDir();
    const log = await IngestLog.open(dir);
    await log.append([enc.encode("before")]);
    await log.close();
    const again = await IngestLog.open(dir);
    await again.append([enc.encode("after")]);
    assert.deepEqual(await collect(again.read()), ["before", "after"]);
    await again.close();
  });

  it("rolls segments at the size limit, and truncation deletes only whole segments before the position", async () => {
    const dir = await tempDir();
    const log = await IngestLog.open(dir, { segmentBytes: 40 });
    const positions: { segment: number; offset: number }[] = [];
    for (let i = 0; i < 10; i++) positions.push(...(await log.append([enc.encode(`entry-${i}`)])));
    const segs = (await readdir(dir)).filter((f) => f.endsWith(".seg"));
    assert.equal(segs.length, 5, "two 15-byte frames per 40-byte segment");
    assert.deepEqual(await collect(log.read()), Array.from({ length: 10 }, (_, i) => `entry-${i}`));
    const ack = positions[4] as { segment: number; offset: number }; // after entry-4, in segment 3
    await log.truncate(ack);
    assert.deepEqual(log.start, { segment: 3, offset: 0 });
    assert.deepEqual(await collect(log.read(ack)), ["entry-5", "entry-6", "entry-7", "entry-8", "entry-9"]);
    assert.equal(log.bytes, 6 * 15);
    await assert.rejects(collect(log.read({ segment: 1, offset: 0 })), /was truncated/);
    await log.close();
  });

  it("cuts a torn frame off the end of the last segment on open (a crash mid-write)", async () => {
    const dir = await tempDir();
    const log = await IngestLog.open(dir);
    await log.append([enc.encode("whole")]);
    await log.close();
    const seg = join(dir, "00000000000000000001.seg");
    await appendFile(seg, new Uint8Array([200, 0, 0, 0, 1, 2, 3])); // a header promising 200 bytes, then 3
    const again = await IngestLog.open(dir);
    assert.equal((await stat(seg)).size, 13);
    await again.append([enc.encode("next")]);
    assert.deepEqual(await collect(again.read()), ["whole", "next"]);
    await again.close();
  });

  it("a corrupt frame in the middle is reported by name, never returned as data", async () => {
    const dir = await tempDir();
    const log = await IngestLog.open(dir, { segmentBytes: 20 });
    await log.append([enc.encode("aaaa"), enc.encode("bbbb")]);
    await log.close();
    // Flip a payload byte of the first (closed) segment.
    await writeFile(join(dir, "00000000000000000001.seg"), new Uint8Array([4, 0, 0, 0, 0, 0, 0, 0, 97, 97, 97, 97]));
    const again = await IngestLog.open(dir, { segmentBytes: 20 });
    await assert.rejects(collect(again.read()), /corrupt entry in segment 1 at offset 0/);
    await again.close();
  });
});
