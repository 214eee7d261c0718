import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import postgres from "postgres";
import { DEAD_LETTERS, Job, record } from "../../lib/index.ts";
import { type PostgresSinkHandle, postgresSink, type Sql, timescaleAvailable } from "../../connectors/postgres/index.ts";

function pgUrl(): string {
  const v = process.env.GRESS_PG_URL;
  if (v === undefined || v === "") throw new Error('GRESS_PG_URL is not set: run `scripts/services up pg` and `eval "$(scripts/services env)"` first');
  return v;
}

interface Reading {
  readonly device: string;
  readonly at: number;
  readonly celsius: number;
  readonly meta?: Record<string, unknown>;
}
const columns = {
  device: { type: "text", value: (r: Reading) => r.device },
  at: { type: "timestamptz", value: (r: Reading) => r.at },
  celsius: { type: "double precision", value: (r: Reading) => r.celsius },
  meta: { type: "jsonb", value: (r: Reading) => r.meta ?? null },
};
let n = 0;
const tableName = (): string => `readings_${process.pid}_${Date.now().toString(36)}_${++n}`;

describe("postgres sink (real server)", () => {
  let sql: Sql;
  before(() => {
    sql = postgres(pgUrl(), { max: 2, onnotice: () => {} });
  });
  after(async () => {
    await sql.end({ timeout: 5 });
  });

  it("a bounded job writes typed rows into a created table, upserting on the key", { timeout: 120_000 }, async () => {
    const table = tableName();
    const job = new Job({ name: "pg-typed" });
    const readings: Reading[] = [
      ...Array.from({ length: 12_000 }, (_, i) => ({ device: `d${i % 10}`, at: 1_700_000_000_000 + i * 1000, celsius: i / 4 })),
      { device: "d0", at: 1_700_000_000_000, celsius: -1, meta: { fixed: true } }, // same key as the first: wins
    ];
    const sink = postgresSink<Reading>({ name: "readings", job: "pg-typed", url: pgUrl(), table, columns, key: ["device", "at"], createTable: true, timeColumn: "at", batchSize: 5000 });
    job.fromIterable(readings).sinkTo(sink);
    await job.run();
    const [count] = await sql.unsafe(`select count(*)::int as n from "${table}"`);
    assert.equal(count?.n, 12_000);
    const [first] = await sql.unsafe(`select device, at, celsius, meta from "${table}" where device = 'd0' and at = $1`, [new Date(1_700_000_000_000)]);
    assert.equal(first?.celsius, -1);
    assert.deepEqual(first?.meta, { fixed: true });
    assert.ok(first?.at instanceof Date && first.at.getTime() === 1_700_000_000_000);
    const types = await sql`select column_name, data_type from information_schema.columns where table_name = ${table} order by ordinal_position`;
    assert.deepEqual(
      types.map((t) => `${t.column_name}:${t.data_type}`),
      ["device:text", "at:timestamp with time zone", "celsius:double precision", "meta:jsonb"],
    );
  });

  it("without TimescaleDB the time column gets an index on a plain table", { timeout: 120_000 }, async (t) => {
    if (await timescaleAvailable(sql)) return t.skip("timescaledb is installed here; the hypertable test covers it");
    const table = tableName();
    const sink = postgresSink<Reading>({ name: "r", job: "pg-plain", url: pgUrl(), table, columns, createTable: true, timeColumn: "at" });
    await sink.open?.();
    await sink.close?.();
    assert.equal(sink.hypertable, false);
    const idx = await sql`select indexdef from pg_indexes where tablename = ${table}`;
    assert.ok(idx.some((i) => /\(at\)/.test(String(i.indexdef))), JSON.stringify(idx));
  });

  it("with TimescaleDB the table becomes a hypertable", { timeout: 120_000 }, async (t) => {
    if (!(await timescaleAvailable(sql))) {
      return t.skip("the timescaledb extension is not installed on this PostgreSQL (not packaged for Debian 12); hypertable path not run");
    }
    const table = tableName();
    const sink = postgresSink<Reading>({ name: "r", job: "pg-hyper", url: pgUrl(), table, columns, createTable: true, timeColumn: "at" });
    await sink.open?.();
    await sink.close?.();
    assert.equal(sink.hypertable, true);
  });

  it("rows become visible only at commit, together with the progress row; committing again does nothing", { timeout: 120_000 }, async () => {
    const table = tableName();
    const opts = { name: "r", job: uniqueJob(), url: pgUrl(), table, columns, createTable: true };
    const sink = postgresSink<Reading>(opts);
    await sink.open?.();
    for (let i = 0; i < 10; i++) await sink.write({ device: "a", at: i, celsius: i }, record({ device: "a", at: i, celsius: i }, i));
    const h1 = (await sink.preCommit?.(1)) as PostgresSinkHandle;
    assert.equal((await sql.unsafe(`select count(*)::int as n from "${table}"`))[0]?.n, 0, "nothing visible before commit");
    await sink.commit?.(1, h1);
    await sink.commit?.(1, h1);
    assert.equal((await sql.unsafe(`select count(*)::int as n from "${table}"`))[0]?.n, 10);
    const progress = await sql`select checkpoint_id from gress_sink_progress where job = ${opts.job} and sink = 'r'`;
    assert.deepEqual(progress.map((p) => Number(p.checkpoint_id)), [1]);

    // Checkpoint 2 is pre-committed and recorded, then the process dies before commit; rows of a later,
    // never-completed checkpoint 3 are staged too.
    for (let i = 10; i < 15; i++) await sink.write({ device: "a", at: i, celsius: i }, record({ device: "a", at: i, celsius: i }, i));
    const h2 = JSON.parse(JSON.stringify(await sink.preCommit?.(2))) as PostgresSinkHandle;
    for (let i = 15; i < 18; i++) await sink.write({ device: "a", at: i, celsius: i }, record({ device: "a", at: i, celsius: i }, i));
    await sink.preCommit?.(3);
    await sink.close?.();

    // Recovery: a new sink commits checkpoint 2 from its handle, then opens; checkpoint 3's rows are dropped.
    const again = postgresSink<Reading>(opts);
    await again.commit?.(2, h2);
    await again.open?.();
    await again.commit?.(2, h2);
    await again.flush?.();
    await again.close?.();
    const rows = await sql.unsafe(`select extract(epoch from at) * 1000 as at from "${table}" order by at`);
    assert.deepEqual(
      rows.map((r) => Number(r.at)),
      Array.from({ length: 15 }, (_, i) => i),
    );
  });

  it("a value the server rejects, which the sink cannot check itself, fails the job with an error naming the sink and table", { timeout: 120_000 }, async () => {
    const table = tableName();
    const job = new Job({ name: "pg-bad" });
    job
      .fromIterable([{ device: "x", at: 0, celsius: 1 }])
      .sinkTo(postgresSink<Reading>({ name: "r", job: "pg-bad", url: pgUrl(), table, createTable: true, columns: { ...columns, celsius: { type: "double precision", value: () => "warm" } } }));
    await assert.rejects(job.run(), (e: Error) => /postgres sink "r" \(table readings_\w+\) failed to insert a batch: .*invalid input syntax for type double precision/.test(e.message));
  });

  it("a value the sink can tell is no integer is a dead letter naming the column; the batch is inserted without it", { timeout: 120_000 }, async () => {
    const table = tableName();
    const job = new Job({ name: "pg-bad-int" });
    const dead: string[] = [];
    job
      .fromIterable([{ device: "x", at: 0, celsius: 1 }, { device: "y", at: 1, celsius: Number.NaN }, { device: "z", at: 2, celsius: 3 }])
      .sinkTo(postgresSink<Reading>({ name: "r", job: "pg-bad-int", url: pgUrl(), table, createTable: true, columns: { ...columns, celsius: { type: "integer", value: (r) => r.celsius } } }))
      .sideRecords(DEAD_LETTERS)
      .subscribe((r) => void dead.push(r.reason));
    await job.run();
    assert.deepEqual(dead, ['sink "r": column "celsius" (integer): integer needs an integer, got number NaN']);
    const sql = postgres(pgUrl(), { max: 1, onnotice: () => {} });
    try {
      const rows = await sql.unsafe(`select device from "${table}" order by device`);
      assert.deepEqual(
        rows.map((r) => r.device),
        ["x", "z"],
      );
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});

let jobs = 0;
function uniqueJob(): string {
  return `pg-job-${process.pid}-${++jobs}`;
}

describe("postgres sink text escaping (real server)", () => {
  it("tabs, newlines, backslashes and quotes in text and jsonb survive the bulk load unchanged", { timeout: 120_000 }, async () => {
    const sql = postgres(pgUrl(), { max: 1, onnotice: () => {} });
    try {
      const table = tableName();
      const nasty = ["a\tb", "line1\nline2\r\n", "back\\slash \\N", "quote ' \" ", "\\.", "ünïcødé ✓"];
      const job = new Job({ name: "pg-escape" });
      job
        .fromIterable(nasty.map((text, i) => ({ i, text })))
        .sinkTo(
          postgresSink<{ i: number; text: string }>({
            name: "r",
            job: "pg-escape",
            url: pgUrl(),
            table,
            createTable: true,
            columns: { i: { type: "integer", value: (r) => r.i }, text: { type: "text", value: (r) => r.text }, doc: { type: "jsonb", value: (r) => ({ t: r.text }) } },
          }),
        );
      await job.run();
      const rows = await sql.unsafe(`select i, text, doc from "${table}" order by i`);
      assert.deepEqual(
        rows.map((r) => r.text),
        nasty,
      );
      assert.deepEqual(
        rows.map((r) => (r.doc as { t: string }).t),
        nasty,
      );
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});
