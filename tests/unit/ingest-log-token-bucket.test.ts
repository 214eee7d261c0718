import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TokenBucket } from "../../connectors/ingest/index.ts";
import { VirtualClock } from "../../lib/clock.ts";

describe("token bucket (per-source rate limit)", () => {
  it("allows a burst, then the rate; delayFor says how long to wait; debt is repaid before new tokens", () => {
    const clock = new VirtualClock(0);
    const bucket = new TokenBucket({ ratePerSecond: 10, burst: 5 }, clock);
    assert.equal(bucket.tryTake(5), true);
    assert.equal(bucket.tryTake(1), false);
    assert.equal(bucket.delayFor(1), 100);
    clock.advance(100);
    assert.equal(bucket.tryTake(1), true);
    bucket.take(3); // debt for input that already arrived
    assert.equal(bucket.delayFor(1), 400);
    clock.advance(10_000);
    assert.equal(bucket.tokens, 5, "never more than the burst");
  });

  it("rejects a non-positive rate with a message that names it", () => {
    assert.throws(() => new TokenBucket({ ratePerSecond: 0 }, new VirtualClock(0)), /ratePerSecond must be > 0, got 0/);
  });
});
