import assert from "node:assert/strict";
import { readdir, readFile, } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { WebSocket, WebSocketServer } from "ws";
import type { AddressInfo } from "node:net";
import { z } from "zod";
import { websocketSink, websocketSource } from "../../connectors/websocket/index.ts";
import { Job } from "../../lib/job.ts";
import type { Positions } from "../../lib/source.ts";
import { capture } from "./http-ws-nats-capture.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-ws-");

const Msg = z.object({ id: z.number() });
type Msg = z.infer<typeof Msg>;

/** A client that records the ack frames it gets. */
async function client(url: string): Promise<{ ws: WebSocket; acks: number[] }> {
  const ws = new WebSocket(url);
  const acks: number[] = [];
  ws.on("message", (d: Buffer) => acks.push((JSON.parse(d.toString()) as { ack: number }).ack));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { ws, acks };
}
async function until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("WebSocket source (real sockets on 127.0.0.1)", () => {
  it("server mode: each message is in the durable log before its ack frame, then emitted", { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    const job = new Job({ name: "ws-server" });
    const src = websocketSource<Msg>({ mode: "server", name: "ws", dir, schema: Msg });
    const c = capture(job, job.source(src));
    await src.ready;
    const { ws, acks } = await client(`ws://127.0.0.1:${src.port}`);
    // When the first ack arrives, its message must already be on disk. The check is awaited below, so the
    // assertion never runs before the read has finished.
    const durableAtFirstAck = new Promise<boolean>((resolve, reject) => {
      ws.once("message", () => {
        readdir(dir)
          .then(async (files) => {
            const seg = files.find((f) => f.endsWith(".seg"));
            resolve(seg !== undefined && new TextDecoder().decode(await readFile(join(dir, seg))).includes('{"id":0}'));
          })
          .catch(reject);
      });
    });
    for (let i = 0; i < 50; i++) ws.send(JSON.stringify({ id: i }));
    await until(() => acks.length === 50, "50 acks");
    assert.deepEqual(
      acks,
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    await c.until(() => c.values.length === 50);
    assert.ok(await durableAtFirstAck, "the first message was in the log when its ack arrived");
    assert.deepEqual(
      c.values.map((v) => v.id),
      Array.from({ length: 50 }, (_, i) => i),
    );
    ws.close();
    c.stop();
  });

  it("replays from the checkpointed log position after a restart", { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    const job = new Job({ name: "ws-replay" });
    const src = websocketSource<Msg>({ mode: "server", name: "ws", dir, schema: Msg });
    const c = capture(job, job.source(src));
    await src.ready;
    const { ws, acks } = await client(`ws://127.0.0.1:${src.port}`);
    for (let i = 0; i < 5; i++) ws.send(JSON.stringify({ id: i }));
    await c.until(() => c.values.length === 5);
    const checkpoint: Positions = src.positions?.() ?? {};
    for (let i = 5; i < 8; i++) ws.send(JSON.stringify({ id: i }));
    await until(() => acks.length === 8, "8 acks");
    ws.close();
    c.stop();
    await new Promise((r) => setTimeout(r, 50));

    const job2 = new Job({ name: "ws-replay-2" });
    const again = websocketSource<Msg>({ mode: "server", name: "ws", dir, schema: Msg });
    const c2 = capture(job2, job2.source(again, { from: checkpoint }));
    await c2.until(() => c2.values.length === 3);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      c2.values.map((v) => v.id),
      [5, 6, 7],
    );
    c2.stop();
  });

  it("client mode: connects to a server, logs and acknowledges what it receives", { timeout: 120_000 }, async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((r) => server.once("listening", r));
    const acks: number[] = [];
    server.on("connection", (ws) => {
      ws.on("message", (d: Buffer) => acks.push((JSON.parse(d.toString()) as { ack: number }).ack));
      for (let i = 0; i < 10; i++) ws.send(JSON.stringify({ id: i }));
    });
    const job = new Job({ name: "ws-client" });
    const src = websocketSource<Msg>({ mode: "client", name: "wsc", dir: await tempDir(), url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, schema: Msg });
    const c = capture(job, job.source(src));
    await c.until(() => c.values.length === 10);
    await until(() => acks.length === 10, "10 acks at the server");
    assert.deepEqual(
      c.values.map((v) => v.id),
      Array.from({ length: 10 }, (_, i) => i),
    );
    assert.deepEqual(
      acks,
      Array.from({ length: 10 }, (_, i) => i + 1),
      "one cumulative ack per logged message",
    );
    assert.equal(src.counts.appended, 10, "every received message was logged");
    c.stop();
    await new Promise((r) => server.close(r));
  });

  it("backpressure pauses the socket: nothing is read while the job is paused, everything after", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "ws-pressure" });
    const src = websocketSource<Msg>({ mode: "server", name: "ws", dir: await tempDir(), schema: Msg });
    const c = capture(job, job.source(src));
    await src.ready;
    const { ws, acks } = await client(`ws://127.0.0.1:${src.port}`);
    job.flow.press("test");
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 20; i++) ws.send(JSON.stringify({ id: i }));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(acks.length, 0, "no message was read (or acknowledged) while paused");
    assert.equal(src.counts.appended, 0);
    job.flow.release("test");
    await c.until(() => c.values.length === 20);
    await until(() => acks.length === 20, "20 acks");
    ws.close();
    c.stop();
  });

  it("bad messages become dead letters with reasons and exact counts; the connection stays up", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "ws-bad" });
    const src = websocketSource<Msg>({ mode: "server", name: "ws", dir: await tempDir(), schema: Msg, maxMessageBytes: 100 });
    const c = capture(job, job.source(src));
    await src.ready;
    const { ws, acks } = await client(`ws://127.0.0.1:${src.port}`);
    ws.send(JSON.stringify({ id: 1 }));
    ws.send("{broken");
    ws.send(JSON.stringify({ id: "x" }));
    ws.send(JSON.stringify({ id: 2, pad: "p".repeat(200) }));
    ws.send('{"id":3,"__proto__":{"polluted":true}}');
    ws.send(Buffer.from([0x7b, 0xe2, 0x28, 0xa1, 0x7d]));
    ws.send(JSON.stringify({ id: 4 }));
    await c.until(() => c.values.length + c.deadLetters.length === 7);
    assert.deepEqual(
      c.values.map((v) => v.id),
      [1, 4],
    );
    const reasons = c.deadLetters.map((d) => d.reason);
    assert.match(reasons[0] ?? "", /malformed JSON/);
    assert.match(reasons[1] ?? "", /schema violation/);
    assert.match(reasons[2] ?? "", /oversized: \d+ bytes > limit 100/);
    assert.match(reasons[3] ?? "", /__proto__/);
    assert.match(reasons[4] ?? "", /invalid UTF-8/);
    assert.deepEqual(src.counts, { appended: 7, emitted: 2, deadLetters: 5 });
    await until(() => acks.length === 7, "7 acks");
    assert.equal(ws.readyState, WebSocket.OPEN);
    ws.close();
    c.stop();
  });
});

describe("WebSocket sink (real sockets on 127.0.0.1)", () => {
  it("broadcasts to every client, or by topic to the clients that subscribed to it", { timeout: 120_000 }, async () => {
    const all = websocketSink<{ room: string; n: number }>({ name: "all" });
    const byRoom = websocketSink<{ room: string; n: number }>({ name: "rooms", topic: (v) => v.room });
    await all.open();
    await byRoom.open();
    const receive = async (port: number, subscribe?: string[]): Promise<{ got: string[]; ws: WebSocket }> => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`);
      const got: string[] = [];
      await new Promise((r) => ws.once("open", r));
      if (subscribe !== undefined) {
        ws.send(JSON.stringify({ subscribe }));
        await new Promise((r) => ws.once("message", r)); // {"subscribed": [...]}
      }
      ws.on("message", (d: Buffer) => got.push(d.toString()));
      return { got, ws };
    };
    const a1 = await receive(all.port);
    const a2 = await receive(all.port);
    const red = await receive(byRoom.port, ["red"]);
    const blue = await receive(byRoom.port, ["blue"]);
    const values = [
      { room: "red", n: 1 },
      { room: "blue", n: 2 },
      { room: "red", n: 3 },
    ];
    const job = new Job({ name: "ws-sink" });
    const stream = job.fromIterable(values);
    stream.sinkTo(all);
    job.fromIterable(values, { name: "again" }).sinkTo(byRoom);
    await job.run();
    await until(() => a1.got.length === 3 && a2.got.length === 3 && red.got.length === 2 && blue.got.length === 1, "broadcasts");
    assert.deepEqual(a1.got, values.map((v) => JSON.stringify(v)));
    assert.deepEqual(red.got.map((s) => (JSON.parse(s) as { n: number }).n), [1, 3]);
    assert.deepEqual(blue.got.map((s) => (JSON.parse(s) as { n: number }).n), [2]);
    assert.equal(all.counts.sent, 6);
    for (const c of [a1, a2, red, blue]) c.ws.close();
  });
});
