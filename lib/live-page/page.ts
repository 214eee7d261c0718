/**
 * The live page of `gress run`: HTML at `/`, its script at `/live.js` (served by Gress: nothing is loaded from
 * the internet), updated by Server-Sent Events from `/events` — one {@link LiveSnapshot} per interval, without
 * reloading. It shows throughput in and out (charts over the last two minutes), end-to-end latency percentiles
 * per sink (chart and table), sources (records, rate, Kafka consumer lag over their partitions), watermarks per
 * source split with their delay, checkpoints, backpressure (paused sources, writes in flight), restarts, and CEP
 * partial matches and timeouts.
 *
 * Every number the page shows carries a `data-metric` attribute naming what it shows, so that a test can find
 * it and compare it with /metrics.
 * @module
 */

/** The HTML of the page. */
export const LIVE_PAGE_HTML: string = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gress</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
header .kv{opacity:.9}
header .kv b{font-weight:600}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08);overflow-x:auto}
section.wide{grid-column:1/-1}
h2{font-size:14px;margin:0 0 8px;color:#4a5568;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;width:100%}
td,th{padding:3px 6px;font-size:13px;border-bottom:1px solid #e6e8eb;text-align:right;white-space:nowrap}
th{color:#6b7280;font-weight:500}
td:first-child,th:first-child{text-align:left}
canvas{width:100%;height:160px;display:block}
.legend span{margin-right:12px;font-size:12px}
.status-running{color:#7ee787}.status-failed{color:#ff7b72}.status-finished{color:#a5d6ff}
.paused{color:#c2410c;font-weight:600}
.muted{color:#9ca3af}
</style></head>
<body>
<header>
  <h1 id="title">Gress</h1>
  <span class="kv">status <b id="status" data-metric="status">…</b></span>
  <span class="kv">uptime <b data-metric="uptime_seconds">–</b> s</span>
  <span class="kv">restarts <b data-metric="restarts">–</b></span>
  <span class="kv">checkpoints <b data-metric="checkpoints_completed">–</b> (last <b data-metric="checkpoint_duration_seconds">–</b> s)</span>
  <span class="kv">backpressure <b data-metric="paused_sources">–</b> paused</span>
  <span class="kv muted">updates <b id="updates" data-metric="updates">0</b></span>
  <span class="kv muted" id="error"></span>
</header>
<main>
  <section><h2>Throughput (records/s)</h2><canvas id="throughput" data-points="0"></canvas><div class="legend" id="throughput-legend"></div></section>
  <section><h2>End-to-end latency (ms)</h2><canvas id="latency" data-points="0"></canvas><div class="legend" id="latency-legend"></div></section>
  <section><h2>Sources</h2><table id="sources"></table></section>
  <section><h2>Sinks</h2><table id="sinks"></table></section>
  <section><h2>Watermarks per split</h2><table id="splits"></table></section>
  <section><h2>CEP</h2><table id="cep"></table></section>
  <section class="wide"><h2>Operators</h2><table id="operators"></table></section>
</main>
<script src="/live.js"></script>
</body></html>`;

/** The page's script (plain browser JavaScript, no dependencies). */
export const LIVE_PAGE_SCRIPT: string = `"use strict";
(() => {
  const HISTORY = 120;
  const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];
  const history = [];
  let updates = 0;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  const int = (n) => Math.round(n).toLocaleString("en-US");
  const ms = (s) => (s === null || s === undefined || Number.isNaN(s) ? "–" : (s * 1000).toFixed(s < 0.01 ? 2 : 1));
  const cell = (v, metric) => "<td" + (metric ? ' data-metric="' + esc(metric) + '"' : "") + ">" + v + "</td>";
  const row = (cells) => "<tr>" + cells.join("") + "</tr>";
  const head = (names) => "<tr>" + names.map((n) => "<th>" + esc(n) + "</th>").join("") + "</tr>";
  const setMetric = (name, text) => { for (const el of document.querySelectorAll('[data-metric="' + name + '"]')) el.textContent = text; };

  // Rate of a counter between the previous snapshot and this one (null on the first).
  function rate(prev, cur, read) {
    if (!prev) return null;
    const dt = (cur.at - prev.at) / 1000;
    const a = read(prev), b = read(cur);
    return dt > 0 && a !== undefined && b !== undefined && b >= a ? (b - a) / dt : null;
  }

  // A line chart of named series over the history: [{ name, values: (number|null)[] }].
  function chart(canvas, legend, series) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * dpr; canvas.height = h * dpr;
    const g = canvas.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    max = max <= 0 ? 1 : max * 1.1;
    const left = 56, bottom = h - 18;
    g.strokeStyle = "#e6e8eb"; g.fillStyle = "#6b7280"; g.font = "11px system-ui";
    for (let i = 0; i <= 4; i++) {
      const y = bottom - (bottom - 6) * (i / 4);
      g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
      g.fillText(max * (i / 4) >= 100 ? int(max * (i / 4)) : (max * (i / 4)).toFixed(1), 2, y + 4);
    }
    let points = 0;
    series.forEach((s, k) => {
      g.strokeStyle = COLORS[k % COLORS.length]; g.lineWidth = 1.5; g.beginPath();
      let started = false;
      s.values.forEach((v, i) => {
        if (v === null) { started = false; return; }
        const x = left + ((w - left) * i) / (HISTORY - 1), y = bottom - ((bottom - 6) * v) / max;
        if (started) g.lineTo(x, y); else g.moveTo(x, y);
        started = true;
        points = Math.max(points, i + 1);
      });
      g.stroke();
    });
    canvas.dataset.points = String(series.length === 0 ? 0 : Math.min(...series.map((s) => s.values.filter((v) => v !== null).length)));
    legend.innerHTML = series.map((s, k) => '<span style="color:' + COLORS[k % COLORS.length] + '">■ ' + esc(s.name) + "</span>").join("");
  }

  function render(s) {
    const prev = history.length > 0 ? history[history.length - 1].s : null;
    const entry = { s, rates: {} };
    for (const x of s.sources) entry.rates["in " + x.name] = rate(prev, s, (q) => q.sources.find((y) => y.name === x.name)?.records);
    for (const x of s.sinks) entry.rates["out " + x.name] = rate(prev, s, (q) => q.sinks.find((y) => y.name === x.name)?.written);
    history.push(entry);
    if (history.length > HISTORY) history.shift();
    updates++;

    $("title").textContent = "Gress — " + s.job;
    $("status").className = "status-" + s.status;
    setMetric("status", s.status);
    setMetric("uptime_seconds", s.uptimeSeconds.toFixed(0));
    setMetric("restarts", int(s.restarts));
    setMetric("checkpoints_completed", int(s.checkpoints.completed));
    setMetric("checkpoint_duration_seconds", s.checkpoints.lastDurationSeconds.toFixed(3));
    setMetric("paused_sources", int(s.sources.filter((x) => x.paused).length) + " of " + s.sources.length + " sources");
    $("error").textContent = s.error ? "error: " + s.error : "";

    $("sources").innerHTML = head(["source", "records", "records/s", "lag (records)", "state"]) + s.sources.map((x) => row([
      cell(esc(x.name)), cell(int(x.records), "source_records:" + x.name),
      cell(entry.rates["in " + x.name] === null ? "–" : int(entry.rates["in " + x.name]), "source_rate:" + x.name),
      cell(x.lag === null ? "–" : int(x.lag), "source_lag:" + x.name),
      cell(x.paused ? '<span class="paused">paused</span>' : "flowing", "source_paused:" + x.name),
    ])).join("");

    $("sinks").innerHTML = head(["sink", "written", "records/s", "in flight", "p50 ms", "p95 ms", "p99 ms", "committed p99 ms"]) + s.sinks.map((x) => row([
      cell(esc(x.name)), cell(int(x.written), "sink_written:" + x.name),
      cell(entry.rates["out " + x.name] === null ? "–" : int(entry.rates["out " + x.name]), "sink_rate:" + x.name),
      cell(int(x.inFlight) + " / " + int(x.maxInFlight), "sink_in_flight:" + x.name),
      cell(ms(x.latency && x.latency.p50), "latency_p50_ms:" + x.name), cell(ms(x.latency && x.latency.p95), "latency_p95_ms:" + x.name),
      cell(ms(x.latency && x.latency.p99), "latency_p99_ms:" + x.name),
      cell(ms(x.committedLatency && x.committedLatency.p99), "committed_latency_p99_ms:" + x.name),
    ])).join("");

    $("splits").innerHTML = head(["operator", "split", "watermark", "delay s"]) + (s.splits.length === 0 ? '<tr><td class="muted" colspan="4">no per-split watermarks</td></tr>' : s.splits.map((x) => row([
      cell(esc(x.operator)), cell(esc(x.split)), cell(new Date(x.watermark).toISOString(), "split_watermark:" + x.operator + "/" + x.split),
      cell(((s.time - x.watermark) / 1000).toFixed(1), "split_delay_seconds:" + x.operator + "/" + x.split),
    ])).join(""));

    const cep = s.operators.filter((o) => o.partialMatches !== null);
    $("cep").innerHTML = head(["operator", "partial matches", "timeouts", "matches out"]) + (cep.length === 0 ? '<tr><td class="muted" colspan="4">no CEP operator</td></tr>' : cep.map((o) => row([
      cell(esc(o.id)), cell(int(o.partialMatches), "cep_partial_matches:" + o.id), cell(int(o.timeouts), "cep_timeouts:" + o.id), cell(int(o.out)),
    ])).join(""));

    $("operators").innerHTML = head(["operator", "in", "out", "late", "dead letters", "watermark", "event-time lag s", "buffered"]) + s.operators.map((o) => row([
      cell(esc(o.id)), cell(int(o.in), "operator_in:" + o.id), cell(int(o.out), "operator_out:" + o.id), cell(int(o.late)), cell(int(o.deadLetters)),
      cell(o.watermark === null ? "–" : new Date(o.watermark).toISOString()), cell(o.eventTimeLagMs === null ? "–" : (o.eventTimeLagMs / 1000).toFixed(1)), cell(int(o.buffered)),
    ])).join("");

    const series = (names, read) => names.map((n) => ({ name: n, values: history.map(read(n)) }));
    chart($("throughput"), $("throughput-legend"), series(Object.keys(entry.rates), (n) => (e) => (e.rates[n] === undefined ? null : e.rates[n])));
    const lat = [];
    for (const x of s.sinks) {
      lat.push({ name: x.name + " p50", values: history.map((e) => { const k = e.s.sinks.find((y) => y.name === x.name); return k && k.latency ? k.latency.p50 * 1000 : null; }) });
      lat.push({ name: x.name + " p99", values: history.map((e) => { const k = e.s.sinks.find((y) => y.name === x.name); return k && k.latency ? k.latency.p99 * 1000 : null; }) });
    }
    chart($("latency"), $("latency-legend"), lat);
    $("updates").textContent = String(updates);
  }

  const events = new EventSource("/events");
  events.onmessage = (m) => render(JSON.parse(m.data));
  events.onerror = () => { $("error").textContent = "disconnected: retrying"; };
})();
`;
