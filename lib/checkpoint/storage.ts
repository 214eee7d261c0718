/**
 * Where checkpoints are recorded: the `meta` database of the LMDB state environment, written in the same
 * transaction as the state they describe. A checkpoint record holds the checkpoint id, the source positions
 * and the sinks' pending (pre-committed) transaction handles; `latest` points at the last completed one.
 *
 * The state itself is kept once, in place, at its latest checkpoint (each checkpoint writes only what
 * changed). The records of the last `retain` checkpoints are kept, older ones are pruned in the same
 * transaction; with `retain` > 1 each checkpoint also keeps an undo log in the state backend, which is what
 * makes the older ones restorable.
 * @module
 */
// biome-ignore syntax/correctness/noTypeOnlyImportAttributes: valid since TypeScript 5.3; why: state/lmdb.ts
import type { Database, Key as LmdbKey } from "lmdb" with { "resolution-mode": "require" };
import type { Positions } from "../source.ts";

/** What a completed checkpoint recorded besides the state. */
export interface CheckpointRecord {
  readonly id: number;
  readonly job: string;
  /** Processing time (the job's Clock) when the checkpoint was triggered. */
  readonly at: number;
  /** Source name → that source's positions. */
  readonly positions: Readonly<Record<string, Positions>>;
  /** Sink name → the handle its preCommit returned (committed after this record is durable). */
  readonly sinks: Readonly<Record<string, unknown>>;
  /** True for the checkpoint taken when every source had ended. */
  readonly final: boolean;
  /** State entries written by this checkpoint (changes only). */
  readonly changedEntries: number;
  /** Set when the state came from a savepoint: that savepoint's id. */
  readonly savepoint?: string;
}

type Meta = Database<unknown, LmdbKey>;

/** The last completed checkpoint, or undefined when none was taken. */
export function latestCheckpoint(meta: Meta): CheckpointRecord | undefined {
  const id = meta.get("latest");
  if (typeof id !== "number") return undefined;
  return meta.get(["checkpoint", id]) as CheckpointRecord | undefined;
}

/** Every retained checkpoint record, oldest first. */
export function listCheckpoints(meta: Meta): CheckpointRecord[] {
  const out: CheckpointRecord[] = [];
  for (const { value } of meta.getRange({ start: ["checkpoint"], end: ["checkpoint\u0000"] })) out.push(value as CheckpointRecord);
  return out;
}

/** Writes a record and moves `latest` to it, keeping the last `retain` records. Call inside the commit transaction. */
export function recordCheckpoint(meta: Meta, record: CheckpointRecord, retain: number): void {
  meta.put(["checkpoint", record.id], record);
  meta.put("latest", record.id);
  // By count, not by id: ids have gaps after a roll-back to an older checkpoint.
  const keys = [...meta.getKeys({ start: ["checkpoint"], end: ["checkpoint\u0000"] })];
  for (const key of keys.slice(0, Math.max(0, keys.length - retain))) meta.remove(key);
}
