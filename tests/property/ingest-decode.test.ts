import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { z } from "zod";
import { DEFAULT_MAX_DEPTH, type Decoded, decodeUtf8, depthViolation, jsonDecoder, jsonDepth, parseJsonSafely } from "../../connectors/ingest/decode.ts";
import { isGressError } from "../../lib/errors.ts";

const encoder = new TextEncoder();
/** The nesting depth of arrays and objects in a parsed value, by the definition (recursion). */
const depthOf = (v: unknown): number =>
  typeof v !== "object" || v === null ? 0 : 1 + Math.max(0, ...(Array.isArray(v) ? v : Object.values(v)).map(depthOf));
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
        else assert.match(r.reason, /^(oversized|nested too deeply|invalid UTF-8|malformed JSON|schema violation|forbidden key)/);
      }),
      { numRuns: 200 },
    );
  });

  it("law: jsonDecoder (one fused function) answers exactly as its steps composed: size, depth, UTF-8, safe parse", () => {
    const maxBytes = 200;
    const maxDepth = 4;
    const decode = jsonDecoder({ maxBytes, maxDepth });
    const composed = (bytes: Uint8Array): Decoded<unknown> => {
      if (bytes.byteLength > maxBytes) return { ok: false, reason: `oversized: ${bytes.byteLength} bytes > limit ${maxBytes}` };
      const deep = depthViolation(bytes, maxDepth);
      if (deep !== undefined) return { ok: false, reason: deep };
      const text = decodeUtf8(bytes);
      return text.ok ? parseJsonSafely(text.value) : text;
    };
    const key = fc.constantFrom('"__proto__"', '"\\u005f_proto__"', '"a"', '"_"');
    const json = fc.tuple(key, fc.jsonValue({ maxDepth: 6 }), fc.nat(5)).map(([k, v, n]) => {
      let text = `{${k}:${JSON.stringify(v)}}`;
      for (let i = 0; i < n; i++) text = `[${text}]`;
      return encoder.encode(text);
    });
    // Valid JSON (some with __proto__ keys, some too deep or too big), arbitrary bytes, and bytes cut short (bad UTF-8).
    const bytes = fc.oneof(json, fc.uint8Array({ maxLength: 260 }), json.chain((b) => fc.nat(b.length).map((n) => b.subarray(0, n))));
    fc.assert(
      fc.property(bytes, (b) => {
        assert.deepEqual(decode(b), composed(b));
      }),
      { numRuns: 500 },
    );
    assert.deepEqual(decode(null), { ok: false, reason: "empty message (null value)" });
  });

  it("the size bound is checked before parsing, and a valid document passes the schema", () => {
    const decode = jsonDecoder({ schema: z.object({ id: z.number() }), maxBytes: 10 });
    assert.deepEqual(decode(encoder.encode('{"id":1}')), { ok: true, value: { id: 1 } });
    assert.deepEqual(decode(encoder.encode('{"id":12345}')), { ok: false, reason: "oversized: 12 bytes > limit 10" });
    assert.deepEqual(decode(encoder.encode('{"id":"1"}')), { ok: false, reason: "schema violation: id: Invalid input: expected number, received string" });
  });

  it("law: the one-pass depth scan of any JSON text equals the nesting depth of its value (brackets and quotes inside strings included)", () => {
    const tricky = fc.string({ unit: fc.constantFrom("[", "]", "{", "}", '"', "\\", "a", "é") });
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: "small" }, tricky, fc.integer(), fc.array(tie("node"), { maxLength: 3 }), fc.dictionary(tricky, tie("node"), { maxKeys: 3 })),
    })).node;
    fc.assert(
      fc.property(value, fc.nat(12), (v, limit) => {
        const bytes = encoder.encode(JSON.stringify(v));
        const depth = depthOf(v);
        assert.equal(jsonDepth(bytes, 1000), depth);
        // Stops early once past the limit, reporting limit + 1.
        assert.equal(jsonDepth(bytes, limit), Math.min(depth, limit + 1));
      }),
      { numRuns: 300 },
    );
  });

  it("a valid array nested 5,000 deep is refused before parsing, naming the limit; maxDepth levels pass, one more does not", () => {
    const deep = (n: number): Uint8Array => encoder.encode(`${"[".repeat(n)}${"]".repeat(n)}`);
    const reason = `nested too deeply: arrays and objects more than ${DEFAULT_MAX_DEPTH} levels deep (maxDepth ${DEFAULT_MAX_DEPTH})`;
    assert.deepEqual(jsonDecoder()(deep(5000)), { ok: false, reason });
    assert.equal(jsonDecoder()(deep(DEFAULT_MAX_DEPTH)).ok, true);
    assert.deepEqual(jsonDecoder()(deep(DEFAULT_MAX_DEPTH + 1)), { ok: false, reason });
    const three = jsonDecoder({ maxDepth: 3 });
    assert.deepEqual(three(encoder.encode('{"a":[{"b":"[[[[[[\\"]]"}]}')), { ok: true, value: { a: [{ b: '[[[[[["]]' }] } });
    assert.equal(three(encoder.encode('{"a":[{"b":[]}]}')).ok, false);
    assert.throws(
      () => jsonDecoder({ maxDepth: 0 }),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /jsonDecoder\.maxDepth/.test((e as Error).message),
    );
  });
});
