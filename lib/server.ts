/**
 * The job's HTTP endpoints: `/metrics` (Prometheus text from the job's own Registry), `/health` (JSON,
 * 200 while running, 503 once failed), `/status` (JSON for the live page) and `/` (a live page that shows
 * throughput per source and operator, watermarks and event-time lag (the latency of event time behind
 * processing time), checkpoints and backpressure, refreshed every second).
 * @module
 */
import { createServer, type Server } from "node:http";
import type { Job } from "./job.ts";

/** A running metrics server. */
export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Health as reported by the job runner. */
export interface JobHealth {
  status: "starting" | "running" | "finished" | "failed";
  error?: string;
}

/** A snapshot for the live page. */
export function jobStatus(job: Job, health: JobHealth): Record<string, unknown> {
  const m = job.metrics;
  return {
    job: job.name,
    status: health.status,
    error: health.error,
    time: job.clock.now(),
    sources: job.sources.map((s) => {
      const sm = m.source(s.name);
      return { name: s.name, emitted: sm.emitted, paused: sm.paused };
    }),
    operators: m.operators().map((o) => ({
      id: o.operator,
      // Latency as stream processors show it: how far event time (the watermark) trails processing time.
      eventTimeLagMs: Number.isFinite(o.watermark) ? job.clock.now() - o.watermark : null,
      in: o.recordsIn,
      out: o.recordsOut,
      late: o.lateRecords,
      deadLetters: o.deadLetters,
      watermark: Number.isFinite(o.watermark) ? o.watermark : null,
      buffered: o.buffered,
    })),
    checkpoints: { completed: m.checkpointsCompleted, lastDurationSeconds: m.lastCheckpointDurationSeconds },
    recoverySeconds: m.recoverySeconds,
  };
}

/** Serves the endpoints on 127.0.0.1:`port` (0 = any free port). */
export function serveMetrics(job: Job, health: JobHealth, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
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
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(LIVE_PAGE);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found: try /metrics, /health, /status or /\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address !== null ? address.port : port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

const LIVE_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>Gress</title>
<style>body{font:14px system-ui;margin:2em;color:#222}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}.paused{color:#b00}</style></head>
<body><h1 id="title">Gress</h1><p id="summary"></p><h2>Sources</h2><table id="sources"></table><h2>Operators</h2><table id="ops"></table>
<script>
let last = null;
function row(cells, tag) { return "<tr>" + cells.map((c) => "<" + tag + ">" + c + "</" + tag + ">").join("") + "</tr>"; }
async function tick() {
  const s = await (await fetch("/status")).json();
  const now = performance.now();
  document.getElementById("title").textContent = "Gress — " + s.job + " (" + s.status + ")";
  document.getElementById("summary").textContent = "checkpoints: " + s.checkpoints.completed + ", last " + s.checkpoints.lastDurationSeconds.toFixed(3) + " s" + (s.error ? " — error: " + s.error : "");
  document.getElementById("sources").innerHTML = row(["source", "records", "records/s", "backpressure"], "th") + s.sources.map((x) => {
    const prev = last && last.s.sources.find((p) => p.name === x.name);
    const rate = prev ? ((x.emitted - prev.emitted) / ((now - last.t) / 1000)).toFixed(0) : "";
    return row([x.name, x.emitted, rate, x.paused ? "<span class=paused>paused</span>" : "flowing"], "td");
  }).join("");
  document.getElementById("ops").innerHTML = row(["operator", "in", "records/s", "out", "late", "dead letters", "watermark", "event-time lag", "buffered"], "th") + s.operators.map((o) => {
    const prev = last && last.s.operators.find((p) => p.id === o.id);
    const rate = prev ? ((o.in - prev.in) / ((now - last.t) / 1000)).toFixed(0) : "";
    const lag = o.eventTimeLagMs === null ? "" : (o.eventTimeLagMs / 1000).toFixed(1) + " s";
    return row([o.id, o.in, rate, o.out, o.late, o.deadLetters, o.watermark === null ? "" : new Date(o.watermark).toISOString(), lag, o.buffered], "td");
  }).join("");
  last = { s, t: now };
}
setInterval(tick, 1000); tick();
</script></body></html>`;
