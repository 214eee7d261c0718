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

/**
 * What a completed checkpoint recorded besides the state.
 *
 * @example
 * ```ts
 * import { type CheckpointRecord, Job, lmdbState } from "gress";
 *
 * const job = new Job({ name: "orders", state: lmdbState({ path: "state/orders" }), checkpoints: { intervalMs: 5_000 } });
 * // The checkpoint a job restored: source positions, sink handles, when it was taken.
 * const restored: CheckpointRecord | undefined = job.checkpoints?.restored;
 * console.log(restored?.id, restored?.positions);
 * ```
 */
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

/**
 * The last completed checkpoint, or undefined when none was taken.
 *
 * @example
 * ```ts
 * import { latestCheckpoint, lmdbState } from "gress";
 *
 * // The last completed checkpoint in a state directory (what a restart restores).
 * const state = lmdbState({ path: "state/orders" });
 * console.log(latestCheckpoint(state.meta)?.id);
 * await state.close();
 * ```
 */
export function latestCheckpoint(meta: Meta): CheckpointRecord | undefined {
  const id = meta.get("latest");
  if (typeof id !== "number") return undefined;
  return meta.get(["checkpoint", id]) as CheckpointRecord | undefined;
}

/**
 * Every retained checkpoint record, oldest first.
 *
 * @example
 * ```ts
 * import { listCheckpoints, lmdbState } from "gress";
 *
 * // The restorable checkpoints (see CheckpointOptions.retain), oldest first.
 * const state = lmdbState({ path: "state/orders" });
 * for (const cp of listCheckpoints(state.meta)) console.log(cp.id, new Date(cp.at));
 * await state.close();
 * ```
 */
export function listCheckpoints(meta: Meta): CheckpointRecord[] {
  const out: CheckpointRecord[] = [];
  for (const { value } of meta.getRange({ start: ["checkpoint"], end: ["checkpoint\u0000"] })) out.push(value as CheckpointRecord);
  return out;
}

/**
 * Writes a record and moves `latest` to it, keeping the last `retain` records. Call inside the commit transaction.
 *
 * @example
 * ```ts
 * import { recordCheckpoint, lmdbState } from "gress";
 *
 * // Used by the coordinator inside its commit transaction; shown here on an empty state directory.
 * const state = lmdbState({ path: "state/scratch" });
 * recordCheckpoint(state.meta, { id: 1, job: "scratch", at: Date.now(), positions: {}, sinks: {}, final: false, changedEntries: 0 }, 1);
 * await state.close();
 * ```
 */
export function recordCheckpoint(meta: Meta, record: CheckpointRecord, retain: number): void {
  meta.put(["checkpoint", record.id], record);
  meta.put("latest", record.id);
  // By count, not by id: ids have gaps after a roll-back to an older checkpoint.
  const keys = [...meta.getKeys({ start: ["checkpoint"], end: ["checkpoint\u0000"] })];
  for (const key of keys.slice(0, Math.max(0, keys.length - retain))) meta.remove(key);
}
