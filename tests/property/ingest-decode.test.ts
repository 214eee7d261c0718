import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { z } from "zod";
import { jsonDecoder, parseJsonSafely } from "../../connectors/ingest/decode.ts";

const encoder = new TextEncoder();
const hasProtoKey = (v: unknown): boolean =>
  typeof v === "object" && v !== null && Object.keys(v).some((k) => k === "__proto__" || hasProtoKey((v as Record<string, unknown>)[k]));

describe("ingest decoders", () => {
  it("law: for any JSON document without __proto__ keys, the safe parse equals JSON.parse", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        fc.pre(!hasProtoKey(JSON.parse(text)));
        assert.deepEqual(parseJsonSafely(text), { ok: true, value: JSON.parse(text) });
      }),
      { numRuns: 200 },
    );
  });

  it("law: a __proto__ key at any depth, in any spelling, is refused and never pollutes Object.prototype", () => {
    const spellings = ['"__proto__"', '"\\u005f_proto__"', '"__pr\\u006fto__"'];
    fc.assert(
      fc.property(fc.constantFrom(...spellings), fc.nat(4), fc.jsonValue(), (key, depth, inner) => {
        let text = `{${key}:{"polluted":true},"x":${JSON.stringify(inner)}}`;
        for (let i = 0; i < depth; i++) text = `{"a":[${text}]}`;
        assert.deepEqual(parseJsonSafely(text), { ok: false, reason: 'forbidden key "__proto__"' });
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
      }),
      { numRuns: 200 },
    );
  });

  it("law: arbitrary bytes never make the decoder throw; it returns a value or a reason", () => {
    const decode = jsonDecoder({ schema: z.object({ id: z.number() }), maxBytes: 64 });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const r = decode(bytes);
        if (r.ok) assert.equal(typeof r.value.id, "number");
        else assert.match(r.reason, /^(oversized|invalid UTF-8|malformed JSON|schema violation|forbidden key)/);
      }),
      { numRuns: 200 },
    );
  });

  it("the size bound is checked before parsing, and a valid document passes the schema", () => {
    const decode = jsonDecoder({ schema: z.object({ id: z.number() }), maxBytes: 10 });
    assert.deepEqual(decode(encoder.encode('{"id":1}')), { ok: true, value: { id: 1 } });
    assert.deepEqual(decode(encoder.encode('{"id":12345}')), { ok: false, reason: "oversized: 12 bytes > limit 10" });
    assert.deepEqual(decode(encoder.encode('{"id":"1"}')), { ok: false, reason: "schema violation: id: Invalid input: expected number, received string" });
  });
});
