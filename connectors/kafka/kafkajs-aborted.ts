/**
 * A correct read_committed filter for kafkajs 2.2.4 fetches (connectors/kafka/kafkajs.ts installs it).
 *
 * A read_committed fetch returns the records of aborted transactions too, with the list of the aborted
 * transactions that overlap it (producer id, first offset); the client drops their records. kafkajs'
 * `filterAbortedMessages` assumes that list sorted by first offset and takes at most one entry of it per
 * record, but the broker lists them in the order of their abort markers. So when two producers' aborted
 * transactions interleave and the one that started later aborted first (or two start before the fetch
 * offset), the records of the other, up to the next record past the first one's start, are handed out as
 * committed. In a scale-out job a revoked task's aborted transaction thus reached the downstream tasks of a
 * shuffle beside its successor's committed copy of the same records: counted twice.
 *
 * {@link hideAbortedRecords} does what the Java consumer does: the list in first-offset order, every entry
 * whose first offset is at or below the record taken before the record is judged, a producer's ABORT marker
 * ending its aborted transaction. It marks the records of aborted transactions as control records, which
 * kafkajs never hands out but still counts for the fetch position (so a fetch that holds only aborted records
 * moves on, as one of only markers does), and empties the list so that kafkajs' own filter does nothing.
 * @module
 */

/** A record of a fetch response as kafkajs decodes it (the fields used here). */
export interface FetchedRecord {
  readonly offset: string;
  readonly key?: Uint8Array | null;
  isControlRecord?: boolean;
  readonly batchContext: { readonly producerId: string; readonly inTransaction: boolean };
}

/** A partition of a fetch response as kafkajs decodes it (the fields used here). */
export interface FetchedRecords {
  abortedTransactions: readonly { readonly producerId: string; readonly firstOffset: string }[];
  readonly messages: readonly FetchedRecord[];
}

/** The key of an ABORT control record: version 0, type 0. */
const isAbortMarker = (m: FetchedRecord): boolean => {
  const k = m.key;
  return m.isControlRecord === true && k != null && k.length === 4 && k[0] === 0 && k[1] === 0 && k[2] === 0 && k[3] === 0;
};

/**
 * Marks the records of `partition` that belong to aborted transactions as control records and empties its
 * list of aborted transactions (see the module comment). Returns the number of records hidden.
 */
export function hideAbortedRecords(partition: FetchedRecords): number {
  const aborted = partition.abortedTransactions;
  if (aborted === undefined || aborted.length === 0) return 0;
  const queue = [...aborted].sort((a, b) => (BigInt(a.firstOffset) < BigInt(b.firstOffset) ? -1 : BigInt(a.firstOffset) > BigInt(b.firstOffset) ? 1 : 0));
  const open = new Set<string>();
  let next = 0;
  let hidden = 0;
  for (const m of partition.messages) {
    const offset = BigInt(m.offset);
    while (next < queue.length && BigInt((queue[next] as { firstOffset: string }).firstOffset) <= offset) open.add(String((queue[next++] as { producerId: string }).producerId));
    const producer = String(m.batchContext.producerId);
    if (m.isControlRecord === true) {
      if (isAbortMarker(m)) open.delete(producer);
    } else if (m.batchContext.inTransaction && open.has(producer)) {
      m.isControlRecord = true;
      hidden++;
    }
  }
  partition.abortedTransactions = [];
  return hidden;
}

/** Marks a `Broker.prototype` whose fetch is wrapped already (kafkajs.ts may be loaded more than once). */
const CORRECTED: unique symbol = Symbol.for("gress.kafkajs.abortedFilter");

/** Fetch-response partitions that the wrapper corrects. */
interface FetchResponse {
  readonly responses?: readonly { readonly partitions?: readonly FetchedRecords[] }[];
}

/**
 * Wraps kafkajs' `Broker.prototype.fetch` (every consumer's fetches go through it) so that each
 * read_committed response is corrected by {@link hideAbortedRecords} before kafkajs builds its batches.
 * Idempotent.
 */
export function correctAbortedFiltering(broker: { prototype: object }): void {
  const proto = broker.prototype as { fetch?: (request: { isolationLevel?: number }) => Promise<FetchResponse>; [CORRECTED]?: true };
  const original = proto.fetch;
  if (typeof original !== "function" || proto[CORRECTED] === true) return;
  Object.defineProperty(proto, CORRECTED, { value: true });
  proto.fetch = async function (this: unknown, request: { isolationLevel?: number }): Promise<FetchResponse> {
    const response = await original.call(this, request);
    // Read uncommitted (isolation level 0) hands out every record; kafkajs then gets no aborted list either.
    if (request?.isolationLevel !== 0) for (const t of response?.responses ?? []) for (const p of t.partitions ?? []) hideAbortedRecords(p);
    return response;
  };
}
