/**
 * The runtime pieces of a scale-out shuffle (lib/scaleout/shuffle-io.ts, lib/scaleout/shuffle.ts): Kafka's
 * murmur2 partitioning, the repartition topic checks, the sink that writes a task's records and watermarks into
 * its transaction (order, throttling, the watermark at every checkpoint, END, writes held between pre-commit and
 * commit), and the reader that merges the upstream tasks' watermarks and keeps the merge in state. Idleness
 * across a shuffle: the IDLE element `[3, task]`, the sink sending it when its input delivered nothing for the
 * idle timeout and its watermark when it is active again, and the merge leaving idle upstream tasks out.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import murmur2Kafkajs from "kafkajs/src/producer/partitioners/default/murmur2.js";
import { Unpackr } from "msgpackr";
import { from, lastValueFrom, toArray } from "rxjs";
import type { ProducerRecord } from "../../connectors/kafka/client.ts";
import { type Element, isGressError, Job, MAX_WATERMARK, MIN_WATERMARK, memoryState, record, type StreamRecord, VirtualClock, watermark } from "../../lib/index.ts";
import { checkRepartitionTopic } from "../../lib/scaleout/config-checks.ts";
import {
  decodeShuffleRecord,
  encodeShuffleKey,
  encodeShuffleRecord,
  murmur2,
  repartitionTopic,
  type ShuffleRecord,
  shufflePartition,
  UpstreamWatermarks,
  type UpstreamWatermarkState,
} from "../../lib/scaleout/shuffle.ts";
import { isGroupGenerationError, isMigrationError } from "../../lib/scaleout/task.ts";
import { type ShuffleRuntime, ShuffleSink, shuffleReader, shuffleWriter, WATERMARK_EVERY_MS } from "../../lib/scaleout/shuffle-io.ts";

const utf8 = new TextEncoder();

describe("murmur2 partitioning", () => {
  it("equals the Java client's murmur2 (Kafka's own test vectors)", () => {
    const cases: [string, number][] = [
      ["21", -973932308],
      ["foobar", -790332482],
      ["a-little-bit-long-string", -985981536],
      ["a-little-bit-longer-string", -1486304829],
      ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
      ["abc", 479470107],
    ];
    for (const [s, h] of cases) assert.equal(murmur2(utf8.encode(s)), h, s);
  });

  it("equals kafkajs' murmur2 on every length mod 4 and on the bytes of number keys", () => {
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648);
    for (let n = 0; n < 40; n++) {
      const bytes = Uint8Array.from({ length: n }, () => next() & 0xff);
      assert.equal(murmur2(bytes), (murmur2Kafkajs as (b: Buffer) => number)(Buffer.from(bytes)), `length ${n}`);
    }
    for (const k of [0, 1, -1, 3.5, 1e12]) {
      const bytes = encodeShuffleKey(k);
      assert.equal(murmur2(bytes), (murmur2Kafkajs as (b: Buffer) => number)(Buffer.from(bytes)), `key ${k}`);
    }
  });

  it("a partition in range, the same for the same key", () => {
    for (const key of ["a", "ann", "", 7, -0]) {
      const p = shufflePartition(encodeShuffleKey(key), 12);
      assert.ok(p >= 0 && p < 12);
      assert.equal(shufflePartition(encodeShuffleKey(key), 12), p);
    }
    assert.equal(repartitionTopic("orders", 1), "gress-orders-1-repartition");
  });
});

describe("checkRepartitionTopic", () => {
  it("passes a topic with the inputs' partition count and delete policy", () => {
    checkRepartitionTopic("t", new Map([["cleanup.policy", "delete"]]), { actual: 4, expected: 4 });
    checkRepartitionTopic("t", new Map(), { actual: 4, expected: 4 });
  });
  it("a ConfigError naming the topic for another partition count, or a compacted topic", () => {
    assert.throws(
      () => checkRepartitionTopic("gress-j-1-repartition", new Map(), { actual: 8, expected: 4 }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /"gress-j-1-repartition" has 8 partitions, but the job's input topics have 4/.test((e as Error).message),
    );
    assert.throws(
      () => checkRepartitionTopic("gress-j-1-repartition", new Map([["cleanup.policy", "compact,delete"]]), { actual: 4, expected: 4 }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /must not be compacted/.test((e as Error).message),
    );
  });
});

/** A runtime whose sends are recorded, decoded, per partition; `gate` holds sends until released. */
function fakeRuntime(partitions: number, taskId = "0_1"): { rt: ShuffleRuntime; sent: { partition: number; r: ShuffleRecord }[]; requests: number } {
  const out = { sent: [] as { partition: number; r: ShuffleRecord }[], requests: 0 };
  const rt: ShuffleRuntime = {
    taskId,
    partitions,
    upstreamTasks: Array.from({ length: partitions }, (_, q) => `0_${q}`),
    send: async (_topic: string, records: readonly ProducerRecord[]) => {
      out.requests++;
      for (const m of records) out.sent.push({ partition: m.partition as number, r: decodeShuffleRecord(m.value as Uint8Array) });
    },
  };
  return Object.assign(out, { rt });
}

/** Runs the writer on `elements` and hands what reaches the sink to `sink.write`, as the sink operator would. */
async function writeThrough<T>(sink: ShuffleSink<T>, selector: (v: T) => string, elements: Element<T>[]): Promise<void> {
  const job = new Job();
  const out = await lastValueFrom(from(elements).pipe(shuffleWriter(job.operator("keyBy"), selector), toArray()));
  for (const e of out) if (e.kind === "record") await sink.write(e.value, e as StreamRecord<T>);
}

describe("ShuffleSink", () => {
  it("sends each record to its key's partition, then the watermark to every partition after the records before it; END at the end of input", async () => {
    const f = fakeRuntime(3);
    const clock = new VirtualClock(1_000);
    const sink = new ShuffleSink<{ u: string }>("s", "t", () => f.rt, clock);
    sink.open();
    await writeThrough(sink, (v) => v.u, [record({ u: "a" }, 10), record({ u: "b" }, 11), watermark(11), record({ u: "c" }, 12), watermark(MAX_WATERMARK)]);
    await sink.flush();
    for (let p = 0; p < 3; p++) {
      const here = f.sent.filter((s) => s.partition === p).map((s) => s.r);
      const wm = here.findIndex((r) => r.kind === "watermark");
      assert.deepEqual(here[wm], { kind: "watermark", task: "0_1", watermark: 11 });
      assert.deepEqual(here.at(-1), { kind: "end", task: "0_1" }, `END last in partition ${p}`);
      for (const [i, r] of here.entries()) {
        if (r.kind !== "record") continue;
        assert.equal(p, shufflePartition(encodeShuffleKey(r.key), 3), `record ${r.key} in its key's partition`);
        assert.equal(i < wm, r.timestamp <= 11, `record ${r.key} on the right side of the watermark`);
      }
    }
    assert.deepEqual(
      f.sent.filter((s) => s.r.kind === "record").map((s) => s.r),
      ["a", "b", "c"].map((u, i) => ({ kind: "record", key: u, value: { u }, timestamp: 10 + i })),
    );
  });

  it("throttles watermark sends, but sends the latest at every checkpoint; holds writes between pre-commit and commit", async () => {
    const f = fakeRuntime(2);
    const clock = new VirtualClock(1_000);
    const sink = new ShuffleSink<{ u: string }>("s", "t", () => f.rt, clock);
    sink.open();
    await writeThrough(sink, (v) => v.u, [watermark(5), watermark(6), watermark(7)]);
    const wms = (): number[] => f.sent.filter((s) => s.partition === 0 && s.r.kind === "watermark").map((s) => (s.r as { watermark: number }).watermark);
    await sink.preCommit();
    // 5 went out at once; 6 and 7 came within WATERMARK_EVERY_MS; the checkpoint sends 7.
    assert.deepEqual(wms(), [5, 7]);
    const before = f.sent.length;
    // Between pre-commit and commit, nothing is sent (it would land in the transaction being committed), not
    // even a full batch.
    await writeThrough(
      sink,
      (v) => v.u,
      Array.from({ length: 600 }, (_, i) => record({ u: `k${i}` }, 8)),
    );
    clock.advance(WATERMARK_EVERY_MS);
    await writeThrough(sink, (v) => v.u, [watermark(9)]);
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(f.sent.length, before);
    await sink.commit();
    await sink.flush();
    assert.deepEqual(wms(), [5, 7, 9]);
    assert.equal(f.sent.filter((s) => s.r.kind === "record").length, 600);
  });

  it("a send that failed fails the next pre-commit with a SinkError that keeps the cause", async () => {
    const f = fakeRuntime(1);
    const rt: ShuffleRuntime = { ...f.rt, send: async () => Promise.reject(Object.assign(new Error("fenced"), { type: "INVALID_PRODUCER_EPOCH" })) };
    const sink = new ShuffleSink<{ u: string }>("s", "t", () => rt, new VirtualClock(0));
    sink.open();
    await writeThrough(sink, (v) => v.u, [record({ u: "a" }, 1)]);
    await assert.rejects(sink.preCommit(), (e: unknown) => isGressError(e, "ERR_SINK") && (e as Error & { cause: Error }).cause.message === "fenced");
  });
});

describe("shuffleReader", () => {
  const el = (r: ShuffleRecord): Element<ShuffleRecord> => record(r, 0);
  const runReader = async (job: Job, elements: Element<ShuffleRecord>[], rt: ShuffleRuntime): Promise<Element<unknown>[]> =>
    lastValueFrom(from(elements).pipe(shuffleReader(job.operator("shuffleRead"), () => rt), toArray()));

  it("records come out with their key; the watermark is the minimum over the upstream tasks once all reported; the source's own watermarks are dropped", async () => {
    const f = fakeRuntime(2);
    const out = await runReader(
      new Job(),
      [
        el({ kind: "record", key: "a", value: 1, timestamp: 5 }),
        el({ kind: "watermark", task: "0_0", watermark: 10 }),
        watermark(1_000),
        el({ kind: "watermark", task: "0_1", watermark: 7 }),
        el({ kind: "watermark", task: "0_1", watermark: 20 }),
        el({ kind: "end", task: "0_0" }),
        el({ kind: "end", task: "0_1" }),
      ],
      f.rt,
    );
    assert.deepEqual(
      out.map((e) => (e.kind === "record" ? [e.key, e.value, e.timestamp] : e.kind === "watermark" ? e.timestamp : e.kind)),
      [["a", 1, 5], 7, 10, 20, MAX_WATERMARK],
    );
  });

  it("keeps the merge in state: a reader started again on the same state goes on from it", async () => {
    const f = fakeRuntime(2);
    const state = memoryState();
    await runReader(new Job({ state }), [el({ kind: "watermark", task: "0_0", watermark: 10 }), el({ kind: "watermark", task: "0_1", watermark: 30 })], f.rt);
    // Restored: 0_1 need not report again; 0_0 moving to 40 gives min(40, 30).
    const out = await runReader(new Job({ state }), [el({ kind: "watermark", task: "0_0", watermark: 40 })], f.rt);
    assert.deepEqual(
      out.map((e) => (e.kind === "watermark" ? e.timestamp : e.kind)),
      [30],
    );
  });
});

describe("idleness across a shuffle", () => {
  const unpack = (b: Uint8Array): unknown => new Unpackr({ structuredClone: true }).unpack(b);

  it("IDLE is [3, task] and round-trips; the other kinds keep their encoding; a malformed IDLE is a SourceError", () => {
    assert.deepEqual(unpack(encodeShuffleRecord({ kind: "idle", task: "0_2" })), [3, "0_2"]);
    assert.deepEqual(decodeShuffleRecord(encodeShuffleRecord({ kind: "idle", task: "0_2" })), { kind: "idle", task: "0_2" });
    assert.deepEqual(unpack(encodeShuffleRecord({ kind: "record", key: "k", value: 1, timestamp: 2 })), [0, "k", 1, 2]);
    assert.deepEqual(unpack(encodeShuffleRecord({ kind: "watermark", task: "0_1", watermark: 9 })), [1, "0_1", 9]);
    assert.deepEqual(unpack(encodeShuffleRecord({ kind: "end", task: "0_1" })), [2, "0_1"]);
    const packed = encodeShuffleRecord({ kind: "record", key: "x", value: [3, 4], timestamp: 1 });
    assert.deepEqual(decodeShuffleRecord(packed), { kind: "record", key: "x", value: [3, 4], timestamp: 1 });
    const bad = encodeShuffleRecord({ kind: "record", key: "k", value: null, timestamp: 0 }).slice();
    bad[1] = 3; // tag 3 with the four fields of a record
    assert.throws(() => decodeShuffleRecord(bad, "t offset 4"), (e: unknown) => isGressError(e, "ERR_SOURCE") && /t offset 4 is not a Gress shuffle record: unknown shape \(tag 3, 4 fields\)/.test((e as Error).message));
  });

  it("an upstream task idle from the start counts as reported: the others' minimum goes on without it", () => {
    const w = new UpstreamWatermarks(["0_0", "0_1", "0_2"], undefined, 0);
    assert.equal(w.onWatermark("0_0", 10, 0), undefined);
    assert.equal(w.onWatermark("0_1", 20, 0), undefined); // 0_2 has not reported
    assert.equal(w.onIdle("0_2", 0), 10);
    assert.equal(w.onWatermark("0_0", 30, 0), 20);
  });

  it("holds while every remaining upstream task is idle; a task back from idle below the merge holds it, never back, until it catches up", () => {
    const w = new UpstreamWatermarks(["a", "b"], undefined, 0);
    w.onWatermark("a", 100, 0);
    assert.equal(w.onWatermark("b", 50, 0), 50);
    assert.equal(w.onIdle("b", 0), 100);
    assert.equal(w.onIdle("a", 0), undefined); // both idle: hold
    assert.equal(w.current, 100);
    assert.equal(w.onWatermark("b", 60, 0), undefined); // b active at 60 (its own stays 60): no going back
    assert.equal(w.onWatermark("b", 90, 0), undefined);
    assert.equal(w.onWatermark("b", 150, 0), 150); // a still idle: b alone
    assert.equal(w.onWatermark("a", 120, 0), undefined); // a back, behind: holds at 150
    assert.equal(w.onWatermark("a", 200, 0), undefined);
    assert.equal(w.onWatermark("b", 300, 0), 200);
    // END from an idle task; IDLE after END changes nothing; END from all is the end.
    w.onIdle("a", 0);
    assert.equal(w.onEnd("a", 0), undefined);
    assert.equal(w.onIdle("a", 0), undefined);
    assert.equal(w.onWatermark("b", 400, 0), 400);
    assert.equal(w.onEnd("b", 0), MAX_WATERMARK);
  });

  it("the idle flags are in the snapshot and come back with restore; a snapshot without them (older release) means active", () => {
    const w = new UpstreamWatermarks(["a", "b"], undefined, 0);
    w.onWatermark("a", 10, 0);
    w.onIdle("b", 0);
    const snap = w.snapshot();
    assert.deepEqual(snap.upstream.b, { watermark: null, ended: false, idle: true });
    const r = UpstreamWatermarks.restore(snap, undefined, 0);
    assert.equal(r.onWatermark("a", 25, 0), 25); // b still idle after the restore
    const old: UpstreamWatermarkState = { current: 10, upstream: { a: { watermark: 10, ended: false }, b: { watermark: 10, ended: false } } };
    assert.equal(UpstreamWatermarks.restore(old, undefined, 0).onWatermark("a", 25, 0), undefined); // b active, at 10
  });

  it("the sink sends IDLE to every partition at the first checkpoint after the idle timeout without input, once; input sends its watermark first", async () => {
    const f = fakeRuntime(3, "0_2");
    const clock = new VirtualClock(0);
    const sink = new ShuffleSink<{ u: string }>("s", "t", () => f.rt, clock, () => 1_000);
    sink.open();
    const kinds = (): string[] => f.sent.map((s) => `${s.partition}:${s.r.kind}`);
    clock.advance(999);
    await sink.preCommit();
    await sink.commit();
    assert.deepEqual(kinds(), []);
    clock.advance(1);
    await sink.preCommit();
    await sink.commit();
    assert.deepEqual(kinds(), ["0:idle", "1:idle", "2:idle"]);
    assert.ok(f.sent.every((s) => s.r.kind !== "idle" || s.r.task === "0_2"));
    clock.advance(5_000);
    await sink.preCommit(); // still idle: not sent again, and no watermark
    await sink.commit();
    assert.equal(f.sent.length, 3);
    // Active again: its watermark (none yet: the minimum) to every partition, before the record.
    await writeThrough(sink, (v) => v.u, [record({ u: "a" }, 7_000)]);
    await sink.flush();
    const after = f.sent.slice(3).map((s) => s.r);
    assert.deepEqual(after.slice(0, 3), [0, 1, 2].map(() => ({ kind: "watermark", task: "0_2", watermark: MIN_WATERMARK })));
    assert.equal(after[3]?.kind, "record");
    assert.equal(after.length, 4);
  });

  it("the sink back from idle on a watermark sends that watermark; with input within the timeout, or no timeout, it never sends IDLE", async () => {
    const f = fakeRuntime(2);
    const clock = new VirtualClock(0);
    const sink = new ShuffleSink<{ u: string }>("s", "t", () => f.rt, clock, () => 1_000);
    sink.open();
    await writeThrough(sink, (v) => v.u, [watermark(5)]);
    clock.advance(1_000);
    await sink.preCommit(); // the watermark came within this checkpoint's interval: active
    await sink.commit();
    assert.equal(f.sent.filter((s) => s.r.kind === "idle").length, 0);
    clock.advance(1_000);
    await sink.preCommit();
    await sink.commit();
    assert.equal(f.sent.filter((s) => s.r.kind === "idle").length, 2);
    const n = f.sent.length;
    await writeThrough(sink, (v) => v.u, [watermark(40)]);
    await sink.flush();
    assert.deepEqual(
      f.sent.slice(n).map((s) => s.r),
      [0, 1].map(() => ({ kind: "watermark", task: "0_1", watermark: 40 })),
    );

    const g = fakeRuntime(2);
    const never = new ShuffleSink<{ u: string }>("s", "t", () => g.rt, clock);
    never.open();
    clock.advance(60_000);
    await never.preCommit();
    assert.equal(g.sent.length, 0);
  });

  it("the reader leaves an idle upstream task out, keeps its flag in state, and takes it back at its next watermark", async () => {
    const f = fakeRuntime(2);
    const state = memoryState();
    const el = (r: ShuffleRecord): Element<ShuffleRecord> => record(r, 0);
    const run = async (elements: Element<ShuffleRecord>[]): Promise<unknown[]> =>
      (await lastValueFrom(from(elements).pipe(shuffleReader(new Job({ state }).operator("shuffleRead"), () => f.rt), toArray()))).map((e) => (e.kind === "watermark" ? e.timestamp : e.kind));
    assert.deepEqual(await run([el({ kind: "watermark", task: "0_0", watermark: 10 }), el({ kind: "idle", task: "0_1" })]), [10]);
    // Started again on the same state: 0_1 is still idle, then active again at 15 (it holds the minimum).
    assert.deepEqual(await run([el({ kind: "watermark", task: "0_0", watermark: 12 }), el({ kind: "watermark", task: "0_1", watermark: 15 }), el({ kind: "watermark", task: "0_0", watermark: 20 })]), [12, 15]);
  });
});

describe("errors that end a task", () => {
  it("a commit refused for an older group generation is a migration and a group-generation error; a producer fence only a migration", () => {
    const generation = new Error("Received response with error while executing API TxnOffsetCommit(v4)", { cause: Object.assign(new Error("ILLEGAL_GENERATION"), { code: "ILLEGAL_GENERATION" }) });
    const fenced = Object.assign(new Error("The producer has been fenced"), { type: "INVALID_PRODUCER_EPOCH" });
    assert.equal(isMigrationError(generation), true);
    assert.equal(isGroupGenerationError(generation), true);
    assert.equal(isMigrationError(fenced), true);
    assert.equal(isGroupGenerationError(fenced), false);
    assert.equal(isGroupGenerationError(new Error("broker down")), false);
  });
});
