/**
 * Reading the PromQL of the checked-in Grafana dashboards (dashboards/*.json) and the metric names and labels of
 * a /metrics text, for the tests that check one against the other: tests/unit/dashboard-promql.test.ts (a job
 * without services) and tests/integration/kafka-lag.test.ts (the Kafka consumer lag, which needs a broker).
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");

/** Every PromQL query of every checked-in dashboard, `where` naming its file and panel. */
export function dashboardQueries(): { where: string; expr: string }[] {
  const files = readdirSync(join(ROOT, "dashboards")).filter((f) => f.endsWith(".json"));
  return files.flatMap((f) => promQueries(JSON.parse(readFileSync(join(ROOT, "dashboards", f), "utf8"))).map((q) => ({ ...q, where: `${f}${q.where}` })));
}

/**
 * What is wrong with `queries` against the exposition `metrics` (see {@link exposed}): a query without a metric,
 * a metric without samples, a label (matched or grouped by) the metric lacks. `only` limits it to some metrics.
 */
export function promProblems(queries: readonly { where: string; expr: string }[], metrics: Map<string, Set<string>>, only?: (metric: string) => boolean): { problems: string[]; selectors: number } {
  const problems: string[] = [];
  let selectors = 0;
  for (const { where, expr } of queries) {
    const parsed = parsePromQL(expr);
    if (parsed.selectors.length === 0) problems.push(`${where}: no metric found in ${expr}`);
    for (const s of parsed.selectors) {
      if (only !== undefined && !only(s.metric)) continue;
      selectors++;
      const labels = metrics.get(s.metric);
      if (labels === undefined) {
        problems.push(`${where}: ${s.metric} has no samples at /metrics`);
        continue;
      }
      for (const l of [...s.labels, ...parsed.groupBy]) if (!labels.has(l)) problems.push(`${where}: ${s.metric} has no label "${l}" (it has ${[...labels].join(", ")})`);
    }
  }
  return { problems, selectors };
}

/** Every `expr` (Prometheus targets) and Prometheus variable query in a dashboard, with where it is. */
export function promQueries(dashboard: unknown): { where: string; expr: string }[] {
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
export function parsePromQL(expr: string): { selectors: { metric: string; labels: string[] }[]; groupBy: string[] } {
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
export function exposed(text: string): Map<string, Set<string>> {
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

