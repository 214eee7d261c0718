/**
 * The PostgreSQL sink's COPY path on the real server: values only the server can judge become dead letters
 * with its reason and exact counts (in a bounded job and through a checkpoint's pre-commit), the other rows
 * are written, and nothing hangs (each test has a timeout; postgres.js never settles a COPY stream the server
 * refused after it ended, porsager/postgres#1173).
 */
import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import postgres from "postgres";
import { DEAD_LETTERS, Job, record } from "../../lib/index.ts";
import { type PostgresSinkHandle, postgresSink, postgresStagingTable, type Sql } from "../../connectors/postgres/index.ts";

function pgUrl(): string {
  const v = process.env.GRESS_PG_URL;
  if (v === undefined || v === "") throw new Error('GRESS_PG_URL is not set: run `scripts/services up pg` and `eval "$(scripts/services env)"` first');
  return v;
}

let n = 0;
const tableName = (): string => `copy_${process.pid}_${Date.now().toString(36)}_${++n}`;

interface Row {
  readonly id: number;
  readonly reading: string;
  readonly code: string;
}
const columns = {
  id: { type: "integer", value: (r: Row) => r.id },
  reading: { type: "double precision", value: (r: Row) => r.reading },
  code: { type: "varchar(3)", value: (r: Row) => r.code },
};

/** 5,500 rows; some have a reading the server cannot parse or a code longer than varchar(3). */
function rows(): { rows: Row[]; bad: Map<number, RegExp> } {
  const bad = new Map<number, RegExp>();
  const out: Row[] = [];
  for (let id = 0; id < 5_500; id++) {
    let reading = String(id / 4);
    let code = "ok";
    // The first and last row, two rows of one batch next to each other, rows in several batches.
    if (id === 0 || id === 5_499 || id === 2_000 || id === 2_001 || id % 1_301 === 7) {
      reading = "warm";
      bad.set(id, /^sink "r": column "reading": invalid input syntax for type double precision: "warm"$/);
    } else if (id % 1_777 === 3) {
      code = "toolong";
      bad.set(id, /^sink "r": column "code": value too long for type character varying\(3\)$/);
    }
    out.push({ id, reading, code });
  }
  return { rows: out, bad };
}

describe("postgres sink COPY path: bad values (real server)", () => {
  let sql: Sql;
  before(() => {
    sql = postgres(pgUrl(), { max: 1, onnotice: () => {} });
  });
  after(async () => {
    await sql.end({ timeout: 5 });
  });

  it("a bounded job: each value the server refuses is one dead letter with its reason, every other row is written", { timeout: 60_000 }, async () => {
    const table = tableName();
    const { rows: input, bad } = rows();
    const job = new Job({ name: "pg-copy-bad" });
    const dead: { id: number; reason: string }[] = [];
    job
      .fromIterable(input)
      .sinkTo(postgresSink<Row>({ name: "r", job: "pg-copy-bad", url: pgUrl(), table, createTable: true, batchSize: 1_000, columns }))
      .sideRecords(DEAD_LETTERS)
      .subscribe((r) => void dead.push({ id: (r.value as Row).id, reason: r.reason }));
    await job.run();
    assert.equal(dead.length, bad.size, `dead letters: ${dead.map((d) => d.id).join(",")}`);
    assert.deepEqual(
      dead.map((d) => d.id).sort((a, b) => a - b),
      [...bad.keys()].sort((a, b) => a - b),
    );
    for (const d of dead) assert.match(d.reason, bad.get(d.id) as RegExp);
    const written = await sql.unsafe(`select id from "${table}" order by id`);
    assert.deepEqual(
      written.map((r) => r.id),
      input.map((r) => r.id).filter((id) => !bad.has(id)),
    );
    assert.equal(job.metrics.operator("sink:r").deadLetters, bad.size);
    await sql.unsafe(`drop table "${table}"`);
  });

  it("through a checkpoint: the pre-commit reports the bad rows as dead letters, the commit writes the rest exactly once", { timeout: 60_000 }, async () => {
    const table = tableName();
    const { rows: input, bad } = rows();
    const dead: number[] = [];
    const sink = postgresSink<Row>({ name: "r", job: "pg-copy-ckpt", url: pgUrl(), table, createTable: true, batchSize: 700, columns });
    await sink.open?.({ jobName: "pg-copy-ckpt", checkpointIntervalMs: 1_000, deadLetter: (v) => void dead.push((v as Row).id) });
    const half = 3_000;
    for (const r of input.slice(0, half)) await sink.write(r, record(r, r.id));
    const h1 = (await sink.preCommit?.(1)) as PostgresSinkHandle;
    const deadAtFirst = dead.length;
    for (const r of input.slice(half)) await sink.write(r, record(r, r.id));
    const h2 = (await sink.preCommit?.(2)) as PostgresSinkHandle;
    // Everything written before a pre-commit resolved is judged by then: its dead letters come before the barrier.
    assert.equal(deadAtFirst, [...bad.keys()].filter((id) => id < half).length);
    await sink.commit?.(1, h1);
    await sink.commit?.(2, h2);
    await sink.commit?.(2, h2); // idempotent
    await sink.close?.();
    assert.deepEqual(
      dead.sort((a, b) => a - b),
      [...bad.keys()].sort((a, b) => a - b),
    );
    const [c] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids from "${table}"`);
    assert.deepEqual({ ...c }, { n: input.length - bad.size, ids: input.length - bad.size });
    await sql.unsafe(`drop table "${table}"`);
  });

  it("a batch that fits one write, refused after its COPY ended, settles (no hang) and dead-letters the row", { timeout: 30_000 }, async () => {
    const table = tableName();
    const dead: string[] = [];
    const sink = postgresSink<Row>({ name: "r", job: "pg-copy-small", url: pgUrl(), table, createTable: true, columns });
    await sink.open?.({ jobName: "pg-copy-small", checkpointIntervalMs: undefined, deadLetter: (_v, _t, reason) => void dead.push(reason) });
    const only: Row = { id: 1, reading: "warm", code: "ok" };
    await sink.write(only, record(only, 0));
    await sink.flush?.();
    await sink.close?.();
    assert.deepEqual(dead, ['column "reading": invalid input syntax for type double precision: "warm"']);
    const [c] = await sql.unsafe(`select count(*)::int as n from "${table}"`);
    assert.equal(c?.n, 0);
    await sql.unsafe(`drop table "${table}"`);
  });

  it("timestamps keep their exact millisecond across minutes, before 1970, with fractions and at the ends of years 1 to 9999", { timeout: 30_000 }, async () => {
    const table = tableName();
    const times = [0, -1, -0.5, 1.9, 59_999, 60_000, 1_700_000_059_999.7, -62_135_596_800_000, -62_135_596_799_999, 253_402_300_799_999];
    for (let i = 0; i < 500; i++) times.push(1_700_000_000_000 + i * 7_919 - 1_000_000); // across minutes, both ways
    const job = new Job({ name: "pg-copy-times" });
    job
      .fromIterable(times.map((at, id) => ({ id, at })))
      .sinkTo(postgresSink<{ id: number; at: number }>({ name: "t", job: "pg-copy-times", url: pgUrl(), table, createTable: true, columns: { id: { type: "integer", value: (r) => r.id }, at: { type: "timestamptz", value: (r) => r.at } } }));
    await job.run();
    const got = await sql.unsafe(`select id, (extract(epoch from at) * 1000)::float8 as ms from "${table}" order by id`);
    assert.deepEqual(
      got.map((r) => Number(r.ms)),
      times.map((t) => Math.trunc(t) + 0),
    );
    await sql.unsafe(`drop table "${table}"`);
  });

  it("without checkpoints the rows are copied straight into the table in one transaction: none visible before the end of the input, all after, the staging table unused", { timeout: 30_000 }, async () => {
    const table = tableName();
    const sink = postgresSink<Row>({ name: "r", job: "pg-copy-straight", url: pgUrl(), table, createTable: true, batchSize: 1_000, columns });
    await sink.open?.({ jobName: "pg-copy-straight", checkpointIntervalMs: undefined, deadLetter: () => {} });
    const input = Array.from({ length: 2_500 }, (_, id): Row => ({ id, reading: String(id), code: "ok" }));
    for (const r of input) await sink.write(r, record(r, r.id));
    // Two full batches are in the COPY by now (the write of the third waited for the second).
    // This sink's COPY, into its table or into its staging table.
    const staging = postgresStagingTable("pg-copy-straight", "r", table);
    const copying = await sql.unsafe("select query from pg_stat_activity where datname = current_database() and query ilike 'copy %' and (position($1 in query) > 0 or position($2 in query) > 0)", [table, staging]);
    assert.deepEqual(
      copying.map((r) => String(r.query)),
      [`copy "${table}" ("id", "reading", "code") from stdin`],
    );
    const [before] = await sql.unsafe(`select count(*)::int as n from "${table}"`);
    assert.equal(before?.n, 0);
    await sink.flush?.();
    const [after] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids from "${table}"`);
    assert.deepEqual({ ...after }, { n: 2_500, ids: 2_500 });
    await sink.close?.();
    await sql.unsafe(`drop table "${table}"`);
  });

  it("without checkpoints, a run closed before the end of its input (a failed job) leaves nothing in the table and frees the caller's connection", { timeout: 30_000 }, async () => {
    const table = tableName();
    const shared = postgres(pgUrl(), { max: 1, onnotice: () => {} });
    try {
      const sink = postgresSink<Row>({ name: "r", job: "pg-copy-closed", sql: shared, table, createTable: true, batchSize: 1_000, columns });
      await sink.open?.({ jobName: "pg-copy-closed", checkpointIntervalMs: undefined, deadLetter: () => {} });
      for (let id = 0; id < 2_500; id++) {
        const r: Row = { id, reading: String(id), code: "ok" };
        await sink.write(r, record(r, id));
      }
      await sink.close?.();
      const [c] = await sql.unsafe(`select count(*)::int as n from "${table}"`);
      assert.equal(c?.n, 0);
      // The caller's only connection is back in its pool, with no transaction left open on it.
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the sink kept the caller's connection")), 5_000).unref());
      const [state] = await Promise.race([shared.unsafe("select now() = statement_timestamp() as fresh"), timeout]);
      assert.equal(state?.fresh, true);
    } finally {
      await shared.end({ timeout: 5 });
    }
    await sql.unsafe(`drop table "${table}"`);
  });

  it('under onUserError "fail", a value the server refuses fails the job with the reason (no hang)', { timeout: 30_000 }, async () => {
    const table = tableName();
    const job = new Job({ name: "pg-copy-fail", onUserError: "fail" });
    job.fromIterable([{ id: 1, reading: "1", code: "ok" }, { id: 2, reading: "warm", code: "ok" }]).sinkTo(postgresSink<Row>({ name: "r", job: "pg-copy-fail", url: pgUrl(), table, createTable: true, columns }));
    await assert.rejects(job.run(), /sink "r" failed to write: column "reading": invalid input syntax for type double precision: "warm"/);
    await sql.unsafe(`drop table if exists "${table}"`);
  });
});
