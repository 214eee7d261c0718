/**
 * The job's HTTP endpoints: `/metrics` (Prometheus text from the job's own Registry), `/health` (JSON,
 * 200 while running, 503 once failed), `/status` (a JSON snapshot), `/events` (the same snapshot as
 * Server-Sent Events, one per update interval), `/` with `/live.js` (the live page: see live-page/page.ts), and
 * `/state/<operator>/<name>?key=<key>` (queryable state, read only: see state/queryable.ts), which with
 * `stateTokens` asks for `Authorization: Bearer <token>` as the HTTP source does (401 otherwise).
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Job } from "./job.ts";
import { LIVE_PAGE_HTML, LIVE_PAGE_SCRIPT } from "./live-page/page.ts";
import { type JobHealth, type LiveSnapshot, liveSnapshot } from "./live-page/snapshot.ts";

export type { JobHealth, LiveSnapshot } from "./live-page/snapshot.ts";

/** A running metrics server. */
export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Options of {@link serveMetrics}. */
export interface MetricsServerOptions {
  /** How often the live page gets a snapshot over /events (ms). Default 1000. */
  readonly updateIntervalMs?: number;
  /** Bearer tokens that /state accepts; when unset, /state asks for none (the server listens on 127.0.0.1 only). */
  readonly stateTokens?: readonly string[];
}

/** True if `req` carries one of `tokens` as its bearer token (compared in constant time), or no tokens are set. */
function authorized(req: IncomingMessage, tokens: readonly Uint8Array[]): boolean {
  if (tokens.length === 0) return true;
  const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
  if (m === null) return false;
  const given = new TextEncoder().encode(m[1]);
  let ok = false;
  for (const t of tokens) if (t.byteLength === given.byteLength && timingSafeEqual(t, given)) ok = true;
  return ok;
}

/** Answers GET /state/<operator>/<name>?key=<key> with the queried state as JSON (a numeric key also matches a number). */
function serveState(job: Job, url: URL, res: ServerResponse): void {
  const json = (status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify(body));
  };
  const parts = url.pathname.split("/").slice(2).map(decodeURIComponent);
  const key = url.searchParams.get("key");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "" || key === null) {
    json(400, { error: "ask for /state/<operator>/<name>?key=<key>" });
    return;
  }
  const [operator, name] = parts as [string, string];
  const numeric = Number(key);
  // Keys are strings or numbers; a URL carries text, so "42" is tried as the string, then as the number.
  let found = job.queryState(operator, name, key);
  if (found !== undefined && found.value === undefined && key.trim() !== "" && Number.isFinite(numeric)) found = job.queryState(operator, name, numeric);
  if (found === undefined) {
    json(404, { error: `operator "${operator}" has no state "${name}"` });
    return;
  }
  json(200, { ...found, consistency: "uncommitted" });
}

/** A snapshot for the live page and /status. */
export function jobStatus(job: Job, health: JobHealth): LiveSnapshot {
  return liveSnapshot(job, health);
}

/** Serves the endpoints on 127.0.0.1:`port` (0 = any free port). */
export function serveMetrics(job: Job, health: JobHealth, port: number, options: MetricsServerOptions = {}): Promise<MetricsServer> {
  const interval = options.updateIntervalMs ?? 1_000;
  const stateTokens = (options.stateTokens ?? []).map((t) => new TextEncoder().encode(t));
  // Open /events streams: each gets every snapshot; close() ends them, or the server would wait for them.
  const streams = new Set<ServerResponse>();
  let ticker: ReturnType<typeof setInterval> | undefined;
  const push = (res: ServerResponse): void => {
    res.write(`data: ${JSON.stringify(liveSnapshot(job, health))}\n\n`);
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path.startsWith("/state/")) {
      if (!authorized(req, stateTokens)) {
        res.writeHead(401, { "content-type": "application/json", "www-authenticate": 'Bearer realm="gress"' });
        res.end(JSON.stringify({ error: "missing or wrong bearer token" }));
        return;
      }
      if (req.method !== "GET") {
        res.writeHead(405, { allow: "GET" });
        res.end();
        return;
      }
      serveState(job, new URL(req.url ?? "/", "http://localhost"), res);
      return;
    }
    if (path === "/metrics") {
      job.metrics
        .text()
        .then((text) => {
          res.writeHead(200, { "content-type": job.metrics.registry.contentType });
          res.end(text);
        })
        .catch((e: unknown) => {
          res.writeHead(500);
          res.end(String(e));
        });
      return;
    }
    if (path === "/health") {
      res.writeHead(health.status === "failed" ? 503 : 200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: health.status, job: job.name, error: health.error }));
      return;
    }
    if (path === "/status") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(jobStatus(job, health)));
      return;
    }
    if (path === "/events") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
      streams.add(res);
      req.on("close", () => {
        streams.delete(res);
        if (streams.size > 0 || ticker === undefined) return;
        clearInterval(ticker);
        ticker = undefined;
      });
      push(res);
      ticker ??= setInterval(() => {
        for (const r of streams) push(r);
      }, interval);
      return;
    }
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(LIVE_PAGE_HTML);
      return;
    }
    if (path === "/live.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      res.end(LIVE_PAGE_SCRIPT);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found: try /metrics, /health, /status, /events, /state/<operator>/<name>?key=<key> or /\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address !== null ? address.port : port,
        close: () =>
          new Promise<void>((r) => {
            if (ticker !== undefined) clearInterval(ticker);
            server.close(() => r());
            for (const res of streams) res.end();
            streams.clear();
          }),
      });
    });
  });
}
