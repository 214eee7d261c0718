/**
 * Savepoints: written from a state directory or a running job, versioned, validated on read, and restored
 * into a new state directory from which the job continues exactly where the savepoint was taken.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { decodeValue, encodeValue } from "../../lib/checkpoint/codec.ts";
import { readSavepoint, SAVEPOINT_VERSION, writeSavepoint } from "../../lib/checkpoint/savepoint.ts";
import { committedFiles, fileSink } from "../../connectors/file/index.ts";
import { generator, isGressError, Job, type Sink } from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { type Sequenced, sequencePerKey } from "../support/sequence.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-sp-");
const lmdb = (path: string): LmdbStateBackend => new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024, durability: "process" });

type Out = Sequenced;
/** Counts events per key (ValueState) and collects `{ key, seq, i }`; `count` bounds the generator. */
function countingJob(job: Job, count: number, out: Out[], rate?: number): void {
  const sink: Sink<Out> = { name: "collect", write: (v) => void out.push(v) };
  job
    .source(generator({ name: "events", seed: 9, count, ...(rate === undefined ? {} : { ratePerSecond: rate }), make: (i, _t, r) => ({ i, key: `k${r.int(5)}` }) }))
    .keyBy((e) => e.key)
    .process(sequencePerKey())
    .sinkTo(sink);
}

describe("savepoints", () => {
  it("codec law: decode(JSON(encode(v))) equals v for structured values", () => {
    // Law: the savepoint value codec round-trips everything the LMDB backend stores.
    const leaf = fc.oneof(
      fc.double(),
      fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0),
      fc.string(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.bigInt(),
      fc.date({ noInvalidDate: true }),
      fc.uint8Array({ maxLength: 8 }),
    );
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: "small" }, leaf, fc.array(tie("v"), { maxLength: 4 }), fc.dictionary(fc.oneof(fc.string(), fc.constantFrom("$n", "$m", "$o", "__proto__")), tie("v"), { maxKeys: 4, noNullPrototype: true }), fc.array(fc.tuple(fc.string(), tie("v")), { maxLength: 3 }).map((es) => new Map(es)), fc.array(fc.integer(), { maxLength: 4 }).map((xs) => new Set(xs))),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        assert.deepStrictEqual(decodeValue(JSON.parse(JSON.stringify(encodeValue(v)))), v);
      }),
      { numRuns: 200 },
    );
  });

  it("a savepoint of a state directory restores into a new one, and the job continues where it was taken", async () => {
    const stateDir = join(tempDir(), "state");
    const firstOut: Out[] = [];
    const first = new Job({ name: "sp", state: lmdb(stateDir), checkpoints: { intervalMs: 50, log: () => {} } });
    countingJob(first, 4_000, firstOut);
    await first.run();
    await first.state.close();

    const sp = join(tempDir(), "sp1");
    const info = await writeSavepoint(stateDir, sp);
    assert.equal(info.version, SAVEPOINT_VERSION);
    assert.equal(info.format, "gress-savepoint");
    assert.deepEqual(info.positions, { events: { events: 4_000 } });
    assert.ok((info.tables["process-1/v:n"] ?? 0) === 5, `per-key counters are in the savepoint: ${JSON.stringify(info.tables)}`);
    assert.deepEqual(readSavepoint(sp), info);

    const logs: string[] = [];
    const secondOut: Out[] = [];
    const second = new Job({ name: "sp", state: lmdb(join(tempDir(), "state")), checkpoints: { intervalMs: 50, fromSavepoint: sp, log: (m) => logs.push(m) } });
    countingJob(second, 8_000, secondOut);
    await second.run();
    await second.state.close();
    assert.ok(logs.some((m) => m.includes(`restored savepoint ${info.id}`)));

    const reference: Out[] = [];
    const ref = new Job({ name: "ref", state: lmdb(join(tempDir(), "state")), checkpoints: { intervalMs: 50, log: () => {} } });
    countingJob(ref, 8_000, reference);
    await ref.run();
    await ref.state.close();
    const key = (o: Out): string => `${o.i}/${o.key}/${o.seq}`;
    assert.equal(secondOut[0]?.i, 4_000, "the restored job starts at the savepoint's position");
    assert.deepEqual([...firstOut, ...secondOut].map(key).sort(), reference.map(key).sort(), "savepoint + continuation = one uninterrupted run");
  });

  it("restarting a job restored from a savepoint resumes from its newer checkpoints, not the savepoint", async () => {
    const stateDir = join(tempDir(), "state");
    const first = new Job({ name: "sp2", state: lmdb(stateDir), checkpoints: { intervalMs: 50, log: () => {} } });
    countingJob(first, 1_000, []);
    await first.run();
    await first.state.close();
    const sp = join(tempDir(), "sp");
    await writeSavepoint(stateDir, sp);

    const target = join(tempDir(), "state");
    const a = new Job({ name: "sp2", state: lmdb(target), checkpoints: { intervalMs: 50, fromSavepoint: sp, log: () => {} } });
    countingJob(a, 2_000, []);
    await a.run();
    await a.state.close();
    const out: Out[] = [];
    const b = new Job({ name: "sp2", state: lmdb(target), checkpoints: { intervalMs: 50, fromSavepoint: sp, log: () => {} } });
    assert.deepEqual(b.checkpoints?.restored?.positions, { events: { events: 2_000 } });
    countingJob(b, 2_000, out);
    await b.run();
    await b.state.close();
    assert.deepEqual(out, [], "nothing is replayed");
  });

  it("a job restored from an older savepoint issues checkpoint ids above those its sinks committed (no part file overwritten)", async () => {
    // Run 1 ends at checkpoint n (the savepoint), run 2 continues the same state directory to m > n. Restoring
    // the savepoint into a fresh directory would count from n + 1 again: a file sink would commit over the part
    // files of run 2, and a PostgreSQL sink would take the new output for committed output and skip it.
    const stateDir = join(tempDir(), "state");
    const outDir = tempDir();
    const withFiles = (job: Job, count: number): void => {
      job
        .source(generator({ name: "events", seed: 9, count, make: (i, _t, r) => ({ i, key: `k${r.int(5)}` }) }))
        .keyBy((e) => e.key)
        .process(sequencePerKey())
        .sinkTo(fileSink<Out>({ dir: outDir, name: "out" }));
    };
    const runOnce = async (job: Job, count: number): Promise<void> => {
      withFiles(job, count);
      await job.run();
      await job.state.close();
    };
    await runOnce(new Job({ name: "spf", state: lmdb(stateDir), checkpoints: { intervalMs: 50, log: () => {} } }), 2_000);
    const sp = join(tempDir(), "sp");
    const info = await writeSavepoint(stateDir, sp);
    await runOnce(new Job({ name: "spf", state: lmdb(stateDir), checkpoints: { intervalMs: 50, log: () => {} } }), 4_000);
    const before = new Map(committedFiles(outDir, "out").map((f) => [f, readFileSync(join(outDir, f), "utf8")]));
    const idOf = (f: string): number => Number(/-(\d{12})\.ndjson$/.exec(f)?.[1]);
    const top = Math.max(...[...before.keys()].map(idOf));
    assert.ok(top > info.checkpointId, `run 2 committed checkpoints after the savepoint's ${info.checkpointId} (up to ${top})`);

    const logs: string[] = [];
    await runOnce(new Job({ name: "spf", state: lmdb(join(tempDir(), "state")), checkpoints: { intervalMs: 50, fromSavepoint: sp, log: (m) => logs.push(m) } }), 4_000);
    for (const [f, text] of before) assert.equal(readFileSync(join(outDir, f), "utf8"), text, `part file ${f} of the earlier runs is unchanged`);
    const added = committedFiles(outDir, "out").filter((f) => !before.has(f));
    assert.ok(added.length > 0 && added.every((f) => idOf(f) > top), `the restored run commits above checkpoint ${top}: ${added.join(", ")}`);
    const again = added.flatMap((f) => readFileSync(join(outDir, f), "utf8").trim().split("\n")).map((l) => (JSON.parse(l) as Out).i);
    assert.deepEqual(again.sort((a, b) => a - b), Array.from({ length: 2_000 }, (_, k) => 2_000 + k), "the events after the savepoint are processed again");
    assert.ok(logs.some((m) => m.includes(`checkpoint ids continue from ${top + 1}`)), logs.join("\n"));
  });

  it("a running job writes a savepoint of a fresh checkpoint", async () => {
    const job = new Job({ name: "live", state: lmdb(join(tempDir(), "state")), checkpoints: { intervalMs: 10_000, log: () => {} } });
    countingJob(job, 200_000, [], 50_000);
    const running = job.run();
    await new Promise((r) => setTimeout(r, 150));
    const sp = join(tempDir(), "live-sp");
    const info = await job.checkpoints!.savepoint(sp);
    job.cancel();
    await running;
    await job.state.close();
    const pos = (info.positions.events as { events: number }).events;
    assert.ok(pos > 0 && pos < 200_000, `taken mid-run at position ${pos}`);
    assert.equal(readFileSync(join(sp, "state.ndjson"), "utf8").trim().split("\n").length, info.entries);
  });

  it("refuses: an unknown newer format version, an incomplete savepoint, a non-empty target, a state dir with other checkpoints", async () => {
    const future = tempDir();
    writeFileSync(join(future, "_savepoint.json"), JSON.stringify({ format: "gress-savepoint", version: SAVEPOINT_VERSION + 1, id: "x", job: "j", checkpointId: 1, createdAt: "", positions: {}, tables: {}, entries: 0, stateFile: "state.ndjson" }));
    assert.throws(() => readSavepoint(future), (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && /format version 2; this release reads up to 1/.test((e as Error).message));
    const broken = tempDir();
    writeFileSync(join(broken, "_savepoint.json"), JSON.stringify({ format: "gress-savepoint", version: 1 }));
    assert.throws(() => readSavepoint(broken), (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && /field "id"/.test((e as Error).message));
    const incomplete = tempDir();
    writeFileSync(join(incomplete, "state.ndjson"), "");
    assert.throws(() => readSavepoint(incomplete), (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && /not a complete savepoint/.test((e as Error).message));

    const stateDir = join(tempDir(), "state");
    const job = new Job({ name: "r", state: lmdb(stateDir), checkpoints: { intervalMs: 50, log: () => {} } });
    countingJob(job, 100, []);
    await job.run();
    await job.state.close();
    const nonEmpty = tempDir();
    mkdirSync(join(nonEmpty, "x"));
    await assert.rejects(writeSavepoint(stateDir, nonEmpty), (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && /not empty/.test((e as Error).message));
    const sp = join(tempDir(), "sp");
    await writeSavepoint(stateDir, sp);
    assert.ok(existsSync(join(sp, "_savepoint.json")));
    const other = lmdb(stateDir);
    assert.throws(
      () => new Job({ name: "r", state: other, checkpoints: { intervalMs: 50, fromSavepoint: sp } }),
      (e: unknown) => isGressError(e, "ERR_CHECKPOINT") && /restore into an empty state directory/.test((e as Error).message),
    );
    await other.close();
  });
});
