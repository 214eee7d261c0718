/**
 * Decoding of raw message bytes into values, shared by every source. A decoder never throws: it returns the
 * value, or the reason the bytes are bad, so the source can route them to the dead-letter output and go on.
 *
 * Bad input it recognises: oversized messages (checked before any parsing), documents nested deeper than
 * `maxDepth` (checked in one pass over the bytes before parsing: a valid 12 KB array nested 5,000 levels deep
 * parses, but every recursive consumer after it — `JSON.stringify` in a sink, a schema, a deep copy — overflows
 * the stack), invalid UTF-8 (a fatal TextDecoder), malformed JSON, `__proto__` keys (refused, so a later merge
 * of the value cannot pollute Object.prototype), and values that fail an optional zod schema (the reason names
 * each bad field).
 * @module
 */
import { z } from "zod";
import { validate } from "../../lib/config.ts";

/**
 * The outcome of decoding one message.
 *
 * @example
 * ```ts
 * import type { Decoded } from "gress/kafka";
 *
 * const parsed = (text: string): Decoded<number> => (/^\d+$/.test(text) ? { ok: true, value: Number(text) } : { ok: false, reason: `not a number: ${text}` });
 * ```
 */
export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/**
 * Turns the bytes of one message into a value, or says why it cannot. Never throws.
 *
 * @example
 * ```ts
 * import { type Decoder, kafkaSource } from "gress/kafka";
 *
 * // A decoder of your own: bytes to a value, or a reason (the message becomes a dead letter).
 * const csv: Decoder<[string, number]> = (bytes) => {
 *   if (bytes === null) return { ok: false, reason: "empty message" };
 *   const [name, n] = new TextDecoder().decode(bytes).split(",");
 *   const value = Number(n);
 *   return name !== undefined && Number.isFinite(value) ? { ok: true, value: [name, value] } : { ok: false, reason: "expected name,number" };
 * };
 * const source = kafkaSource({ name: "csv", brokers: ["localhost:9092"], topics: ["csv"], groupId: "g", decode: csv });
 * ```
 */
export type Decoder<T> = (bytes: Uint8Array | null) => Decoded<T>;

/**
 * A decoder that may need to wait (a schema registry lookup) before it can answer: it returns a promise only
 * then, and answers synchronously otherwise. Sources that read in batches (Kafka) accept it as `decode`.
 *
 * @example
 * ```ts
 * import type { AsyncDecoder } from "gress/kafka";
 *
 * const known = new Map<number, string>([[1, "one"]]);
 * const decode: AsyncDecoder<string> = (bytes) => {
 *   const id = bytes?.[0] ?? -1;
 *   const name = known.get(id);
 *   return name !== undefined ? { ok: true, value: name } : Promise.resolve({ ok: false, reason: `unknown id ${id}` });
 * };
 * ```
 */
export type AsyncDecoder<T> = (bytes: Uint8Array | null) => Decoded<T> | Promise<Decoded<T>>;

/** Options of {@link jsonDecoder}. */
export interface JsonDecoderOptions<T> {
  /** Values must match this schema; the parsed output of the schema is emitted. */
  readonly schema?: z.ZodType<T>;
  /** Messages larger than this many bytes are refused before parsing. Default 1 MiB. */
  readonly maxBytes?: number;
  /** Messages whose arrays and objects nest deeper than this are refused before parsing. Default 128. */
  readonly maxDepth?: number;
}

/** Default bound on one message. */
export const DEFAULT_MAX_BYTES: number = 1024 * 1024;

/** Default bound on the nesting of arrays and objects in one JSON message (serde_json's default, too). */
export const DEFAULT_MAX_DEPTH: number = 128;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * The nesting depth of the arrays and objects in JSON text (`1` for `[1]`, `0` for `1`), in one pass over
 * the UTF-8 bytes without recursion; brackets inside strings do not count. It stops as soon as the depth
 * passes `limit` and then returns `limit + 1`. The bytes need not be valid JSON (the parser judges that): a
 * multi-byte UTF-8 sequence never contains an ASCII byte, so quotes and brackets cannot be misread.
 */
export function jsonDepth(bytes: Uint8Array, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) inString = true;
    else if (b === OPEN_ARRAY || b === OPEN_OBJECT) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (b === CLOSE_ARRAY || b === CLOSE_OBJECT) depth--;
  }
  return max;
}

/** The reason of a document nested deeper than `maxDepth`, or undefined when it is not. */
export function depthViolation(bytes: Uint8Array, maxDepth: number): string | undefined {
  // Nesting deeper than maxDepth takes more than maxDepth bytes: short messages need no scan.
  if (bytes.byteLength <= maxDepth || jsonDepth(bytes, maxDepth) <= maxDepth) return undefined;
  return depthReason(maxDepth);
}

function depthReason(maxDepth: number): string {
  return `nested too deeply: arrays and objects more than ${maxDepth} levels deep (maxDepth ${maxDepth})`;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes UTF-8 text; invalid byte sequences are an error, never replaced silently. */
export function decodeUtf8(bytes: Uint8Array): Decoded<string> {
  try {
    return { ok: true, value: utf8.decode(bytes) };
  } catch {
    return INVALID_UTF8;
  }
}

/** Refuses `__proto__` keys anywhere in a document. */
function refuseProto(key: string, value: unknown): unknown {
  if (key === "__proto__") throw new ForbiddenKey();
  return value;
}
class ForbiddenKey extends Error {}

/**
 * Parses JSON without allowing `__proto__` keys. The reviver only runs when the text could contain such a
 * key (literally, or spelled with `\u` escapes), so ordinary documents parse at JSON.parse speed.
 */
export function parseJsonSafely(text: string): Decoded<unknown> {
  try {
    return { ok: true, value: parseJsonOrThrow(text) };
  } catch (e) {
    return jsonFailure(e);
  }
}

/** JSON.parse refusing `__proto__` keys (throws ForbiddenKey); the reviver runs only on suspicious text. */
function parseJsonOrThrow(text: string): unknown {
  // A `__proto__` key is spelled literally or with `\u` escapes; text with neither parses without the reviver.
  return text.includes("__proto__") || text.includes("\\u") ? JSON.parse(text, refuseProto) : JSON.parse(text);
}

/** The reason of a failed {@link parseJsonOrThrow}. */
function jsonFailure(e: unknown): { readonly ok: false; readonly reason: string } {
  if (e instanceof ForbiddenKey) return FORBIDDEN_PROTO;
  return { ok: false, reason: `malformed JSON: ${e instanceof Error ? e.message : String(e)}` };
}
const FORBIDDEN_PROTO = { ok: false, reason: 'forbidden key "__proto__"' } as const;
const INVALID_UTF8 = { ok: false, reason: "invalid UTF-8" } as const;

/** Describes the zod issues of a failed parse: `schema violation: amount: expected number; ...`. */
export function schemaReason(error: z.ZodError): string {
  const parts = error.issues.slice(0, 5).map((i) => `${i.path.length > 0 ? i.path.join(".") : "(root)"}: ${i.message}`);
  if (error.issues.length > 5) parts.push(`and ${error.issues.length - 5} more`);
  return `schema violation: ${parts.join("; ")}`;
}

/**
 * A decoder for JSON messages: size check, depth check, strict UTF-8, safe JSON, then the optional schema.
 *
 * @example
 * ```ts
 * import { jsonDecoder } from "gress/kafka";
 * import { z } from "zod";
 *
 * const decode = jsonDecoder({ schema: z.object({ id: z.number() }), maxBytes: 64 * 1024 });
 * console.log(decode(new TextEncoder().encode('{"id":1}'))); // { ok: true, value: { id: 1 } }
 * console.log(decode(new TextEncoder().encode("{"))); // { ok: false, reason: "malformed JSON: ..." }
 * ```
 * @param options schema, size and depth bounds
 * @returns a decoder that never throws
 */
export function jsonDecoder<T = unknown>(options: JsonDecoderOptions<T> = {}): Decoder<T> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxDepth = checkMaxDepth(options.maxDepth);
  const schema = options.schema;
  // The same steps as depthViolation, decodeUtf8 and parseJsonSafely, in one function with one result object:
  // this runs once per message, and the intermediate results cost about as much as the checks themselves.
  return (bytes) => {
    if (bytes === null) return { ok: false, reason: "empty message (null value)" };
    const size = bytes.byteLength;
    if (size > maxBytes) return { ok: false, reason: `oversized: ${size} bytes > limit ${maxBytes}` };
    if (size > maxDepth && jsonDepth(bytes, maxDepth) > maxDepth) return { ok: false, reason: depthReason(maxDepth) };
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return INVALID_UTF8;
    }
    let value: unknown;
    try {
      value = parseJsonOrThrow(text);
    } catch (e) {
      return jsonFailure(e);
    }
    if (schema === undefined) return { ok: true, value: value as T };
    const checked = schema.safeParse(value);
    return checked.success ? { ok: true, value: checked.data } : { ok: false, reason: schemaReason(checked.error) };
  };
}

const maxDepthSchema = z.object({ maxDepth: z.number().int().positive().optional() });

/** The `maxDepth` option or its default; a bad value is a ConfigError naming `where`.maxDepth. */
export function checkMaxDepth(maxDepth: number | undefined, where = "jsonDecoder"): number {
  return validate(maxDepthSchema, { maxDepth }, where).maxDepth ?? DEFAULT_MAX_DEPTH;
}

/**
 * A decoder for UTF-8 text messages, with the same size bound.
 *
 * @example
 * ```ts
 * import { kafkaSource, textDecoder } from "gress/kafka";
 *
 * // Messages as UTF-8 strings (invalid UTF-8 and oversized messages become dead letters).
 * const lines = kafkaSource({ name: "lines", brokers: ["localhost:9092"], topics: ["logs"], groupId: "g", decode: textDecoder({ maxBytes: 64 * 1024 }) });
 * ```
 */
export function textDecoder(options: { readonly maxBytes?: number } = {}): Decoder<string> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  return (bytes) => {
    if (bytes === null) return { ok: false, reason: "empty message (null value)" };
    if (bytes.byteLength > maxBytes) return { ok: false, reason: `oversized: ${bytes.byteLength} bytes > limit ${maxBytes}` };
    return decodeUtf8(bytes);
  };
}

/**
 * What a dead letter from a source carries: where the bytes came from and a bounded preview of them.
 *
 * @example
 * ```ts
 * import { DEAD_LETTERS, Job } from "gress";
 * import { kafkaSource, type SourceDeadLetter } from "gress/kafka";
 *
 * const job = new Job();
 * const orders = job.source(kafkaSource({ name: "orders", brokers: ["localhost:9092"], topics: ["orders"], groupId: "g" }));
 * // A message that could not be decoded: where it was, its size, a preview, and the reason.
 * orders.sideRecords(DEAD_LETTERS).subscribe((r) => {
 *   const d = r.value as SourceDeadLetter;
 *   console.warn(`${d.source} ${d.split}@${d.position}: ${r.reason} (${d.size} bytes: ${d.preview})`);
 * });
 * ```
 */
export interface SourceDeadLetter {
  readonly source: string;
  readonly split: string;
  readonly position: number | string;
  readonly size: number;
  /** The first bytes, decoded leniently (invalid sequences become U+FFFD). */
  readonly preview: string;
}

const lenient = new TextDecoder("utf-8");

/** Builds the dead-letter value of a bad message; the preview is bounded so a huge message is not kept. */
export function deadLetterOf(source: string, split: string, position: number | string, bytes: Uint8Array | null, previewBytes = 256): SourceDeadLetter {
  const size = bytes?.byteLength ?? 0;
  const preview = bytes === null ? "" : lenient.decode(bytes.subarray(0, previewBytes));
  return { source, split, position, size, preview };
}
