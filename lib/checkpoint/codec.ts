/**
 * The value codec of savepoint files (format version 1): JSON with tagged objects for what JSON cannot say,
 * so a savepoint stays readable by later releases and by people. Tags are one-key objects:
 * `{"$n":"NaN"|"Infinity"|"-Infinity"|"-0"}`, `{"$u":0}` (undefined), `{"$b":"123"}` (bigint),
 * `{"$d":ms}` (Date), `{"$m":[[k,v],...]}` (Map), `{"$s":[...]}` (Set), `{"$x":"base64"}` (bytes), and
 * `{"$o":{...}}` for a plain object whose own keys start with `$`.
 * @module
 */

/** Turns a structured-cloneable value into JSON-safe data. */
export function encodeValue(v: unknown): unknown {
  switch (typeof v) {
    case "number":
      if (Number.isFinite(v)) return Object.is(v, -0) ? { $n: "-0" } : v;
      return { $n: String(v) };
    case "undefined":
      return { $u: 0 };
    case "bigint":
      return { $b: v.toString() };
    case "string":
    case "boolean":
      return v;
    case "object": {
      if (v === null) return null;
      if (Array.isArray(v)) return v.map(encodeValue);
      if (v instanceof Date) return { $d: v.getTime() };
      if (v instanceof Map) return { $m: [...v].map(([k, x]) => [encodeValue(k), encodeValue(x)]) };
      if (v instanceof Set) return { $s: [...v].map(encodeValue) };
      if (v instanceof Uint8Array) return { $x: toBase64(v) };
      const out: Record<string, unknown> = {};
      let dollar = false;
      for (const [k, x] of Object.entries(v)) {
        if (k.startsWith("$")) dollar = true;
        setOwn(out, k, encodeValue(x));
      }
      return dollar ? { $o: out } : out;
    }
    default:
      throw new TypeError(`cannot store a ${typeof v} in a savepoint`);
  }
}

/** Inverse of {@link encodeValue}. */
export function decodeValue(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(decodeValue);
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1) {
    const x = o[keys[0]!];
    switch (keys[0]) {
      case "$n":
        return x === "-0" ? -0 : Number(x);
      case "$u":
        return undefined;
      case "$b":
        return BigInt(x as string);
      case "$d":
        return new Date(x as number);
      case "$m":
        return new Map((x as [unknown, unknown][]).map(([k, y]) => [decodeValue(k), decodeValue(y)]));
      case "$s":
        return new Set((x as unknown[]).map(decodeValue));
      case "$x":
        return fromBase64(x as string);
      case "$o":
        return decodePlain(x as Record<string, unknown>);
    }
  }
  return decodePlain(o);
}

function decodePlain(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) setOwn(out, k, decodeValue(x));
  return out;
}

/** `o[k] = v` as an own property, also for the key "__proto__", which plain assignment turns into the prototype. */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
