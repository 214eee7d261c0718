/**
 * Restore progress of the scale-out changelog (lib/scaleout/changelog.ts): the log line of a restore that took
 * 100 ms or more (count, offsets, duration, rate, time to the first record), progress lines while it runs, no
 * line for a quick one, and the per-task metric (restoreProgress, restoreMetrics) with the job and task taken
 * from the environment's path.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { beginRestore, type ChangelogEntry, encodeChanges, encodeCheckpoint, restoreMetrics, restoreProgress } from "../../lib/scaleout/changelog.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-restore-progress-");
const open = (path: string): LmdbStateBackend => {
  mkdirSync(path, { recursive: true });
  return new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024, durability: "process" });
};

/** A changelog of `n` state entries and one checkpoint record, with offsets. */
async function changelog(n: number): Promise<ChangelogEntry[]> {
  const src = open(tempDir());
  const t = src.table<number>("win-1", "acc");
  for (let i = 0; i < n; i++) t.put(`k${i}`, 0, i);
  const capture = src.capture();
  const entries: ChangelogEntry[] = encodeChanges(src, capture).map((r, offset) => ({ ...r, offset }));
  entries.push({ ...encodeCheckpoint({ id: 1, at: 1000, positions: {}, sinks: {}, fingerprint: "fp", final: false }), offset: entries.length });
  await src.commit(capture, () => {});
  await src.close();
  return entries;
}

describe("changelog restore progress", () => {
  it("a restore of 100 ms or more logs one line with its count, offsets, duration, rate and first-record time; progress lines while it runs", async () => {
    const entries = await changelog(40);
    const dst = open(join(tempDir(), "orders", "0_3"));
    const lines: string[] = [];
    let now = 1000;
    const r = beginRestore(dst, { fingerprint: "fp", log: (m) => lines.push(m), progressEveryMs: 100, clock: () => now });
    now += 60; // the reader's join and first fetch
    r.apply(entries.slice(0, 10));
    assert.deepEqual(lines, [], "no progress line before progressEveryMs");
    now += 50;
    r.apply(entries.slice(10, 20));
    assert.deepEqual(lines, ['task 0_3 of "orders": restoring, 20 changelog records applied from offset 0, now at 20, 0.1 s, 182 records/s']);
    now += 50;
    r.apply(entries.slice(20));
    assert.equal(lines.length, 1, "the next progress line only 100 ms after the last");
    now += 40;
    const result = r.finish(entries.length + 1);
    assert.deepEqual([result.durationMs, result.firstRecordMs, result.applied], [200, 60, 41]);
    assert.deepEqual(lines.slice(1), ['task 0_3 of "orders": restored 41 changelog records (0 skipped) from offset 0 to 42 in 200 ms, 205 records/s (first record after 60 ms)']);
    now += 1000;
    r.finish(entries.length + 1); // again: nothing changes, nothing logged
    assert.equal(lines.length, 2);
    await dst.close();
  });

  it("a quick restore (under 100 ms) or one that read nothing writes no line", async () => {
    const entries = await changelog(5);
    const dst = open(join(tempDir(), "orders", "0_1"));
    const lines: string[] = [];
    let now = 0;
    const r = beginRestore(dst, { fingerprint: "fp", log: (m) => lines.push(m), clock: () => now });
    now += 30;
    r.apply(entries);
    now += 69;
    assert.equal(r.finish(entries.length).durationMs, 99);
    // Nothing to read (the local copy is up to date, or the changelog is empty), however long the end offset took.
    const again = beginRestore(dst, { fingerprint: "fp", log: (m) => lines.push(m), clock: () => now });
    assert.equal(again.from, entries.length);
    now += 500;
    assert.equal(again.finish(entries.length).durationMs, 500);
    const fresh = open(join(tempDir(), "orders", "0_2"));
    const empty = beginRestore(fresh, { fingerprint: "fp", log: (m) => lines.push(m), clock: () => now });
    now += 500;
    empty.finish(0);
    assert.deepEqual(lines, []);
    await dst.close();
    await fresh.close();
  });

  it("the metric: each task's latest restore, running or done, and the records all its restores applied", async () => {
    const entries = await changelog(10);
    const dir = join(tempDir(), "payments", "0_7");
    const first = open(dir);
    const r = beginRestore(first, { fingerprint: "fp", log: () => {} });
    r.apply(entries.slice(0, 4));
    const running = restoreProgress().find((p) => p.job === "payments" && p.task === "0_7");
    assert.deepEqual(
      running && { from: running.from, offset: running.offset, applied: running.applied, done: running.done, end: running.end },
      { from: 0, offset: 4, applied: 4, done: false, end: undefined },
    );
    const series = (name: string): string | undefined => restoreMetrics('worker="1"').find((l) => l.startsWith(`${name}{job="payments",task="0_7",worker="1"} `));
    assert.equal(series("gress_task_restore_active"), 'gress_task_restore_active{job="payments",task="0_7",worker="1"} 1');
    assert.equal(series("gress_task_restore_entries_total"), 'gress_task_restore_entries_total{job="payments",task="0_7",worker="1"} 4');
    r.apply(entries.slice(4));
    r.finish(entries.length);
    await first.close();
    const done = restoreProgress().find((p) => p.job === "payments" && p.task === "0_7");
    assert.deepEqual(done && { offset: done.offset, applied: done.applied, done: done.done, end: done.end }, { offset: 11, applied: 11, done: true, end: 11 });
    assert.equal(series("gress_task_restore_active"), 'gress_task_restore_active{job="payments",task="0_7",worker="1"} 0');
    assert.equal(series("gress_task_restore_last_entries"), 'gress_task_restore_last_entries{job="payments",task="0_7",worker="1"} 11');
    // The task restored again on this worker (a new environment in the same place): the counter adds up.
    const second = open(dir);
    const again = beginRestore(second, { fingerprint: "other", log: () => {} }); // another topology: from 0
    again.apply(entries.slice(0, 10));
    again.finish(entries.length);
    await second.close();
    assert.equal(series("gress_task_restore_entries_total"), 'gress_task_restore_entries_total{job="payments",task="0_7",worker="1"} 21');
    assert.equal(series("gress_task_restore_last_entries"), 'gress_task_restore_last_entries{job="payments",task="0_7",worker="1"} 10');
    assert.ok(restoreMetrics().includes("# TYPE gress_task_restore_entries_total counter"));
  });
});
