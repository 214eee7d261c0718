import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { register as globalRegistry } from "prom-client";
import { boundedOutOfOrderness, Job, JobMetrics, sinkFn, tumbling } from "../../lib/index.ts";

/** The value of one sample line `name{labels} value` in Prometheus text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf("}"));
    const got = Object.fromEntries(
      body.split(",").map((kv) => {
        const [k, v] = kv.split("=");
        return [k, v?.replace(/^"|"$/g, "")];
      }),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

describe("metrics", () => {
  it("a job exposes per-operator, source and sink metrics in Prometheus text with gress_ names and the job label", async () => {
    const job = new Job({ name: "metrics-job" });
    job
      .fromIterable([1, 2, 3, 4, 25, 5], { name: "numbers", timestamp: (v) => v })
      .filter((x) => x !== 2)
      .withTimestamps(boundedOutOfOrderness(0, { everyRecords: 1 }))
      .keyBy(() => "k")
      .window(tumbling(10))
      .count()
      .sinkTo(sinkFn("out", () => {}));
    await job.run();
    const text = await job.metrics.text();
    assert.equal(sample(text, "gress_records_in_total", { job: "metrics-job", operator: "filter-1" }), 6);
    assert.equal(sample(text, "gress_records_out_total", { job: "metrics-job", operator: "filter-1" }), 5);
    assert.equal(sample(text, "gress_records_in_total", { job: "metrics-job", operator: "window-1" }), 5);
    assert.equal(sample(text, "gress_late_records_total", { job: "metrics-job", operator: "window-1" }), 1);
    assert.equal(sample(text, "gress_records_out_total", { job: "metrics-job", operator: "window-1" }), 2);
    assert.equal(sample(text, "gress_source_records_total", { job: "metrics-job", source: "numbers" }), 6);
    assert.equal(sample(text, "gress_sink_records_written_total", { job: "metrics-job", sink: "out" }), 2);
    assert.equal(sample(text, "gress_sink_in_flight", { job: "metrics-job", sink: "out" }), 0);
    assert.match(text, /# TYPE gress_records_in_total counter/);
    assert.match(text, /# TYPE gress_watermark_seconds gauge/);
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      assert.match(line, /^gress_[a-z_]+(\{[^}]*\})? -?[0-9.e+]+$/, `sample line: ${line}`);
      assert.ok(line.includes('job="metrics-job"'), `every sample has the job label: ${line}`);
    }
  });

  it("counters end in _total and the watermark gauge is in seconds", async () => {
    const metrics = new JobMetrics("units");
    const op = metrics.operator("window-1");
    op.watermark = 90_000;
    op.recordsIn = 3;
    const text = await metrics.text();
    assert.equal(sample(text, "gress_watermark_seconds", { operator: "window-1" }), 90);
    const counters = [...text.matchAll(/^# TYPE (\S+) counter$/gm)].map((m) => m[1]);
    assert.ok(counters.length > 0);
    for (const c of counters) assert.match(c ?? "", /^gress_.*_total$/);
  });

  it("an operator without a watermark yet exports no watermark sample instead of -Inf", async () => {
    const metrics = new JobMetrics("nowm");
    metrics.operator("map-1").recordsIn = 1;
    const text = await metrics.text();
    assert.equal(sample(text, "gress_watermark_seconds", { operator: "map-1" }), undefined);
    assert.doesNotMatch(text, /Inf/);
  });

  it("counters keep counting across scrapes", async () => {
    const metrics = new JobMetrics("scrapes");
    const op = metrics.operator("map-1");
    op.recordsIn = 5;
    assert.equal(sample(await metrics.text(), "gress_records_in_total", { operator: "map-1" }), 5);
    op.recordsIn = 8;
    assert.equal(sample(await metrics.text(), "gress_records_in_total", { operator: "map-1" }), 8);
  });

  it("uses its own registry, never prom-client's global one", async () => {
    new Job({ name: "isolated" });
    const global = await globalRegistry.metrics();
    assert.doesNotMatch(global, /gress_/);
  });

  it("buffer fill ratio is reported for operators with a bounded buffer", async () => {
    const metrics = new JobMetrics("fill");
    const op = metrics.operator("async-1");
    op.buffered = 25;
    op.bufferCapacity = 100;
    const text = await metrics.text();
    assert.equal(sample(text, "gress_buffer_fill_ratio", { operator: "async-1" }), 0.25);
    assert.equal(sample(text, "gress_buffered_entries", { operator: "async-1" }), 25);
  });
});
