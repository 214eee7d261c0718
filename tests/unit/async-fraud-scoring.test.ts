import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Alert, fraudDetection } from "../../examples/fraud-detection.ts";
import { logisticScore, scoringService } from "../../examples/fraud-scoring.ts";
import { asyncMetrics } from "../../lib/index.ts";

describe("fraud example: the scoring step (mapAsync over a loopback HTTP scoring service)", () => {
  it("the service answers the model's score, and refuses a request without features", async () => {
    const scoring = scoringService();
    try {
      const features = { amount: 1_800, tests: 3, accountAgeDays: 20, abroad: true, riskTier: "high" as const };
      assert.equal(await scoring.score(features), logisticScore(features));
      assert.equal(await scoring.score({ ...features }), logisticScore(features), "equal features: from the client's cache");
      assert.equal(scoring.cache.hits, 1);
      assert.ok(logisticScore(features) > 0.9, "a new account abroad with a high risk tier scores high");
      const calm = { amount: 600, tests: 3, accountAgeDays: 365, abroad: false, riskTier: "low" as const };
      assert.ok(logisticScore(calm) < logisticScore(features));
      await assert.rejects(scoring.score({ amount: "x" } as never), /scoring service answered 400/);
      assert.equal(scoring.requests, 1);
    } finally {
      await scoring.close();
    }
  });

  it("every match is scored (by a request or from the client's cache), alerts carry the score, and the service stops with the job", async () => {
    const alerts: Alert[] = [];
    const { job, stats, scoring } = fraudDetection(6_000, (a) => alerts.push(a));
    await job.run();
    assert.ok(stats.matches > 0 && alerts.length > 0);
    assert.ok(alerts.every((a) => typeof a.score === "number" && a.score > 0 && a.score < 1));
    const m = asyncMetrics(job.metrics, "risk-score");
    assert.equal(m.calls, stats.matches, "one call per match");
    assert.equal(scoring.requests + scoring.cache.hits, stats.matches, "one request or cache hit per match");
    assert.equal(m.timeouts + m.retries, 0);
    assert.equal(m.inFlight, 0);
    assert.equal(scoring.running, false, "the alert sink closed the service when the job ended");
    // A new call starts it again (as a restarted job would).
    const again = scoring.requests;
    await scoring.score({ amount: 500, tests: 3, accountAgeDays: undefined, abroad: false, riskTier: undefined });
    assert.equal(scoring.running, true);
    assert.equal(scoring.requests, again + 1);
    await scoring.close();
  });
});
