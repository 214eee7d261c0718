/**
 * Laws of the topology fingerprint: listing the unordered parts (sources, a source's topics, shuffles,
 * partition counts) in any order gives the same fingerprint and description; two topologies with different
 * descriptions get different fingerprints.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type TopologyDescription, topologyFingerprint } from "../../lib/scaleout/fingerprint.ts";

const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,6}$/);
const topologyArb: fc.Arbitrary<TopologyDescription> = fc.record({
  operators: fc.uniqueArray(
    fc.record({ kind: fc.constantFrom("map", "filter", "keyBy", "window", "process", "match"), n: fc.integer({ min: 1, max: 3 }), uid: fc.option(name, { nil: undefined }) }),
    { maxLength: 6, selector: (o) => o.uid ?? `${o.kind}-${o.n}` },
  ).map((ops) => ops.map((o) => (o.uid === undefined ? { id: `${o.kind}-${o.n}`, kind: o.kind } : { id: o.uid, kind: o.kind, uid: o.uid }))),
  sources: fc.uniqueArray(fc.record({ name, topics: fc.uniqueArray(name, { minLength: 1, maxLength: 3 }) }), { maxLength: 3, selector: (s) => s.name }),
  shuffles: fc.uniqueArray(fc.record({ operator: name, topic: name, partitions: fc.integer({ min: 1, max: 24 }) }), { maxLength: 2, selector: (s) => s.operator }),
  partitions: fc.dictionary(name, fc.integer({ min: 1, max: 24 }), { maxKeys: 4, noNullPrototype: true }),
});

const shuffled = <T>(xs: readonly T[], seed: number): T[] => {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
};

describe("topology fingerprint laws", () => {
  it("law: the order of sources, topics, shuffles and partition counts does not matter", () => {
    fc.assert(
      fc.property(topologyArb, fc.nat(), (t, seed) => {
        const reordered: TopologyDescription = {
          operators: t.operators,
          sources: shuffled(t.sources, seed).map((s) => ({ name: s.name, topics: shuffled(s.topics, seed + 1) })),
          shuffles: shuffled(t.shuffles, seed + 2),
          partitions: new Map(shuffled(Object.entries(t.partitions), seed + 3)),
        };
        assert.deepEqual(topologyFingerprint(reordered), topologyFingerprint(t));
      }),
      { numRuns: 300 },
    );
  });

  it("law: different descriptions, different fingerprints", () => {
    fc.assert(
      fc.property(topologyArb, topologyArb, (a, b) => {
        const fa = topologyFingerprint(a);
        const fb = topologyFingerprint(b);
        assert.equal(fa.fingerprint === fb.fingerprint, fa.description === fb.description);
      }),
      { numRuns: 500 },
    );
  });
});
