// The fault-injection proxy of tests/support/tcp-proxy.ts against a local echo server: each fault does what it
// says, and is counted.
import assert from "node:assert/strict";
import { createServer, type Server, type Socket, connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { startProxy, type TcpProxy } from "../support/tcp-proxy.ts";

let echo: Server;
let echoPort = 0;
const serverSockets = new Set<Socket>();
/** What the echo server received, per connection. */
const serverReceived = new Map<Socket, string>();

before(async () => {
  // Echoes every chunk; "BIG" answers 64 KiB of "x".
  echo = createServer((s) => {
    serverSockets.add(s);
    s.on("close", () => serverSockets.delete(s));
    s.on("error", () => {});
    s.on("data", (d: Uint8Array) => {
      serverReceived.set(s, (serverReceived.get(s) ?? "") + String(d));
      if (String(d) === "BIG") s.write("x".repeat(65_536));
      else s.write(d);
    });
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  const a = echo.address();
  echoPort = a !== null && typeof a === "object" ? a.port : 0;
});
after(async () => {
  for (const s of serverSockets) s.destroy();
  await new Promise<void>((r) => echo.close(() => r()));
});

interface Client {
  readonly socket: Socket;
  received(): string;
  /** Resolves with how the socket ended: "close", or the error code. */
  readonly ended: Promise<string>;
}

function client(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let data = "";
    let endedWith: (s: string) => void = () => {};
    const ended = new Promise<string>((r) => (endedWith = r));
    socket.on("data", (d: Uint8Array) => (data += String(d)));
    socket.on("error", (e: NodeJS.ErrnoException) => endedWith(e.code ?? "error"));
    socket.on("close", () => endedWith("close"));
    socket.once("connect", () => resolve({ socket, received: () => data, ended }));
    socket.once("error", reject);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How the client's connection ended, or "open" if it was still open after `ms`. */
function endedWithin(c: Client, ms = 1000): Promise<string> {
  return Promise.race([c.ended, sleep(ms).then(() => "open")]);
}

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}

describe("tcp proxy", () => {
  let proxy: TcpProxy;
  before(async () => {
    proxy = await startProxy({ targetPort: echoPort });
  });
  after(async () => {
    await proxy.stop();
  });

  it("passes bytes through both ways, without counting a fault", async () => {
    const c = await client(proxy.port);
    c.socket.write("hello");
    await waitFor(() => c.received() === "hello");
    c.socket.destroy();
    assert.equal(proxy.injected, 0);
  });

  it("resets every open connection and counts each", async () => {
    const before = proxy.faults.resets;
    const a = await client(proxy.port);
    const b = await client(proxy.port);
    await waitFor(() => proxy.connections.length >= 2);
    assert.equal(proxy.resetAll(), 2);
    assert.notEqual(await endedWithin(a), "open");
    assert.notEqual(await endedWithin(b), "open");
    assert.equal(proxy.faults.resets - before, 2);
    // A new connection works again.
    const c = await client(proxy.port);
    c.socket.write("again");
    await waitFor(() => c.received() === "again");
    c.socket.destroy();
  });

  it("adds latency to each chunk and keeps their order", async () => {
    proxy.setLatency(150);
    try {
      const c = await client(proxy.port);
      const t0 = performance.now();
      c.socket.write("a");
      await sleep(10);
      c.socket.write("b");
      await waitFor(() => c.received() === "ab");
      // Up and down: two delays.
      assert.ok(performance.now() - t0 >= 280, `took ${performance.now() - t0} ms`);
      c.socket.destroy();
      assert.ok(proxy.faults.delayed >= 4);
    } finally {
      proxy.setLatency(0);
    }
  });

  it("blackholes: accepted, but nothing arrives until it ends", async () => {
    const c = await client(proxy.port);
    proxy.blackhole(true);
    c.socket.write("lost");
    await sleep(200);
    assert.equal(c.received(), "");
    proxy.blackhole(false);
    c.socket.write("kept");
    await waitFor(() => c.received() === "kept");
    assert.equal(proxy.faults.blackholes, 1);
    c.socket.destroy();
  });

  it("refuses new connections for a period, then accepts again", async () => {
    const open = await client(proxy.port);
    const back = proxy.refuse(300);
    assert.notEqual(await endedWithin(open), "open", "the open connection was reset");
    await assert.rejects(client(proxy.port), (e: NodeJS.ErrnoException) => e.code === "ECONNREFUSED");
    await back;
    const c = await client(proxy.port);
    c.socket.write("up");
    await waitFor(() => c.received() === "up");
    c.socket.destroy();
    assert.equal(proxy.faults.refusals, 1);
  });

  it("cuts a connection in the middle of a response, after exactly N bytes", async () => {
    const cuts = proxy.faults.cuts;
    const c = await client(proxy.port);
    await waitFor(() => proxy.connections.length >= 1);
    proxy.onClientData((conn, chunk) => {
      if (String(chunk) === "BIG") conn.cutAfter(1000);
    });
    try {
      c.socket.write("BIG");
      assert.notEqual(await endedWithin(c), "open");
      assert.equal(c.received().length, 1000);
      assert.equal(proxy.faults.cuts - cuts, 1);
    } finally {
      proxy.onClientData(undefined);
    }
  });

  it("cuts a connection in the middle of a request: the server gets exactly N bytes of it", async () => {
    const cuts = proxy.faults.cuts;
    const serverGot = (): string => [...serverReceived.values()].find((v) => v.startsWith("REQ")) ?? "";
    const c = await client(proxy.port);
    proxy.onClientData((conn, chunk) => {
      if (String(chunk).startsWith("REQ")) conn.cutRequestAfter(7);
    });
    try {
      c.socket.write("REQ-0123456789");
      assert.notEqual(await endedWithin(c), "open");
      await waitFor(() => serverGot().length >= 7);
      await sleep(50);
      assert.equal(serverGot(), "REQ-012");
      assert.equal(proxy.faults.cuts - cuts, 1);
    } finally {
      proxy.onClientData(undefined);
    }
  });

  it("cuts new connections after N bytes while armed", async () => {
    proxy.cutAfter(10, true);
    try {
      const c = await client(proxy.port);
      c.socket.write("BIG");
      assert.notEqual(await endedWithin(c), "open");
      assert.equal(c.received().length, 10);
    } finally {
      proxy.cutAfter(undefined);
    }
    const c = await client(proxy.port);
    c.socket.write("BIG");
    await waitFor(() => c.received().length === 65_536);
    c.socket.destroy();
  });
});
