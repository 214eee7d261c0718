/**
 * The commit of a scale-out task's checkpoint (docs/SCALE-OUT.md, section 4): one Kafka transaction, then LMDB
 * as a cache. The checkpoint coordinator (lib/checkpoint/coordinator.ts) calls {@link TaskCommitter.commit}
 * once the barrier has passed, the state is captured and every sink has pre-committed. By then the task's
 * Kafka sinks have sent this checkpoint's output into the task's open transaction (they hold later writes until
 * the checkpoint's end). Into the same transaction go, in order:
 *  1. the captured state changes as changelog records (partition p of the changelog topic);
 *  2. the checkpoint record (id, positions, the other sinks' pre-commit handles, topology fingerprint), last;
 *  3. the input offsets (the positions of the task's Kafka sources) with `sendOffsets`, so the group's
 *     committed offsets move with the output.
 * Then `commit()`: the commit point. After it, `committed` hears of the offsets (the repartition purge,
 * lib/scaleout/shuffle-io.ts, deletes what the task has consumed; it does not wait). A failure there (fenced by a newer owner, an older group generation) is a
 * checkpoint that did not happen; nothing was written to LMDB. After it the next transaction begins at once
 * (the sinks' held writes go into it), and the coordinator writes the capture to LMDB with the changelog offset
 * after the checkpoint record (`writeLocalChangelog`), so that a later restore on this worker reads only what
 * came after it. Failpoints: `before-txn-commit`, `after-txn-commit` (before the LMDB cache write).
 * @module
 */
import type { KafkaConsumer, KafkaTransactionalProducer, PartitionOffset } from "../../connectors/kafka/client.ts";
import { failpoint } from "../checkpoint/failpoints.ts";
import type { CheckpointCommitter } from "../checkpoint/coordinator.ts";
import type { CheckpointRecord } from "../checkpoint/storage.ts";
import { CheckpointError } from "../errors.ts";
import type { LmdbStateBackend, StateCapture } from "../state/lmdb.ts";
import { type ChangelogCheckpoint, encodeChanges, encodeCheckpoint, writeLocalChangelog } from "./changelog.ts";
import type { TopologyFingerprint } from "./fingerprint.ts";

/** What a task's committer works with. */
export interface TaskCommitterOptions {
  readonly taskId: string;
  readonly partition: number;
  readonly changelogTopic: string;
  readonly groupId: string;
  readonly producer: KafkaTransactionalProducer;
  /** The worker's group consumer, for the group metadata of `sendOffsets`. */
  readonly consumer: KafkaConsumer;
  readonly backend: LmdbStateBackend;
  readonly topology: TopologyFingerprint;
  /** Runs an operation on the producer with no send of the task in between. */
  readonly exclusive: <R>(op: () => Promise<R>) => Promise<R>;
  /** Told the input offsets of each checkpoint once its transaction committed; must not block or throw. */
  readonly committed?: (offsets: readonly PartitionOffset[]) => void;
}

/** Splits are `<topic>-<partition>` (connectors/kafka/source.ts). */
function offsetsOf(positions: CheckpointRecord["positions"]): PartitionOffset[] {
  const out: PartitionOffset[] = [];
  for (const byPartition of Object.values(positions)) {
    for (const [split, offset] of Object.entries(byPartition)) {
      const i = split.lastIndexOf("-");
      const partition = Number(split.slice(i + 1));
      if (i > 0 && Number.isInteger(partition) && typeof offset === "number") out.push({ topic: split.slice(0, i), partition, offset });
    }
  }
  return out;
}

/**
 * A sink handle of a task's Kafka sink (`{ task, records }`): its records are in the transaction; nothing to
 * re-commit. Every other handle (PostgreSQL, NATS JetStream) stays in the checkpoint record, for the task's next
 * owner to commit on restore, so no other sink's handle may have a string `task`.
 */
const isTaskHandle = (h: unknown): boolean => typeof h === "object" && h !== null && typeof (h as { task?: unknown }).task === "string";

/** Commits a task's checkpoints through its Kafka transaction (see the module comment). */
export class TaskCommitter implements CheckpointCommitter {
  readonly #o: TaskCommitterOptions;

  constructor(o: TaskCommitterOptions) {
    this.#o = o;
  }

  commit(record: CheckpointRecord, capture: StateCapture): Promise<() => void> {
    const o = this.#o;
    return o.exclusive(async () => {
      const partition = o.partition;
      const changes = encodeChanges(o.backend, capture).map((r) => ({ key: r.key, value: r.value, partition }));
      if (changes.length > 0) await o.producer.send(o.changelogTopic, changes);
      const sinks = Object.fromEntries(Object.entries(record.sinks).filter(([, h]) => !isTaskHandle(h)));
      const checkpoint: ChangelogCheckpoint = {
        id: record.id,
        at: record.at,
        positions: record.positions,
        sinks,
        fingerprint: o.topology.fingerprint,
        topology: o.topology.description,
        final: record.final,
      };
      const [landed] = await o.producer.send(o.changelogTopic, [{ ...encodeCheckpoint(checkpoint), partition }]);
      if (landed === undefined) throw new CheckpointError(`task ${o.taskId}: the checkpoint record of checkpoint ${record.id} was not acknowledged`);
      // No membership (the group dropped this worker; it is rejoining): generation -1, which the broker does not
      // check against the group, so only the producer fence by the task's next owner refuses such a commit. That
      // keeps exactly-once (the next owner fences before it restores); the worker skips its checkpoint before
      // such a rejoin (worker.ts #beforeRejoin), and a periodic one in that gap is what this covers.
      const group = o.consumer.groupMetadata() ?? { groupId: o.groupId, generationId: -1, memberId: "" };
      const offsets = offsetsOf(record.positions);
      await o.producer.sendOffsets(group, offsets);
      failpoint("before-txn-commit");
      await o.producer.commit();
      failpoint("after-txn-commit");
      o.committed?.(offsets);
      await o.producer.begin(false);
      const offset = landed.baseOffset + 1;
      return () => writeLocalChangelog(o.backend, { offset, fingerprint: o.topology.fingerprint, at: record.at, checkpoint });
    });
  }
}
