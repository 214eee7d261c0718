/**
 * The live page in a real browser: `gress run` runs tests/integration/live-page-job.ts (a window, a CEP
 * pattern, per-split watermarks, checkpoints, one injected failure and restart); headless Chromium (Debian's
 * package, driven by playwright-core with executablePath: no browser download) opens `/`, waits until the
 * charts advanced at least twice over Server-Sent Events, and the numbers the page shows are compared with
 * /metrics scraped right after, within what can change between the snapshot and the scrape. A screenshot goes
 * to $GRESS_ARTIFACTS_DIR (default tmp/artifacts) and, with GRESS_UPDATE_SCREENSHOT=1, to docs/live-page.png.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";
import { bucketQuantile } from "../../lib/metrics.ts";

const ROOT = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const CHROMIUM = process.env.GRESS_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.GRESS_ARTIFACTS_DIR ?? join(ROOT, "tmp", "artifacts");

/** Prometheus text → samples: name, labels, value. */
interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const kv of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]!] = kv[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}
function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (s === undefined) throw new Error(`no ${name}${JSON.stringify(labels)} at /metrics`);
  return s.value;
}
/** histogram_quantile over a histogram's cumulative buckets at /metrics (seconds). */
function quantile(samples: readonly Sample[], q: number, labels: Record<string, string>): number {
  const buckets = samples.filter((x) => x.name === "gress_end_to_end_latency_seconds_bucket" && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  const finite = buckets.filter((b) => b.labels.le !== "+Inf").sort((a, b) => Number(a.labels.le) - Number(b.labels.le));
  const inf = buckets.find((b) => b.labels.le === "+Inf")?.value ?? 0;
  const cumulative = [...finite.map((b) => b.value), inf];
  return bucketQuantile(
    q,
    finite.map((b) => Number(b.labels.le)),
    cumulative.map((c, i) => c - (i === 0 ? 0 : cumulative[i - 1]!)),
  );
}
/** A number as the page shows it: "12,345" → 12345; "–" → NaN. */
const num = (text: string | undefined): number => (text === undefined ? Number.NaN : Number(text.replace(/,/g, "")));

describe("the live page of gress run, in headless Chromium", { skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  const dir = mkdtempSync(join(tmpdir(), "gress-live-page-"));
  let child: ChildProcess;
  let browser: Browser;
  let page: Page;
  let base = "";
  let stderr = "";

  before(async () => {
    child = spawn(
      process.execPath,
      [
        join(ROOT, "bin", "gress.mjs"),
        "run",
        join(ROOT, "tests", "integration", "live-page-job.ts"),
        "--name",
        "live-page",
        "--port",
        "0",
        "--state-dir",
        join(dir, "state"),
        "--checkpoint-interval",
        "500",
        "--restart",
        "fixed-delay",
        "--restart-delay",
        "200",
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stderr?.on("data", (d: Uint8Array) => (stderr += String(d)));
    base = await new Promise<string>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`gress run printed no address in 60 s:\n${out}\n${stderr}`)), 60_000);
      child.stdout?.on("data", (d: Uint8Array) => {
        out += String(d);
        const m = /live page: (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
        if (m !== null) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.on("exit", (code) => reject(new Error(`gress run exited (${code}):\n${out}\n${stderr}`)));
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  });

  after(async () => {
    await browser?.close();
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGINT");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("updates without reloading, and shows the numbers /metrics has", { timeout: 120_000 }, async (t) => {
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    await page.goto(`${base}/`);
    // The charts advanced at least twice (a rate needs two snapshots), and the injected failure restarted the job.
    // A string, not a function: tsx would wrap a function's inner functions in a helper the page does not have.
    await page.waitForFunction(
      `Number(document.getElementById("throughput").dataset.points) >= 3 &&
       Number(document.getElementById("latency").dataset.points) >= 3 &&
       document.querySelector('[data-metric="restarts"]').textContent === "1" &&
       !["", "–"].includes(document.querySelector('[data-metric="latency_p99_ms:counts"]')?.textContent ?? "")`,
      undefined,
      { timeout: 90_000, polling: 200 },
    );
    // Read the page right after an update arrives, and scrape at once: tens of ms after the snapshot.
    const seen = await page.evaluate(`Number(document.getElementById("updates").textContent)`);
    await page.waitForFunction(`Number(document.getElementById("updates").textContent) > ${seen}`, undefined, { timeout: 10_000, polling: 10 });
    const shown = (await page.evaluate(
      `Object.fromEntries([...document.querySelectorAll("[data-metric]")].map((e) => [e.getAttribute("data-metric"), e.textContent]))`,
    )) as Record<string, string>;
    const samples = parseMetrics(await (await fetch(`${base}/metrics`)).text());
    t.diagnostic(`page: ${JSON.stringify(shown)}`);
    // Everything came from Gress itself: the page, its script, the event stream.
    assert.deepEqual([...new Set(requests.map((u) => new URL(u).origin))], [base]);
    assert.ok(num(shown.updates) >= 3, `updates ${shown.updates}`);

    // Counters: the scrape is at most a couple of seconds after the snapshot the page shows.
    const within = (what: string, page: number, metric: number, perSecond: number): void => {
      assert.ok(page > 0 && page <= metric && metric - page <= perSecond * 3 + 5, `${what}: page ${page}, /metrics ${metric} (rate ${perSecond}/s)`);
    };
    assert.equal(num(shown.restarts), value(samples, "gress_job_restarts_total"));
    assert.equal(num(shown.restarts), 1);
    within("checkpoints", num(shown.checkpoints_completed), value(samples, "gress_checkpoints_completed_total"), 2);
    within("source records", num(shown["source_records:clicks"]), value(samples, "gress_source_records_total", { source: "clicks" }), num(shown["source_rate:clicks"]) || 2_000);
    for (const sink of ["counts", "purchases"]) {
      within(`${sink} written`, num(shown[`sink_written:${sink}`]), value(samples, "gress_sink_records_written_total", { sink }), num(shown[`sink_rate:${sink}`]) || 100);
      // Latency percentiles: the same estimate from the same buckets; a few samples may have come in since.
      for (const [q, key] of [
        [0.5, "latency_p50_ms"],
        [0.99, "latency_p99_ms"],
      ] as const) {
        const fromMetrics = quantile(samples, q, { sink, stage: "written" }) * 1000;
        const onPage = num(shown[`${key}:${sink}`]);
        assert.ok(Math.abs(onPage - fromMetrics) <= 0.25 * Math.max(onPage, fromMetrics) + 1, `${sink} ${key}: page ${onPage} ms, /metrics ${fromMetrics} ms`);
      }
    }
    // Watermarks per split: the three splits, each behind what /metrics has by at most ~3 s of event time.
    const splits = Object.keys(shown).filter((k) => k.startsWith("split_watermark:"));
    assert.equal(splits.length, 3, JSON.stringify(splits));
    for (const key of splits) {
      const split = key.slice(key.indexOf("/") + 1);
      const onPage = Date.parse(shown[key]!);
      const fromMetrics = value(samples, "gress_split_watermark_seconds", { split }) * 1000;
      assert.ok(onPage <= fromMetrics && fromMetrics - onPage <= 3_000 + 1_000, `split ${split}: page ${shown[key]}, /metrics ${new Date(fromMetrics).toISOString()}`);
    }
    // CEP: partial matches (a gauge that moves both ways) and timeouts.
    const partial = num(shown["cep_partial_matches:view-then-buy"]);
    const partialNow = value(samples, "gress_cep_partial_matches", { operator: "view-then-buy" });
    assert.ok(partial > 0 && Math.abs(partial - partialNow) <= 0.3 * partialNow + 20, `partial matches: page ${partial}, /metrics ${partialNow}`);
    within("CEP timeouts", num(shown["cep_timeouts:view-then-buy"]) + 1, value(samples, "gress_cep_timeouts_total", { operator: "view-then-buy" }) + 1, 2_000);

    // For the README's picture, let the charts fill for a while first.
    if (process.env.GRESS_UPDATE_SCREENSHOT === "1") await page.waitForTimeout(40_000);
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, "live-page.png");
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    if (process.env.GRESS_UPDATE_SCREENSHOT === "1") copyFileSync(shot, join(ROOT, "docs", "live-page.png"));
  });
});
