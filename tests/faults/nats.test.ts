/**
 * Fault injection between Gress and NATS JetStream: a private nats-server (the binary scripts/services
 * cached) behind a TCP proxy. Generator → per-key sequence numbers in keyed state → JetStream sink
 * (Nats-Msg-Id deduplication), checkpointed on LMDB, in a child process. The output stream is read back
 * with a plain NATS client, directly (not through the proxy).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { AckPolicy, DeliverPolicy, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Sequenced } from "../support/sequence.ts";
import { startProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { assertExactlyOnce, type Drive, report, runUntilDone } from "./harness.ts";
import { type PrivateNats, startPrivateNats } from "./services.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let server: PrivateNats;
let proxy: TcpProxy;
let nc: NatsConnection | undefined;
let jsm: JetStreamManager;

async function direct(): Promise<JetStreamManager> {
  nc = await connect({ servers: `nats://127.0.0.1:${server.port}`, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  return jetstreamManager(nc);
}

before(async () => {
  server = await startPrivateNats();
  proxy = await startProxy({ targetPort: server.port });
  jsm = await direct();
});
after(async () => {
  await nc?.close().catch(() => {});
  await proxy?.stop();
  await server?.destroy();
});

let streams = 0;

async function readAll(stream: string): Promise<Sequenced[]> {
  const name = `reader_${stream}`;
  await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
  const consumer = await jetstream(nc!).consumers.get(stream, name);
  const total = (await jsm.streams.info(stream)).state.messages;
  const out: Sequenced[] = [];
  const dec = new TextDecoder();
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    for await (const m of batch) out.push(JSON.parse(dec.decode(m.data)) as Sequenced);
  }
  return out;
}

/** Runs a scenario on a fresh stream; `inJob`: the job restarts itself (fixed delay), else the supervisor restarts the process. */
async function run(name: string, drive: Drive, faults: () => number, minFaults: number, inJob = true, count = 6000): Promise<void> {
  const started = performance.now();
  const n = ++streams;
  const stream = `FAULTS_${process.pid}_${n}`;
  const subject = `faults.${process.pid}.${n}`;
  const keys = 7;
  await jsm.streams.add({ name: stream, subjects: [subject], duplicate_window: 300_000_000_000 });
  const before = faults();
  const runs = await runUntilDone(
    {
      kind: "nats",
      job: `faults-nats-${process.pid}-${n}`,
      intervalMs: 300,
      count,
      keys,
      ratePerSecond: 1500,
      natsUrl: `nats://${proxy.address}`,
      subject,
      ...(inJob ? { restart: { strategy: "fixed-delay" as const, attempts: 30, delayMs: 1000 } } : {}),
    },
    { restartPauseMs: 1000, maxRuns: 20, runTimeoutMs: 120_000, ...drive },
  );
  proxy.onClientData(undefined);
  assert.equal(runs.hung, 0, `no run hung (${runs.hung} hung and were killed):\n${runs.failures.join("\n---\n").slice(-3000)}`);
  const injected = faults() - before;
  const compared = assertExactlyOnce(await readAll(stream), count, keys);
  assert.ok(injected >= minFaults, `at least ${minFaults} faults were injected (got ${injected})`);
  report({
    scenario: `NATS: ${name}${inJob ? "" : " (process restarts)"}`,
    faults: injected + runs.kills,
    kills: runs.kills,
    runs: runs.runs,
    restarts: runs.restartsInJob + runs.failed,
    ...compared,
    seconds: (performance.now() - started) / 1000,
  });
  if (runs.failures.length > 0) console.log(`  what the failed runs printed last:\n  ${runs.failures.slice(0, 3).join("\n  ").slice(0, 2000)}`);
}

describe("fault injection: NATS JetStream (private server behind a proxy)", () => {
  it("the server restarts mid-run", { timeout: 180_000 }, async (t) => {
    let restarted = 0;
    await run(
      "server restart",
      {
        signal: t.signal,
        onRunning: async (c) => {
          if (c.run !== 0) return;
          await sleep(1500);
          await server.stop();
          restarted++;
          await sleep(2000);
          await server.start();
        },
      },
      () => restarted,
      1,
    );
  });

  it("connections cut while publish acknowledgements come back", { timeout: 180_000 }, async (t) => {
    const c0 = proxy.faults.cuts;
    const dec = new TextDecoder();
    let armed = 0;
    let last = 0;
    proxy.onClientData((conn, chunk) => {
      if (armed >= 3 || Date.now() - last < 1500) return;
      const text = dec.decode(chunk);
      if (!text.includes("PUB faults.")) return;
      armed++;
      last = Date.now();
      // The publishes of this chunk reach the server; the connection dies inside the acks coming back.
      conn.cutAfter(40);
    });
    await run("cuts during publish acks", { signal: t.signal }, () => proxy.faults.cuts - c0, 3);
  });
});
