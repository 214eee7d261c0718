/** settledWithin (lib/scaleout/wait.ts): whether a promise settled within a time limit, never rejecting. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { settledWithin } from "../../lib/scaleout/wait.ts";

describe("settledWithin", () => {
  it("is true for a promise that fulfils or rejects in time, false for one that does not settle", async () => {
    assert.equal(await settledWithin(Promise.resolve(1), 1000), true);
    assert.equal(await settledWithin(Promise.reject(new Error("refused")), 1000), true);
    assert.equal(await settledWithin(new Promise((r) => setTimeout(r, 10)), 1000), true);
    const began = performance.now();
    assert.equal(await settledWithin(new Promise(() => undefined), 50), false);
    assert.ok(performance.now() - began >= 45, "it waited for the limit");
  });
});
