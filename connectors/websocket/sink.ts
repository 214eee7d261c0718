/**
 * WebSocket sink: a server that broadcasts results to connected clients as JSON text frames.
 *
 * Without `topic`, every client gets every result. With `topic`, a client gets the results whose topic it
 * subscribed to by sending `{"subscribe":["a","b"]}` (and `{"unsubscribe":[...]}`). A client that cannot
 * keep up — more than `maxBufferedBytes` waiting in its socket — is disconnected (close code 1013) rather
 * than buffered without bound; the job never waits for a slow client. A value that cannot be encoded (or
 * whose topic function throws) is refused by `write` with a BadRecordError and goes to dead letters.
 *
 * At most once: a client gets what is written while it is connected. A restart closes the sink (clients are
 * disconnected with 1001) and opens it again on the same port; clients reconnect and resubscribe, and get
 * what the restarted job writes from then on (the replay from the checkpoint included).
 * @module
 */
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";
import { encodeRecord, type Sink } from "../../lib/sink.ts";

/**
 * Options of {@link websocketSink}.
 *
 * @example
 * ```ts
 * import { type WebSocketSinkOptions, websocketSink } from "gress/websocket";
 *
 * type Quote = { symbol: string; price: number };
 * // Clients subscribe to topics; a client more than 1 MiB behind is dropped instead of buffering without bound.
 * const options: WebSocketSinkOptions<Quote> = { name: "quotes", port: 8081, path: "/quotes", topic: (q) => q.symbol, maxBufferedBytes: 1 << 20 };
 * const sink = websocketSink(options);
 * ```
 */
export interface WebSocketSinkOptions<T> {
  readonly name: string;
  readonly host?: string;
  /** Port; 0 (default) picks a free one, see `port` after open. */
  readonly port?: number;
  readonly path?: string;
  /** The topic of a result; clients subscribe to topics. */
  readonly topic?: (value: T) => string;
  /** Frame text of a result. Default: JSON. */
  readonly encode?: (value: T) => string;
  /** Bytes a client may have waiting before it is disconnected. Default 4 MiB. */
  readonly maxBufferedBytes?: number;
}

/**
 * Counts of a WebSocket sink.
 *
 * @example
 * ```ts
 * import type { WebSocketSinkCounts } from "gress/websocket";
 *
 * const report = (c: WebSocketSinkCounts): string => `${c.sent} messages sent, ${c.slowClients} slow clients dropped`;
 * ```
 */
export interface WebSocketSinkCounts {
  /** Frames sent (one per client per result). */
  sent: number;
  /** Clients disconnected for being too slow. */
  slowClients: number;
}

/**
 * A broadcasting WebSocket sink. `open()` may be called early (it is idempotent) to let clients connect.
 *
 * @example
 * ```ts
 * import { type WebSocketSink, websocketSink } from "gress/websocket";
 *
 * const sink: WebSocketSink<string> = websocketSink({ name: "feed", port: 0 });
 * console.log(sink.port, sink.clients, sink.counts.sent);
 * ```
 */
export interface WebSocketSink<T> extends Sink<T> {
  readonly port: number;
  readonly counts: WebSocketSinkCounts;
  /** Connected clients. */
  readonly clients: number;
  open(): Promise<void>;
}

/**
 * Creates a broadcasting WebSocket sink.
 * @param options where to listen, topics, slow-client bound
 * @returns the sink
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { websocketSink } from "gress/websocket";
 *
 * type Price = { symbol: string; price: number };
 * // Broadcasts each value to the clients subscribed to its topic.
 * fromIterable<Price>([{ symbol: "ACME", price: 10 }]).sinkTo(websocketSink<Price>({ name: "prices", port: 8081, topic: (p) => p.symbol }));
 * ```
 */
export function websocketSink<T>(options: WebSocketSinkOptions<T>): WebSocketSink<T> {
  const maxBuffered = options.maxBufferedBytes ?? 4 << 20;
  const encode = options.encode ?? ((v: T) => JSON.stringify(v));
  const counts: WebSocketSinkCounts = { sent: 0, slowClients: 0 };
  const topics = new Map<WebSocket, Set<string>>();
  let server: WebSocketServer | undefined;
  let opening: Promise<void> | undefined;
  let port = 0;

  const onConnection = (ws: WebSocket): void => {
    topics.set(ws, new Set());
    ws.on("message", (data: Buffer) => {
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString("utf8"));
      } catch {
        return; // clients speak only subscribe/unsubscribe; anything else is ignored
      }
      const m = msg as { subscribe?: unknown; unsubscribe?: unknown };
      const set = topics.get(ws);
      if (set === undefined) return;
      if (Array.isArray(m.subscribe)) for (const t of m.subscribe) if (typeof t === "string") set.add(t);
      if (Array.isArray(m.unsubscribe)) for (const t of m.unsubscribe) if (typeof t === "string") set.delete(t);
      ws.send(JSON.stringify({ subscribed: [...set] }));
    });
    ws.on("close", () => topics.delete(ws));
    ws.on("error", () => {});
  };

  return {
    name: options.name,
    counts,
    get port() {
      return port;
    },
    get clients() {
      return topics.size;
    },
    open() {
      opening ??= new Promise<void>((resolve, reject) => {
        // Opened again after a restart: the same port as before, so that clients reconnect to the same URL.
        const s = new WebSocketServer({
          host: options.host ?? "127.0.0.1",
          port: port !== 0 ? port : (options.port ?? 0),
          ...(options.path !== undefined ? { path: options.path } : {}),
        });
        server = s;
        s.on("connection", onConnection);
        s.once("error", reject);
        s.once("listening", () => {
          port = (s.address() as AddressInfo).port;
          resolve();
        });
      });
      return opening;
    },
    // write reads the record's fields before it returns and keeps no record object.
    keepsRecords: false,
    write(value) {
      // A value that cannot be encoded, or whose topic function throws, is refused: it goes to dead letters.
      const text = encodeRecord("encode", encode, value);
      const topic = options.topic === undefined ? undefined : encodeRecord("topic", options.topic, value);
      for (const [ws, set] of topics) {
        if (ws.readyState !== WebSocket.OPEN) continue;
        if (topic !== undefined && !set.has(topic)) continue;
        if (ws.bufferedAmount > maxBuffered) {
          counts.slowClients++;
          ws.close(1013, "too slow: send buffer full");
          topics.delete(ws);
          continue;
        }
        ws.send(text);
        counts.sent++;
      }
    },
    async close() {
      // A close during open() closes the server open() was starting; the next open() (a restart) starts anew.
      const starting = opening;
      opening = undefined;
      await starting?.catch(() => {});
      const s = server;
      server = undefined;
      await new Promise<void>((resolve) => {
        for (const ws of topics.keys()) ws.close(1001, "sink closed");
        if (s === undefined) return resolve();
        s.close(() => resolve());
        for (const ws of topics.keys()) ws.terminate();
      });
      topics.clear();
    },
  };
}
