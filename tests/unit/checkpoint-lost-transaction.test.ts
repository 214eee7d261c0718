/**
 * Recovery when a sink's pre-committed transaction was aborted by the external system (a Kafka transaction
 * timeout while the job was down): the coordinator rolls state and positions back to the previous checkpoint
 * and produces that output again, or fails loudly when it cannot. The sink here is a two-phase-commit sink
 * whose `commit` reports the abort, as the Kafka sink does after reading its transaction marker (tested on the
 * real broker in tests/integration/kafka-txn-timeout.test.ts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CheckpointError, generator, Job, type Sink } from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { type Sequenced, sequencePerKey } from "../support/sequence.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-lost-txn-");
const lmdb = (path: string): LmdbStateBackend => new LmdbStateBackend({ path, mapSize: 64 * 1024 * 1024, durability: "process" });
const COUNT = 6000;
const KEYS = 4;

interface Handle {
  readonly values: Sequenced[];
}

/**
 * A transactional sink: values are visible in `committed` once their checkpoint commits. `crashFrom`: the
 * commit of the first checkpoint from that id on fails, as if the process died there (its id goes to
 * `crashed`); `abortedAt`: that checkpoint's transaction is reported aborted.
 */
function txSink(committed: Sequenced[], behaviour: { crashFrom?: number; crashed?: number[]; abortedAt?: number }): Sink<Sequenced> {
  let pending: Sequenced[] = [];
  return {
    name: "tx",
    preCommitExpires: true,
    write: (v) => void pending.push(v),
    preCommit: async () => {
      const h: Handle = { values: pending };
      pending = [];
      return h;
    },
    commit: async (id, handle) => {
      const values = (handle as Handle).values;
      if (behaviour.crashFrom !== undefined && id >= behaviour.crashFrom) {
        behaviour.crashed?.push(id);
        throw new Error("the process dies before this commit");
      }
      if (id === behaviour.abortedAt) return { aborted: true as const, lost: `${values.length} values` };
      committed.push(...values);
      return undefined;
    },
    abort: async () => {},
  };
}

function run(stateDir: string, sink: Sink<Sequenced>, logs: string[], retain?: number): Promise<void> {
  const job = new Job({ name: "lost-txn", state: lmdb(stateDir), checkpoints: { intervalMs: 20, log: (m) => logs.push(m), ...(retain === undefined ? {} : { retain }) } });
  job
    .source(generator({ name: "events", seed: 9, count: COUNT, ratePerSecond: 10_000, make: (i, _t, r) => ({ i, key: `k${r.int(KEYS)}` }) }))
    .keyBy((e) => e.key)
    .process(sequencePerKey())
    .sinkTo(sink);
  return job.run().finally(() => job.state.close());
}

describe("a sink transaction aborted by the external system", () => {
  it("is produced again from the previous checkpoint: every record once, with the keyed state of that checkpoint", async () => {
    const stateDir = tempDir();
    const committed: Sequenced[] = [];
    const logs: string[] = [];
    // Checkpoint n ≥ 2 is durable, its commit never happens (the process died)...
    const crashed: number[] = [];
    await assert.rejects(run(stateDir, txSink(committed, { crashFrom: 2, crashed }), logs), /dies before this commit/);
    const n = crashed[0]!;
    // ...and by the restart the external system had aborted that transaction.
    await run(stateDir, txSink(committed, { abortedAt: n }), logs);
    assert.equal(committed.length, COUNT, "every record committed once");
    assert.equal(new Set(committed.map((o) => o.i)).size, COUNT);
    for (let k = 0; k < KEYS; k++) {
      const seqs = committed.filter((o) => o.key === `k${k}`).map((o) => o.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, j) => j + 1), `key k${k}: sequence numbers 1..n`);
    }
    assert.match(logs.join("\n"), new RegExp(`checkpoint ${n}: the transaction of sink "tx" was aborted before it could be committed \\(\\d+ values\\); processing the records after checkpoint ${n - 1} again`));
  });

  it("with retain: 1 there is nothing to go back to: run() fails with a CheckpointError that says what was lost", async () => {
    const stateDir = tempDir();
    const committed: Sequenced[] = [];
    const logs: string[] = [];
    const crashed: number[] = [];
    await assert.rejects(run(stateDir, txSink(committed, { crashFrom: 2, crashed }), logs, 1), /dies before this commit/);
    const n = crashed[0]!;
    await assert.rejects(
      run(stateDir, txSink(committed, { abortedAt: n }), logs, 1),
      (e: unknown) =>
        e instanceof CheckpointError &&
        new RegExp(`checkpoint ${n}: the transaction of sink "tx" was aborted before it could be committed \\(\\d+ values\\)\\. That output is lost: no checkpoint before ${n} is retained`).test(e.message),
    );
  });
});
