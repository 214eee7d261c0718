/**
 * Savepoints: a completed checkpoint written on demand into a directory, in a documented, versioned format
 * that later releases keep reading, and restorable into an empty (or same-origin) state directory.
 *
 * Format (version 1):
 * - `state.ndjson`: one JSON array per line, `[tableId, key, namespace, value]`, the value in the tagged JSON
 *   of {@link encodeValue} (Infinity, Map, Set, Date, bigint, bytes survive);
 * - `_savepoint.json`, written last (so a half-written savepoint has none and is rejected): `format`,
 *   `version`, `id`, `job`, `checkpointId`, `createdAt`, `positions` (source → positions), `tables`
 *   (id → entries), `entries`, `stateFile`.
 * Sink transactions are not part of a savepoint: the checkpoint's own job commits them.
 *
 * CLI: `gress savepoint <stateDir> <targetDir>` → {@link writeSavepoint}; `gress run --from-savepoint <dir>`
 * → `new Job({ state: lmdbState({ path }), checkpoints: { intervalMs, fromSavepoint: dir } })`.
 * @module
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Key } from "../element.ts";
import { CheckpointError } from "../errors.ts";
import type { Positions } from "../source.ts";
import type { Namespace } from "../state/backend.ts";
import { LmdbStateBackend } from "../state/lmdb.ts";
import { decodeValue, encodeValue } from "./codec.ts";
import { type CheckpointRecord, recordCheckpoint } from "./storage.ts";

/**
 * The format name in `_savepoint.json`.
 *
 * @example
 * ```ts
 * import { readSavepoint, SAVEPOINT_FORMAT, SAVEPOINT_VERSION } from "gress";
 *
 * const info = readSavepoint("savepoints/orders-v1");
 * console.log(info.format === SAVEPOINT_FORMAT, info.version <= SAVEPOINT_VERSION);
 * ```
 */
export const SAVEPOINT_FORMAT = "gress-savepoint";
/**
 * The newest savepoint format version this release writes and reads.
 *
 * @example
 * ```ts
 * import { SAVEPOINT_VERSION } from "gress";
 *
 * // The savepoint layout this version writes; readSavepoint refuses newer ones.
 * console.log(SAVEPOINT_VERSION);
 * ```
 */
export const SAVEPOINT_VERSION = 1;
const METADATA = "_savepoint.json";
const STATE_FILE = "state.ndjson";

/**
 * The metadata of a savepoint.
 *
 * @example
 * ```ts
 * import { readSavepoint, type SavepointInfo } from "gress";
 *
 * const info: SavepointInfo = readSavepoint("savepoints/orders-v1");
 * console.log(info.job, info.checkpointId, info.entries, Object.keys(info.tables));
 * ```
 */
export interface SavepointInfo {
  readonly format: typeof SAVEPOINT_FORMAT;
  readonly version: number;
  /** Unique id of this savepoint. */
  readonly id: string;
  readonly job: string;
  /** The checkpoint the savepoint was made from. */
  readonly checkpointId: number;
  /** ISO time of writing (wall clock: this is a file's metadata, not processing time). */
  readonly createdAt: string;
  readonly positions: Readonly<Record<string, Positions>>;
  /** Table id → entries. */
  readonly tables: Readonly<Record<string, number>>;
  readonly entries: number;
  readonly stateFile: string;
}

const infoSchema = z.object({
  format: z.literal(SAVEPOINT_FORMAT),
  version: z.number().int().positive(),
  id: z.string().min(1),
  job: z.string(),
  checkpointId: z.number().int().nonnegative(),
  createdAt: z.string(),
  positions: z.record(z.string(), z.record(z.string(), z.unknown())),
  tables: z.record(z.string(), z.number().int().nonnegative()),
  entries: z.number().int().nonnegative(),
  stateFile: z.string().min(1),
});

/**
 * Reads and checks a savepoint's metadata. Throws a CheckpointError naming what is wrong.
 *
 * @example
 * ```ts
 * import { Job, lmdbState, readSavepoint } from "gress";
 *
 * const info = readSavepoint("savepoints/orders-v1"); // format, version, job, checkpoint id
 * // Start a job from it (its operators' uids must match the savepoint's).
 * const job = new Job({ name: info.job, state: lmdbState({ path: "state/orders-v2" }), checkpoints: { intervalMs: 5_000, fromSavepoint: "savepoints/orders-v1" } });
 * ```
 */
export function readSavepoint(dir: string): SavepointInfo {
  const file = join(dir, METADATA);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CheckpointError(`"${dir}" is not a complete savepoint: cannot read ${METADATA} (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  const parsed = infoSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CheckpointError(`savepoint "${dir}": ${METADATA} field "${issue?.path.join(".")}" is invalid: ${issue?.message}`);
  }
  if (parsed.data.version > SAVEPOINT_VERSION) {
    throw new CheckpointError(`savepoint "${dir}" has format version ${parsed.data.version}; this release reads up to ${SAVEPOINT_VERSION}`);
  }
  return parsed.data as SavepointInfo;
}

/**
 * Writes checkpoint `cp` — the state stored in `backend`, which must be that checkpoint's — into `dir`.
 *
 * @example
 * ```ts
 * import { latestCheckpoint, lmdbState, writeSavepointFrom } from "gress";
 *
 * // What writeSavepoint does on an open backend: the given checkpoint, as a savepoint directory.
 * const state = lmdbState({ path: "state/orders" });
 * const cp = latestCheckpoint(state.meta);
 * if (cp !== undefined) console.log(writeSavepointFrom(state, cp, "savepoints/orders-now").id);
 * await state.close();
 * ```
 */
export function writeSavepointFrom(backend: LmdbStateBackend, cp: CheckpointRecord, dir: string): SavepointInfo {
  prepareDir(dir);
  return backend.readCheckpointed((rows, readMeta) => {
    const latest = readMeta("latest");
    if (latest !== cp.id) throw new CheckpointError(`checkpoint ${cp.id} is no longer the latest (now ${String(latest)}); take the savepoint again`);
    return writeFiles(dir, cp, rows());
  });
}

/**
 * Writes the last completed checkpoint of the state directory `stateDir` as a savepoint into `dir`. Safe
 * while the job runs in another process: it reads one consistent LMDB snapshot.
 *
 * @example
 * ```ts
 * import { readSavepoint, writeSavepoint } from "gress";
 *
 * // What `gress savepoint <job>` does: the last checkpoint of a job's state directory, as a savepoint.
 * const info = await writeSavepoint("state/orders", "savepoints/orders-v1");
 * console.log(info.id, readSavepoint("savepoints/orders-v1").checkpointId);
 * ```
 */
export async function writeSavepoint(stateDir: string, dir: string): Promise<SavepointInfo> {
  if (!existsSync(stateDir)) throw new CheckpointError(`state directory "${stateDir}" does not exist`);
  const backend = new LmdbStateBackend({ path: stateDir });
  try {
    prepareDir(dir);
    return backend.readCheckpointed((rows, readMeta) => {
      const latest = readMeta("latest");
      if (typeof latest !== "number") throw new CheckpointError(`state directory "${stateDir}" has no completed checkpoint`);
      const cp = readMeta(["checkpoint", latest]) as CheckpointRecord;
      return writeFiles(dir, cp, rows());
    });
  } finally {
    await backend.close();
  }
}

function prepareDir(dir: string): void {
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new CheckpointError(`savepoint directory "${dir}" is not empty`);
  mkdirSync(dir, { recursive: true });
}

function writeFiles(dir: string, cp: CheckpointRecord, rows: Iterable<[string, Key, Namespace, unknown]>): SavepointInfo {
  const fd = openSync(join(dir, STATE_FILE), "w");
  const tables: Record<string, number> = {};
  let entries = 0;
  try {
    let chunk: string[] = [];
    let size = 0;
    for (const [id, key, ns, value] of rows) {
      const line = `${JSON.stringify([id, key, ns, encodeValue(value)])}\n`;
      chunk.push(line);
      size += line.length;
      tables[id] = (tables[id] ?? 0) + 1;
      entries++;
      if (size >= 1 << 20) {
        writeSync(fd, chunk.join(""));
        chunk = [];
        size = 0;
      }
    }
    writeSync(fd, chunk.join(""));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const info: SavepointInfo = {
    format: SAVEPOINT_FORMAT,
    version: SAVEPOINT_VERSION,
    id: crypto.randomUUID(),
    job: cp.job,
    checkpointId: cp.id,
    createdAt: new Date().toISOString(),
    positions: cp.positions,
    tables,
    entries,
    stateFile: STATE_FILE,
  };
  const tmp = join(dir, `${METADATA}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`);
  fsyncFile(tmp);
  renameSync(tmp, join(dir, METADATA));
  fsyncFile(dir);
  return info;
}

function fsyncFile(path: string): void {
  try {
    const fd = openSync(path, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Directories cannot be fsynced on every platform; the rename is still atomic.
  }
}

/**
 * The rows of a savepoint's state file, decoded, read in chunks.
 *
 * @example
 * ```ts
 * import { savepointRows } from "gress";
 *
 * // Every state entry of a savepoint: [table, key, namespace, value], e.g. to inspect or migrate it.
 * for (const [table, key, namespace, value] of savepointRows("savepoints/orders-v1")) {
 *   if (table.startsWith("window-1/")) console.log(key, namespace, value);
 * }
 * ```
 */
export function* savepointRows(dir: string, info: SavepointInfo = readSavepoint(dir)): IterableIterator<[string, Key, Namespace, unknown]> {
  const fd = openSync(join(dir, info.stateFile), "r");
  try {
    const buf = new Uint8Array(1 << 20);
    const decoder = new TextDecoder();
    let rest = "";
    let lineNo = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      const text = rest + (n > 0 ? decoder.decode(buf.subarray(0, n), { stream: true }) : decoder.decode());
      const lines = text.split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        lineNo++;
        if (line === "") continue;
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch (err) {
          throw new CheckpointError(`savepoint "${dir}": ${info.stateFile} line ${lineNo} is not JSON`, { cause: err });
        }
        if (!Array.isArray(row) || row.length !== 4 || typeof row[0] !== "string") {
          throw new CheckpointError(`savepoint "${dir}": ${info.stateFile} line ${lineNo} is not [table, key, namespace, value]`);
        }
        yield [row[0], row[1] as Key, row[2] as Namespace, decodeValue(row[3])];
      }
      if (n === 0) break;
    }
    if (rest !== "") throw new CheckpointError(`savepoint "${dir}": ${info.stateFile} ends in the middle of a line`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Restores a savepoint into an LMDB backend as its latest checkpoint (id = the savepoint's checkpoint id,
 * positions from the savepoint, no sink transactions). If the backend's latest checkpoint already descends
 * from this savepoint (a restart after restoring), nothing is done. A backend holding checkpoints of another
 * origin is refused.
 *
 * @example
 * ```ts
 * import { lmdbState, restoreSavepointInto } from "gress";
 *
 * // What a job with checkpoints.fromSavepoint does at start (normally you set that option instead).
 * const state = lmdbState({ path: "state/orders-v2" });
 * const { savepoint, restoredNow } = restoreSavepointInto("savepoints/orders-v1", state, "orders", undefined);
 * console.log(savepoint.checkpointId, restoredNow);
 * await state.close();
 * ```
 */
export function restoreSavepointInto(
  dir: string,
  backend: LmdbStateBackend,
  jobName: string,
  latest: CheckpointRecord | undefined,
): { savepoint: SavepointInfo; restoredNow: boolean } {
  const info = readSavepoint(dir);
  if (latest !== undefined && !backend.hasUncheckpointedState) {
    if (latest.savepoint === info.id) return { savepoint: info, restoredNow: false };
    throw new CheckpointError(
      `state directory "${backend.path}" already holds checkpoints (latest ${latest.id}) that do not come from savepoint ${info.id}; restore into an empty state directory`,
    );
  }
  const record: CheckpointRecord = {
    id: info.checkpointId,
    job: jobName,
    at: 0,
    positions: info.positions,
    sinks: {},
    final: false,
    changedEntries: info.entries,
    savepoint: info.id,
  };
  backend.importSync(savepointRows(dir, info), () => recordCheckpoint(backend.meta, record, 1));
  return { savepoint: info, restoredNow: true };
}
