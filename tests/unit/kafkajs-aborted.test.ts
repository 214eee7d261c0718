/**
 * The read_committed correction of kafkajs fetches (connectors/kafka/kafkajs-aborted.ts). A fetch response is
 * built as the broker sends it: data records with their producer id and transactional flag, control records
 * (COMMIT key 0,0,0,1; ABORT key 0,0,0,0), and the aborted transactions in the order of their abort markers.
 * What kafkajs hands out is computed as its Batch does (its own filter, then control records dropped). Without
 * the correction, kafkajs hands out records of an aborted transaction (the scale-out shuffle test's double
 * counts came from exactly this: a revoked task's aborted transaction overlapping another aborted one).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, it } from "node:test";
import filterAbortedModule from "kafkajs/src/consumer/filterAbortedMessages.js";
import { correctAbortedFiltering, type FetchedRecord, type FetchedRecords, hideAbortedRecords } from "../../connectors/kafka/kafkajs-aborted.ts";

type Message = FetchedRecord & { readonly value: string };
const kafkajsFilter = filterAbortedModule as (o: { messages: readonly Message[]; abortedTransactions: FetchedRecords["abortedTransactions"] }) => Message[];

const data = (offset: number, producerId: string, value: string, inTransaction = true): Message => ({
  offset: String(offset),
  key: Buffer.from(value),
  value,
  batchContext: { producerId, inTransaction },
});
const marker = (offset: number, producerId: string, commit: boolean): Message => ({
  offset: String(offset),
  key: Buffer.from([0, 0, 0, commit ? 1 : 0]),
  value: "",
  isControlRecord: true,
  batchContext: { producerId, inTransaction: true },
});

/** What kafkajs' Batch hands to eachBatch for a partition of a fetch response. */
const handedOut = (p: { messages: readonly Message[]; abortedTransactions: FetchedRecords["abortedTransactions"] }): string[] =>
  kafkajsFilter({ messages: p.messages, abortedTransactions: p.abortedTransactions })
    .filter((m) => m.isControlRecord !== true)
    .map((m) => m.value);

/**
 * Producer 1 opens a transaction (offset 0), producer 2 another (1), 2 aborts (marker 2), 1 writes again (3)
 * and aborts (4); producer 3 commits one record (5, marker 6) and a non-transactional record follows (7).
 * The broker lists the aborted transactions by marker: producer 2's first, though producer 1's began earlier.
 */
const interleaved = (): { messages: Message[]; abortedTransactions: { producerId: string; firstOffset: string }[] } => ({
  messages: [data(0, "1", "p1-a"), data(1, "2", "p2-a"), marker(2, "2", false), data(3, "1", "p1-b"), marker(4, "1", false), data(5, "3", "p3-a"), marker(6, "3", true), data(7, "4", "plain", false)],
  abortedTransactions: [
    { producerId: "2", firstOffset: "1" },
    { producerId: "1", firstOffset: "0" },
  ],
});

describe("kafkajs read_committed correction", () => {
  it("kafkajs alone hands out a record of an aborted transaction listed after one that aborted first (why the correction exists)", () => {
    assert.deepEqual(handedOut(interleaved()), ["p1-a", "p3-a", "plain"]);
  });

  it("corrected, only committed and non-transactional records are handed out; the aborted ones stay as control records for the position", () => {
    const p = interleaved();
    assert.equal(hideAbortedRecords(p), 3);
    assert.deepEqual(handedOut(p), ["p3-a", "plain"]);
    assert.deepEqual(p.abortedTransactions, []);
    // Every offset is still there, so kafkajs moves its fetch position past the aborted records.
    assert.deepEqual(
      p.messages.map((m) => m.offset),
      ["0", "1", "2", "3", "4", "5", "6", "7"],
    );
  });

  it("two aborted transactions that began before the fetch offset: both are dropped from the first record on", () => {
    // A fetch from offset 10: producer 5's transaction began at 4, producer 6's at 8; kafkajs takes one list
    // entry per record, so producer 6's record at 10 came out.
    const p = {
      messages: [data(10, "6", "p6-a"), data(11, "5", "p5-a"), marker(12, "6", false), marker(13, "5", false), data(14, "6", "p6-next")],
      abortedTransactions: [
        { producerId: "5", firstOffset: "4" },
        { producerId: "6", firstOffset: "8" },
      ],
    };
    assert.deepEqual(handedOut(p), ["p6-a", "p6-next"]);
    const q = { ...p, messages: p.messages.map((m) => ({ ...m })) };
    hideAbortedRecords(q);
    // p6-next is after producer 6's abort marker, outside the aborted list's transactions: a later transaction.
    assert.deepEqual(handedOut(q), ["p6-next"]);
  });

  it("a producer's later transaction after its aborted one is handed out; a fetch without aborted transactions is left alone", () => {
    const p = { messages: [data(0, "1", "a"), marker(1, "1", false), data(2, "1", "b"), marker(3, "1", true)], abortedTransactions: [{ producerId: "1", firstOffset: "0" }] };
    hideAbortedRecords(p);
    assert.deepEqual(handedOut(p), ["b"]);
    const clean = { messages: [data(0, "1", "a"), marker(1, "1", true)], abortedTransactions: [] };
    assert.equal(hideAbortedRecords(clean), 0);
    assert.deepEqual(handedOut(clean), ["a"]);
  });

  it("the fetch wrapper corrects read_committed responses of every broker and leaves read_uncommitted ones alone", async () => {
    class FakeBroker {
      async fetch(_request: { isolationLevel: number }): Promise<{ responses: { partitions: ReturnType<typeof interleaved>[] }[] }> {
        return { responses: [{ partitions: [interleaved()] }] };
      }
    }
    correctAbortedFiltering(FakeBroker);
    correctAbortedFiltering(FakeBroker); // idempotent: wrapped once
    const broker = new FakeBroker();
    const committed = (await broker.fetch({ isolationLevel: 1 })).responses[0]?.partitions[0];
    assert.ok(committed !== undefined);
    assert.deepEqual(handedOut(committed), ["p3-a", "plain"]);
    const uncommitted = (await broker.fetch({ isolationLevel: 0 })).responses[0]?.partitions[0];
    assert.ok(uncommitted !== undefined);
    assert.equal(uncommitted.abortedTransactions.length, 2);
  });
});
