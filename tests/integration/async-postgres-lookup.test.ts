/**
 * The fraud example's --services profile lookup against the real PostgreSQL: mapAsync calls a query per match
 * (through a cache by user), and finds the same card-testing matches and alerts as the run that joins the
 * generated profile changelog.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";
import { type Alert, type FraudStats, fraudDetection, fraudPipeline } from "../../examples/fraud-detection.ts";
import { postgresProfiles } from "../../examples/fraud-profiles.ts";
import { scoringService } from "../../examples/fraud-scoring.ts";
import { asyncMetrics, Job, sinkFn } from "../../lib/index.ts";
import { transactions, userProfiles } from "../../lib/sources/transactions.ts";

function pgUrl(): string {
  const v = process.env.GRESS_PG_URL;
  if (v === undefined || v === "") throw new Error('GRESS_PG_URL is not set: run `scripts/services up pg` and `eval "$(scripts/services env)"` first');
  return v;
}

describe("fraud example: profiles looked up in PostgreSQL with mapAsync", () => {
  it("looks each match's user up (once per user while cached) and drops its table at close", async () => {
    const profileSource = userProfiles();
    const table = `fraud_profiles_test_${Date.now().toString(36)}`;
    const store = await postgresProfiles(pgUrl(), table, Array.from({ length: 400 }, (_, i) => profileSource.event(i).value));
    const scoring = scoringService();
    const stats: FraudStats = { matches: 0, timeouts: 0, alerts: 0 };
    const alerts: Alert[] = [];
    const job = new Job({ name: "fraud-pg" });
    try {
      fraudPipeline(job.source(transactions({ count: 6_000, maxDelayMs: 2_000 })), (user, call) => store.lookup(user, call), stats, scoring).sinkTo(
        sinkFn("alerts", (a) => void alerts.push(a)),
      );
      await job.run();
    } finally {
      await scoring.close();
    }
    // The same input through the generated profile changelog, joined as of each match.
    const joined: Alert[] = [];
    const reference = fraudDetection(6_000, (a) => joined.push(a));
    await reference.job.run();
    assert.ok(stats.matches > 0);
    assert.equal(stats.matches, reference.stats.matches, "the same matches");
    const m = asyncMetrics(job.metrics, "profile-lookup");
    assert.equal(m.calls, stats.matches, "one lookup per match");
    assert.equal(store.queries + store.cache.hits, stats.matches, "each a query or a cache hit");
    assert.ok(store.queries > 0);
    // Every user exists in the table: every alert was made with a profile.
    assert.ok(alerts.length > 0 && alerts.every((a) => !a.reasons.includes("no profile")));
    assert.deepEqual(
      alerts.map((a) => a.card).sort(),
      joined.map((a) => a.card).sort(),
      "the same alerts as the changelog join (the latest profiles decide the same)",
    );
    await store.close();
    const check = (await import("postgres")).default(pgUrl(), { max: 1, onnotice: () => {} });
    try {
      const [row] = await check<{ n: number }[]>`select count(*)::int as n from information_schema.tables where table_name = ${table}`;
      assert.equal(row?.n, 0, "the table was dropped");
    } finally {
      await check.end({ timeout: 5 });
    }
  });
});
