/**
 * The Confluent wire format: a magic byte `0`, the schema id as a 4-byte big-endian integer, then (Protobuf
 * only) the message indexes that name the message type inside the schema's .proto file, then the payload
 * encoded by the schema's format. Message indexes are a zig-zag varint count followed by that many zig-zag
 * varint indexes (the path: top-level message, then nested ones); the common `[0]` is written as the single
 * byte `0`. Parsing never throws: a frame that is too short or has another magic byte is a reason.
 * @module
 */
import type { Decoded } from "../ingest/decode.ts";

/** The first byte of every Confluent-framed message. */
export const MAGIC_BYTE = 0;
/** Magic byte plus 4-byte schema id. */
export const HEADER_BYTES = 5;

/**
 * A parsed frame: the schema id and the bytes after the header (for Protobuf, the message indexes come first:
 * see {@link readMessageIndexes}).
 *
 * @example
 * ```ts
 * import { parseFrame } from "gress/registry";
 *
 * const framed = parseFrame(new Uint8Array([0, 0, 0, 0, 7, 2, 97]));
 * if (framed.ok) console.log(framed.value.schemaId, framed.value.body); // 7 Uint8Array(2) [2, 97]
 * ```
 */
export interface Frame {
  readonly schemaId: number;
  readonly body: Uint8Array;
}

/**
 * Splits a Confluent-framed message into its schema id and body, or says why it is not one.
 *
 * @example
 * ```ts
 * import { parseFrame } from "gress/registry";
 *
 * console.log(parseFrame(new TextEncoder().encode('{"a":1}'))); // { ok: false, reason: "not in the Confluent wire format: ..." }
 * ```
 * @param bytes the message value
 * @returns the frame, or the reason it is not one
 */
export function parseFrame(bytes: Uint8Array): Decoded<Frame> {
  if (bytes.byteLength < HEADER_BYTES) {
    return { ok: false, reason: `not in the Confluent wire format: ${bytes.byteLength} bytes, shorter than the ${HEADER_BYTES}-byte header` };
  }
  if (bytes[0] !== MAGIC_BYTE) {
    return { ok: false, reason: `not in the Confluent wire format: first byte 0x${(bytes[0] as number).toString(16).padStart(2, "0")}, expected magic byte 0x00` };
  }
  // Big-endian int32, as DataView.getInt32 reads it, without allocating a view per message.
  const schemaId = ((bytes[1] as number) << 24) | ((bytes[2] as number) << 16) | ((bytes[3] as number) << 8) | (bytes[4] as number);
  return { ok: true, value: { schemaId, body: bytes.subarray(HEADER_BYTES) } };
}

/**
 * Frames a payload: magic byte, schema id, the message indexes when given (Protobuf), then the payload.
 *
 * @example
 * ```ts
 * import { frame } from "gress/registry";
 *
 * console.log(frame(7, new Uint8Array([8, 1]))); // Uint8Array(7) [0, 0, 0, 0, 7, 8, 1]
 * console.log(frame(7, new Uint8Array([8, 1]), [0])); // Uint8Array(8) [0, 0, 0, 0, 7, 0, 8, 1]
 * ```
 * @param schemaId the registry's id of the writer schema
 * @param payload the encoded value
 * @param messageIndexes Protobuf only: the path of the message type in its file
 * @returns the framed bytes
 */
export function frame(schemaId: number, payload: Uint8Array, messageIndexes?: readonly number[]): Uint8Array {
  if (!Number.isInteger(schemaId) || schemaId < 0 || schemaId > 0x7fffffff) throw new RangeError(`schema id must be an int32 >= 0, got ${schemaId}`);
  const indexes = messageIndexes === undefined ? new Uint8Array(0) : writeMessageIndexes(messageIndexes);
  const out = new Uint8Array(HEADER_BYTES + indexes.byteLength + payload.byteLength);
  new DataView(out.buffer).setInt32(1, schemaId, false);
  out.set(indexes, HEADER_BYTES);
  out.set(payload, HEADER_BYTES + indexes.byteLength);
  return out;
}

/** The message indexes of a Protobuf frame body and where the payload starts, or why they are unreadable. */
export function readMessageIndexes(body: Uint8Array): Decoded<{ readonly indexes: readonly number[]; readonly payload: Uint8Array }> {
  let pos = 0;
  const next = (): number | undefined => {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (pos >= body.byteLength) return undefined;
      const b = body[pos++] as number;
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return (result >>> 1) ^ -(result & 1);
    }
    return undefined;
  };
  const count = next();
  if (count === undefined || count < 0 || count > 100) return { ok: false, reason: "bad Protobuf message indexes after the schema id" };
  if (count === 0) return { ok: true, value: { indexes: [0], payload: body.subarray(pos) } };
  const indexes: number[] = [];
  for (let i = 0; i < count; i++) {
    const index = next();
    if (index === undefined || index < 0) return { ok: false, reason: "bad Protobuf message indexes after the schema id" };
    indexes.push(index);
  }
  return { ok: true, value: { indexes, payload: body.subarray(pos) } };
}

/** Encodes message indexes; `[0]` is the single byte 0, as Confluent's serializers write it. */
export function writeMessageIndexes(indexes: readonly number[]): Uint8Array {
  if (indexes.length === 1 && indexes[0] === 0) return new Uint8Array([0]);
  const bytes: number[] = [];
  const put = (n: number): void => {
    let z = ((n << 1) ^ (n >> 31)) >>> 0;
    while (z > 0x7f) {
      bytes.push((z & 0x7f) | 0x80);
      z >>>= 7;
    }
    bytes.push(z);
  };
  put(indexes.length);
  for (const i of indexes) put(i);
  return new Uint8Array(bytes);
}
