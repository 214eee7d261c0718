/**
 * The PostgreSQL / TimescaleDB sink, exactly-once through a progress table.
 *
 * Rows are typed by a declared column spec (name → PostgreSQL type + value extractor). They are batched in
 * memory as COPY text lines; each full batch is sent into one `COPY … FROM STDIN` into a staging table (typed
 * like the columns), tagged with the checkpoint it belongs to. The COPY stays open across batches and ends at
 * a pre-commit, a commit, the end of the input or after 100,000 rows (whichever comes first), so a COPY
 * statement's round trips are paid once per checkpoint, not per batch. The staging table is an ordinary
 * (logged) table: what a completed checkpoint staged must survive a crash of Gress or of the server until it
 * is committed, which a temporary table (gone with the session), an unlogged one (emptied by the server's
 * crash recovery) or rows kept in the commit transaction (not durable before the checkpoint completes, without
 * PREPARE TRANSACTION, which is off by default) would not give. `commit(checkpointId)` then runs one transaction:
 *
 *     INSERT INTO gress_sink_progress (job, sink, checkpoint_id) … ON CONFLICT DO NOTHING RETURNING 1
 *     -- only if that inserted the row:
 *     INSERT INTO target SELECT … FROM staging WHERE gress_checkpoint <= $id … ON CONFLICT (key) DO UPDATE …
 *     TRUNCATE staging   -- or DELETE … WHERE gress_checkpoint <= $id when later rows are staged already
 *
 * so the rows and the progress row become visible together, and committing the same checkpoint again (a
 * retry, or recovery after a crash between the checkpoint and the commit) does nothing. Staged rows newer
 * than the restored checkpoint are deleted on open: the job replays them. A start without a restored
 * checkpoint clears this sink's staging and progress. Before that the job asks `committedCheckpoint` for the
 * highest progress row and issues its checkpoint ids above it, so that a job restored from an older savepoint
 * never takes its new output for the output of a checkpoint it had committed before (which would be skipped).
 * A restart closes the sink (a COPY still open is given up) and opens it again: a new connection, an empty
 * batch, and the same recovery as at a start (the restored checkpoint's rows committed, newer staged rows deleted).
 *
 * With checkpoints, when the server allows prepared transactions (`max_prepared_transactions` > 0; PostgreSQL's
 * default is 0) and the sink is exactly-once, without `key`, not in a scale-out task, on its own pool (from
 * `url`; a caller's `sql` only with `twoPhase: "prepared"`: the open transaction holds one of its connections
 * until the next pre-commit and COMMIT PREPARED needs another) and the table's columns are of the declared
 * types, the sink takes the prepared path instead
 * (`twoPhase`, default "auto"; which path and why is logged once): each checkpoint's rows go by COPY straight
 * into the table in a transaction of their own on a reserved connection (each COPY under a savepoint, as
 * below), and its pre-commit inserts the progress row and ends the transaction with
 *
 *     PREPARE TRANSACTION 'gress:<hash>:<job>:<sink>:<run>:<checkpoint>'
 *
 * (durable, invisible, surviving a crash of Gress or of the server), and the commit runs `COMMIT PREPARED` of
 * the id the checkpoint's handle holds; a prepared transaction that is gone counts as committed only if its
 * progress row is there, or for a handle of an earlier run (recovery) a later one (only the last 100 progress
 * rows are kept; see commitPrepared). `<hash>` hashes the exact job, sink and table, `<run>` is
 * new at every open. At open, after recovery committed the restored checkpoint's transaction and before any
 * DDL (a leftover holds a lock on the table), every prepared transaction of this job and sink that is left is
 * rolled back: pre-commits of checkpoints that never completed, whose rows are replayed.
 * Every row is written once instead of twice. With a key the sink stages (ON CONFLICT needs the rows in a
 * table first, and a transaction that used a temporary table cannot be prepared); in a scale-out task too (a
 * fenced incarnation's prepared transaction would hold its locks until the next owner opens again).
 *
 * A job without checkpoints (exactly-once, no `key`, not a scale-out task, and the table's columns of the
 * declared types) has no checkpoint that could commit staged rows: its rows go by COPY straight into the table,
 * in one transaction on a reserved connection that commits at the end of the input (each COPY under a
 * savepoint, so a refused value rolls back only that COPY). The result is the one staging gave (nothing
 * visible before the end, nothing left after a failure), with every row written once instead of twice.
 *
 * COPY through postgres.js 3.4.9, and why an earlier attempt was slower and hung: (1) postgres.js leaves
 * Nagle's algorithm on, so a short message right after a COPY waits for the server's delayed ACK (~40 ms a
 * COPY): the sink's own connection (`postgresConnection`) sets noDelay; (2) a stream write per row costs a
 * protocol message and a socket write each: a batch is one write; (3) the library never settles the stream
 * when the server refuses the data after it ended (porsager/postgres#1173), so waiting for the stream alone
 * hangs on a bad value: the server's error is also taken from the query object. A value the server refuses
 * (a `22xxx` data error, reported with its line of the COPY) is a dead letter with the server's message: that
 * row is left out and the COPY's other rows are copied again.
 *
 * A row that cannot be built — a column's extractor throws, or its value cannot be one of the column's type
 * (see `converterFor`) — is refused by `write` with a BadRecordError before anything is buffered, so it goes to
 * dead letters and the batch stays good. A value only the server can judge (`"warm"` for a double precision,
 * a text longer than a varchar(n)) goes to dead letters when its batch is copied (SinkContext.deadLetter).
 *
 * In a scale-out task (lib/scaleout, a Job registered as a task) the sink is idempotent per task, not per job:
 * each task counts its checkpoints from 1 and moves between workers, so its progress rows are keyed by
 * `<job>/<task>` (in the progress table's job column) and it stages into a table of its own. Every staged row
 * also carries the incarnation of the task that staged it (`gress_owner`, a random id per open), and so does the
 * pre-commit handle, which the task's checkpoint record carries in the task's Kafka transaction. A commit moves
 * only the rows of the handle's incarnation: the next owner of a task whose worker died between the Kafka commit
 * and this commit re-commits the dead worker's rows, and never the rows a fenced zombie still stages for
 * checkpoints that will not commit. A commit of a checkpoint at or below the task's last committed one does
 * nothing (a zombie's late commit), nothing is truncated and nothing is deleted on open (another incarnation may
 * be staging): each commit deletes the staged rows at or below its checkpoint, whoever staged them.
 *
 * With `key`, rows are upserted (the last row per key in a checkpoint wins); without, they are inserted.
 * `createTable` creates the table; with `timeColumn` it becomes a hypertable when the timescaledb extension
 * is installed, and otherwise a plain table with an index on the time column.
 * @module
 */
import net from "node:net";
import postgres from "postgres";
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { BadRecordError, ConfigError, SinkError } from "../../lib/errors.ts";
import { TASK_SINK, taskIoOf } from "../../lib/scaleout/task-io.ts";
import type { Sink } from "../../lib/sink.ts";

/**
 * A postgres.js connection (the `sql` function).
 *
 * @example
 * ```ts
 * import { type Sql, timescaleAvailable } from "gress/postgres";
 * import postgres from "postgres";
 *
 * const sql: Sql = postgres("postgres://localhost/iot");
 * console.log(await timescaleAvailable(sql));
 * await sql.end();
 * ```
 */
export type Sql = postgres.Sql;

/**
 * One column of the target table: its PostgreSQL type and how to get its value from a result.
 *
 * @example
 * ```ts
 * import type { ColumnSpec } from "gress/postgres";
 *
 * // A column: its SQL type and how to compute it from a value.
 * const amount: ColumnSpec<{ cents: number }> = { type: "numeric(12,2)", value: (o) => o.cents / 100 };
 * ```
 */
export interface ColumnSpec<T> {
  /** A PostgreSQL type: bigint, integer, double precision, numeric, text, boolean, timestamptz, jsonb, ... */
  readonly type: string;
  /** The column's value. Numbers for timestamp types are epoch milliseconds. null/undefined → NULL. */
  readonly value: (row: T) => unknown;
}

/**
 * Options of {@link postgresSink}.
 *
 * @example
 * ```ts
 * import { type PostgresSinkOptions, postgresSink } from "gress/postgres";
 *
 * type Reading = { device: string; at: number; celsius: number };
 * const options: PostgresSinkOptions<Reading> = {
 *   name: "readings",
 *   job: "iot",
 *   url: "postgres://gress@localhost:5432/iot",
 *   table: "readings",
 *   createTable: true,
 *   timeColumn: "at",
 *   key: ["device", "at"],
 *   columns: {
 *     device: { type: "text", value: (r) => r.device },
 *     at: { type: "timestamptz", value: (r) => new Date(r.at) },
 *     celsius: { type: "double precision", value: (r) => r.celsius },
 *   },
 * };
 * const sink = postgresSink(options);
 * ```
 */
export interface PostgresSinkOptions<T> {
  /** Sink name, unique in the job. */
  readonly name: string;
  /** The job's name: with the sink's name, the key of its progress rows. */
  readonly job: string;
  /** Connection URL, e.g. postgres://user:pass@host:5432/db; or give `sql`. */
  readonly url?: string;
  /**
   * An existing postgres.js connection (not closed by the sink); `postgresConnection(url)` makes one without
   * Nagle's delay. On the prepared path (`twoPhase: "prepared"`; "auto" takes it only with `url`) each sink holds
   * one of its connections while a checkpoint's transaction is open, and commits on another.
   */
  readonly sql?: Sql;
  /** Target table, optionally schema-qualified. */
  readonly table: string;
  readonly columns: Readonly<Record<string, ColumnSpec<T>>>;
  /** Primary-key columns: rows are upserted on them. Without, rows are appended. */
  readonly key?: readonly string[];
  /** On a key conflict: overwrite the other columns ("update", default) or keep the existing row ("nothing"). */
  readonly onConflict?: "update" | "nothing";
  /** Create the target table if it does not exist. Default false. */
  readonly createTable?: boolean;
  /** Time column: hypertable dimension with TimescaleDB, else indexed. Used with createTable. */
  readonly timeColumn?: string;
  /** Rows per batch sent into the staging COPY (a COPY carries several, up to 100,000 rows). Default 5000. */
  readonly batchSize?: number;
  /** "exactly-once" (default) stages rows until their checkpoint commits; "at-least-once" writes directly. */
  readonly semantic?: "exactly-once" | "at-least-once";
  /**
   * How a checkpointed exactly-once job's rows wait for their checkpoint: "prepared" COPYs them straight into
   * the table in a transaction that the pre-commit ends with `PREPARE TRANSACTION` and the commit with `COMMIT
   * PREPARED` (needs `max_prepared_transactions` > 0 on the server); "staging" COPYs them into a staging table
   * and moves them at the commit (every row written twice); "auto" (default) takes "prepared" where it can.
   */
  readonly twoPhase?: "auto" | "prepared" | "staging";
  /** Where the sink says which path it took and why (once per sink). Default: a line on stderr. */
  readonly log?: (message: string) => void;
}

/**
 * The handle the sink stores in a checkpoint.
 *
 * @example
 * ```ts
 * import type { PostgresSinkHandle } from "gress/postgres";
 *
 * // What the pre-commit returns and a checkpoint records: the staged batch's (job, sink, checkpoint).
 * const describe = (h: PostgresSinkHandle): string => `${h.job}/${h.sink} checkpoint ${h.checkpointId}`;
 * ```
 */
export interface PostgresSinkHandle {
  /** The progress key: the job's name, or `<job>/<task>` in a scale-out task. */
  readonly job: string;
  readonly sink: string;
  readonly checkpointId: number;
  /** In a scale-out task: the incarnation of the task whose staged rows this checkpoint commits. */
  readonly owner?: string;
  /**
   * On the prepared path (`twoPhase`): the id of the checkpoint's prepared transaction, or null when the
   * checkpoint had no rows. Absent on the staging path.
   */
  readonly gid?: string | null;
}

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, "a plain SQL identifier (letters, digits, '_')");
const optionsSchema = z.strictObject({
  name: z.string().min(1),
  job: z.string().min(1),
  url: z.string().min(1).optional(),
  sql: z.custom<Sql>((s) => typeof s === "function", "a postgres.js sql instance").optional(),
  table: z.string().regex(/^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$/, "a table name, optionally schema.table"),
  columns: z
    .record(identifier, z.strictObject({ type: z.string().regex(/^[A-Za-z][A-Za-z0-9_ ()[\],]*$/, "a PostgreSQL type name"), value: z.function() }))
    .refine((c) => Object.keys(c).length > 0, "at least one column")
    .refine((c) => Object.keys(c).every((n) => !n.toLowerCase().startsWith("gress_")), "column names starting with gress_ are reserved"),
  key: z.array(identifier).min(1).optional(),
  onConflict: z.enum(["update", "nothing"]).optional(),
  createTable: z.boolean().optional(),
  timeColumn: identifier.optional(),
  batchSize: z.number().int().positive().optional(),
  semantic: z.enum(["exactly-once", "at-least-once"]).optional(),
  twoPhase: z.enum(["auto", "prepared", "staging"]).optional(),
  log: z.function().optional(),
});

/**
 * The progress table shared by all PostgreSQL sinks.
 *
 * @example
 * ```ts
 * import { PROGRESS_TABLE } from "gress/postgres";
 *
 * // The table where each sink records the last checkpoint it committed, in the same transaction as the rows.
 * console.log(`select job, sink, checkpoint_id from ${PROGRESS_TABLE}`);
 * ```
 */
export const PROGRESS_TABLE = "gress_sink_progress";

/** How long a sink's DDL at open waits for a table lock (see ensureTables) before the open fails. */
const DDL_LOCK_TIMEOUT_MS = 15_000;

const q = (name: string): string => name.split(".").map((p) => `"${p.replace(/"/g, '""')}"`).join(".");

/**
 * True when the timescaledb extension is installed in the database.
 *
 * @example
 * ```ts
 * import { timescaleAvailable } from "gress/postgres";
 * import postgres from "postgres";
 *
 * // True if the timescaledb extension is installed: createTable then makes a hypertable on timeColumn.
 * const sql = postgres("postgres://localhost/iot");
 * if (await timescaleAvailable(sql)) console.log("readings will be a hypertable");
 * await sql.end();
 * ```
 */
export async function timescaleAvailable(sql: Sql): Promise<boolean> {
  const rows = await sql`select 1 from pg_extension where extname = 'timescaledb'`;
  return rows.length > 0;
}

/**
 * The staging table of a sink (unquoted): where its rows wait for their checkpoint's commit. `job` is the
 * sink's `job` option, or `<job>/<task>` for the sink of a scale-out task.
 *
 * @example
 * ```ts
 * import { postgresStagingTable } from "gress/postgres";
 *
 * // Rows of task 0_3 of job "iot" waiting for their checkpoint's commit.
 * console.log(`select gress_checkpoint, count(*) from "${postgresStagingTable("iot/0_3", "readings", "readings")}" group by 1`);
 * ```
 */
export function postgresStagingTable(job: string, sink: string, table: string): string {
  return `gress_stage_${fnv(`${job}\u0000${sink}\u0000${table}`)}`;
}

function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** The byte that ends every row of COPY text. */
const NEWLINE_BYTE = 10;

/** The width in bits of PostgreSQL's integer types: a value of one is in [-2^(bits-1), 2^(bits-1)). */
const INTEGER_BITS: Readonly<Record<string, number>> = { smallint: 16, int2: 16, integer: 32, int: 32, int4: 32, bigint: 64, int8: 64 };

/**
 * The function that converts a value of a column of `type` to its COPY text field (escaped; null → \N), or
 * throws (an Error saying why) when the value cannot be one: Gress finds these bad values before the server,
 * for a dead letter naming the column. Checked here: integers (an integer within the type's range),
 * timestamps (a valid time), JSON (serialisable: not cyclic or nested too deeply), and NUL characters, which
 * no PostgreSQL text can hold. Other types are passed as text for the server to parse (what it refuses is
 * dead-lettered when the batch is copied). The type is looked at once, not for every value.
 */
function converterFor(type: string): (v: unknown) => string {
  const t = type.toLowerCase();
  const bits = INTEGER_BITS[t];
  // Integer and time texts hold nothing COPY must escape.
  if (bits !== undefined) return (v) => (v === null || v === undefined ? "\\N" : integerText(v, t, bits));
  const time = t.startsWith("timestamp") || t === "date";
  return (v) => {
    if (v === null || v === undefined) return "\\N";
    if (time && (typeof v === "number" || v instanceof Date)) return timeText(v);
    return copyText(otherText(t, v));
  };
}

function otherText(t: string, v: unknown): string {
  let text: string;
  if (t === "json" || t === "jsonb") {
    const json = JSON.stringify(v) as string | undefined;
    if (json === undefined) throw new TypeError(`a ${typeof v} has no JSON form`);
    if (t === "jsonb" && /(^|[^\\])(\\\\)*\\u0000/.test(json)) throw new TypeError("jsonb cannot hold the character U+0000");
    text = json;
  } else if (v instanceof Date) text = timeText(v);
  else if (typeof v === "object") text = JSON.stringify(v);
  else text = String(v);
  if (text.includes("\u0000")) throw new TypeError("PostgreSQL text cannot hold the character U+0000");
  return text;
}

function integerText(v: unknown, type: string, bits: number): string {
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new TypeError(`${type} needs an integer, got ${describe(v)}`);
    const limit = 2 ** (bits - 1);
    if (v < -limit || v >= limit) throw new RangeError(`${v} is out of the range of ${type}`);
    return String(v);
  }
  let n: bigint | undefined;
  if (typeof v === "bigint") n = v;
  else if (typeof v === "string" && /^\s*[+-]?\d+\s*$/.test(v)) n = BigInt(v.trim());
  if (n === undefined) throw new TypeError(`${type} needs an integer, got ${describe(v)}`);
  const limit = 1n << BigInt(bits - 1);
  if (n < -limit || n >= limit) throw new RangeError(`${n} is out of the range of ${type}`);
  return n.toString();
}

/** The minute whose ISO text starts `minutePrefix` ("2026-12-04T22:58:"): stream times come mostly in order. */
let cachedMinute = Number.NaN;
let minutePrefix = "";
/** Years 0000-9999, where toISOString has the fixed-width form. */
const FIRST_MS = -62_167_219_200_000;
const LAST_MS = 253_402_300_799_999;

function timeText(v: number | Date): string {
  const raw = typeof v === "number" ? v : v.getTime();
  // toISOString throws its own RangeError ("Invalid time value") without saying which value it was.
  if (!Number.isFinite(raw) || Math.abs(raw) > 8.64e15) throw new RangeError(`not a valid time: ${String(v)}`);
  const ms = Math.trunc(raw) + 0; // as Date does (+0: no "-0")
  if (ms < FIRST_MS || ms > LAST_MS) return new Date(ms).toISOString();
  // The same text as toISOString, the date and minute formatted once per minute (a profiled hot spot).
  const minute = Math.floor(ms / 60_000);
  if (minute !== cachedMinute) {
    cachedMinute = minute;
    minutePrefix = new Date(minute * 60_000).toISOString().slice(0, 17);
  }
  const rest = ms - minute * 60_000;
  const sec = Math.floor(rest / 1000);
  const milli = rest - sec * 1000;
  return `${minutePrefix}${sec < 10 ? "0" : ""}${sec}.${milli < 10 ? "00" : milli < 100 ? "0" : ""}${milli}Z`;
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === "object") return Array.isArray(v) ? "an array" : "an object";
  return `${typeof v} ${String(v)}`;
}

/** Escapes a value for COPY's text format (the row's separators and the escape character itself). */
function copyText(s: string): string {
  if (!/[\\\n\r\t]/.test(s)) return s;
  return s.replace(/[\\\n\r\t]/g, (c) => (c === "\\" ? "\\\\" : c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\t"));
}

/** A server error about one row of a COPY: a data exception (SQLSTATE class 22) with the row's line number. */
function badCopyLine(err: unknown): { line: number; reason: string } | undefined {
  const e = err as { code?: unknown; where?: unknown; message?: unknown };
  if (typeof e !== "object" || e === null || typeof e.code !== "string" || !e.code.startsWith("22") || typeof e.where !== "string") return undefined;
  const m = /^COPY [^,]+, line (\d+)(?:, column ([^:]+))?/.exec(e.where);
  if (m === null) return undefined;
  const column = m[2] === undefined ? "" : `column "${m[2]}": `;
  return { line: Number(m[1]), reason: `${column}${String(e.message)}` };
}

/** An open `COPY … FROM STDIN`. */
interface CopyIn {
  /** Sends rows; rejects with the server's error when it refused the COPY. */
  write(data: Buffer): Promise<void>;
  /** Ends the data; resolves when the server took all of it, rejects with its error. */
  end(): Promise<void>;
  /** Gives the COPY up (CopyFail): the server keeps none of it. */
  abort(): void;
}

/**
 * Starts `statement` (a COPY … FROM STDIN). The server's error is taken from the query as well as from the
 * stream: postgres.js 3.4.9 reports an error that arrives after the stream ended only to the query object,
 * whose promise had resolved to the stream already (porsager/postgres#1173), and never settles the stream.
 */
async function openCopy(sql: Sql, statement: string): Promise<CopyIn> {
  const query = sql.unsafe(statement);
  const q = query as unknown as { reject?: (e: unknown) => void };
  const reject = q.reject;
  if (typeof reject !== "function") throw new Error("this postgres.js has no Query.reject: the sink's COPY needs postgres.js 3.4");
  let serverError: unknown;
  let refused: (e: unknown) => void = () => {};
  const failed = new Promise<never>((_, r) => (refused = r));
  failed.catch(() => undefined);
  const onError = (e: unknown): void => {
    serverError ??= e;
    refused(serverError);
  };
  q.reject = (e: unknown) => {
    onError(e);
    reject(e);
  };
  const stream = await query.writable();
  stream.on("error", onError);
  const finished = new Promise<void>((resolve) => stream.on("finish", resolve));
  return {
    write: (data) =>
      Promise.race([
        failed,
        new Promise<void>((resolve, fail) =>
          // A write the destroyed stream refuses: report the server's error, set in the same turn.
          stream.write(data, (err) => (err ? setTimeout(() => fail(serverError ?? err), 0) : resolve())),
        ),
      ]),
    end: () => {
      stream.end();
      return Promise.race([finished, failed]);
    },
    abort: () => {
      if (!stream.destroyed) stream.destroy(new Error("COPY given up: the sink closed"));
    },
  };
}

/** Runs `statement` (a COPY … FROM STDIN) with `data` as its whole input. */
async function copyIn(sql: Sql, statement: string, data: Buffer): Promise<void> {
  const copy = await openCopy(sql, statement);
  await copy.write(data);
  await copy.end();
}

/**
 * A postgres.js connection (pool of `max`, default 2) with Nagle's algorithm off on its sockets, as the sink
 * makes for itself from `url`. postgres.js leaves it on, and then a short message right after a COPY (the
 * next COPY statement, a transaction's BEGIN) waits for the server's delayed acknowledgement, ~40 ms on
 * Linux: measured, each COPY of a 5,000-row batch took ~45 ms longer than its data. Give the sink one of
 * these as `sql` to share a connection between jobs or sinks. Done for a URL with one TCP host; other URLs
 * (several hosts, a Unix socket) get postgres.js' own socket.
 *
 * @example
 * ```ts
 * import { postgresConnection, postgresSink } from "gress/postgres";
 *
 * const sql = postgresConnection("postgres://gress@localhost:5432/iot");
 * const sink = postgresSink<{ id: number }>({ name: "ids", job: "iot", sql, table: "ids", columns: { id: { type: "bigint", value: (r) => r.id } } });
 * console.log(sink.name); // ids; end the connection with `await sql.end()` when the jobs are done
 * ```
 * @param url postgres://user:password@host:port/database
 * @param max connections in the pool
 * @returns the `sql` function
 */
export function postgresConnection(url: string, max = 2): Sql {
  const options = { max, onnotice: () => {} };
  const parsed = postgres(url, options).options; // parses only: connections are made on the first query
  const host = parsed.host[0];
  const port = parsed.port[0];
  if (parsed.host.length !== 1 || parsed.path || host === undefined || port === undefined) return postgres(url, options);
  // postgres.js starts its connect_timeout once the socket is given: the TCP connect is bounded here.
  const timeoutMs = (Number(parsed.connect_timeout) || 30) * 1000;
  const socket = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port, noDelay: true });
      const fail = (err: Error): void => {
        clearTimeout(timer);
        s.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`connecting to ${host}:${port} timed out after ${timeoutMs} ms (connect_timeout)`)), timeoutMs);
      s.once("error", fail);
      s.once("connect", () => {
        clearTimeout(timer);
        s.off("error", fail);
        s.setNoDelay(true);
        resolve(s);
      });
    });
  // `socket` is a documented postgres.js option missing from its types.
  return postgres(url, { ...options, socket } as typeof options);
}

function isHandle(h: unknown): h is PostgresSinkHandle {
  const x = h as PostgresSinkHandle;
  return (
    typeof x === "object" &&
    x !== null &&
    typeof x.checkpointId === "number" &&
    typeof x.job === "string" &&
    typeof x.sink === "string" &&
    (x.owner === undefined || (typeof x.owner === "string" && /^[A-Za-z0-9-]+$/.test(x.owner))) &&
    // Spliced into COMMIT PREPARED '…': only the characters gidOf writes.
    (x.gid === undefined || x.gid === null || (typeof x.gid === "string" && /^[A-Za-z0-9_.:/-]{1,200}$/.test(x.gid)))
  );
}

/**
 * A PostgreSQL sink with exactly-once commits.
 *
 * @example
 * ```ts
 * import { fromIterable, tumbling } from "gress";
 * import { postgresSink } from "gress/postgres";
 *
 * const counts = fromIterable([{ action: "click", at: 0 }], { timestamp: (e) => e.at }).keyBy((e) => e.action).window(tumbling(60_000)).count();
 * counts.sinkTo(postgresSink({
 *   name: "counts", job: "live", url: "postgres://localhost/live", table: "action_counts", createTable: true,
 *   columns: { action: { type: "text", value: (r) => r.key }, window_end: { type: "timestamptz", value: (r) => new Date(r.end) },
 *              n: { type: "bigint", value: (r) => r.value } },
 *   key: ["action", "window_end"], timeColumn: "window_end",
 * }));
 * ```
 * @param options connection, table, columns, conflict key
 * @returns a sink with two-phase commit
 */
export function postgresSink<T>(options: PostgresSinkOptions<T>): Sink<T> & { readonly hypertable: boolean | undefined; readonly [TASK_SINK]: true } {
  const o = validate(optionsSchema, options, "postgresSink");
  const name = o.name;
  const names = Object.keys(options.columns);
  const specs = names.map((n) => options.columns[n] as ColumnSpec<T>);
  const types = specs.map((s) => s.type);
  const converters = types.map(converterFor);
  const extractors = specs.map((s) => s.value);
  const batchSize = o.batchSize ?? 5000;
  const atLeastOnce = o.semantic === "at-least-once";
  const twoPhase = o.twoPhase ?? "auto";
  if (twoPhase === "prepared" && (atLeastOnce || o.key !== undefined)) {
    const why = atLeastOnce ? 'semantic "at-least-once" has no checkpoint transactions' : "with a key, rows are upserted from a table (INSERT … ON CONFLICT), and a transaction that used a temporary table cannot be prepared";
    throw new ConfigError(`postgresSink: twoPhase "prepared" is not possible: ${why}`, [{ path: ["postgresSink", "twoPhase"], code: "custom", message: why }]);
  }
  const log = (options.log as ((message: string) => void) | undefined) ?? ((m: string) => console.error(`gress: ${m}`));
  const table = q(o.table);
  const cols = names.map(q).join(", ");
  const conflict = (() => {
    if (o.key === undefined) return "";
    const keyCols = o.key.map(q).join(", ");
    const rest = names.filter((n) => !o.key?.includes(n));
    if (o.onConflict === "nothing" || rest.length === 0) return ` on conflict (${keyCols}) do nothing`;
    return ` on conflict (${keyCols}) do update set ${rest.map((n) => `${q(n)} = excluded.${q(n)}`).join(", ")}`;
  })();
  /**
   * Where rows are staged and progress is recorded: per job (`owner` undefined), or in a scale-out task per
   * task and incarnation (see the module comment).
   */
  interface Scope {
    readonly job: string;
    readonly owner: string | undefined;
    readonly staging: string;
    /** Selects the rows a commit of checkpoint $1 moves (in a task: of incarnation $2). */
    readonly select: string;
    readonly copySql: string;
    /** Ends a staged row's COPY line: its checkpoint (and incarnation). */
    readonly suffix: (tag: number) => string;
  }
  const scopeOf = (job: string, owner: string | undefined): Scope => {
    const staging = q(postgresStagingTable(job, name, o.table));
    const mine = `gress_checkpoint <= $1${owner === undefined ? "" : " and gress_owner = $2"}`;
    return {
      job,
      owner,
      staging,
      // Several rows with one key in a checkpoint: the last one written wins (ON CONFLICT may touch a row once).
      select:
        o.key === undefined
          ? `select ${cols} from ${staging} where ${mine}`
          : `select ${cols} from (select distinct on (${o.key.map(q).join(", ")}) * from ${staging} where ${mine} order by ${o.key.map(q).join(", ")}, gress_seq desc) s`,
      // Without a key, staged rows need no order (gress_seq stays null; an older staging table fills it itself).
      copySql: `copy ${staging} (${cols}${o.key === undefined ? "" : ", gress_seq"}, gress_checkpoint${owner === undefined ? "" : ", gress_owner"}) from stdin`,
      suffix: owner === undefined ? (tag) => `\t${tag}\n` : (tag) => `\t${tag}\t${owner}\n`,
    };
  };
  /** The scope of this run: per job until open() finds the sink in a scale-out task. */
  let scope = scopeOf(o.job, undefined);
  /** The scope a handle's checkpoint was staged in (a task's handle names its task and incarnation). */
  /** The job column of this sink's progress rows in the job named `jobName`: `<job>`, or `<job>/<task>` in a scale-out task. */
  const progressJob = (jobName: string | undefined): string => {
    const task = taskIoOf(jobName);
    return task === undefined ? o.job : `${o.job}/${task.taskId}`;
  };
  const scopeOfHandle = (h: PostgresSinkHandle): Scope => (h.owner === undefined ? scope : scopeOf(h.job, h.owner));

  const ownSql = options.sql === undefined;
  let sql: Sql | undefined = options.sql;
  /**
   * A batch of rows on its way into the staging table (or the table). Its rows are kept until its COPY ended,
   * for a row the server refuses (see restage): as their COPY text once it was sent, not as the line strings
   * it was built from. A COPY holds up to `copyRows` rows, and keeping that many small strings alive across
   * garbage collections cost more than a third of the sink's time.
   */
  interface Batch {
    /** The rows' COPY lines (without the seq and checkpoint columns) until `text` is built from them. */
    lines: string[] | undefined;
    /** The rows' COPY text, each row one line ending in a newline (a field holds none: COPY escapes them). */
    text: Buffer | undefined;
    readonly rows: number;
    readonly values: T[];
    readonly times: number[];
    readonly seq: number;
    readonly tag: number;
  }
  /** Rows per COPY statement at most: a COPY stays open across batches until a checkpoint or this many rows. */
  const copyRows = Math.max(batchSize, 100_000);
  /** The COPY kept open between batches, with the batches it carries (to copy them again around a bad row). */
  let streaming: { readonly copy: CopyIn; readonly batches: Batch[]; rows: number } | undefined;
  /** Buffered rows as COPY text lines (without the seq and checkpoint columns), with their records for dead letters. */
  let lines: string[] = [];
  let values: T[] = [];
  let times: number[] = [];
  /** Orders the staged rows (the last one per key wins); continues the staged rows' numbers after a restart. */
  let seq = 0;
  /** The highest checkpoint tag staged by this run: a commit at or above it may truncate the staging table. */
  let stagedUpTo = 0;
  /** Where a row the server refuses goes (the job's sink operator); without it, such a row fails the batch. */
  let deadLetter: ((value: unknown, timestamp: number, reason: string) => void) | undefined;
  let chain: Promise<void> = Promise.resolve();
  /** Highest checkpoint id pre-committed or restored: new rows belong to a later one. */
  let lastId = 0;
  let recoveredId: number | undefined;
  let opened = false;
  /** The first failed bulk insert: the sink is broken from then on, and every later call says why. */
  let failure: SinkError | undefined;
  /** The bulk insert in progress: a write waits for the previous one only (double buffering). */
  let inflight: Promise<void> = Promise.resolve();
  let hypertable: boolean | undefined;
  /**
   * A job without checkpoints (exactly-once, no key, not a scale-out task): no checkpoint will ever commit
   * staged rows, and the end of the input moves them all into the table in one transaction. So the rows skip
   * the staging table: they are copied straight into the table inside one transaction on a connection of its
   * own, committed at the end of the input. Nothing is visible before that, and a failure, a restart or a
   * close before it rolls everything back, as with staging; but every row is written once instead of twice.
   * Each COPY statement runs under a savepoint, so a row the server refuses rolls back that COPY only, and
   * its other rows are copied again (see restage). The connection is reserved at the first batch, as a COPY
   * into staging takes one from the pool then, and kept until the end of the input or close.
   */
  let straight = false;
  /**
   * The prepared path (`twoPhase`): as `straight`, rows go by COPY straight into the table, in a transaction
   * on a reserved connection; the pre-commit adds the progress row and ends it with PREPARE TRANSACTION (the
   * connection goes back to the pool, and the next checkpoint's rows begin a new transaction), the commit runs
   * COMMIT PREPARED on any connection. Every row is written once.
   */
  let prepared = false;
  /** This run's tag in the ids of its prepared transactions: a new one per open, so ids never repeat. */
  let runTag = "";
  /** The path was logged (once per sink, not at every restart). */
  let told = false;
  let direct: postgres.ReservedSql | undefined;
  /** The connection of `direct` was lost (a statement on it failed with no server error): send nothing more on it. */
  let directLost = false;
  const directCopySql = `copy ${table} (${cols}) from stdin`;
  const SAVEPOINT = "gress_copy";

  const conn = (): Sql => {
    if (sql === undefined) {
      if (o.url === undefined) throw new SinkError(`postgres sink "${name}": give url or sql`);
      sql = postgresConnection(o.url);
    }
    return sql;
  };
  const run = (op: () => Promise<void>): Promise<void> => {
    const p = chain.then(op);
    chain = p.catch(() => undefined);
    return p;
  };
  const fail = (what: string, err: unknown): SinkError =>
    new SinkError(`postgres sink "${name}" (table ${o.table}) failed to ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err, details: { sink: name } });

  /**
   * Copies rows [from, to) of a batch into the staging table under `tag`. A row whose value the server refuses
   * is dead-lettered with the server's reason, and the rows around it are copied again (those before it were
   * read fine, so the first part succeeds; the rest may hold more bad rows).
   */
  const stage = async (batch: Batch, from: number, to: number): Promise<void> => {
    if (from >= to) return;
    const text = textOf(batch, from, to);
    if (!straight) return copyIn(conn(), scope.copySql, text);
    const d = await directConn();
    await onDirect(d, `savepoint ${SAVEPOINT}`);
    try {
      await copyIn(d, directCopySql, text);
    } catch (err) {
      await undoCopy(err);
      throw err;
    }
    await onDirect(d, `release savepoint ${SAVEPOINT}`);
  };
  /** The COPY text of rows [from, to) of a batch; the whole batch's is built once, and then replaces its lines. */
  const textOf = (batch: Batch, from: number, to: number): Buffer => {
    if (batch.text === undefined) {
      const lines = batch.lines as string[];
      // Straight into the table (no key then): the row's own columns only.
      const end = straight ? "\n" : scope.suffix(batch.tag);
      let text: string;
      if (o.key === undefined) text = lines.join(end) + end;
      else {
        text = "";
        for (let i = 0; i < lines.length; i++) text += `${lines[i]}\t${batch.seq + i}${end}`;
      }
      batch.text = Buffer.from(text, "utf8");
      batch.lines = undefined;
    }
    const text = batch.text;
    if (from === 0 && to === batch.rows) return text;
    // Rows [from, to): between the from-th and the to-th newline.
    let start = 0;
    let at = 0;
    for (let row = 0; row < to; row++) {
      if (row === from) start = at;
      at = text.indexOf(NEWLINE_BYTE, at) + 1;
    }
    return text.subarray(start, at);
  };
  /**
   * After the server refused a COPY: the row it names goes to dead letters with the server's reason, and the
   * COPY's other rows are copied again, each batch in a COPY of its own (rows before the bad one were read
   * fine; the rest may hold more bad rows, found the same way). An error that names no row fails the sink.
   */
  const restage = async (batches: readonly Batch[], err: unknown): Promise<void> => {
    const bad = badCopyLine(err);
    const total = batches.reduce((n, b) => n + b.rows, 0);
    if (bad === undefined || bad.line > total || deadLetter === undefined) throw err;
    let offset = 0;
    for (const b of batches) {
      const at = bad.line - 1 - offset;
      if (at >= 0 && at < b.rows) {
        deadLetter(b.values[at], b.times[at] as number, bad.reason);
        await stageAll(b, 0, at);
        await stageAll(b, at + 1, b.rows);
      } else await stageAll(b, 0, b.rows);
      offset += b.rows;
    }
  };
  /** Copies rows [from, to) of a batch in one COPY, dead-lettering the rows the server refuses. */
  const stageAll = async (batch: Batch, from: number, to: number): Promise<void> => {
    try {
      await stage(batch, from, to);
    } catch (err) {
      const sub: Batch = { ...batch, lines: undefined, text: textOf(batch, from, to), rows: to - from, values: batch.values.slice(from, to), times: batch.times.slice(from, to), seq: batch.seq + from };
      await restage([sub], err);
    }
  };
  /** The job fails on this error: release our connections now rather than at close(). */
  const broken = (what: string, err: unknown): SinkError => {
    streaming?.copy.abort();
    streaming = undefined;
    // The caller's connection stays: a restart opens the sink again on it (postgres.js reconnects by itself).
    if (ownSql) {
      void sql?.end({ timeout: 0 });
      sql = undefined;
    }
    failure = fail(what, err);
    return failure;
  };
  /** Sends a batch into the open COPY (opening one), which ends when it holds `copyRows` rows. */
  const send = async (batch: Batch): Promise<void> => {
    if (streaming === undefined) {
      if (straight) {
        const d = await directConn();
        // Pipelined with the COPY: a failed savepoint fails the COPY too.
        const saved = onDirect(d, `savepoint ${SAVEPOINT}`);
        saved.catch(() => undefined);
        streaming = { copy: await openCopy(d, directCopySql), batches: [], rows: 0 };
        await saved;
      } else streaming = { copy: await openCopy(conn(), scope.copySql), batches: [], rows: 0 };
    }
    const s = streaming;
    s.batches.push(batch);
    s.rows += batch.rows;
    stagedUpTo = Math.max(stagedUpTo, batch.tag);
    try {
      await s.copy.write(textOf(batch, 0, batch.rows));
    } catch (err) {
      streaming = undefined;
      await undoCopy(err);
      await restage(s.batches, err);
      return;
    }
    if (s.rows >= copyRows) await endCopy();
  };
  /** Ends the open COPY: its rows are staged (or dead letters) when this resolves. */
  const endCopy = async (): Promise<void> => {
    const s = streaming;
    if (s === undefined) return;
    streaming = undefined;
    try {
      await s.copy.end();
    } catch (err) {
      await undoCopy(err);
      await restage(s.batches, err);
      return;
    }
    if (direct !== undefined) await onDirect(direct, `release savepoint ${SAVEPOINT}`);
  };
  /**
   * True if every column has the same type in the table as in the staging table (which has the declared
   * types). Only then may rows skip staging (see `direct`): COPY then refuses exactly the values staging
   * would, while a declared type the table does not have (staging's INSERT … SELECT fails the job, or casts)
   * would turn every row into a dead letter of the table's type.
   */
  const sameColumnTypes = async (s: Sql): Promise<boolean> => {
    const rows = await s.unsafe(
      "select a.attrelid = to_regclass($1) as target, a.attname::text as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a where a.attrelid in (to_regclass($1), to_regclass($2)) and a.attnum > 0 and not a.attisdropped",
      [table, scope.staging],
    );
    const typesOf = (target: boolean): Map<string, string> => new Map(rows.filter((r) => r.target === target).map((r) => [r.name as string, r.type as string]));
    const inTable = typesOf(true);
    const staged = typesOf(false);
    return names.every((n) => inTable.get(n) !== undefined && inTable.get(n) === staged.get(n));
  };
  /** The connection of a job without checkpoints (see `direct`), in its transaction: reserved and begun on first use. */
  const directConn = async (): Promise<postgres.ReservedSql> => {
    if (direct === undefined) {
      const d = await conn().reserve();
      direct = d;
      directLost = false;
      // Not awaited: the statements that follow on this connection go out right behind it (postgres.js
      // pipelines them), and fail with it; a round trip less per transaction (one per checkpoint when prepared).
      onDirect(d, "begin").catch(() => undefined);
      // The transaction stays open between batches until the checkpoint (or the end of the input): a server's
      // idle_in_transaction_session_timeout shorter than that would end the session under it.
      onDirect(d, "set local idle_in_transaction_session_timeout = 0").catch(() => undefined);
    }
    return direct;
  };
  /** A statement on `direct`'s connection; one that fails without a server error marks the connection lost (see undoCopy). */
  const onDirect = async (d: postgres.ReservedSql, text: string, params: postgres.ParameterOrJSON<never>[] = []): Promise<postgres.Row[]> => {
    try {
      return await d.unsafe(text, params);
    } catch (err) {
      if (!(err instanceof postgres.PostgresError)) directLost = true;
      throw err;
    }
  };
  /**
   * After a COPY into the table failed: rolls the transaction back to the COPY's savepoint, when the server
   * refused it. When the connection was lost instead, the server ended the transaction itself, and the error
   * goes on as it is: postgres.js 3.4.9 throws an uncaught TypeError (its socket is null) for a statement sent
   * on a reserved connection after its socket closed, which would crash the process.
   */
  const undoCopy = async (err: unknown): Promise<void> => {
    if (direct === undefined) return;
    if (!(err instanceof postgres.PostgresError)) {
      directLost = true;
      throw err;
    }
    await direct.unsafe(`rollback to savepoint ${SAVEPOINT}`);
  };
  /** Ends the transaction of a job without checkpoints (see `direct`), if it began: commits it, or rolls it back. */
  const endDirect = async (commit: boolean): Promise<void> => {
    const d = direct;
    if (d === undefined) return;
    direct = undefined;
    try {
      // Lost with its connection: nothing to roll back (see undoCopy), and a commit must fail.
      if (directLost) {
        if (commit) throw new Error("the connection of the rows' transaction was lost: its rows were rolled back by the server");
        return;
      }
      await d.unsafe(commit ? "commit" : "rollback");
    } finally {
      d.release();
    }
  };
  /**
   * The start of the ids of this sink's prepared transactions: the job (`<job>/<task>` in a task) and sink
   * as text (characters other than letters, digits and `_.-/` replaced, each cut at 60), and a hash of the
   * exact job, sink and table, so that two sinks never share it.
   */
  const gidPrefix = (job: string): string => {
    const text = (x: string): string => x.replace(/[^A-Za-z0-9_./-]/g, "_").slice(0, 60);
    return `gress:${fnv(`${job}\u0000${name}\u0000${o.table}`)}:${text(job)}:${text(name)}:`;
  };
  const gidOf = (checkpointId: number): string => `${gidPrefix(scope.job)}${runTag}:${checkpointId}`;
  /** postgres.js reports a missing prepared transaction as SQLSTATE 42704 (undefined object). */
  const missing = (err: unknown): boolean => (err as { code?: unknown })?.code === "42704";
  /** The server's max_prepared_transactions (0: PREPARE TRANSACTION is refused). */
  const maxPrepared = async (s: Sql): Promise<number> => {
    const [row] = await s.unsafe("select current_setting('max_prepared_transactions')::int as n");
    return Number(row?.n ?? 0);
  };
  /**
   * Whether a checkpointed run takes the prepared path (see `prepared`), and why or why not. A ConfigError
   * when `twoPhase: "prepared"` cannot be had. (A key or at-least-once were refused when the sink was made.)
   */
  const choosePath = async (s: Sql, inTask: boolean, maxXacts: number): Promise<{ readonly use: boolean; readonly why: string }> => {
    if (twoPhase === "staging") return { use: false, why: 'twoPhase: "staging"' };
    let not: string | undefined;
    if (o.key !== undefined) not = "with a key, rows are upserted from a table (INSERT … ON CONFLICT), and a transaction that used a temporary table cannot be prepared";
    else if (inTask) not = "in a scale-out task (a task moves between workers, and a fenced incarnation's prepared transactions would hold locks that only the next owner's restart clears)";
    else if (maxXacts === 0) not = "max_prepared_transactions is 0 on the server (set it above 0, e.g. 64, in postgresql.conf and restart PostgreSQL)";
    else if (Number((s as unknown as { options?: { max?: unknown } }).options?.max ?? 2) < 2)
      not = "the connection pool given as `sql` has one connection: a checkpoint's open transaction holds one and COMMIT PREPARED needs another";
    else if (!ownSql && twoPhase === "auto")
      not =
        'the connection pool is the caller\'s (`sql`): a checkpoint\'s open transaction holds one of its connections until the next pre-commit, and COMMIT PREPARED needs another, which a pool shared by several sinks may not have (give `url`, or twoPhase: "prepared" when the pool has a connection per sink and one more)';
    else if (!(await sameColumnTypes(s))) not = "the table's column types differ from the declared ones (rows copied straight into it would be refused one by one)";
    if (not === undefined) return { use: true, why: `max_prepared_transactions = ${maxXacts}` };
    if (twoPhase === "prepared") throw new ConfigError(`postgres sink "${name}": twoPhase "prepared" is not possible: ${not}`, [{ path: ["postgresSink", "twoPhase"], code: "custom", message: not }]);
    return { use: false, why: not };
  };
  /**
   * Rolls back every prepared transaction of this sink (job or task) that is left: pre-commits of checkpoints
   * that never completed (the restored checkpoint's was committed by recovery before open).
   */
  const rollbackLeftovers = async (s: Sql): Promise<void> => {
    const rows = await s.unsafe("select gid from pg_prepared_xacts where database = current_database() and left(gid, length($1)) = $1", [gidPrefix(scope.job)]);
    for (const r of rows) {
      try {
        await s.unsafe(`rollback prepared '${String(r.gid).replace(/'/g, "''")}'`);
      } catch (err) {
        if (!missing(err)) throw err; // ended by someone else meanwhile
      }
    }
  };
  /**
   * Commits a checkpoint's prepared transaction. Idempotent: a transaction that is gone was committed when the
   * progress rows say so (below); otherwise it was rolled back (by hand, or by a sink of the same job, sink and
   * table opened elsewhere), and the checkpoint's rows are lost: that is an error, never a silent success.
   *
   * Which progress rows say so. A handle of this open (its run tag): its own row. The coordinator commits a
   * checkpoint before it sends the next one's barrier, so no later checkpoint of this run has committed (or
   * trimmed) anything yet; and this run prepared the transaction only because no row of the checkpoint existed.
   * A handle of an earlier run (recovery): its own row may have been trimmed (each
   * commit deletes the rows more than 100 checkpoints behind it), so any row at or after its checkpoint. That
   * is sound for the runs that led here: a later checkpoint's transaction is prepared after its barrier, which
   * comes only after this checkpoint's commit returned (a commit that fails fails the job, and the restart
   * commits it again before the sink opens: Job runs recovery first); a run restored from a checkpoint r
   * commits r first and then takes checkpoints above r only, so a row at or above this checkpoint written by a
   * run restored from r >= it follows this commit too. Rows it cannot tell apart, and takes as a commit of this
   * checkpoint although they are not: those of a run restored to a checkpoint before this one (then restored
   * back to this one), or of a second live instance with the same job and sink names (a fresh start numbers its
   * checkpoints above the progress rows, see committedCheckpoint). Each of those needs this transaction rolled back outside the
   * sink as well for rows to be lost; a handle of this open never depends on them.
   */
  const commitPrepared = async (checkpointId: number, h: PostgresSinkHandle & { readonly gid: string }): Promise<void> => {
    const s = conn();
    try {
      await s.unsafe(`commit prepared '${h.gid}'`);
    } catch (err) {
      if (!missing(err)) throw err;
      const ours = opened && h.job === scope.job && h.gid === gidOf(checkpointId);
      const done = await s.unsafe(`select 1 from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2 and checkpoint_id ${ours ? "=" : ">="} $3 limit 1`, [h.job, name, checkpointId]);
      if (done.length === 0) {
        throw new Error(
          `the prepared transaction '${h.gid}' is gone and no progress row of checkpoint ${checkpointId}${ours ? "" : " or a later one"} was committed: it was rolled back outside this sink (by hand, or by another instance of job "${h.job}" with sink "${name}" opening)`,
        );
      }
    }
  };
  /** Ends the pre-committed checkpoint's transaction (see `prepared`): the progress row, then PREPARE TRANSACTION. */
  const prepareDirect = async (checkpointId: number): Promise<string | null> => {
    const d = direct;
    if (d === undefined) return null; // no rows since the last pre-commit: nothing to commit
    direct = undefined;
    const gid = gidOf(checkpointId);
    try {
      // The progress row, and a short history of them kept, in one statement.
      const [inserted] = await onDirect(
        d,
        `with added as (insert into ${q(PROGRESS_TABLE)} (job, sink, checkpoint_id) values ($1, $2, $3) on conflict do nothing returning 1), old as (delete from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2 and checkpoint_id < $4) select count(*)::int as n from added`,
        [scope.job, name, checkpointId, checkpointId - 100],
      );
      if (inserted?.n === 0) {
        // Checkpoint ids continue above the progress rows (committedCheckpoint), so a row of this one means
        // another instance of the job and sink wrote it: refused, never dropped in silence.
        await onDirect(d, "rollback");
        throw new SinkError(
          `postgres sink "${name}" (table ${o.table}): checkpoint ${checkpointId} of job "${scope.job}" has a progress row already, so another instance of this job and sink is committing to the same table; this checkpoint's rows were rolled back`,
          { details: { sink: name, checkpoint: checkpointId } },
        );
      }
      await onDirect(d, `prepare transaction '${gid}'`);
    } catch (err) {
      // Not on a lost connection (see undoCopy): the server ended the transaction, or prepared it, and then
      // the next open rolls it back (its checkpoint cannot have completed).
      if (err instanceof postgres.PostgresError && !directLost) await d.unsafe("rollback").catch(() => undefined);
      throw err;
    } finally {
      d.release();
    }
    return gid;
  };
  /** Runs `op` on the chain after the open COPY ended (`op` needs the rows staged, or the connection). */
  const afterCopy = (what: string, op: () => Promise<void>): Promise<void> =>
    run(async () => {
      if (failure !== undefined) throw failure;
      try {
        await endCopy();
      } catch (err) {
        throw broken(what, err);
      }
      await op();
    });

  /** Takes the buffered rows and copies them (staged under `tag`, and at-least-once then into the table). */
  const flushBuffer = (tag: number): Promise<void> => {
    if (failure !== undefined) return Promise.reject(failure);
    if (lines.length === 0) return run(async () => {});
    const batch: Batch = { lines, text: undefined, rows: lines.length, values, times, seq, tag };
    seq += lines.length;
    lines = [];
    values = [];
    times = [];
    return run(async () => {
      if (failure !== undefined) throw failure;
      try {
        await send(batch);
        // At-least-once: what is staged goes to the table right away.
        if (atLeastOnce) {
          await endCopy();
          await applyAll();
        }
      } catch (err) {
        throw broken("insert a batch", err);
      }
    });
  };

  /**
   * Creates what is missing. Under a transaction-scoped advisory lock: two sinks opening at once (the tasks of
   * a scale-out job, several jobs) would race in `create table if not exists`, and the loser fails on
   * pg_type's unique index. Every sink on the server waits for that lock, so nothing under it may wait long:
   * a statement that locks an existing table (CREATE INDEX takes a SHARE lock, create_hypertable and ALTER
   * TABLE an ACCESS EXCLUSIVE one, even when there is nothing to do) runs only when there is something to
   * create, and a table lock is waited for at most DDL_LOCK_TIMEOUT (then the open fails naming the table).
   */
  const ensureTables = (sql: Sql): Promise<void> => sql.begin((tx) => createTables(tx as unknown as Sql));
  const createTables = async (s: Sql): Promise<void> => {
    await s.unsafe(`select pg_advisory_xact_lock(hashtext('gress.sink.ddl'))`);
    // Only after the advisory lock: a sink waiting for another one's DDL is not the problem.
    await s.unsafe(`set local lock_timeout = '${DDL_LOCK_TIMEOUT_MS}ms'`);
    let doing = `create ${PROGRESS_TABLE}`;
    let locked = PROGRESS_TABLE;
    try {
      await s.unsafe(
        `create table if not exists ${q(PROGRESS_TABLE)} (job text not null, sink text not null, checkpoint_id bigint not null, committed_at timestamptz not null default now(), primary key (job, sink, checkpoint_id))`,
      );
      if (o.createTable === true) {
        doing = `create table ${o.table}`;
        locked = o.table;
        const pk = o.key === undefined ? "" : `, primary key (${o.key.map(q).join(", ")})`;
        await s.unsafe(`create table if not exists ${table} (${names.map((n, i) => `${q(n)} ${types[i]}`).join(", ")}${pk})`);
        if (o.timeColumn !== undefined) {
          hypertable = await timescaleAvailable(s);
          if (hypertable) {
            const [has] = await s.unsafe(
              "select 1 from timescaledb_information.hypertables where format('%I.%I', hypertable_schema, hypertable_name)::regclass = $1::regclass",
              [table],
            );
            doing = `make ${o.table} a hypertable on ${o.timeColumn} (create_hypertable, ACCESS EXCLUSIVE lock)`;
            if (has === undefined) await s.unsafe(`select create_hypertable($1::regclass, $2::name, if_not_exists => true, migrate_data => true)`, [table, o.timeColumn]);
          } else {
            // Created in the table's schema; the server cuts a name at 63 bytes (the name is ASCII).
            const index = `${o.table.replace(".", "_")}_${o.timeColumn}_idx`.slice(0, 63);
            const [has] = await s.unsafe("select 1 from pg_class where relname = $2 and relnamespace = (select relnamespace from pg_class where oid = $1::regclass)", [table, index]);
            doing = `create index ${index} on ${o.table} (SHARE lock)`;
            if (has === undefined) await s.unsafe(`create index if not exists ${q(index)} on ${table} (${q(o.timeColumn)})`);
          }
        }
      }
      // (A staging table created by an earlier version has gress_seq bigserial: the sink gives the numbers.)
      const staging = scope.staging;
      doing = `create table ${staging}`;
      locked = staging;
      await s.unsafe(
        `create table if not exists ${staging} (gress_seq bigint, gress_checkpoint bigint not null, ${names.map((n, i) => `${q(n)} ${types[i]}`).join(", ")})`,
      );
      // ALTER TABLE takes an ACCESS EXCLUSIVE lock even when the column is there already: it would wait behind any
      // transaction still open on the staging table (a task's previous owner, cut off mid-COPY). Asked first, it
      // is needed only once.
      if (scope.owner !== undefined) {
        const has = await s.unsafe(`select 1 from pg_attribute where attrelid = $1::regclass and attname = 'gress_owner' and not attisdropped`, [staging]);
        doing = `add column gress_owner to ${staging} (ACCESS EXCLUSIVE lock)`;
        if (has.length === 0) await s.unsafe(`alter table ${staging} add column if not exists gress_owner text`);
      }
    } catch (err) {
      // 55P03 lock_not_available: lock_timeout expired.
      if ((err as { code?: unknown })?.code !== "55P03") throw err;
      throw new Error(
        `could not ${doing}: table ${locked} stayed locked by another transaction for ${DDL_LOCK_TIMEOUT_MS / 1000} s (lock_timeout; all Gress PostgreSQL sinks on the server wait while one creates tables). A prepared transaction left by another sink can hold it: see pg_locks and pg_prepared_xacts (ROLLBACK PREPARED '<gid>' if its job is gone)`,
        { cause: err },
      );
    }
  };

  /** Moves everything this run staged into the table, without a progress row (no checkpoints). */
  const applyAll = async (): Promise<void> => {
    const at = scope;
    await conn().begin(async (tx) => {
      await tx.unsafe(`insert into ${table} (${cols}) ${at.select}${conflict}`, at.owner === undefined ? [Number.MAX_SAFE_INTEGER] : [Number.MAX_SAFE_INTEGER, at.owner]);
      // In a task, another incarnation may be staging into the same table.
      if (at.owner === undefined) await tx.unsafe(`truncate ${at.staging}`);
      else await tx.unsafe(`delete from ${at.staging} where gress_owner = $1`, [at.owner]);
    });
  };

  /** The commit transaction of the checkpoint staged in `at`; does nothing when the progress row exists. */
  const apply = async (checkpointId: number, at: Scope): Promise<void> => {
    const s = conn();
    await s.begin(async (tx) => {
      // In a task, a checkpoint at or below the last committed one is a late commit of an older incarnation
      // (whose rows the newer owner committed or deleted already): nothing to do.
      const inserted = await tx.unsafe(
        at.owner === undefined
          ? `insert into ${q(PROGRESS_TABLE)} (job, sink, checkpoint_id) values ($1, $2, $3) on conflict do nothing returning 1`
          : `insert into ${q(PROGRESS_TABLE)} (job, sink, checkpoint_id) select $1, $2, $3 where not exists (select 1 from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2 and checkpoint_id >= $3) on conflict do nothing returning 1`,
        [at.job, name, checkpointId],
      );
      if (inserted.length === 0) return;
      await tx.unsafe(`insert into ${table} (${cols}) ${at.select}${conflict}`, at.owner === undefined ? [checkpointId] : [checkpointId, at.owner]);
      // Truncating is much cheaper than deleting row by row, and right when nothing later is staged: this run
      // staged nothing above the checkpoint, and recovery (before open) left nothing of an earlier run. In a
      // task, rows at or below the checkpoint are this commit's or void (an older incarnation's, whose
      // checkpoint did not commit); a newer owner stages only above the checkpoint it restored.
      if (at.owner === undefined && opened && stagedUpTo <= checkpointId) await tx.unsafe(`truncate ${at.staging}`);
      else await tx.unsafe(`delete from ${at.staging} where gress_checkpoint <= $1`, [checkpointId]);
      // Keep a short history of progress rows.
      await tx.unsafe(`delete from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2 and checkpoint_id < $3`, [at.job, name, checkpointId - 100]);
    });
  };

  /** One row as a COPY text line (without its end), every column or none: a column that cannot be mapped throws a BadRecordError naming it. */
  const lineOf = (value: T): string => {
    let line = "";
    let i = 0;
    try {
      for (; i < specs.length; i++) {
        if (i > 0) line += "\t";
        line += (converters[i] as (v: unknown) => string)((extractors[i] as (row: T) => unknown)(value));
      }
    } catch (err) {
      throw new BadRecordError(`column "${names[i]}" (${types[i]}): ${err instanceof Error ? err.message : String(err)}`, { cause: err, details: { sink: name } });
    }
    return line;
  };

  const sink: Sink<T> & { readonly hypertable: boolean | undefined; readonly [TASK_SINK]: true } = {
    name,
    // Safe in a scale-out task: idempotent per task (see the module comment).
    [TASK_SINK]: true,
    get hypertable() {
      return hypertable;
    },
    async open(ctx) {
      // Opened again after a restart: the rows buffered by the failed run are replayed from the checkpoint, and
      // a failure of that run (its connection, already ended) does not break this one.
      lines = [];
      values = [];
      times = [];
      stagedUpTo = 0;
      straight = false;
      prepared = false;
      runTag = crypto.randomUUID().slice(0, 8);
      deadLetter = ctx?.deadLetter;
      failure = undefined;
      inflight = Promise.resolve();
      const task = taskIoOf(ctx?.jobName);
      scope = scopeOf(progressJob(ctx?.jobName), task === undefined ? undefined : crypto.randomUUID());
      const s = conn();
      try {
        const twoPhaseRun = !atLeastOnce && task === undefined;
        const maxXacts = twoPhaseRun ? await maxPrepared(s) : 0;
        // Pre-commits of checkpoints that never completed, whichever path this run takes; recovery committed the
        // restored checkpoint's transaction before open (Job: recover() runs before the sinks open). First of all:
        // a leftover holds its rows' lock on the table, and the DDL below could wait on it under the global DDL lock.
        if (maxXacts > 0) await rollbackLeftovers(s);
        await ensureTables(s);
        const fresh = recoveredId === undefined || atLeastOnce;
        if (fresh) {
          // A fresh start: checkpoint ids begin again, so earlier progress rows are void.
          await s.unsafe(`delete from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2`, [scope.job, name]);
        } else lastId = recoveredId as number;
        if (scope.owner === undefined) {
          // Staged rows of a fresh start, or newer than the restored checkpoint, are replayed. (In a task they
          // are another incarnation's, which no commit of this one moves, and which may still be staging.)
          if (fresh) await s.unsafe(`delete from ${scope.staging}`);
          else await s.unsafe(`delete from ${scope.staging} where gress_checkpoint > $1`, [recoveredId as number]);
          const [top] = await s.unsafe(`select coalesce(max(gress_seq), 0)::text as seq from ${scope.staging}`);
          seq = Number(top?.seq ?? 0) + 1;
        } else seq = 1;
        // Without checkpoints nothing is ever restored (recoveredId stays unset), so the run starts fresh.
        const noCheckpoints = ctx !== undefined && ctx.checkpointIntervalMs === undefined && task === undefined && o.key === undefined && !atLeastOnce && recoveredId === undefined;
        if (twoPhaseRun) {
          if (!noCheckpoints && (ctx === undefined || ctx.checkpointIntervalMs !== undefined)) {
            const path = await choosePath(s, false, maxXacts);
            prepared = path.use;
            if (!told) {
              told = true;
              log(`postgres sink "${name}" (table ${o.table}): checkpoints ${prepared ? "commit through PREPARE TRANSACTION (rows written once)" : "go through a staging table (rows written twice)"}: ${path.why}`);
            }
          }
        } else if (twoPhase === "prepared" && task !== undefined) await choosePath(s, true, 0);
        straight = prepared || (noCheckpoints && (await sameColumnTypes(s)));
      } catch (err) {
        throw err instanceof ConfigError ? err : fail("open", err);
      }
      opened = true;
    },
    // write reads the record's fields before it returns and keeps no record object.
    keepsRecords: false,
    write(value, record) {
      lines.push(lineOf(value));
      values.push(value);
      times.push(record?.timestamp ?? 0);
      if (lines.length >= batchSize) {
        // Build the next batch while this one is inserted; hold the writer only if the previous is not done.
        const previous = inflight;
        inflight = flushBuffer(lastId + 1);
        inflight.catch(() => undefined);
        return previous;
      }
    },
    async preCommit(checkpointId): Promise<PostgresSinkHandle> {
      // Opened as part of a job without checkpoints (see `direct`): its rows are not staged, so no checkpoint may take them.
      if (straight && !prepared) throw new SinkError(`postgres sink "${name}": checkpoint ${checkpointId} in a job opened without checkpoints (checkpointIntervalMs unset)`);
      const tag = Math.max(checkpointId, lastId + 1);
      await flushBuffer(tag);
      if (prepared) {
        let gid: string | null = null;
        await afterCopy(`copy checkpoint ${checkpointId}'s rows`, async () => {
          try {
            gid = await prepareDirect(checkpointId);
          } catch (err) {
            throw broken(`prepare checkpoint ${checkpointId}'s transaction`, err);
          }
        });
        lastId = Math.max(lastId, checkpointId);
        return { job: scope.job, sink: name, checkpointId, gid };
      }
      // The checkpoint's rows are staged when its COPY ended.
      await afterCopy(`stage checkpoint ${checkpointId}`, async () => {});
      lastId = Math.max(lastId, checkpointId);
      return scope.owner === undefined ? { job: scope.job, sink: name, checkpointId } : { job: scope.job, sink: name, checkpointId, owner: scope.owner };
    },
    async commit(checkpointId, handle) {
      if (!isHandle(handle)) throw new SinkError(`postgres sink "${name}": checkpoint ${checkpointId} has no valid handle`);
      if (atLeastOnce) return;
      // A lost batch must never be committed as if the checkpoint were complete.
      if (failure !== undefined) throw failure;
      // Recovery calls this before open(): the tables exist, since a checkpoint was taken with this sink.
      if (!opened) recoveredId = Math.max(recoveredId ?? 0, checkpointId);
      const gid = handle.gid;
      if (gid === null) return; // prepared path, no rows in this checkpoint
      if (gid !== undefined) {
        // Needs no COPY to end: the checkpoint's transaction is prepared, and another connection commits it.
        try {
          await commitPrepared(checkpointId, { ...handle, gid });
        } catch (err) {
          throw fail(`commit checkpoint ${checkpointId}`, err);
        }
        return;
      }
      try {
        await afterCopy(`stage rows before checkpoint ${checkpointId}'s commit`, () => apply(checkpointId, scopeOfHandle(handle)));
      } catch (err) {
        throw err === failure ? err : fail(`commit checkpoint ${checkpointId}`, err);
      }
    },
    async abort(checkpointId, handle) {
      if (atLeastOnce) return;
      if (isHandle(handle) && handle.gid !== undefined) {
        if (handle.gid === null) return;
        try {
          await conn().unsafe(`rollback prepared '${handle.gid}'`);
        } catch (err) {
          if (!missing(err)) throw fail(`abort checkpoint ${checkpointId}`, err);
        }
        return;
      }
      const at = isHandle(handle) ? scopeOfHandle(handle) : scope;
      await afterCopy(`stage rows before checkpoint ${checkpointId}'s abort`, async () => {
        if (at.owner === undefined) await conn().unsafe(`delete from ${at.staging} where gress_checkpoint <= $1`, [checkpointId]);
        else await conn().unsafe(`delete from ${at.staging} where gress_checkpoint <= $1 and gress_owner = $2`, [checkpointId, at.owner]);
      });
    },
    async committedCheckpoint(jobName) {
      if (atLeastOnce) return undefined;
      try {
        const [row] = await conn().unsafe(`select max(checkpoint_id)::text as top from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2`, [progressJob(jobName), name]);
        return row?.top === null || row?.top === undefined ? undefined : Number(row.top);
      } catch (err) {
        if ((err as { code?: unknown }).code === "42P01") return undefined; // no progress table yet: nothing committed
        throw fail("read its last committed checkpoint", err);
      }
    },
    async flush() {
      // Without checkpoints (a bounded job), the end of the input commits what is staged; with checkpoints
      // the final checkpoint committed everything and nothing is staged.
      await flushBuffer(lastId + 1);
      await afterCopy("insert a batch", async () => {
        if (atLeastOnce) return;
        try {
          if (straight) await endDirect(true);
          else await applyAll();
        } catch (err) {
          throw fail(straight ? "commit the rows" : "move the staged rows into the table", err);
        }
      });
    },
    async close() {
      await chain;
      // A COPY left open by a failed run: the server drops its rows (they are replayed).
      streaming?.copy.abort();
      streaming = undefined;
      // The transaction of a run without checkpoints that did not reach the end of its input: nothing of it stays.
      await endDirect(false).catch(() => undefined);
      straight = false;
      if (ownSql) await sql?.end({ timeout: 5 });
      sql = undefined;
      // Recovery before the next open() (a restart) reports the restored checkpoint through commit() again,
      // and must commit it: that checkpoint's rows were staged before the failure, which belongs to a later one.
      // The failed run's buffered rows are replayed.
      opened = false;
      failure = undefined;
      lines = [];
      values = [];
      times = [];
      inflight = Promise.resolve();
    },
  };
  return sink;
}
