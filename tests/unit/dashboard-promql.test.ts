/**
 * The checked-in Grafana dashboards (dashboards/*.json, built by scripts/dashboards.ts) query only what Gress
 * exposes: every PromQL expression of every panel and variable is parsed, and each metric it selects must have
 * samples at the /metrics endpoint of a live job, with every label the expression matches on or groups by.
 * The job has what the dashboards show: per-split watermarks, a window, a CEP pattern with timeouts, a
 * two-phase-commit sink under checkpoints, dead letters.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isTimeout, match, named, pattern } from "../../cep/index.ts";
import { boundedOutOfOrderness, generator, Job, lmdbState, tumbling } from "../../lib/index.ts";
import { serveMetrics } from "../../lib/server.ts";
import { dashboardQueries, exposed, parsePromQL, promProblems } from "../dashboard-queries.ts";

const ROOT = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
/** Metrics the dashboards use that only a Kafka source exposes (checked in tests/integration/kafka-lag.test.ts). */
const CHECKED_WITH_KAFKA = new Set(["gress_kafka_consumer_lag_records"]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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
    const queries = dashboardQueries();
    assert.ok(queries.length >= 20, `${queries.length} PromQL queries`);
    const metrics = exposed(await liveMetrics());
    // A metric only a Kafka source exposes is checked against a job reading a real broker instead.
    const { problems, selectors } = promProblems(queries, metrics, (metric) => !CHECKED_WITH_KAFKA.has(metric));
    assert.deepEqual(problems, []);
    const deferred = queries.flatMap((q) => parsePromQL(q.expr).selectors.filter((s) => CHECKED_WITH_KAFKA.has(s.metric)));
    console.log(`dashboard PromQL: ${deferred.length} selector(s) of ${[...CHECKED_WITH_KAFKA].join(", ")} are checked in tests/integration/kafka-lag.test.ts (they need a broker)`);
    assert.ok(selectors + deferred.length >= queries.length);
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
