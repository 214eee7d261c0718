import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ConfigError } from "../../lib/errors.ts";
import { Job } from "../../lib/job.ts";
import { SpillBuffer } from "../../lib/sources/spill.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const tmp = (): string => mkdtempSync(join(tmpdir(), "gress-spill-"));
const spillFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith(".spill"));
const diskUse = (dir: string): number => spillFiles(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0);

describe("spill buffer (memory, then disk, then the overflow policy)", () => {
  it("keeps order across memory and disk, deletes read segments, and accounts for every record", () => {
    const dir = tmp();
    try {
      const b = new SpillBuffer({ dir, maxMemoryRecords: 3, maxSpillBytes: 4096, segmentBytes: 256 }, "orders");
      for (let i = 0; i < 50; i++) assert.equal(b.push(`s.${i % 3}`, enc.encode(`{"i":${i}}`)), true);
      assert.equal(b.memoryRecords, 3);
      assert.equal(b.diskRecords, 47);
      assert.equal(b.counts.spilled, 47);
      assert.ok(spillFiles(dir).length > 1, "several segments");
      const out: string[] = [];
      const tags: string[] = [];
      for (let i = 0; i < 20; i++) {
        const r = b.shift() as { tag: string; bytes: Uint8Array };
        out.push(dec.decode(r.bytes));
        tags.push(r.tag);
      }
      // While records are on disk, new ones queue behind them, never in memory ahead of them.
      b.push("s.x", enc.encode('{"i":50}'));
      assert.equal(b.memoryRecords, 0);
      for (let r = b.shift(); r !== undefined; r = b.shift()) {
        out.push(dec.decode(r.bytes));
        tags.push(r.tag);
      }
      assert.deepEqual(
        tags,
        Array.from({ length: 51 }, (_, i) => (i === 50 ? "s.x" : `s.${i % 3}`)),
      );
      assert.deepEqual(
        out,
        Array.from({ length: 51 }, (_, i) => `{"i":${i}}`),
      );
      assert.deepEqual(spillFiles(dir), [], "drained: no spill file left");
      assert.equal(b.counts.pushed, 51);
      assert.equal(b.counts.shifted, 51);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses and counts what does not fit, keeps the older records, and the files never exceed maxSpillBytes", () => {
    const dir = tmp();
    try {
      const body = enc.encode("x".repeat(92)); // a frame of 8 + 0 + 92 = 100 bytes
      const b = new SpillBuffer({ dir, maxMemoryRecords: 10, maxSpillBytes: 1000, segmentBytes: 300 }, "full");
      let accepted = 0;
      for (let i = 0; i < 100; i++) if (b.push("", body)) accepted++;
      assert.equal(accepted, 20, "10 in memory, 10 frames of 100 bytes on disk");
      assert.equal(b.counts.refused, 80);
      assert.equal(b.full, false, "drop-newest does not ask to fail");
      assert.ok(b.diskBytes <= 1000);
      // Reading frees whole segments only: a half-read segment still counts against the bound.
      for (let i = 0; i < 13; i++) b.shift();
      assert.ok(diskUse(dir) <= 1000);
      let more = 0;
      while (b.push("", body)) more++;
      assert.equal(more, 3, "one read segment (3 frames) was deleted, so 3 more fit");
      assert.equal(b.counts.pushed, b.counts.shifted + b.size + b.counts.refused);
      const f = new SpillBuffer({ dir, maxMemoryRecords: 1, maxSpillBytes: 0, overflow: "fail" }, "fails");
      assert.equal(f.push("", body), true);
      assert.equal(f.push("", body), false);
      assert.equal(f.full, true);
      assert.match(f.fullMessage, /fails: spill buffer full \(1 records in memory, 0 of 0 bytes on disk/);
      b.clear();
      assert.equal(b.counts.discarded, 10);
      assert.deepEqual(spillFiles(dir), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads a record larger than its read chunk, and removes the files a crashed process left", () => {
    const dir = tmp();
    try {
      writeFileSync(join(dir, "big-999999-1-0.spill"), "left by a crashed process");
      writeFileSync(join(dir, "big-other-999999-1-0.spill"), "another source's name");
      const b = new SpillBuffer({ dir, maxMemoryRecords: 1, maxSpillBytes: 8 << 20 }, "big");
      const large = new Uint8Array(3 << 20).map((_, i) => i % 251);
      b.push("a", enc.encode("first"));
      b.push("b", large);
      b.push("c", enc.encode("last"));
      assert.ok(!readdirSync(dir).includes("big-999999-1-0.spill"));
      assert.ok(readdirSync(dir).includes("big-other-999999-1-0.spill"), "another name's file is kept");
      assert.equal(dec.decode(b.shift()?.bytes), "first");
      const r = b.shift();
      assert.equal(r?.tag, "b");
      assert.deepEqual(r?.bytes, large);
      assert.equal(dec.decode(b.shift()?.bytes), "last");
      assert.equal(b.shift(), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names every bad bound in a ConfigError, and creates nothing", () => {
    const dir = join(tmpdir(), `gress-spill-never-${process.pid}`);
    const err = (() => {
      try {
        new SpillBuffer({ dir, maxMemoryRecords: 0, maxSpillBytes: 100, segmentBytes: 200, overflow: "drop-oldest" as "fail" }, "bad");
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /spill\.maxMemoryRecords must be an integer >= 1, got 0/);
    assert.match(err.message, /spill\.segmentBytes \(200\) must not exceed spill\.maxSpillBytes \(100\)/);
    assert.match(err.message, /spill\.overflow must be "drop-newest" or "fail", got "drop-oldest"/);
    assert.deepEqual(
      err.issues.map((i) => i.path.join(".")),
      ["spill.maxMemoryRecords", "spill.segmentBytes", "spill.overflow"],
    );
    assert.throws(() => new SpillBuffer({ dir: "", maxSpillBytes: 1.5 }, "x"), /spill\.dir must be a non-empty directory path, got ""; spill\.maxSpillBytes must be an integer >= 0, got 1\.5/);
    assert.throws(() => new SpillBuffer(undefined as never, "x"), /x": spill must be an object with a "dir"/);
  });

  it("property: any interleaving of pushes and shifts is a FIFO within the bounds, every record accounted", () => {
    const dir = tmp();
    try {
      fc.assert(
        fc.property(
          fc.array(fc.oneof(fc.record({ push: fc.uint8Array({ maxLength: 120 }) }), fc.constant({ shift: true as const })), { maxLength: 300 }),
          fc.integer({ min: 1, max: 8 }),
          fc.integer({ min: 0, max: 2000 }),
          fc.integer({ min: 1, max: 700 }),
          (ops, maxMemoryRecords, maxSpillBytes, seg) => {
            const segmentBytes = Math.min(seg, Math.max(1, maxSpillBytes));
            const b = new SpillBuffer({ dir, maxMemoryRecords, maxSpillBytes, segmentBytes }, "prop");
            const model: Uint8Array[] = [];
            for (const op of ops) {
              if ("push" in op) {
                if (b.push("t", op.push)) model.push(op.push);
              } else {
                const got = b.shift();
                const want = model.shift();
                assert.deepEqual(got?.bytes, want);
              }
              assert.ok(b.memoryRecords <= maxMemoryRecords);
              assert.ok(diskUse(dir) <= maxSpillBytes, `disk ${diskUse(dir)} > ${maxSpillBytes}`);
              assert.equal(b.size, model.length);
            }
            for (let r = b.shift(); r !== undefined; r = b.shift()) assert.deepEqual(r.bytes, model.shift());
            assert.equal(model.length, 0);
            assert.equal(b.counts.pushed, b.counts.shifted + b.counts.refused);
            b.close();
            assert.deepEqual(spillFiles(dir), []);
          },
        ),
        { numRuns: 150, seed: 14 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("spill metrics of a source that cannot pause", () => {
  it("a source's spillStats() are the job's gress_source_buffered_records, _spill_bytes, _spilled_total, _dropped_total", async () => {
    const dir = tmp();
    try {
      const buffer = new SpillBuffer({ dir, maxMemoryRecords: 2, maxSpillBytes: 40 }, "m");
      for (let i = 0; i < 6; i++) buffer.push("", enc.encode("0123456789")); // 2 in memory, 2 frames of 18 bytes on disk, 2 refused
      const job = new Job({ name: "spill-metrics" });
      job.source({
        name: "held",
        open() {},
        pause() {},
        resume() {},
        close() {},
        spillStats: () => ({ memoryRecords: buffer.memoryRecords, diskRecords: buffer.diskRecords, diskBytes: buffer.diskBytes, spilled: buffer.counts.spilled, dropped: buffer.counts.refused }),
      });
      const text = await job.metrics.text();
      const value = (series: string): number | undefined => {
        const line = text.split("\n").find((l) => l.startsWith(series));
        return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
      };
      assert.equal(value('gress_source_buffered_records{source="held",where="memory"'), 2);
      assert.equal(value('gress_source_buffered_records{source="held",where="disk"'), 2);
      assert.equal(value('gress_source_spill_bytes{source="held"'), 36);
      assert.equal(value('gress_source_spilled_total{source="held"'), 2);
      assert.equal(value('gress_source_dropped_total{source="held"'), 2);
      buffer.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
