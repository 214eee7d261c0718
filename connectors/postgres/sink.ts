/**
 * The PostgreSQL / TimescaleDB sink, exactly-once through a progress table.
 *
 * Rows are typed by a declared column spec (name → PostgreSQL type + value extractor). They are batched in
 * memory and inserted in bulk — one `unnest` of one text array per column, cast to the declared types —
 * into a staging table, tagged with the checkpoint they belong to. (COPY FROM STDIN was measured slower for
 * these batch sizes with postgres.js, and it loses the server's error on a bad value.) `commit(checkpointId)` then runs one transaction:
 *
 *     INSERT INTO gress_sink_progress (job, sink, checkpoint_id) … ON CONFLICT DO NOTHING RETURNING 1
 *     -- only if that inserted the row:
 *     INSERT INTO target SELECT … FROM staging WHERE gress_checkpoint <= $id … ON CONFLICT (key) DO UPDATE …
 *     DELETE FROM staging WHERE gress_checkpoint <= $id
 *
 * so the rows and the progress row become visible together, and committing the same checkpoint again (a
 * retry, or recovery after a crash between the checkpoint and the commit) does nothing. Staged rows newer
 * than the restored checkpoint are deleted on open: the job replays them. A start without a restored
 * checkpoint clears this sink's staging and progress, since its checkpoint ids start again at 1.
 * A restart closes the sink and opens it again: a new connection, an empty batch, and the same recovery as
 * at a start (the restored checkpoint's rows committed, newer staged rows deleted).
 *
 * A row that cannot be built — a column's extractor throws, or its value cannot be one of the column's type
 * (see `toText`) — is refused by `write` with a BadRecordError before anything is buffered, so it goes to
 * dead letters and the batch stays good.
 *
 * With `key`, rows are upserted (the last row per key in a checkpoint wins); without, they are inserted.
 * `createTable` creates the table; with `timeColumn` it becomes a hypertable when the timescaledb extension
 * is installed, and otherwise a plain table with an index on the time column.
 * @module
 */
import postgres from "postgres";
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { BadRecordError, SinkError } from "../../lib/errors.ts";
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
  /** An existing postgres.js connection (not closed by the sink). */
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
  /** Rows per bulk insert. Default 5000. */
  readonly batchSize?: number;
  /** "exactly-once" (default) stages rows until their checkpoint commits; "at-least-once" writes directly. */
  readonly semantic?: "exactly-once" | "at-least-once";
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
  readonly job: string;
  readonly sink: string;
  readonly checkpointId: number;
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

function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** The width in bits of PostgreSQL's integer types: a value of one is in [-2^(bits-1), 2^(bits-1)). */
const INTEGER_BITS: Readonly<Record<string, number>> = { smallint: 16, int2: 16, integer: 32, int: 32, int4: 32, bigint: 64, int8: 64 };

/**
 * Converts one value to the text PostgreSQL parses for `type`, or throws (an Error saying why) when the
 * value cannot be one: a value the server would refuse fails the whole batch, and with it the job, again
 * after every restart. Checked here: integers (an integer within the type's range), timestamps (a valid
 * time), JSON (serialisable: not cyclic or nested too deeply), and NUL characters, which no PostgreSQL text
 * can hold. Other types are passed as text for the server to parse.
 */
function toText(type: string, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const t = type.toLowerCase();
  const bits = INTEGER_BITS[t];
  let text: string;
  if (bits !== undefined) text = integerText(v, t, bits);
  else if ((t.startsWith("timestamp") || t === "date") && (typeof v === "number" || v instanceof Date)) text = timeText(v);
  else if (t === "json" || t === "jsonb") {
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

function timeText(v: number | Date): string {
  const ms = typeof v === "number" ? v : v.getTime();
  // toISOString throws its own RangeError ("Invalid time value") without saying which value it was.
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) throw new RangeError(`not a valid time: ${String(v)}`);
  return new Date(ms).toISOString();
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === "object") return Array.isArray(v) ? "an array" : "an object";
  return `${typeof v} ${String(v)}`;
}

function isHandle(h: unknown): h is PostgresSinkHandle {
  const x = h as PostgresSinkHandle;
  return typeof x === "object" && x !== null && typeof x.checkpointId === "number" && typeof x.job === "string" && typeof x.sink === "string";
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
export function postgresSink<T>(options: PostgresSinkOptions<T>): Sink<T> & { readonly hypertable: boolean | undefined } {
  const o = validate(optionsSchema, options, "postgresSink");
  const name = o.name;
  const names = Object.keys(options.columns);
  const specs = names.map((n) => options.columns[n] as ColumnSpec<T>);
  const types = specs.map((s) => s.type);
  const batchSize = o.batchSize ?? 5000;
  const atLeastOnce = o.semantic === "at-least-once";
  const table = q(o.table);
  const staging = q(`gress_stage_${fnv(`${o.job}\u0000${name}\u0000${o.table}`)}`);
  const cols = names.map(q).join(", ");
  const conflict = (() => {
    if (o.key === undefined) return "";
    const keyCols = o.key.map(q).join(", ");
    const rest = names.filter((n) => !o.key?.includes(n));
    if (o.onConflict === "nothing" || rest.length === 0) return ` on conflict (${keyCols}) do nothing`;
    return ` on conflict (${keyCols}) do update set ${rest.map((n) => `${q(n)} = excluded.${q(n)}`).join(", ")}`;
  })();
  // Several rows with one key in a checkpoint: the last one written wins (ON CONFLICT may touch a row once).
  const applySelect =
    o.key === undefined
      ? `select ${cols} from ${staging} where gress_checkpoint <= $1`
      : `select ${cols} from (select distinct on (${o.key.map(q).join(", ")}) * from ${staging} where gress_checkpoint <= $1 order by ${o.key.map(q).join(", ")}, gress_seq desc) s`;
  const castFrom = names.map((n, i) => `t.${q(n)}::${types[i]}`).join(", ");
  const unnest = `unnest(${names.map((_, i) => `$${i + 2}::text[]`).join(", ")}) as t(${cols})`;
  const stageSql = `insert into ${staging} (gress_checkpoint, ${cols}) select $1::bigint, ${castFrom} from ${unnest}`;

  const ownSql = options.sql === undefined;
  let sql: Sql | undefined = options.sql;
  /** Buffered rows, column by column, as the text PostgreSQL parses. */
  let buffer: (string | null)[][] = names.map(() => []);
  let buffered = 0;
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

  const conn = (): Sql => {
    if (sql === undefined) {
      if (o.url === undefined) throw new SinkError(`postgres sink "${name}": give url or sql`);
      sql = postgres(o.url, { max: 2, onnotice: () => {} });
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

  /** Takes the buffered rows and inserts them (staged under `tag`, or directly). */
  const flushBuffer = (tag: number): Promise<void> => {
    if (failure !== undefined) return Promise.reject(failure);
    if (buffered === 0) return run(async () => {});
    const columns = buffer;
    buffer = names.map(() => []);
    buffered = 0;
    return run(async () => {
      try {
        await conn().unsafe(stageSql, [tag, ...columns] as never);
        // At-least-once: what is staged goes to the table right away.
        if (atLeastOnce) await applyAll();
      } catch (err) {
        // The job fails on this error: release our connections now rather than at close(). The caller's
        // connection stays: a restart opens the sink again on it (postgres.js reconnects by itself).
        if (ownSql) {
          void sql?.end({ timeout: 0 });
          sql = undefined;
        }
        failure = fail("insert a batch", err);
        throw failure;
      }
    });
  };

  const ensureTables = async (s: Sql): Promise<void> => {
    await s.unsafe(
      `create table if not exists ${q(PROGRESS_TABLE)} (job text not null, sink text not null, checkpoint_id bigint not null, committed_at timestamptz not null default now(), primary key (job, sink, checkpoint_id))`,
    );
    if (o.createTable === true) {
      const pk = o.key === undefined ? "" : `, primary key (${o.key.map(q).join(", ")})`;
      await s.unsafe(`create table if not exists ${table} (${names.map((n, i) => `${q(n)} ${types[i]}`).join(", ")}${pk})`);
      if (o.timeColumn !== undefined) {
        hypertable = await timescaleAvailable(s);
        if (hypertable) await s.unsafe(`select create_hypertable($1::regclass, $2::name, if_not_exists => true, migrate_data => true)`, [o.table, o.timeColumn]);
        else await s.unsafe(`create index if not exists ${q(`${o.table.replace(".", "_")}_${o.timeColumn}_idx`)} on ${table} (${q(o.timeColumn)})`);
      }
    }
    await s.unsafe(
      `create table if not exists ${staging} (gress_seq bigserial, gress_checkpoint bigint not null, ${names.map((n, i) => `${q(n)} ${types[i]}`).join(", ")})`,
    );
  };

  /** Moves everything staged into the table, without a progress row (no checkpoints). */
  const applyAll = async (): Promise<void> => {
    await conn().begin(async (tx) => {
      await tx.unsafe(`insert into ${table} (${cols}) ${applySelect}${conflict}`, [Number.MAX_SAFE_INTEGER]);
      await tx.unsafe(`delete from ${staging}`);
    });
  };

  /** The commit transaction; does nothing when the progress row exists. */
  const apply = async (checkpointId: number): Promise<void> => {
    const s = conn();
    await s.begin(async (tx) => {
      const inserted = await tx.unsafe(
        `insert into ${q(PROGRESS_TABLE)} (job, sink, checkpoint_id) values ($1, $2, $3) on conflict do nothing returning 1`,
        [o.job, name, checkpointId],
      );
      if (inserted.length === 0) return;
      await tx.unsafe(`insert into ${table} (${cols}) ${applySelect}${conflict}`, [checkpointId]);
      await tx.unsafe(`delete from ${staging} where gress_checkpoint <= $1`, [checkpointId]);
      // Keep a short history of progress rows.
      await tx.unsafe(`delete from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2 and checkpoint_id < $3`, [o.job, name, checkpointId - 100]);
    });
  };

  /** One row as text, every column or none: a column that cannot be mapped throws a BadRecordError naming it. */
  const rowOf = (value: T): (string | null)[] => {
    const row: (string | null)[] = new Array(specs.length);
    let i = 0;
    try {
      for (; i < specs.length; i++) row[i] = toText(types[i] as string, (specs[i] as ColumnSpec<T>).value(value));
    } catch (err) {
      throw new BadRecordError(`column "${names[i]}" (${types[i]}): ${err instanceof Error ? err.message : String(err)}`, { cause: err, details: { sink: name } });
    }
    return row;
  };

  const sink: Sink<T> & { readonly hypertable: boolean | undefined } = {
    name,
    get hypertable() {
      return hypertable;
    },
    async open() {
      // Opened again after a restart: the rows buffered by the failed run are replayed from the checkpoint, and
      // a failure of that run (its connection, already ended) does not break this one.
      buffer = names.map(() => []);
      buffered = 0;
      failure = undefined;
      inflight = Promise.resolve();
      const s = conn();
      try {
        await ensureTables(s);
          if (recoveredId === undefined || atLeastOnce) {
            // A fresh start: checkpoint ids begin again, so earlier progress and staged rows are void.
            await s.unsafe(`delete from ${staging}`);
            await s.unsafe(`delete from ${q(PROGRESS_TABLE)} where job = $1 and sink = $2`, [o.job, name]);
          } else {
            await s.unsafe(`delete from ${staging} where gress_checkpoint > $1`, [recoveredId]);
            lastId = recoveredId;
          }
      } catch (err) {
        throw fail("open", err);
      }
      opened = true;
    },
    write(value) {
      const row = rowOf(value);
      for (let i = 0; i < row.length; i++) (buffer[i] as (string | null)[]).push(row[i] as string | null);
      if (++buffered >= batchSize) {
        // Build the next batch while this one is inserted; hold the writer only if the previous is not done.
        const previous = inflight;
        inflight = flushBuffer(lastId + 1);
        inflight.catch(() => undefined);
        return previous;
      }
    },
    async preCommit(checkpointId): Promise<PostgresSinkHandle> {
      const tag = Math.max(checkpointId, lastId + 1);
      await flushBuffer(tag);
      lastId = Math.max(lastId, checkpointId);
      return { job: o.job, sink: name, checkpointId };
    },
    async commit(checkpointId, handle) {
      if (!isHandle(handle)) throw new SinkError(`postgres sink "${name}": checkpoint ${checkpointId} has no valid handle`);
      if (atLeastOnce) return;
      // A lost batch must never be committed as if the checkpoint were complete.
      if (failure !== undefined) throw failure;
      // Recovery calls this before open(): the tables exist, since a checkpoint was taken with this sink.
      if (!opened) recoveredId = Math.max(recoveredId ?? 0, checkpointId);
      try {
        await run(() => apply(checkpointId));
      } catch (err) {
        throw fail(`commit checkpoint ${checkpointId}`, err);
      }
    },
    async abort(checkpointId) {
      if (atLeastOnce) return;
      await run(async () => {
        await conn().unsafe(`delete from ${staging} where gress_checkpoint <= $1`, [checkpointId]);
      });
    },
    async flush() {
      // Without checkpoints (a bounded job), the end of the input commits what is staged; with checkpoints
      // the final checkpoint committed everything and nothing is staged.
      await flushBuffer(lastId + 1);
      if (!atLeastOnce) await run(applyAll);
    },
    async close() {
      await chain;
      if (ownSql) await sql?.end({ timeout: 5 });
      sql = undefined;
      // Recovery before the next open() (a restart) reports the restored checkpoint through commit() again,
      // and must commit it: that checkpoint's rows were staged before the failure, which belongs to a later one.
      // The failed run's buffered rows are replayed.
      opened = false;
      failure = undefined;
      buffer = names.map(() => []);
      buffered = 0;
      inflight = Promise.resolve();
    },
  };
  return sink;
}
