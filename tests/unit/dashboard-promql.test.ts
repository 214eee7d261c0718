/**
 * The checked-in Grafana dashboards (dashboards/*.json, built by scripts/dashboards.ts) query only what Gress
 * exposes: every PromQL expression of every panel and variable is parsed, and each metric it selects must have
 * samples at the /metrics endpoint of a live job, with every label the expression matches on or groups by.
 * The job has what the dashboards show: per-split watermarks, a window, a CEP pattern with timeouts, a
 * two-phase-commit sink under checkpoints, dead letters.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isTimeout, match, named, pattern } from "../../cep/index.ts";
import { boundedOutOfOrderness, generator, Job, lmdbState, tumbling } from "../../lib/index.ts";
import { serveMetrics } from "../../lib/server.ts";

const ROOT = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every `expr` (Prometheus targets) and Prometheus variable query in a dashboard, with where it is. */
function promQueries(dashboard: unknown): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) for (const n of node) walk(n, where);
    else if (typeof node === "object" && node !== null) {
      const o = node as Record<string, unknown>;
      const here = typeof o.title === "string" ? `${where} / ${o.title}` : where;
      if (typeof o.expr === "string") out.push({ where: here, expr: o.expr });
      if (o.type === "query" && typeof o.query === "string" && (o.datasource as { type?: string } | undefined)?.type === "prometheus") {
        out.push({ where: `${here} / variable ${String(o.name)}`, expr: o.query });
      }
      for (const [k, v] of Object.entries(o)) if (k !== "expr") walk(v, here);
    }
  };
  walk(dashboard, "");
  return out;
}

const FUNCTIONS = new Set([
  ...["sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "time", "label_values", "topk", "bottomk", "abs", "clamp_min"],
  ...["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"],
]);

/** The metric selectors of a PromQL expression (name, label matchers) and the labels it groups by. */
function parsePromQL(expr: string): { selectors: { metric: string; labels: string[] }[]; groupBy: string[] } {
  // Drop range durations ([5m], [$__rate_interval]) and string literals inside matchers stay with their selector.
  const text = expr.replace(/\[[^\]]*\]/g, "");
  const groupBy: string[] = [];
  for (const m of text.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) groupBy.push(...m[1]!.split(",").map((s) => s.trim()).filter(Boolean));
  const withoutGroups = text.replace(/\b(?:by|without)\s*\([^)]*\)/g, "");
  const selectors: { metric: string; labels: string[] }[] = [];
  for (const m of withoutGroups.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?(\s*\()?/g)) {
    const [, name, , matchers, call] = m;
    if (call !== undefined || FUNCTIONS.has(name!) || /^\d/.test(name!)) continue;
    // label_values(metric, label): the metric is a selector, the label a label it must have.
    const labels = [...(matchers ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!);
    selectors.push({ metric: name!, labels });
  }
  const lv = /label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]+)\s*\)/.exec(text);
  if (lv !== null) return { selectors: [{ metric: lv[1]!, labels: [lv[2]!] }], groupBy: [] };
  return { selectors, groupBy };
}

/** Label names of each metric's samples at /metrics. */
function exposed(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (m === null) continue;
    let labels = out.get(m[1]!);
    if (labels === undefined) out.set(m[1]!, (labels = new Set()));
    for (const kv of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(kv[1]!);
  }
  return out;
}

/** /metrics of a running job that has every kind of metric the dashboards use. */
async function liveMetrics(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "gress-dashboard-"));
  const job = new Job({ name: "dashboard-check", state: lmdbState({ path: join(dir, "state") }), checkpoints: { intervalMs: 100, log: () => {} } });
  interface Click {
    readonly user: number;
    readonly kind: "view" | "buy";
    readonly at: number;
  }
  const clicks = job.source(
    generator<Click>({ name: "clicks", splits: 2, ratePerSecond: 4_000, eventsPerSecond: 4_000, make: (i, at) => ({ user: i % 20, kind: i % 7 === 0 ? "buy" : "view", at }) }),
    { watermarks: boundedOutOfOrderness<Click>(50, { timestamp: (c) => c.at }) },
  );
  clicks
    .map((c) => {
      if (c.user === 13 && c.kind === "buy") throw new Error("a bad click");
      return c;
    })
    .keyBy((c) => c.user)
    .window(tumbling(100))
    .count()
    .sinkTo({ name: "counts", write: async () => {}, preCommit: async (id) => id, commit: async () => {} });
  const buyAfterView = pattern<Click>()
    .begin("view")
    .where(named("view", (c: Click) => c.kind === "view"))
    .followedBy("buy")
    .where(named("buy", (c: Click) => c.kind === "buy" && c.user === 999))
    .within(50);
  match(
    clicks.keyBy((c) => c.user),
    buyAfterView,
    { uid: "buy-after-view" },
  )
    .filter(isTimeout)
    .sinkTo({ name: "timeouts", write() {} });
  const server = await serveMetrics(job, { status: "running" }, 0);
  const running = job.run();
  try {
    // Until checkpoints completed, latency was committed and CEP partial matches timed out.
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      const m = job.metrics;
      if (m.checkpointsCompleted >= 3 && m.sink("counts").latency("committed").count > 0 && m.operator("buy-after-view").timeouts > 0) break;
    }
    return await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
  } finally {
    job.cancel();
    await running.catch(() => {});
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("Grafana dashboards", () => {
  it("every metric and label a panel's PromQL uses is exposed by a live job", { timeout: 60_000 }, async () => {
    const files = readdirSync(join(ROOT, "dashboards")).filter((f) => f.endsWith(".json"));
    assert.deepEqual(files.sort(), ["gress-job.json", "live-analytics.json"]);
    const queries = files.flatMap((f) => promQueries(JSON.parse(readFileSync(join(ROOT, "dashboards", f), "utf8"))).map((q) => ({ ...q, where: `${f}${q.where}` })));
    assert.ok(queries.length >= 20, `${queries.length} PromQL queries`);
    const metrics = exposed(await liveMetrics());
    const problems: string[] = [];
    let selectors = 0;
    for (const { where, expr } of queries) {
      const parsed = parsePromQL(expr);
      if (parsed.selectors.length === 0) problems.push(`${where}: no metric found in ${expr}`);
      for (const s of parsed.selectors) {
        selectors++;
        const labels = metrics.get(s.metric);
        if (labels === undefined) {
          problems.push(`${where}: ${s.metric} has no samples at /metrics`);
          continue;
        }
        for (const l of [...s.labels, ...parsed.groupBy]) if (!labels.has(l)) problems.push(`${where}: ${s.metric} has no label "${l}" (it has ${[...labels].join(", ")})`);
      }
    }
    assert.deepEqual(problems, []);
    assert.ok(selectors >= queries.length);
  });

  it("the PromQL parser finds selectors, matchers and grouping labels, and not functions", () => {
    assert.deepEqual(parsePromQL('histogram_quantile(0.99, sum by (job, le) (rate(x_bucket{job=~"$job", stage="w"}[$__rate_interval])))'), {
      selectors: [{ metric: "x_bucket", labels: ["job", "stage"] }],
      groupBy: ["job", "le"],
    });
    assert.deepEqual(parsePromQL("time() - gress_split_watermark_seconds"), { selectors: [{ metric: "gress_split_watermark_seconds", labels: [] }], groupBy: [] });
    assert.deepEqual(parsePromQL("label_values(gress_job_uptime_seconds, job)"), { selectors: [{ metric: "gress_job_uptime_seconds", labels: ["job"] }], groupBy: [] });
    // A misspelt metric or label is reported, not skipped.
    const metrics = exposed('gress_a_total{job="j",sink="s"} 1\n');
    assert.equal(metrics.get("gress_b_total"), undefined);
    assert.equal(metrics.get("gress_a_total")?.has("source"), false);
  });
});
