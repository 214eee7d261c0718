import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Alert, fraudDetection } from "../../examples/fraud-detection.ts";
import { transactions } from "../../lib/sources/transactions.ts";

describe("fraud-detection example", () => {
  it("finds every planted card-testing sequence and alerts on the risky ones", async () => {
    const count = 6_000;
    // The generator plants the sequences; count the large charges that end them.
    const source = transactions({ count });
    let planted = 0;
    for (let i = 0; i < count; i++) if (source.event(i).value.amount >= 500) planted++;
    const alerts: Alert[] = [];
    const { job, stats } = fraudDetection(count, (a) => alerts.push(a));
    await job.run();
    assert.ok(planted > 0);
    assert.equal(stats.matches, planted);
    assert.equal(stats.alerts, alerts.length);
    assert.ok(alerts.length > 0, "some planted sequences are risky enough to alert on");
    assert.ok(alerts.every((a) => a.risk >= 0.6 && a.tests.length === 3 && a.tests.every((t) => t < 2) && a.amount >= 500));
  });
});
