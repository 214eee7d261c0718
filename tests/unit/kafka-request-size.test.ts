// Produce requests of bounded size (connectors/kafka/request-size.ts): a send is cut into consecutive runs
// under the byte bound, never empty, in order, and the merged report names where each partition began.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { ProducedBatch, ProducerRecord } from "../../connectors/kafka/client.ts";
import { sendInParts, splitBySize } from "../../connectors/kafka/request-size.ts";

describe("Kafka produce requests of bounded size", () => {
  it("a send that fits is passed on as it is; a larger one is cut into runs under the bound, in order", () => {
    const small: ProducerRecord[] = [{ key: "a", value: "b" }];
    assert.equal(splitBySize(small, 1000)[0], small);
    fc.assert(
      fc.property(fc.array(fc.record({ key: fc.option(fc.string({ maxLength: 20 }), { nil: null }), value: fc.uint8Array({ maxLength: 300 }) }), { maxLength: 80 }), fc.integer({ min: 64, max: 2000 }), (records, max) => {
        const parts = splitBySize(records, max);
        assert.deepEqual(parts.flat(), records);
        for (const part of parts) {
          assert.ok(part.length > 0 || records.length === 0);
          const size = part.reduce((n, r) => n + (r.key === null ? 0 : r.key.length * 3) + (r.value as Uint8Array).byteLength + 32, 0);
          assert.ok(part.length === 1 || size <= max, `a run of ${part.length} records is ${size} bytes > ${max}`);
        }
      }),
    );
  });

  it("a record larger than the bound goes alone; multi-byte text is counted in bytes", () => {
    const big = "é".repeat(3000); // 6000 bytes in UTF-8, 3000 UTF-16 units
    const parts = splitBySize([{ key: null, value: "a" }, { key: null, value: big }, { key: null, value: "b" }], 4000);
    assert.deepEqual(
      parts.map((p) => p.length),
      [1, 1, 1],
    );
  });

  it("the parts are sent one after the other, and each partition reports where its first batch began", async () => {
    const records: ProducerRecord[] = Array.from({ length: 10 }, (_, i) => ({ key: null, value: new Uint8Array(100), partition: i % 2 }));
    const calls: number[] = [];
    let next = [100, 200];
    const landed = await sendInParts(
      records,
      async (part): Promise<ProducedBatch[]> => {
        calls.push(part.length);
        const out: ProducedBatch[] = [];
        for (const p of [0, 1]) {
          const n = part.filter((r) => r.partition === p).length;
          if (n > 0) out.push({ partition: p, baseOffset: next[p] as number });
          next = next.map((o, q) => (q === p ? o + n : o));
        }
        await new Promise((r) => setTimeout(r, 1));
        return out;
      },
      300,
    );
    assert.deepEqual(calls, [2, 2, 2, 2, 2]);
    assert.deepEqual(landed, [
      { partition: 0, baseOffset: 100 },
      { partition: 1, baseOffset: 200 },
    ]);
  });
});
