/**
 * Bounds the size of one produce request, for both client adapters. A broker refuses a record batch larger
 * than the topic's `max.message.bytes` (1 MB by default) with MESSAGE_TOO_LARGE, and both clients put all the
 * records of one `send` for a partition into one batch. So a transactional `send` of many records (a scale-out
 * task's changelog at a checkpoint with many changed keys, a sink batch of large values) is cut here into
 * requests of at most {@link MAX_REQUEST_BYTES}, sent one after the other in the same transaction (the order
 * within a partition is kept). A single record larger than that still goes alone, and the broker's error names
 * it.
 * @module
 */
import type { ProducedBatch, ProducerRecord } from "./client.ts";

/** What one produce request carries at most (keys and values, plus a per-record allowance for headers). */
export const MAX_REQUEST_BYTES: number = 512 * 1024;
/** Record overhead in a v2 batch (length, attributes, deltas, key/value lengths, header count), rounded up. */
const RECORD_OVERHEAD = 32;

const utf8 = new TextEncoder();
function sizeOf(x: Uint8Array | string | null): number {
  if (x === null) return 0;
  if (typeof x !== "string") return x.byteLength;
  // At most 3 bytes per UTF-16 unit; encode only when that bound could matter.
  return x.length * 3 <= 4096 ? x.length * 3 : utf8.encode(x).byteLength;
}

/**
 * Splits `records` into consecutive runs whose estimated size is at most `maxBytes` each (at least one record
 * per run). Returns `[records]` itself when everything fits, the usual case, without copying.
 */
export function splitBySize(records: readonly ProducerRecord[], maxBytes: number = MAX_REQUEST_BYTES): readonly (readonly ProducerRecord[])[] {
  let total = 0;
  let start = 0;
  let out: ProducerRecord[][] | undefined;
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as ProducerRecord;
    const size = sizeOf(r.key) + sizeOf(r.value) + RECORD_OVERHEAD;
    if (total + size > maxBytes && i > start) {
      out ??= [];
      out.push(records.slice(start, i));
      start = i;
      total = 0;
    }
    total += size;
  }
  if (out === undefined) return [records];
  out.push(records.slice(start));
  return out;
}

/**
 * Sends `records` as requests of bounded size (see the module comment), one after the other, and merges what
 * they report: per partition, where its first batch began.
 */
export async function sendInParts(
  records: readonly ProducerRecord[],
  sendOne: (part: readonly ProducerRecord[]) => Promise<readonly ProducedBatch[]>,
  maxBytes: number = MAX_REQUEST_BYTES,
): Promise<readonly ProducedBatch[]> {
  const parts = splitBySize(records, maxBytes);
  if (parts.length === 1) return sendOne(parts[0] as readonly ProducerRecord[]);
  const first = new Map<number, number>();
  for (const part of parts) {
    for (const b of await sendOne(part)) if (!first.has(b.partition)) first.set(b.partition, b.baseOffset);
  }
  return [...first].map(([partition, baseOffset]) => ({ partition, baseOffset }));
}
