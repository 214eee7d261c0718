/**
 * The scale-out topology fingerprint (lib/scaleout/fingerprint.ts): stable, sensitive to what decides where
 * state lives and what each task reads, readable, and the mismatch error.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isGressError } from "../../lib/index.ts";
import { checkSameTopology, type TopologyDescription, topologyFingerprint } from "../../lib/scaleout/fingerprint.ts";

const base: TopologyDescription = {
  operators: [
    { id: "map-1", kind: "map" },
    { id: "keyBy-1", kind: "keyBy" },
    { id: "per-minute", kind: "window", uid: "per-minute", inputs: ["keyBy-1"] },
  ],
  sources: [{ name: "orders", topics: ["orders", "orders-eu"] }],
  shuffles: [{ operator: "keyBy-1", topic: "gress-shop-keyBy-1-repartition", partitions: 12 }],
  partitions: { orders: 12, "orders-eu": 12 },
};

describe("topologyFingerprint", () => {
  it("is 16 hex digits, the same for the same topology however its unordered parts are listed", () => {
    const a = topologyFingerprint(base);
    assert.match(a.fingerprint, /^[0-9a-f]{16}$/);
    const b = topologyFingerprint({
      ...base,
      sources: [{ name: "orders", topics: ["orders-eu", "orders"] }],
      partitions: new Map([
        ["orders-eu", 12],
        ["orders", 12],
      ]),
    });
    assert.deepEqual(b, a);
  });

  it("changes with each part: an operator's id, kind, uid or order, a topic, a shuffle, a partition count", () => {
    const seen = new Map<string, string>([[topologyFingerprint(base).fingerprint, "base"]]);
    const variants: Record<string, TopologyDescription> = {
      "operator id": { ...base, operators: [{ id: "map-2", kind: "map" }, ...base.operators.slice(1)] },
      "operator kind": { ...base, operators: [{ id: "map-1", kind: "flatMap" }, ...base.operators.slice(1)] },
      "operator uid": { ...base, operators: [...base.operators.slice(0, 2), { id: "per-hour", kind: "window", uid: "per-hour", inputs: ["keyBy-1"] }] },
      "operator order": { ...base, operators: [base.operators[1]!, base.operators[0]!, base.operators[2]!] },
      "operator inputs": { ...base, operators: [...base.operators.slice(0, 2), { id: "per-minute", kind: "window", uid: "per-minute", inputs: ["map-1"] }] },
      "source topic": { ...base, sources: [{ name: "orders", topics: ["orders"] }] },
      "shuffle partitions": { ...base, shuffles: [{ operator: "keyBy-1", topic: "gress-shop-keyBy-1-repartition", partitions: 6 }] },
      "no shuffle": { ...base, shuffles: [] },
      "partition count": { ...base, partitions: { orders: 12, "orders-eu": 8 } },
    };
    for (const [what, t] of Object.entries(variants)) {
      const f = topologyFingerprint(t).fingerprint;
      assert.equal(seen.get(f), undefined, `${what} gives the fingerprint of ${seen.get(f)}`);
      seen.set(f, what);
    }
  });

  it("describes the topology in a few readable lines", () => {
    assert.equal(
      topologyFingerprint(base).description,
      [
        "sources: orders[orders, orders-eu]",
        "operators: map-1, keyBy-1, keyBy-1→per-minute (window)",
        "shuffles: keyBy-1→gress-shop-keyBy-1-repartition×12",
        "partitions: orders=12, orders-eu=12",
      ].join("\n"),
    );
  });
});

describe("checkSameTopology", () => {
  it("passes the same fingerprint; another is a ConfigError with both fingerprints and descriptions", () => {
    const ours = topologyFingerprint(base);
    checkSameTopology(ours, { fingerprint: ours.fingerprint }, "group member m-2");
    const theirs = topologyFingerprint({ ...base, shuffles: [] });
    assert.throws(
      () => checkSameTopology(ours, theirs, "group member m-2"),
      (e: unknown) => {
        const m = (e as Error).message;
        return (
          isGressError(e, "ERR_CONFIG") &&
          m.startsWith(`group member m-2 has topology ${theirs.fingerprint}, but this job's topology is ${ours.fingerprint}`) &&
          m.includes("    shuffles: keyBy-1→gress-shop-keyBy-1-repartition×12") &&
          m.includes("    shuffles: none")
        );
      },
    );
  });
});
