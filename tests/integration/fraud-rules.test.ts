// The fraud example with its rule read from a Kafka topic (examples/fraud-rules.ts): version 1 (large ≥ 500)
// raises the alerts of the first half, version 2 (large ≥ 1 500), published to the topic while the job runs,
// those after the change. Real Kafka from scripts/services.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runFraudRules } from "../../examples/fraud-rules.ts";
import { brokersFromEnv } from "../../examples/support/kafka-feed.ts";

describe("fraud rules from a Kafka topic", () => {
  it("a threshold raised while the job runs applies from the change on; alerts before it keep version 1", { timeout: 120_000 }, async () => {
    const { alerts, changedAt } = await runFraudRules(brokersFromEnv(), 20_000, 500, 1_500);
    const v1 = alerts.filter((a) => a.version === 1);
    const v2 = alerts.filter((a) => a.version === 2);
    assert.ok(v1.length > 0 && v2.length > 0, `alerts under both versions (v1 ${v1.length}, v2 ${v2.length})`);
    for (const a of v1) assert.ok(a.amount >= 500, `v1 alert of ${a.amount}`);
    for (const a of v2) assert.ok(a.amount >= 1_500 && a.at >= changedAt, `v2 alert of ${a.amount} at ${a.at} (change at ${changedAt})`);
    // Version 2 dropped some that version 1 would have raised: large charges between 500 and 1 500 after the change.
    assert.ok(v1.some((a) => a.amount < 1_500), "version 1 alerted on a charge under 1 500");
    // No card-testing sequence is alerted twice.
    assert.equal(new Set(alerts.map((a) => `${a.card}@${a.at}`)).size, alerts.length);
  });
});
