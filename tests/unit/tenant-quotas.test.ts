/**
 * TenantQuotas on a virtual clock: each tenant has its own record and byte buckets, a refused batch takes
 * nothing and says how long to wait, a batch larger than the burst passes only from a full bucket, tenants
 * beyond maxTenants are forgotten least recently seen first, and counts are per tenant only when allowed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TenantQuotas } from "../../connectors/http/index.ts";

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe("TenantQuotas", () => {
  it("a tenant over its record quota waits; another tenant is not affected", () => {
    const c = clock();
    const q = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 10 } }, c);
    assert.equal(q.admit("a", 10, 0), 0);
    assert.equal(q.admit("a", 5, 0), 500, "5 tokens at 10/s");
    assert.equal(q.admit("b", 10, 0), 0);
    c.advance(500);
    assert.equal(q.admit("a", 5, 0), 0);
    assert.equal(q.admit("a", 1, 0), 100);
  });

  it("the byte quota is checked as well, and a refused batch takes no record tokens", () => {
    const c = clock();
    const q = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 100, bytesPerSecond: 1000 } }, c);
    assert.equal(q.admit("a", 1, 1000), 0);
    assert.equal(q.admit("a", 1, 500), 500);
    // The refusal took no record tokens: 99 left.
    c.advance(500);
    assert.equal(q.admit("a", 99, 500), 0);
  });

  it("a batch larger than the burst passes from a full bucket and leaves it in debt", () => {
    const c = clock();
    const q = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 10 } }, c);
    assert.equal(q.admit("a", 30, 0), 0);
    assert.equal(q.admit("a", 1, 0), 2100, "20 tokens of debt plus one token at 10/s");
  });

  it("charge takes what already arrived, into debt, and says how long the tenant must be held", () => {
    const c = clock();
    const q = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 10, bytesPerSecond: 100 } }, c);
    assert.equal(q.charge("a", 10, 50), 0, "within both buckets");
    assert.equal(q.charge("a", 1, 0), 100, "one message of debt at 10/s");
    assert.equal(q.charge("a", 0, 150), 1000, "100 bytes of debt at 100/s: the longer hold wins");
    assert.equal(q.charge("b", 1, 1), 0, "another tenant is not held");
    assert.deepEqual(q.stats.get("*"), { admittedRecords: 12, admittedBytes: 201, refusedRecords: 0, refusedBytes: 0, refusals: 0 });
  });

  it("precheck refuses a tenant with no tokens before its batch is read, taking nothing", () => {
    const c = clock();
    const q = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 10, bytesPerSecond: 1000 } }, c);
    assert.equal(q.precheck("a", 500), 0);
    assert.equal(q.admit("a", 10, 500), 0);
    assert.equal(q.precheck("a", 100), 100, "no record token left: one comes in 100 ms");
    assert.equal(q.precheck("b", 100), 0, "another tenant is not affected");
    c.advance(100);
    assert.equal(q.precheck("a", 100), 0, "the precheck took nothing");
    assert.deepEqual(q.stats.get("*"), { admittedRecords: 10, admittedBytes: 500, refusedRecords: 0, refusedBytes: 100, refusals: 1 });
  });

  it("overrides give particular tenants their own quota", () => {
    const c = clock();
    const q = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 1 }, overrides: { big: { recordsPerSecond: 100 } } }, c);
    assert.equal(q.admit("big", 100, 0), 0);
    assert.equal(q.admit("small", 1, 0), 0);
    assert.ok(q.admit("small", 1, 0) > 0);
  });

  it("forgets the least recently seen tenant beyond maxTenants (it comes back with full buckets)", () => {
    const c = clock();
    const q = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 1 }, maxTenants: 2 }, c);
    assert.equal(q.admit("a", 1, 0), 0);
    assert.equal(q.admit("b", 1, 0), 0);
    assert.ok(q.admit("a", 1, 0) > 0, "a is tracked and empty");
    assert.equal(q.admit("c", 1, 0), 0, "c evicts b, the least recently seen");
    assert.ok(q.admit("a", 1, 0) > 0, "a was seen more recently than b, so it is still tracked");
    assert.equal(q.admit("b", 1, 0), 0, "b was forgotten: full again");
  });

  it("counts per tenant only with perTenantStats; otherwise one total under *", () => {
    const c = clock();
    const total = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 1 } }, c);
    total.admit("a", 1, 10);
    total.admit("a", 1, 10);
    total.admit("b", 1, 7);
    assert.deepEqual([...total.stats], [["*", { admittedRecords: 2, admittedBytes: 17, refusedRecords: 1, refusedBytes: 10, refusals: 1 }]]);
    const each = new TenantQuotas({ tenant: { header: "x-tenant" }, quota: { recordsPerSecond: 1 }, perTenantStats: true }, c);
    each.admit("a", 1, 10);
    each.admit("b", 1, 7);
    assert.deepEqual([...each.stats.keys()], ["a", "b"]);
  });

  it("maps bearer tokens to tenants, and refuses bad quotas naming the field", () => {
    const q = new TenantQuotas({ tenant: { tokens: { acme: "t1" } }, quota: { recordsPerSecond: 1 } }, clock());
    assert.equal(q.tenantOfToken("t1"), "acme");
    assert.equal(q.tenantOfToken("t2"), undefined);
    assert.throws(() => new TenantQuotas({ tenant: { header: "h" }, quota: { recordsPerSecond: 0 } }, clock()), /quota.recordsPerSecond must be a number > 0, got 0/);
    assert.throws(() => new TenantQuotas({ tenant: { header: "h" }, quota: {}, overrides: { x: { bytesPerSecond: Number.NaN } } }, clock()), /x.bytesPerSecond must be a number > 0/);
  });
});
