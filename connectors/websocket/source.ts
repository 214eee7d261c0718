/**
 * WebSocket source, as a server (clients connect and send) or as a client (it connects to a server and
 * receives). Every message is appended to the durable ingest log and only then acknowledged to its sender
 * with an ack frame (default `{"ack":n}`, `n` counting the messages of that connection from 1). The job
 * reads the log, so the source replays from its checkpointed log position after a crash.
 *
 * Backpressure pauses the TCP sockets (`ws._socket.pause()`): while the job is paused, while the log backlog
 * or the appends in flight exceed their bounds, or while the rate limit is in debt, no more frames are read,
 * and TCP flow control reaches the senders.
 *
 * Quotas per tenant (server mode, `quotas`): a connection's tenant is named by a header of its upgrade request
 * or by its bearer token (a connection naming no tenant is closed with 1008). Each message is charged to its
 * tenant's buckets of messages/s and bytes/s; a tenant over its quota has its own sockets paused until its
 * buckets refill, and the other tenants' sockets go on reading. The frames a paused socket had already read
 * (the rest of its last chunk) wait in order and are admitted, logged and acknowledged as the buckets refill,
 * not all at once: a burst of them would delay the other tenants' messages.
 *
 * Bad messages (invalid UTF-8, malformed JSON, `__proto__`, schema violations) are logged like good ones and
 * become dead letters with the reason when read back. An oversized message (over `maxMessageBytes`) is
 * logged as a bounded preview and becomes a dead letter; over `4 × maxMessageBytes` ws closes the
 * connection (1009) before buffering it.
 *
 * A restart closes the source (its sockets are cut, the server stops listening) and opens it again: the log
 * is replayed from the restored checkpoint, then the server listens again on the same port (a client
 * connects again), and senders resend what they had not seen acknowledged.
 * @module
 */
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer } from "ws";
import type { AddressInfo } from "node:net";
import type { z } from "zod";
import type { Source, SourceContext } from "../../lib/source.ts";
import type { IncomingMessage } from "node:http";
import { DEFAULT_MAX_BYTES, deadLetterOf, type Decoder, jsonDecoder, TenantQuotas, type TenantQuotaOptions, type TenantQuotaStats, TokenBucket, type TokenBucketOptions } from "../ingest/index.ts";
import { type LoggedEntry, LoggedSource, loggedSourceMethods } from "../ingest-log/source.ts";

/**
 * Where the source gets its messages.
 *
 * @example
 * ```ts
 * import type { WebSocketEndpoint } from "gress/websocket";
 *
 * const server: WebSocketEndpoint = { mode: "server", port: 8080, path: "/ingest" };
 * const client: WebSocketEndpoint = { mode: "client", url: "ws://localhost:8080/ingest" };
 * ```
 */
export type WebSocketEndpoint =
  | { readonly mode: "server"; readonly host?: string; readonly port?: number; readonly path?: string }
  | { readonly mode: "client"; readonly url: string; readonly reconnectMs?: number };

/**
 * Options of {@link websocketSource}.
 *
 * @example
 * ```ts
 * import { type WebSocketSourceOptions, websocketSource } from "gress/websocket";
 * import { z } from "zod";
 *
 * const Click = z.object({ user: z.string(), at: z.number() });
 * // A client of an upstream server, reconnecting after 1 s; each message logged durably before it is acknowledged.
 * const options: WebSocketSourceOptions<z.infer<typeof Click>> = {
 *   name: "clicks",
 *   mode: "client",
 *   url: "ws://upstream.example.com/clicks",
 *   reconnectMs: 1_000,
 *   dir: "state/ws-clicks",
 *   schema: Click,
 *   timestamp: (c) => c.at,
 * };
 * const source = websocketSource(options);
 * ```
 */
export type WebSocketSourceOptions<T> = WebSocketEndpoint & {
  readonly name: string;
  /** Directory of the durable ingest log of this source. */
  readonly dir: string;
  readonly schema?: z.ZodType<T>;
  /** Larger messages become dead letters. Default 1 MiB. */
  readonly maxMessageBytes?: number;
  /** Messages whose arrays and objects nest deeper than this become dead letters. Default 128. */
  readonly maxDepth?: number;
  readonly rateLimit?: TokenBucketOptions;
  /** Server mode: quotas per tenant, in messages/s (`recordsPerSecond`) and bytes/s; see the module comment. */
  readonly quotas?: TenantQuotaOptions;
  /** The ack frame for the n-th message of a connection, or false for none. Default `{"ack":n}`. */
  readonly ackFrame?: ((n: number) => string) | false;
  /** Event time of a record. Default: receive time. */
  readonly timestamp?: (value: T) => number;
  /** Entries waiting to be emitted (and appends in flight) before the sockets pause. Default 1024. */
  readonly maxBacklog?: number;
  readonly maxLogBytes?: number;
  readonly fsync?: boolean;
};

/**
 * A WebSocket source; `port` is known after open in server mode.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { type WebSocketSource, websocketSource } from "gress/websocket";
 *
 * const source: WebSocketSource<unknown> = websocketSource({ name: "in", mode: "server", port: 0, dir: "state/ws-in" });
 * const job = new Job();
 * job.source(source).sinkTo({ name: "s", write() {} });
 * const running = job.run();
 * await source.ready;
 * console.log(`ws://localhost:${source.port}`);
 * ```
 */
export interface WebSocketSource<T> extends Source<T> {
  readonly port: number;
  readonly counts: LoggedSource<T>["counts"];
  /**
   * Resolves once the server listens (server mode) or the first connection is open (client mode); after a
   * restart closed the source, once that is so again (a server listens on the same port).
   */
  readonly ready: Promise<void>;
  /** Messages and bytes per tenant (under "*" unless `quotas.perTenantStats`); undefined without quotas. */
  readonly quotaStats: ReadonlyMap<string, Readonly<TenantQuotaStats>> | undefined;
}

const PREVIEW = 256;

/**
 * Creates a WebSocket source.
 * @param options server or client endpoint, log directory, schema, limits
 * @returns the source
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { websocketSource } from "gress/websocket";
 *
 * // A WebSocket server: each message is in the durable ingest log (dir) before it is acknowledged.
 * const job = new Job();
 * const events = job.source(websocketSource<{ type: string }>({ name: "ws-events", mode: "server", port: 8080, dir: "state/ws-log" }));
 * ```
 */
export function websocketSource<T = unknown>(options: WebSocketSourceOptions<T>): WebSocketSource<T> {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_BYTES;
  const maxBacklog = options.maxBacklog ?? 1024;
  const ackFrame = options.ackFrame === undefined ? (n: number) => `{"ack":${n}}` : options.ackFrame;
  const decode: Decoder<T> = jsonDecoder<T>({
    ...(options.schema !== undefined ? { schema: options.schema } : {}),
    ...(options.maxDepth !== undefined ? { maxDepth: options.maxDepth } : {}),
    maxBytes,
  });
  const sockets = new Set<WebSocket>();
  let server: WebSocketServer | undefined;
  let client: WebSocket | undefined;
  let closing = false;
  let bucket: TokenBucket | undefined;
  let quotas: TenantQuotas | undefined;
  /** Per tenant: held (its sockets paused) until this time of the job's clock. */
  const tenantHold = new Map<string, number>();
  const tenantOf = new WeakMap<WebSocket, string>();
  let ctxRef: SourceContext<T> | undefined;
  let inFlight = 0;
  let rateHoldUntil = 0;
  let port = 0;
  let markReady: () => void = () => {};
  let ready = new Promise<void>((r) => (markReady = r));
  /** `ready` has resolved; a close() then renews it, so that after a restart it waits for the new run. */
  let wasReady = false;
  const becomeReady = (): void => {
    wasReady = true;
    markReady();
  };
  /** Counts runs (open() calls that got as far as accepting input): a closed run's reconnect timer stops. */
  let run = 0;

  const logged: LoggedSource<T> = new LoggedSource<T>({
    name: options.name,
    dir: options.dir,
    decode: (entry) => {
      if (entry.meta.startsWith("oversized:")) {
        const size = Number(entry.meta.slice("oversized:".length));
        return [{ decoded: { ok: false, reason: `oversized: ${size} bytes > limit ${maxBytes}` }, raw: deadLetterOf(options.name, options.name, 0, entry.body) }];
      }
      return [{ decoded: decode(entry.body), raw: deadLetterOf(options.name, options.name, 0, entry.body) }];
    },
    ...(options.timestamp !== undefined ? { timestamp: (v: T) => (options.timestamp as (v: T) => number)(v) } : {}),
    maxBacklog,
    ...(options.maxLogBytes !== undefined ? { maxLogBytes: options.maxLogBytes } : {}),
    ...(options.fsync !== undefined ? { fsync: options.fsync } : {}),
    beforeOpen: (ctx) => {
      ctxRef = ctx;
      if (options.rateLimit !== undefined) bucket = new TokenBucket(options.rateLimit, ctx.clock);
      if (options.quotas !== undefined && quotas === undefined) {
        if (options.mode !== "server") throw new RangeError(`websocket source "${options.name}": quotas need mode "server"`);
        quotas = new TenantQuotas(options.quotas, ctx.clock);
      }
    },
    onOpen: () => start(),
    onClose: () => stop(),
  });

  const held = (): boolean => logged.pressured || inFlight >= maxBacklog || (ctxRef?.clock.now() ?? 0) < rateHoldUntil;
  // ws exposes its TCP socket as `_socket`; pausing it stops reading frames, and TCP flow control does the
  // rest. Pause state is tracked here, because not every runtime's socket has isPaused().
  const socketOf = (ws: WebSocket): Partial<Pick<Duplex, "pause" | "resume">> | undefined => (ws as unknown as { _socket?: Duplex })._socket;
  const pausedSockets = new WeakSet<WebSocket>();
  /** Tenants with a wake-up scheduled for the end of their hold. */
  const tenantWake = new Set<string>();
  /** Milliseconds left of `tenant`'s hold; 0 when it is not held. */
  const holdLeft = (tenant: string): number => {
    const until = tenantHold.get(tenant);
    if (until === undefined) return 0;
    const left = until - (ctxRef?.clock.now() ?? 0);
    if (left > 0) return left;
    tenantHold.delete(tenant);
    return 0;
  };
  /**
   * Per connection of a tenant over its quota: the frames that arrived while it was held (the rest of the
   * chunk its socket had read before it paused, up to 64 KB), admitted in order as its buckets refill.
   */
  const waitingFrames = new WeakMap<WebSocket, Uint8Array[]>();
  const tenantHeld = (ws: WebSocket): boolean => {
    const tenant = tenantOf.get(ws);
    if (tenant === undefined) return false;
    const left = holdLeft(tenant);
    if (left <= 0) return false;
    // Timers and the job's clock may disagree by a millisecond: look again when the hold ends, whoever set it.
    if (!tenantWake.has(tenant)) {
      tenantWake.add(tenant);
      setTimeout(() => {
        tenantWake.delete(tenant);
        applyFlow(tenant);
      }, left + 1);
    }
    return true;
  };
  /** The connections of each tenant, for a change of its hold. */
  const connectionsOf = new Map<string, Set<WebSocket>>();
  /** What {@link held} said when the sockets were last brought in line with it. */
  let heldAll = false;
  /** Pauses or resumes one connection's socket for what holds it now. */
  const flowOf = (ws: WebSocket): void => {
    // A closed connection (an ack that settles after its close) has nothing left to pause.
    const s = sockets.has(ws) ? socketOf(ws) : undefined;
    if (s === undefined) return;
    const hold = heldAll || tenantHeld(ws) || (waitingFrames.get(ws)?.length ?? 0) > 0;
    if (hold && !pausedSockets.has(ws)) {
      pausedSockets.add(ws);
      s.pause?.();
    } else if (!hold && pausedSockets.has(ws)) {
      pausedSockets.delete(ws);
      s.resume?.();
    }
  };
  /**
   * Brings the sockets in line with what holds them. Every connection when the source-wide hold changed (the
   * log's pressure, the backlog, the rate limit); else only those whose own state may have changed: one
   * connection, or every connection of a tenant whose hold began or ended. So a message costs a few checks,
   * not one per open connection.
   */
  const applyFlow = (scope?: WebSocket | string): void => {
    const all = held();
    if (all !== heldAll) {
      heldAll = all;
      for (const ws of sockets) flowOf(ws);
    } else if (typeof scope === "string") {
      for (const ws of connectionsOf.get(scope) ?? []) flowOf(ws);
    } else if (scope !== undefined) flowOf(scope);
  };
  logged.onPressure(() => applyFlow());

  const attach = (ws: WebSocket, req?: IncomingMessage): void => {
    const quotaTenant = options.quotas?.tenant;
    let tenant: string | undefined;
    if (quotaTenant !== undefined && quotas !== undefined && req !== undefined) {
      if ("header" in quotaTenant) {
        const h = req.headers[quotaTenant.header.toLowerCase()];
        tenant = typeof h === "string" && h.length > 0 && h.length <= 256 ? h : undefined;
      } else {
        const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
        tenant = token === undefined ? undefined : quotas.tenantOfToken(token);
      }
      if (tenant === undefined) {
        ws.close(1008, "header" in quotaTenant ? `missing tenant: give the ${quotaTenant.header} header` : "the bearer token names no tenant");
        return;
      }
      tenantOf.set(ws, tenant);
      let own = connectionsOf.get(tenant);
      if (own === undefined) connectionsOf.set(tenant, (own = new Set()));
      own.add(ws);
    }
    sockets.add(ws);
    let n = 0;
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      void isBinary;
      const bytes = toBytes(data);
      if (tenant !== undefined) {
        // Over its quota, a tenant's frames wait until its buckets refill, and behind the ones already waiting.
        const waiting = waitingFrames.get(ws);
        if (waiting !== undefined && waiting.length > 0) {
          waiting.push(bytes);
          return;
        }
        if (holdLeft(tenant) > 0) {
          waitingFrames.set(ws, [bytes]);
          admitWaiting(tenant);
          return;
        }
      }
      admit(bytes);
    });
    /**
     * Admits the connection's waiting frames while its tenant is not held, one charge at a time: so a tenant
     * over its quota is acknowledged at its quota's pace, and the frames its socket read before it paused are
     * not processed in one burst that the other tenants' messages would wait behind.
     */
    const admitWaiting = (tenant: string): void => {
      const waiting = waitingFrames.get(ws);
      if (waiting === undefined) return;
      while (waiting.length > 0) {
        // Closed (or the source stopped): the sender gets no ack for these and sends them again.
        if (ws.readyState !== WebSocket.OPEN) {
          waiting.length = 0;
          break;
        }
        const left = holdLeft(tenant);
        if (left > 0) {
          setTimeout(() => admitWaiting(tenant), left + 1);
          return;
        }
        admit(waiting.shift() as Uint8Array);
      }
      // Nothing waits any more: its socket may read again.
      applyFlow(ws);
    };
    const admit = (bytes: Uint8Array): void => {
      const seq = ++n;
      const ctx = ctxRef as SourceContext<T>;
      const entry: LoggedEntry =
        bytes.byteLength > maxBytes
          ? { receivedAt: ctx.clock.now(), meta: `oversized:${bytes.byteLength}`, body: bytes.subarray(0, PREVIEW) }
          : { receivedAt: ctx.clock.now(), meta: "", body: bytes };
      inFlight++;
      if (bucket !== undefined) {
        bucket.take(1);
        const wait = bucket.delayFor(1);
        if (wait > 0) {
          rateHoldUntil = ctx.clock.now() + wait;
          setTimeout(() => applyFlow(), wait);
        }
      }
      // A frame is admitted only while its tenant is not held: a charge that leaves a wait starts a hold,
      // which pauses every connection of the tenant.
      let holdStarted = false;
      if (tenant !== undefined && quotas !== undefined) {
        const wait = quotas.charge(tenant, 1, bytes.byteLength);
        if (wait > 0) {
          tenantHold.set(tenant, ctx.clock.now() + wait);
          holdStarted = true;
        }
      }
      applyFlow(holdStarted ? tenant : ws);
      logged.append([entry]).then(
        () => {
          inFlight--;
          if (ackFrame !== false && ws.readyState === WebSocket.OPEN) ws.send(ackFrame(seq));
          applyFlow(ws);
        },
        (e: unknown) => {
          inFlight--;
          // Not durable: the sender must not consider it delivered. Close with "internal error".
          if (ws.readyState === WebSocket.OPEN) ws.close(1011, `not durable: ${e instanceof Error ? e.message : String(e)}`.slice(0, 120));
        },
      );
    };
    ws.on("close", () => {
      sockets.delete(ws);
      if (tenant === undefined) return;
      const own = connectionsOf.get(tenant);
      own?.delete(ws);
      if (own?.size === 0) connectionsOf.delete(tenant);
    });
    ws.on("error", () => {});
    applyFlow(ws);
  };

  const start = (): Promise<void> => {
    closing = false;
    const thisRun = ++run;
    if (options.mode === "server") {
      return new Promise<void>((resolve, reject) => {
        const s = new WebSocketServer({
          host: options.host ?? "127.0.0.1",
          // Opened again after a restart: the same port as before, so that the senders' URL stays valid.
          port: port !== 0 ? port : (options.port ?? 0),
          ...(options.path !== undefined ? { path: options.path } : {}),
          maxPayload: maxBytes * 4,
        });
        server = s;
        s.on("connection", attach);
        s.once("error", reject);
        s.once("listening", () => {
          port = (s.address() as AddressInfo).port;
          becomeReady();
          resolve();
        });
      });
    }
    const connectClient = (): void => {
      if (closing || thisRun !== run) return;
      const ws = new WebSocket(options.url, { maxPayload: maxBytes * 4 });
      client = ws;
      ws.once("open", () => {
        attach(ws);
        becomeReady();
      });
      ws.once("close", () => {
        if (!closing && thisRun === run) setTimeout(connectClient, options.reconnectMs ?? 500);
      });
      ws.on("error", () => {});
    };
    connectClient();
    return Promise.resolve();
  };

  const stop = (): Promise<void> => {
    closing = true;
    run++;
    if (wasReady) {
      wasReady = false;
      ready = new Promise<void>((r) => (markReady = r));
    }
    for (const ws of sockets) ws.terminate();
    sockets.clear();
    connectionsOf.clear();
    client?.terminate();
    client = undefined;
    const s = server;
    server = undefined;
    return new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
  };

  return {
    name: options.name,
    get port() {
      return port;
    },
    counts: logged.counts,
    get ready() {
      return ready;
    },
    get quotaStats() {
      return quotas?.stats;
    },
    tenantStats() {
      return quotas?.stats;
    },
    ...loggedSourceMethods(logged),
  };
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) {
    const total = data.reduce((s, b) => s + b.byteLength, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const b of data) {
      out.set(b, at);
      at += b.byteLength;
    }
    return out;
  }
  return data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
