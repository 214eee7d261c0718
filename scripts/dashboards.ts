/**
 * Grafana dashboards as code: builds the "Gress job" and "Live analytics" dashboards with Grafana's own typed
 * builders (@grafana/grafana-foundation-sdk) and writes them to dashboards/*.json, which `gress dashboard`
 * prints and users import. CI runs `--check`: the checked-in files must equal what this script builds.
 *
 *   node --import tsx scripts/dashboards.ts           write dashboards/gress-job.json and live-analytics.json
 *   node --import tsx scripts/dashboards.ts --check   exit 1 if a checked-in file differs from the built one
 *
 * No Grafana server could be installed on the machines these were made on: the JSON is checked for its
 * PromQL (tests/unit/dashboard-promql.test.ts: every metric and label exists at a live job's /metrics) and its
 * SQL (tests/integration/postgres-sink.test.ts runs the Live analytics queries on TimescaleDB), not by eye.
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import type * as cog from "@grafana/grafana-foundation-sdk/cog";
import { DashboardBuilder, DatasourceVariableBuilder, QueryVariableBuilder, RowBuilder, VariableRefresh, VariableSort } from "@grafana/grafana-foundation-sdk/dashboard";
import { DataqueryBuilder } from "@grafana/grafana-foundation-sdk/prometheus";
import { PanelBuilder as StatBuilder } from "@grafana/grafana-foundation-sdk/stat";
import { PanelBuilder as TimeseriesBuilder } from "@grafana/grafana-foundation-sdk/timeseries";

const ROOT = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");

// Grafana template variables (the data sources picked on import), not JavaScript templates.
const PROM = { type: "prometheus", uid: "$" + "{datasource}" };
const PG = { type: "grafana-postgresql-datasource", uid: "$" + "{postgres}" };
const JOB = 'job=~"$job"';

/** A PostgreSQL query, which the SDK has no builder for: a Dataquery variant as its README describes. */
interface SqlQuery {
  refId?: string;
  hide?: boolean;
  datasource: { type: string; uid: string };
  rawSql: string;
  rawQuery: true;
  editorMode: "code";
  format: "time_series" | "table";
  _implementsDataqueryVariant(): void;
}
class SqlQueryBuilder implements cog.Builder<cog.Dataquery> {
  readonly #query: SqlQuery;
  constructor(rawSql: string, format: SqlQuery["format"] = "time_series") {
    this.#query = { datasource: PG, rawSql, rawQuery: true, editorMode: "code", format, _implementsDataqueryVariant() {} };
  }
  refId(id: string): this {
    this.#query.refId = id;
    return this;
  }
  build(): SqlQuery {
    return this.#query;
  }
}

const prom = (expr: string, legend: string): DataqueryBuilder => new DataqueryBuilder().datasource(PROM).expr(expr).legendFormat(legend);

/** A time series panel of PromQL queries. */
function series(title: string, unit: string, description: string, queries: readonly [expr: string, legend: string][], width = 12): TimeseriesBuilder {
  const p = new TimeseriesBuilder().title(title).description(description).unit(unit).datasource(PROM).height(8).span(width).min(0);
  queries.forEach(([expr, legend], i) => {
    p.withTarget(prom(expr, legend).refId(String.fromCharCode(65 + i)));
  });
  return p;
}

/** A single-value panel of one PromQL query. */
function stat(title: string, unit: string, description: string, expr: string): StatBuilder {
  return new StatBuilder().title(title).description(description).unit(unit).datasource(PROM).height(4).span(6).withTarget(prom(expr, title).refId("A"));
}

function variables(b: DashboardBuilder): DashboardBuilder {
  return b
    .withVariable(new DatasourceVariableBuilder("datasource").label("Prometheus").type("prometheus"))
    .withVariable(
      new QueryVariableBuilder("job")
        .label("Job")
        .datasource(PROM)
        .query("label_values(gress_job_uptime_seconds, job)")
        .definition("label_values(gress_job_uptime_seconds, job)")
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .sort(VariableSort.AlphabeticalAsc)
        .includeAll(true)
        .allValue(".*")
        .multi(true),
    );
}

/** "Gress job": the health and progress of one or more jobs, from their /metrics. */
export function gressJobDashboard(): object {
  const b = variables(
    new DashboardBuilder("Gress job")
      .uid("gress-job")
      .tags(["gress", "stream-processing"])
      .refresh("10s")
      .time({ from: "now-1h", to: "now" })
      .timezone("browser"),
  )
    .withRow(new RowBuilder("Overview"))
    .withPanel(stat("Uptime", "s", "Time since the job (re)started; 0 while it is not running.", `max by (job) (gress_job_uptime_seconds{${JOB}})`))
    .withPanel(stat("Restarts", "none", "Restarts by the job's restart strategy since the process started.", `sum(gress_job_restarts_total{${JOB}})`))
    .withPanel(stat("Checkpoints", "none", "Checkpoints completed since start.", `sum(gress_checkpoints_completed_total{${JOB}})`))
    .withPanel(stat("Paused sources", "none", "Sources paused by backpressure now.", `sum(gress_source_paused{${JOB}})`))
    .withPanel(
      series("Throughput in", "rps", "Records per second read by each source.", [[`sum by (job, source) (rate(gress_source_records_total{${JOB}}[$__rate_interval]))`, "{{job}} {{source}}"]]),
    )
    .withPanel(
      series("Throughput out", "rps", "Records per second acknowledged by each sink.", [
        [`sum by (job, sink) (rate(gress_sink_records_written_total{${JOB}}[$__rate_interval]))`, "{{job}} {{sink}}"],
      ]),
    )
    .withPanel(
      series("End-to-end latency", "s", "Sampled time from a record entering at the source to its result being written (and committed, for two-phase-commit sinks).", [
        [`histogram_quantile(0.5, sum by (job, sink, stage, le) (rate(gress_end_to_end_latency_seconds_bucket{${JOB}}[$__rate_interval])))`, "p50 {{sink}} {{stage}}"],
        [`histogram_quantile(0.99, sum by (job, sink, stage, le) (rate(gress_end_to_end_latency_seconds_bucket{${JOB}}[$__rate_interval])))`, "p99 {{sink}} {{stage}}"],
      ]),
    )
    .withPanel(
      series(
        "Consumer lag",
        "none",
        "Records each Kafka source still has to read per partition: the partition's end as its last fetch saw it (last stable offset under read_committed on @platformatic/kafka, else the high watermark) minus the next offset it reads.",
        [[`max by (job, source, partition) (gress_kafka_consumer_lag_records{${JOB}})`, "{{source}} {{partition}}"]],
      ),
    )
    .withPanel(
      series("Event-time lag", "s", "How far each source split's watermark trails the wall clock: the event-time lag of the input.", [
        [`time() - gress_split_watermark_seconds{${JOB}}`, "{{operator}} {{split}}"],
      ]),
    )
    .withRow(new RowBuilder("Checkpoints and state"))
    .withPanel(
      series("Checkpoint duration", "s", "Duration of the last completed checkpoint.", [[`max by (job) (gress_checkpoint_duration_seconds{${JOB}})`, "{{job}}"]], 8),
    )
    .withPanel(
      series("Checkpoint size", "none", "State entries written by the last completed checkpoint.", [[`max by (job) (gress_checkpoint_size_entries{${JOB}})`, "{{job}}"]], 8),
    )
    .withPanel(
      series("State size", "none", "Entries each operator holds in state or bounded buffers.", [[`sum by (job, operator) (gress_buffered_entries{${JOB}})`, "{{operator}}"]], 8),
    )
    .withRow(new RowBuilder("Backpressure"))
    .withPanel(series("In-flight writes", "none", "Writes issued to each sink and not yet acknowledged.", [[`sum by (job, sink) (gress_sink_in_flight{${JOB}})`, "{{sink}}"]]))
    .withPanel(series("Paused sources", "none", "1 while a source is paused by backpressure.", [[`max by (job, source) (gress_source_paused{${JOB}})`, "{{source}}"]]))
    .withRow(new RowBuilder("Failures and bad data"))
    .withPanel(
      series("Restarts", "none", "Restarts in each interval.", [[`sum by (job) (increase(gress_job_restarts_total{${JOB}}[$__rate_interval]))`, "{{job}}"]], 8),
    )
    .withPanel(
      series("Dead letters", "rps", "Bad records routed to dead letters, per operator.", [
        [`sum by (job, operator) (rate(gress_dead_letters_total{${JOB}}[$__rate_interval]))`, "{{operator}}"],
      ], 8),
    )
    .withPanel(
      series("Late records", "rps", "Records later than the allowed lateness, per operator.", [
        [`sum by (job, operator) (rate(gress_late_records_total{${JOB}}[$__rate_interval]))`, "{{operator}}"],
      ], 8),
    )
    .withRow(new RowBuilder("CEP"))
    .withPanel(series("Partial matches", "none", "Partial matches each CEP operator holds.", [[`sum by (job, operator) (gress_cep_partial_matches{${JOB}})`, "{{operator}}"]]))
    .withPanel(
      series("Timeouts", "rps", "Partial matches that timed out, per CEP operator.", [
        [`sum by (job, operator) (rate(gress_cep_timeouts_total{${JOB}}[$__rate_interval]))`, "{{operator}}"],
      ]),
    );
  return b.build();
}

/** "Live analytics": the example's action counts from TimescaleDB, beside its job's throughput and latency. */
export function liveAnalyticsDashboard(): object {
  const counts = (title: string, sql: string, span: number): TimeseriesBuilder =>
    new TimeseriesBuilder().title(title).datasource(PG).height(9).span(span).min(0).withTarget(new SqlQueryBuilder(sql).refId("A"));
  const b = variables(
    new DashboardBuilder("Live analytics")
      .uid("gress-live-analytics")
      .tags(["gress", "timescaledb"])
      .refresh("5s")
      .time({ from: "now-30m", to: "now" })
      .timezone("browser"),
  )
    .withVariable(new DatasourceVariableBuilder("postgres").label("PostgreSQL").type("grafana-postgresql-datasource"))
    .withRow(new RowBuilder("Clicks per action (TimescaleDB: action_counts)"))
    .withPanel(
      counts(
        "Clicks per minute, by action",
        LIVE_ANALYTICS_SQL.perMinute,
        24,
      ).description("The 1-minute sliding counts the job upserts, bucketed per minute with time_bucket (the largest count of each action per minute)."),
    )
    .withPanel(
      new TimeseriesBuilder()
        .title("All clicks per minute")
        .description("Sum over actions of each minute's count.")
        .datasource(PG)
        .height(8)
        .span(12)
        .min(0)
        .withTarget(new SqlQueryBuilder(LIVE_ANALYTICS_SQL.total).refId("A")),
    )
    .withPanel(
      new StatBuilder()
        .title("Latest window")
        .description("The most recent window start written to action_counts.")
        .datasource(PG)
        .height(8)
        .span(12)
        .withTarget(new SqlQueryBuilder(LIVE_ANALYTICS_SQL.latest, "table").refId("A")),
    )
    .withRow(new RowBuilder("The job"))
    .withPanel(
      series("Clicks ingested", "rps", "Records per second read from the HTTP ingest log.", [[`sum by (source) (rate(gress_source_records_total{${JOB}}[$__rate_interval]))`, "{{source}}"]]),
    )
    .withPanel(
      series("Click to committed row", "s", "Sampled time from a click entering the job to its count being committed in PostgreSQL.", [
        [`histogram_quantile(0.99, sum by (sink, stage, le) (rate(gress_end_to_end_latency_seconds_bucket{${JOB}, stage="committed"}[$__rate_interval])))`, "p99 {{sink}}"],
        [`histogram_quantile(0.5, sum by (sink, stage, le) (rate(gress_end_to_end_latency_seconds_bucket{${JOB}, stage="committed"}[$__rate_interval])))`, "p50 {{sink}}"],
      ]),
    );
  return b.build();
}

/** The SQL of the Live analytics panels ($__timeFilter is Grafana's macro for the dashboard's time range). */
export const LIVE_ANALYTICS_SQL = {
  perMinute:
    "SELECT time_bucket('1 minute', window_start) AS time, action AS metric, max(clicks) AS value\nFROM action_counts\nWHERE $__timeFilter(window_start)\nGROUP BY 1, 2\nORDER BY 1",
  total:
    "SELECT time, sum(clicks) AS clicks FROM (\n  SELECT time_bucket('1 minute', window_start) AS time, action, max(clicks) AS clicks\n  FROM action_counts WHERE $__timeFilter(window_start) GROUP BY 1, 2\n) per_action\nGROUP BY 1\nORDER BY 1",
  latest: "SELECT max(window_start) AS latest FROM action_counts",
} as const;

/** The dashboards by file name. */
export const DASHBOARDS: Readonly<Record<string, () => object>> = {
  "gress-job": gressJobDashboard,
  "live-analytics": liveAnalyticsDashboard,
};

function main(): number {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const [name, build] of Object.entries(DASHBOARDS)) {
    const file = join(ROOT, "dashboards", `${name}.json`);
    const text = `${JSON.stringify(build(), null, 2)}\n`;
    if (!check) {
      writeFileSync(file, text);
      console.log(`wrote dashboards/${name}.json`);
      continue;
    }
    let current = "";
    try {
      current = readFileSync(file, "utf8");
    } catch {
      // missing: stale
    }
    if (current !== text) {
      stale++;
      console.error(`dashboards/${name}.json is not what scripts/dashboards.ts builds: run node --import tsx scripts/dashboards.ts and commit it`);
    } else console.log(`dashboards/${name}.json is up to date`);
  }
  return stale === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main();
