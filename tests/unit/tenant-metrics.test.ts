// Per-tenant quota metrics (issue 14): a source with quotas exposes admitted and refused records, bytes and
// refusals per tenant in the job's Prometheus registry, with the tenant id as a label only when the source was
// allowed per-tenant counts (otherwise tenant="*"). A real HTTP ingest source on 127.0.0.1.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { httpSource } from "../../connectors/http/index.ts";
import { Job } from "../../lib/job.ts";
import { sinkFn } from "../../lib/sink.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-tenant-metrics-");

const post = async (url: string, tenant: string, n: number): Promise<number> => {
  const body = Array.from({ length: n }, (_, i) => JSON.stringify({ i })).join("\n");
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/x-ndjson", "x-tenant": tenant }, body });
  await res.arrayBuffer();
  return res.status;
};

/** The value of the sample of `metric` whose labels are exactly `labels` (in exposition order), or undefined. */
const sample = (text: string, metric: string, labels: string): number | undefined => {
  const line = text.split("\n").find((l) => l.startsWith(`${metric}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
};

async function scenario(perTenantStats: boolean): Promise<string> {
  const job = new Job({ name: "tenants" });
  const src = httpSource<{ i: number }>({
    name: "in",
    dir: tempDir(),
    fsync: false,
    quotas: { tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 10 }, perTenantStats },
  });
  const got: number[] = [];
  job.source(src).sinkTo(sinkFn("out", (v) => void got.push(v.i)));
  const done = job.run();
  try {
    await src.listening;
    assert.equal(await post(src.url, "calm", 3), 202);
    assert.equal(await post(src.url, "noisy", 6), 202);
    // 4 tokens left of a burst of 10 (at 10/s, far less than a second passes): 6 more are refused, and read.
    assert.equal(await post(src.url, "noisy", 6), 429);
    assert.equal(await post(src.url, "calm", 3), 202, "the other tenant is not affected");
    return await job.metrics.text();
  } finally {
    job.cancel();
    await done.catch(() => {});
  }
}

describe("per-tenant quota metrics", () => {
  it("with perTenantStats: admitted and refused records, bytes and refusals per tenant id", { timeout: 60_000 }, async () => {
    const text = await scenario(true);
    const l = (tenant: string, outcome?: string) => `source="in",tenant="${tenant}"${outcome === undefined ? "" : `,outcome="${outcome}"`},job="tenants"`;
    assert.equal(sample(text, "gress_source_quota_records_total", l("calm", "admitted")), 6);
    assert.equal(sample(text, "gress_source_quota_records_total", l("calm", "refused")), 0);
    assert.equal(sample(text, "gress_source_quota_records_total", l("noisy", "admitted")), 6);
    assert.equal(sample(text, "gress_source_quota_records_total", l("noisy", "refused")), 6);
    assert.equal(sample(text, "gress_source_quota_refusals_total", l("noisy")), 1);
    assert.equal(sample(text, "gress_source_quota_refusals_total", l("calm")), 0);
    // Six lines of `{"i":k}` joined by newlines: 6 × 7 + 5 bytes.
    assert.equal(sample(text, "gress_source_quota_bytes_total", l("noisy", "refused")), 47);
    assert.equal(sample(text, "gress_source_quota_records_total", l("*", "admitted")), undefined, "no total row when per tenant");
  });

  it("without it: one row for all tenants, tenant=\"*\" (no tenant ids as labels)", { timeout: 60_000 }, async () => {
    const text = await scenario(false);
    assert.equal(sample(text, "gress_source_quota_records_total", 'source="in",tenant="*",outcome="admitted",job="tenants"'), 12);
    assert.equal(sample(text, "gress_source_quota_records_total", 'source="in",tenant="*",outcome="refused",job="tenants"'), 6);
    assert.equal(sample(text, "gress_source_quota_refusals_total", 'source="in",tenant="*",job="tenants"'), 1);
    assert.doesNotMatch(text, /tenant="(calm|noisy)"/);
  });
});
