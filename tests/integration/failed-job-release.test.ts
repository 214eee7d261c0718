/**
 * A failed job releases everything: the job fails (a sink throws) while each kind of source is still in
 * open(), and run() must settle within closeTimeoutMs with the source's port, connection or file handle
 * released — checked from outside: the port can be bound again, the server lists no connection of the job,
 * the process holds no descriptor of the file. Before, an HTTP source whose replay outlived the job's
 * failure started its server afterwards and kept the process alive, answering 429.
 * @module
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import postgres from "postgres";
import { WebSocketServer } from "ws";
import { fileSource } from "../../connectors/file/index.ts";
import { httpSource } from "../../connectors/http/index.ts";
import { IngestLog } from "../../connectors/ingest-log/index.ts";
import { encodeEntry, LoggedSource } from "../../connectors/ingest-log/source.ts";
import { kafkaSource } from "../../connectors/kafka/index.ts";
import { natsJetStreamSource } from "../../connectors/nats/index.ts";
import { postgresSink } from "../../connectors/postgres/index.ts";
import { websocketSource } from "../../connectors/websocket/index.ts";
import { Job, type Sink, type Source, sinkFn } from "../../lib/index.ts";
import { tempDirs } from "../support/temp.ts";
import { freePort } from "../support/tcp-proxy.ts";
import { brokers, createTopic, kafka, produce, uniqueName } from "./kafka-support.ts";
import { bindable, openFilesUnder } from "../support/resources.ts";

const tempDir = tempDirs("gress-release-");
const CLOSE_TIMEOUT_MS = 8_000;

function env(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set: run \`eval "$(scripts/services env)"\` first`);
  return v;
}


/** A sink that fails the job on its first record. */
const failing = (): Sink<unknown> =>
  sinkFn("fails", () => {
    throw new Error("sink broke");
  });

/**
 * Runs `source` beside an input whose sink fails at once (so the source is still opening, connecting or
 * replaying), or with the failing sink on the source itself (`onSource`: the job fails on a replayed record).
 * Returns how long run() took to settle.
 */
async function failWhileOpening(source: Source<unknown>, options: { onSource?: boolean; extraSink?: Sink<unknown> } = {}): Promise<number> {
  const job = new Job({ name: uniqueName("release"), closeTimeoutMs: CLOSE_TIMEOUT_MS });
  if (options.onSource === true) job.source(source).sinkTo(failing());
  else {
    job.source(source).sinkTo(options.extraSink ?? sinkFn("ok", () => {}));
    job.fromIterable([1]).sinkTo(failing());
  }
  const started = performance.now();
  await assert.rejects(job.run(), /sink "fails" failed to write: sink broke/);
  const took = performance.now() - started;
  assert.ok(took < CLOSE_TIMEOUT_MS, `run() settled after ${Math.round(took)} ms, beyond closeTimeoutMs: a close() hung`);
  return took;
}

/** Writes `n` logged NDJSON entries into an ingest-log directory, as an HTTP source would have. */
async function logEntries(dir: string, n: number): Promise<void> {
  const log = await IngestLog.open(dir, { fsync: false });
  const body = new TextEncoder().encode('{"a":1}\n');
  await log.append(Array.from({ length: n }, (_, i) => encodeEntry({ receivedAt: i, meta: JSON.stringify({ k: null, t: "ndjson" }), body })));
  await log.close();
}

describe("a job that fails while its sources open releases them before run() settles", () => {
  it("HTTP: the job fails on a record replayed from the ingest log; the server never starts after that, the port is free, no log file is open", async () => {
    const dir = tempDir();
    await logEntries(dir, 2000);
    const port = await freePort();
    const source = httpSource({ name: "http", dir, port, fsync: false });
    await failWhileOpening(source, { onSource: true });
    assert.equal(await bindable(port), true, `port ${port} still bound after run() settled`);
    assert.deepEqual(openFilesUnder(dir), []);
    // And nothing starts later either.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await bindable(port), true);
  });

  it("HTTP with an empty log: failed while the log opens; the port is free", async () => {
    const dir = tempDir();
    const port = await freePort();
    await failWhileOpening(httpSource({ name: "http", dir, port, fsync: false }));
    assert.equal(await bindable(port), true);
    assert.deepEqual(openFilesUnder(dir), []);
  });

  it("ingest log (LoggedSource): failed on a replayed entry; onOpen is never called and no segment stays open", async () => {
    const dir = tempDir();
    await logEntries(dir, 3000);
    let opened = 0;
    const source = new LoggedSource<string>({
      name: "logged",
      dir,
      fsync: false,
      decode: (e) => [{ decoded: { ok: true, value: new TextDecoder().decode(e.body) }, raw: e.body }],
      onOpen: () => void opened++,
    });
    await failWhileOpening(source, { onSource: true });
    assert.equal(opened, 0, "onOpen ran after the job had failed");
    assert.deepEqual(openFilesUnder(dir), []);
  });

  it("WebSocket server: the listening port is free", async () => {
    const port = await freePort();
    const dir = tempDir();
    await failWhileOpening(websocketSource({ name: "ws", dir, mode: "server", port, fsync: false }));
    assert.equal(await bindable(port), true);
    assert.deepEqual(openFilesUnder(dir), []);
  });

  it("WebSocket client: no connection to the server is left, and none is made later", async () => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((r) => wss.once("listening", () => r()));
    let connections = 0;
    wss.on("connection", () => connections++);
    try {
      const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
      await failWhileOpening(websocketSource({ name: "wsc", dir: tempDir(), mode: "client", url, reconnectMs: 50, fsync: false }));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(wss.clients.size, 0, `${wss.clients.size} client connections left open (${connections} made)`);
    } finally {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    }
  });

  it("file: no descriptor of the file stays open", async () => {
    const dir = tempDir();
    const path = join(dir, "in.ndjson");
    writeFileSync(path, `${'{"a":1}\n'.repeat(10_000)}`);
    await failWhileOpening(fileSource({ path }));
    assert.deepEqual(openFilesUnder(dir), []);
  });

  describe("with the services", () => {
    let nc: NatsConnection;
    before(async () => {
      nc = await connect({ servers: env("GRESS_NATS_URL") });
    });
    after(async () => {
      await nc.close();
    });

    it("NATS JetStream: failed while connecting; the server lists no connection of the source", async () => {
      const stream = uniqueName("release").replace(/[^A-Za-z0-9_-]/g, "_");
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: stream, subjects: [`${stream}.in`] });
      const name = uniqueName("nats-src");
      await failWhileOpening(natsJetStreamSource({ name, servers: env("GRESS_NATS_URL"), stream }));
      const connz = (await (await fetch(`${env("GRESS_NATS_MONITOR_URL")}/connz?limit=1024`)).json()) as { connections: { name?: string }[] };
      assert.deepEqual(
        connz.connections.filter((c) => c.name === `gress:${name}`),
        [],
      );
      await jsm.streams.delete(stream);
    });

    it("Kafka: failed while connecting; no socket to the broker stays open and the group has no member", async () => {
      const topic = uniqueName("release");
      await createTopic(topic, 1);
      await produce(topic, [{ value: '{"a":1}' }]);
      const groupId = uniqueName("release-group");
      await failWhileOpening(kafkaSource({ name: "k", brokers: brokers(), topics: [topic], groupId }));
      // No socket to the broker is left in this process (the source's admin client connecting while the job
      // failed used to stay connected, and kept the process alive). Node's handle list: no outside view of it.
      await new Promise((r) => setTimeout(r, 1000)); // a connect under way would have finished by now
      const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
      const toBroker = handles.filter((h) => {
        const s = h as { remoteAddress?: string; remotePort?: number };
        return brokers().includes(`${s.remoteAddress}:${s.remotePort}`);
      });
      assert.equal(toBroker.length, 0, `${toBroker.length} sockets to the broker still open`);
      const admin = kafka().admin();
      await admin.connect();
      try {
        const { groups } = await admin.describeGroups([groupId]);
        assert.deepEqual(groups[0]?.members ?? [], []);
      } finally {
        await admin.disconnect();
      }
    });

    it("PostgreSQL sink: failed while connecting; pg_stat_activity shows no connection of the job", async () => {
      const app = uniqueName("gress-release").slice(0, 60);
      const url = `${env("GRESS_PG_URL")}?application_name=${app}`;
      const sink = postgresSink<{ a: number }>({ name: "pg", job: "release", url, table: `release_${process.pid}`, createTable: true, columns: { a: { type: "bigint", value: (r) => r.a } } });
      const job = new Job({ name: uniqueName("release-pg"), closeTimeoutMs: CLOSE_TIMEOUT_MS });
      job.fromIterable([{ a: 1 }]).sinkTo(sink);
      job.fromIterable([1]).sinkTo(failing());
      await assert.rejects(job.run(), /sink broke/);
      const sql = postgres(env("GRESS_PG_URL"), { max: 1 });
      try {
        const rows = await sql`select count(*)::int as n from pg_stat_activity where application_name = ${app}`;
        assert.equal(rows[0]?.n, 0, "a connection of the failed job is still open");
      } finally {
        await sql.end({ timeout: 5 });
      }
    });
  });
});
