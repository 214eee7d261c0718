import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { natsCoreSource, natsJetStreamSink, natsJetStreamSource } from "../../connectors/nats/index.ts";
import { Job } from "../../lib/job.ts";
import { capture } from "./http-ws-nats-capture.ts";

const NATS_URL = process.env.GRESS_NATS_URL;
if (NATS_URL === undefined) throw new Error("GRESS_NATS_URL is not set: run `scripts/services up` and `eval \"$(scripts/services env)\"`");

const run = Math.random().toString(36).slice(2, 8);
let nc: NatsConnection;
let jsm: JetStreamManager;
const streams: string[] = [];
const enc = new TextEncoder();

async function makeStream(tag: string): Promise<{ stream: string; subject: string }> {
  const stream = `T_${tag}_${run}`;
  const subject = `t.${tag}.${run}`;
  await jsm.streams.add({ name: stream, subjects: [subject] });
  streams.push(stream);
  return { stream, subject };
}
async function publish(subject: string, bodies: (string | Uint8Array)[]): Promise<number[]> {
  const js = jetstream(nc);
  const seqs: number[] = [];
  for (const b of bodies) seqs.push((await js.publish(subject, typeof b === "string" ? enc.encode(b) : b)).seq);
  return seqs;
}

before(async () => {
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
});
after(async () => {
  for (const s of streams) await jsm.streams.delete(s).catch(() => {});
  await nc.close();
});

const Reading = z.object({ id: z.number(), v: z.number() });
type Reading = z.infer<typeof Reading>;

describe("NATS JetStream source (real nats-server)", () => {
  it("delivers the stream in order; the position is the last sequence; ack happens only in ack()", { timeout: 120_000 }, async () => {
    const { stream, subject } = await makeStream("deliver");
    await publish(subject, Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: i, v: i * 10 })));
    const job = new Job({ name: "nats-deliver" });
    const src = natsJetStreamSource<Reading>({ name: "readings", servers: NATS_URL, stream, schema: Reading, batch: 7 });
    const c = capture(job, job.source(src));
    await c.until(() => c.values.length === 20);
    assert.deepEqual(
      c.values.map((r) => r.id),
      Array.from({ length: 20 }, (_, i) => i),
    );
    const positions = src.positions?.() ?? {};
    assert.deepEqual(positions, { [stream]: 20 });
    assert.equal((await jsm.consumers.info(stream, "readings")).ack_floor.stream_seq, 0, "nothing acknowledged before the checkpoint");
    await src.ack?.(positions);
    assert.equal((await jsm.consumers.info(stream, "readings")).ack_floor.stream_seq, 20);
    c.stop();
  });

  it("replays from a checkpointed sequence: a restarted source starts right after it", { timeout: 120_000 }, async () => {
    const { stream, subject } = await makeStream("replay");
    await publish(subject, Array.from({ length: 10 }, (_, i) => JSON.stringify({ id: i + 1, v: 0 })));
    const job = new Job({ name: "nats-replay" });
    // The durable consumer exists and has delivered everything before; the checkpoint says 6.
    const first = natsJetStreamSource<Reading>({ name: "r", servers: NATS_URL, stream, schema: Reading });
    const c1 = capture(job, job.source(first));
    await c1.until(() => c1.values.length === 10);
    c1.stop();
    await new Promise((r) => setTimeout(r, 100));
    const job2 = new Job({ name: "nats-replay-2" });
    const again = natsJetStreamSource<Reading>({ name: "r", servers: NATS_URL, stream, schema: Reading });
    const c2 = capture(job2, job2.source(again, { from: { [stream]: 6 } }));
    await c2.until(() => c2.values.length === 4);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(
      c2.values.map((r) => r.id),
      [7, 8, 9, 10],
    );
    c2.stop();
  });

  it("bad messages become dead letters with reasons and exact counts; the job goes on", { timeout: 120_000 }, async () => {
    const { stream, subject } = await makeStream("bad");
    await publish(subject, [
      JSON.stringify({ id: 1, v: 1 }),
      "{oops",
      JSON.stringify({ id: "two", v: 2 }),
      JSON.stringify({ id: 3, v: 3, pad: "x".repeat(500) }),
      '{"id":4,"v":4,"__proto__":{"polluted":1}}',
      new Uint8Array([0x7b, 0xc3, 0x28, 0x7d]),
      JSON.stringify({ id: 5, v: 5 }),
    ]);
    const job = new Job({ name: "nats-bad" });
    const src = natsJetStreamSource<Reading>({ name: "bad", servers: NATS_URL, stream, schema: Reading, maxMessageBytes: 200 });
    const c = capture(job, job.source(src));
    await c.until(() => c.values.length + c.deadLetters.length === 7);
    assert.deepEqual(
      c.values.map((r) => r.id),
      [1, 5],
    );
    const reasons = c.deadLetters.map((d) => d.reason);
    assert.equal(reasons.length, 5);
    assert.match(reasons[0] ?? "", /malformed JSON/);
    assert.match(reasons[1] ?? "", /schema violation: id:/);
    assert.match(reasons[2] ?? "", /oversized/);
    assert.match(reasons[3] ?? "", /__proto__/);
    assert.match(reasons[4] ?? "", /invalid UTF-8/);
    assert.deepEqual(
      c.deadLetters.map((d) => (d.value as { position: number }).position),
      [2, 3, 4, 5, 6],
      "each dead letter names its stream sequence",
    );
    assert.deepEqual(src.counts, { received: 7, emitted: 2, deadLetters: 5, skipped: 0, dropped: 0 });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    c.stop();
  });

  it("backpressure: while the job is paused the source stops pulling, and resumes after", { timeout: 120_000 }, async () => {
    const { stream, subject } = await makeStream("pause");
    await publish(subject, Array.from({ length: 100 }, (_, i) => JSON.stringify({ id: i, v: 0 })));
    const job = new Job({ name: "nats-pause" });
    const src = natsJetStreamSource<Reading>({ name: "p", servers: NATS_URL, stream, schema: Reading, batch: 10 });
    job.flow.press("test");
    const c = capture(job, job.source(src));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(src.counts.received <= 1, `at most the message in hand while paused, got ${src.counts.received}`);
    job.flow.release("test");
    await c.until(() => c.values.length === 100);
    c.stop();
  });
});

describe("NATS JetStream sink (real nats-server)", () => {
  it("publishes with Nats-Msg-Id: a replay with the same ids is dropped by the stream", { timeout: 120_000 }, async () => {
    const { stream, subject } = await makeStream("sink");
    const out = Array.from({ length: 10 }, (_, i) => ({ id: i }));
    for (let attempt = 0; attempt < 2; attempt++) {
      const job = new Job({ name: `nats-sink-${attempt}` });
      const sink: ReturnType<typeof natsJetStreamSink<{ id: number }>> = natsJetStreamSink<{ id: number }>({ name: "out", servers: NATS_URL, subject, msgId: (v) => `out-${v.id}` });
      job.fromIterable(out).sinkTo(sink);
      await job.run();
      assert.deepEqual(sink.counts, attempt === 0 ? { published: 10, duplicates: 0 } : { published: 0, duplicates: 10 });
    }
    assert.equal((await jsm.streams.info(stream)).state.messages, 10);
  });
});

describe("core NATS source (real nats-server, at most once)", () => {
  it("delivers live messages on a subject and dead-letters bad ones", { timeout: 120_000 }, async () => {
    const subject = `core.${run}`;
    const job = new Job({ name: "nats-core" });
    const src = natsCoreSource<Reading>({ name: "core", servers: NATS_URL, subject, schema: Reading });
    const c = capture(job, job.source(src));
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 5; i++) nc.publish(subject, JSON.stringify({ id: i, v: i }));
    nc.publish(subject, "not json");
    await nc.flush();
    await c.until(() => c.values.length === 5 && c.deadLetters.length === 1);
    assert.deepEqual(
      c.values.map((r) => r.id),
      [0, 1, 2, 3, 4],
    );
    assert.match(c.deadLetters[0]?.reason ?? "", /malformed JSON/);
    c.stop();
  });

  it("while paused, a bounded buffer holds messages; beyond it they are dropped and counted", { timeout: 120_000 }, async () => {
    const subject = `core2.${run}`;
    const job = new Job({ name: "nats-core-pause" });
    const src = natsCoreSource<Reading>({ name: "core", servers: NATS_URL, subject, schema: Reading, maxBuffered: 3 });
    job.flow.press("test");
    const c = capture(job, job.source(src));
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 5; i++) nc.publish(subject, JSON.stringify({ id: i, v: i }));
    await nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.values.length, 0);
    job.flow.release("test");
    await c.until(() => c.values.length === 3);
    assert.deepEqual(
      c.values.map((r) => r.id),
      [0, 1, 2],
    );
    assert.equal(src.counts.dropped, 2);
    c.stop();
  });
});
