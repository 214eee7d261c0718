/**
 * A loopback TCP proxy for fault injection: clients connect to `proxy.port`, each connection is relayed to the
 * target service, and the test injects faults between them:
 *
 * - {@link TcpProxy.resetAll}: every open connection is reset (RST where the runtime supports it);
 * - {@link TcpProxy.setLatency}: each chunk, both ways, is delayed (order kept);
 * - {@link TcpProxy.blackhole}: connections are accepted and bytes read, but nothing is forwarded either way —
 *   a peer that went silent, as when a host is unplugged;
 * - {@link TcpProxy.refuse}: the listener is closed for a period, so new connections are refused;
 * - {@link TcpProxy.cutAfter} / {@link ProxyConnection.cutAfter}: a connection is cut after N more bytes of
 *   response, i.e. in the middle of one ({@link ProxyConnection.cutRequestAfter}: of a request);
 * - {@link TcpProxy.onClientData}: a hook that sees each client→server chunk before it is forwarded, to fault
 *   one connection at a protocol moment (a commit request, an insert).
 *
 * Every injected fault is counted in {@link TcpProxy.faults}, so a test can assert that its faults happened.
 * Built on node:net only (works on Node, Bun and Deno).
 * @module
 */
import { createServer, type Server, type Socket, connect } from "node:net";

/** Faults injected so far. */
export interface FaultCounts {
  /** Connections reset (resetAll, reset of one connection, or a reset on refusal). */
  resets: number;
  /** Connections cut after N bytes of a response. */
  cuts: number;
  /** Blackhole periods started. */
  blackholes: number;
  /** Refusal periods started (the listener closed). */
  refusals: number;
  /** Chunks delayed by the added latency. */
  delayed: number;
}

/** One relayed connection. */
export interface ProxyConnection {
  readonly id: number;
  /** Bytes client → server and server → client forwarded so far. */
  readonly up: number;
  readonly down: number;
  /** Resets this connection (both sides). */
  reset(): void;
  /** Cuts this connection after `bytes` more bytes from the server (0: at the next byte). */
  cutAfter(bytes: number): void;
  /** Cuts this connection after `bytes` more bytes from the client: the server gets part of a request. */
  cutRequestAfter(bytes: number): void;
}

/** Where to relay to, and where to listen. */
export interface TcpProxyOptions {
  readonly targetHost?: string;
  readonly targetPort: number;
  /** Port to listen on (127.0.0.1). Default: a free port. */
  readonly port?: number;
}

function hardClose(s: Socket): void {
  // resetAndDestroy sends RST (Node ≥ 18.3); runtimes without it close the socket.
  const r = (s as Socket & { resetAndDestroy?: () => Socket }).resetAndDestroy;
  if (typeof r === "function" && !s.destroyed) {
    try {
      r.call(s);
      return;
    } catch {
      // not connected yet: fall through
    }
  }
  s.destroy();
}

class Conn implements ProxyConnection {
  readonly id: number;
  up = 0;
  down = 0;
  #cutIn: number | undefined;
  #cutUpIn: number | undefined;
  #closed = false;
  readonly #proxy: TcpProxy;
  readonly client: Socket;
  readonly server: Socket;

  constructor(proxy: TcpProxy, id: number, client: Socket, server: Socket) {
    this.#proxy = proxy;
    this.id = id;
    this.client = client;
    this.server = server;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes both sides; with `rst`, as a reset (a fault), else as the end of a connection a peer closed. */
  close(rst = false): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [this.client, this.server]) {
      // A reset on a socket its peer already ended can leave the handle alive (Node 20): destroy those.
      if (rst && !s.readableEnded) hardClose(s);
      else s.destroy();
    }
    this.#proxy.forget(this);
  }

  reset(): void {
    if (this.#closed) return;
    this.#proxy.faults.resets++;
    this.close(true);
  }

  cutAfter(bytes: number): void {
    this.#cutIn = Math.max(0, bytes);
  }

  cutRequestAfter(bytes: number): void {
    this.#cutUpIn = Math.max(0, bytes);
  }

  /** Forwards a server → client chunk, cutting the connection if armed. */
  toClient(chunk: Uint8Array): void {
    if (this.#closed) return;
    if (this.#cutIn !== undefined) {
      if (chunk.length >= this.#cutIn || this.#cutIn === 0) {
        const part = chunk.subarray(0, this.#cutIn);
        this.down += part.length;
        this.#proxy.faults.cuts++;
        if (part.length > 0) this.client.write(part, () => this.close(true));
        else this.close(true);
        this.#cutIn = undefined;
        // In case the write callback never comes (the client went away).
        setTimeout(() => this.close(true), 50);
        return;
      }
      this.#cutIn -= chunk.length;
    }
    this.down += chunk.length;
    this.client.write(chunk);
  }

  toServer(chunk: Uint8Array): void {
    if (this.#closed) return;
    if (this.#cutUpIn !== undefined) {
      if (chunk.length >= this.#cutUpIn) {
        const part = chunk.subarray(0, this.#cutUpIn);
        this.up += part.length;
        this.#proxy.faults.cuts++;
        this.#cutUpIn = undefined;
        if (part.length > 0) this.server.write(part, () => this.close(true));
        else this.close(true);
        setTimeout(() => this.close(true), 50);
        return;
      }
      this.#cutUpIn -= chunk.length;
    }
    this.up += chunk.length;
    this.server.write(chunk);
  }
}

/** The proxy; create with {@link startProxy}. */
export class TcpProxy {
  readonly faults: FaultCounts = { resets: 0, cuts: 0, blackholes: 0, refusals: 0, delayed: 0 };
  readonly targetHost: string;
  readonly targetPort: number;
  #port = 0;
  #server: Server | undefined;
  readonly #conns = new Set<Conn>();
  #nextId = 1;
  #latencyMs = 0;
  #blackholed = false;
  #refusing: ReturnType<typeof setTimeout> | undefined;
  #refuseDone: Promise<void> | undefined;
  #cutNew: number | undefined;
  #onClientData: ((conn: ProxyConnection, chunk: Uint8Array) => void) | undefined;
  #stopped = false;
  /** Connections accepted in total. */
  accepted = 0;

  constructor(options: TcpProxyOptions) {
    this.targetHost = options.targetHost ?? "127.0.0.1";
    this.targetPort = options.targetPort;
    this.#port = options.port ?? 0;
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#port;
  }

  /** `127.0.0.1:<port>`. */
  get address(): string {
    return `127.0.0.1:${this.#port}`;
  }

  /** Connections open now. */
  get connections(): readonly ProxyConnection[] {
    return [...this.#conns];
  }

  /** @internal */
  forget(c: Conn): void {
    this.#conns.delete(c);
  }

  /** @internal */
  listen(): Promise<void> {
    const server = createServer({ pauseOnConnect: false }, (client) => this.#accept(client));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", () => {
        server.off("error", reject);
        const a = server.address();
        if (a !== null && typeof a === "object") this.#port = a.port;
        resolve();
      });
    });
  }

  #accept(client: Socket): void {
    this.accepted++;
    client.setNoDelay(true);
    const server = connect({ host: this.targetHost, port: this.targetPort });
    server.setNoDelay(true);
    const conn = new Conn(this, this.#nextId++, client, server);
    this.#conns.add(conn);
    if (this.#cutNew !== undefined) conn.cutAfter(this.#cutNew);
    const end = (): void => conn.close();
    client.on("error", end);
    server.on("error", end);
    client.on("close", end);
    server.on("close", end);
    client.on("data", (chunk: Uint8Array) => {
      if (conn.closed || this.#blackholed) return;
      this.#onClientData?.(conn, chunk);
      if (conn.closed) return;
      this.#later(() => conn.toServer(chunk));
    });
    server.on("data", (chunk: Uint8Array) => {
      if (conn.closed || this.#blackholed) return;
      this.#later(() => conn.toClient(chunk));
    });
  }

  #later(f: () => void): void {
    if (this.#latencyMs <= 0) {
      f();
      return;
    }
    this.faults.delayed++;
    // Same delay for every chunk: timers fire in order, so the byte order is kept.
    setTimeout(f, this.#latencyMs);
  }

  /** Resets every open connection; returns how many. */
  resetAll(): number {
    const n = this.#conns.size;
    for (const c of [...this.#conns]) c.reset();
    return n;
  }

  /** Adds `ms` of latency to every chunk, both ways (0 removes it). */
  setLatency(ms: number): void {
    this.#latencyMs = Math.max(0, ms);
  }

  /** Starts (true) or ends (false) a blackhole: bytes are read and dropped, both ways, on every connection. */
  blackhole(on: boolean): void {
    if (on && !this.#blackholed) this.faults.blackholes++;
    this.#blackholed = on;
  }

  /** Whether the proxy is blackholing now. */
  get blackholed(): boolean {
    return this.#blackholed;
  }

  /**
   * Closes the listener for `ms` (new connections are refused), resetting the open ones when `resetOpen`.
   * Resolves when the proxy listens again.
   */
  refuse(ms: number, resetOpen = true): Promise<void> {
    if (this.#refuseDone !== undefined) return this.#refuseDone;
    this.faults.refusals++;
    if (resetOpen) this.resetAll();
    const server = this.#server;
    this.#server = undefined;
    this.#refuseDone = new Promise<void>((resolve, reject) => {
      server?.close();
      this.#refusing = setTimeout(() => {
        this.#refusing = undefined;
        this.#refuseDone = undefined;
        if (this.#stopped) return resolve();
        this.listen().then(resolve, reject);
      }, ms);
    });
    return this.#refuseDone;
  }

  /**
   * Cuts every open connection after `bytes` more bytes from the server; with `newConnections`, connections
   * accepted later too, until {@link cutAfter} is called with `undefined`.
   */
  cutAfter(bytes: number | undefined, newConnections = false): void {
    if (bytes === undefined) {
      this.#cutNew = undefined;
      return;
    }
    for (const c of this.#conns) c.cutAfter(bytes);
    if (newConnections) this.#cutNew = bytes;
  }

  /** Sees every client → server chunk before it is forwarded (and may reset or arm a cut on its connection). */
  onClientData(hook: ((conn: ProxyConnection, chunk: Uint8Array) => void) | undefined): void {
    this.#onClientData = hook;
  }

  /** Total number of faults injected (delayed chunks not included). */
  get injected(): number {
    return this.faults.resets + this.faults.cuts + this.faults.blackholes + this.faults.refusals;
  }

  /** Stops listening and closes every connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#refusing !== undefined) clearTimeout(this.#refusing);
    for (const c of [...this.#conns]) c.close();
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined) await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Starts a proxy to `targetPort` and resolves once it listens. */
export async function startProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const p = new TcpProxy(options);
  await p.listen();
  return p;
}

/**
 * A base port p with p … p + count - 1 free a moment ago (each bound on 127.0.0.1 and released), for a server
 * that something else starts later (a child process, a broker). Taken at random below 32768, out of the
 * ephemeral range that Linux (32768–60999) and macOS (49152–65535) give outgoing connections: a port from
 * listen(0) is in that range, and in the gap before its server bound it, a client's outgoing connection (a
 * Kafka client's, say) could take it as its local port (seen: EADDRINUSE of a scale-out worker's /metrics port).
 */
export async function freePort(count = 1): Promise<number> {
  const bindable = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 1000; attempt++) {
    // Above the ports of scripts/services (14222 … 19093).
    const base = 20_000 + Math.floor(Math.random() * (32_768 - 20_000 - count));
    let free = true;
    for (let i = 0; i < count && free; i++) free = await bindable(base + i);
    if (free) return base;
  }
  throw new Error(`no ${count} free consecutive port(s) found between 20000 and 32767`);
}
