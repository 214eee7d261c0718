/**
 * Checkpoints, savepoints and recovery. A job created with `checkpoints` (and the LMDB state backend) takes
 * periodic exactly-once checkpoints through its {@link CheckpointCoordinator} and recovers from the last one
 * on start; savepoints are those checkpoints written to a directory in a versioned format.
 *
 * @example
 * ```ts
 * const job = new Job({ name: "fraud", state: lmdbState({ path: "state/fraud" }), checkpoints: { intervalMs: 1_000 } });
 * // ... pipeline ...
 * await job.run();                                   // recovers, then checkpoints every second
 * await writeSavepoint("state/fraud", "savepoints/1"); // from another process, while it runs
 * new Job({ ..., checkpoints: { intervalMs: 1_000, fromSavepoint: "savepoints/1" } }); // restore
 * ```
 * @module
 */
export { type CheckpointOptions, CheckpointCoordinator, type CheckpointStats, type SinkParticipant } from "./coordinator.ts";
export { armedFailpoint, failpoint } from "./failpoints.ts";
export {
  readSavepoint,
  restoreSavepointInto,
  SAVEPOINT_FORMAT,
  SAVEPOINT_VERSION,
  type SavepointInfo,
  savepointRows,
  writeSavepoint,
  writeSavepointFrom,
} from "./savepoint.ts";
export { type CheckpointRecord, latestCheckpoint, listCheckpoints, recordCheckpoint } from "./storage.ts";
