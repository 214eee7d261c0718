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
 *
 * With `key`, rows are upserted (the last row per key in a checkpoint wins); without, they are inserted.
 * `createTable` creates the table; with `timeColumn` it becomes a hypertable when the timescaledb extension
 * is installed, and otherwise a plain table with an index on the time column.
 * @module
 */
import postgres from "postgres";
import { z } from "zod";
import { validate } from "../../lib/config.ts";
import { SinkError } from "../../lib/errors.ts";
import type { Sink } from "../../lib/sink.ts";

/** A postgres.js connection (the `sql` function). */
export type Sql = postgres.Sql;

/** One column of the target table: its PostgreSQL type and how to get its value from a result. */
export interface ColumnSpec<T> {
  /** A PostgreSQL type: bigint, integer, double precision, numeric, text, boolean, timestamptz, jsonb, ... */
  readonly type: string;
  /** The column's value. Numbers for timestamp types are epoch milliseconds. null/undefined → NULL. */
  readonly value: (row: T) => unknown;
}

/** Options of {@link postgresSink}. */
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

/** The handle the sink stores in a checkpoint. */
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

/** The progress table shared by all PostgreSQL sinks. */
export const PROGRESS_TABLE = "gress_sink_progress";

const q = (name: string): string => name.split(".").map((p) => `"${p.replace(/"/g, '""')}"`).join(".");

/** True when the timescaledb extension is installed in the database. */
export async function timescaleAvailable(sql: Sql): Promise<boolean> {
  const rows = await sql`select 1 from pg_extension where extname = 'timescaledb'`;
  return rows.length > 0;
}

function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** Converts one value to the text PostgreSQL parses for `type`. */
function toText(type: string, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const t = type.toLowerCase();
  if (t.startsWith("timestamp") || t === "date") {
    if (typeof v === "number") return new Date(v).toISOString();
    if (v instanceof Date) return v.toISOString();
  }
  if (t === "json" || t === "jsonb") return JSON.stringify(v);
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
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
 * counts.sinkTo(postgresSink({
 *   name: "counts", job: "live", url: process.env.GRESS_PG_URL, table: "action_counts", createTable: true,
 *   columns: { action: { type: "text", value: (r) => r.key }, window_end: { type: "timestamptz", value: (r) => r.end },
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
        // The job fails on this error: release our connections now rather than at close().
        if (ownSql) void sql?.end({ timeout: 0 });
        sql = undefined;
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

  const sink: Sink<T> & { readonly hypertable: boolean | undefined } = {
    name,
    get hypertable() {
      return hypertable;
    },
    async open() {
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
      for (let i = 0; i < specs.length; i++) {
        (buffer[i] as (string | null)[]).push(toText(types[i] as string, (specs[i] as ColumnSpec<T>).value(value)));
      }
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
    },
  };
  return sink;
}
