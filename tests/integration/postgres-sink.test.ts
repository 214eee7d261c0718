import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import postgres from "postgres";
import { writeSavepoint } from "../../lib/checkpoint/savepoint.ts";
import { DEAD_LETTERS, generator, Job, lmdbState, record } from "../../lib/index.ts";
import { type PostgresSinkHandle, postgresSink, type Sql, timescaleAvailable } from "../../connectors/postgres/index.ts";
import { LIVE_ANALYTICS_SQL } from "../../scripts/dashboards.ts";
import { childCommand } from "../crash/harness.ts";

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
const NO_TIMESCALE =
  "the timescaledb extension is not in the test database: `scripts/services up pg` builds it, preloads it and creates it (a server started before it was built needs `scripts/services down pg` and `up pg`)";
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

  it("without TimescaleDB the time column gets an index on a plain table", { timeout: 120_000 }, async () => {
    // A database of its own, where the extension was never created (the test database has it).
    const db = `gress_plain_${process.pid}_${Date.now().toString(36)}`;
    await sql.unsafe(`create database ${db}`);
    const url = new URL(pgUrl());
    url.pathname = `/${db}`;
    const other = postgres(url.href, { max: 1, onnotice: () => {} });
    try {
      assert.equal(await timescaleAvailable(other), false);
      const table = tableName();
      const sink = postgresSink<Reading>({ name: "r", job: "pg-plain", sql: other, table, columns, createTable: true, timeColumn: "at" });
      await sink.open?.();
      await sink.close?.();
      assert.equal(sink.hypertable, false);
      const idx = await other`select indexdef from pg_indexes where tablename = ${table}`;
      assert.ok(idx.some((i) => /\(at\)/.test(String(i.indexdef))), JSON.stringify(idx));
    } finally {
      await other.end({ timeout: 5 });
      await sql.unsafe(`drop database if exists ${db}`);
    }
  });

  it("with TimescaleDB the table becomes a hypertable on the time column", { timeout: 120_000 }, async () => {
    assert.ok(await timescaleAvailable(sql), NO_TIMESCALE);
    const table = tableName();
    const sink = postgresSink<Reading>({ name: "r", job: "pg-hyper", url: pgUrl(), table, columns, createTable: true, timeColumn: "at" });
    await sink.open?.();
    await sink.close?.();
    assert.equal(sink.hypertable, true);
    const dims = await sql`select column_name from timescaledb_information.dimensions where hypertable_name = ${table}`;
    assert.deepEqual(
      dims.map((d) => d.column_name),
      ["at"],
    );
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

  it("a value the server rejects, which the sink cannot check itself, is a dead letter with the server's reason (more: postgres-copy.test.ts)", { timeout: 120_000 }, async () => {
    const table = tableName();
    const job = new Job({ name: "pg-bad" });
    const dead: string[] = [];
    job
      .fromIterable([{ device: "x", at: 0, celsius: 1 }])
      .sinkTo(postgresSink<Reading>({ name: "r", job: "pg-bad", url: pgUrl(), table, createTable: true, columns: { ...columns, celsius: { type: "double precision", value: () => "warm" } } }))
      .sideRecords(DEAD_LETTERS)
      .subscribe((r) => void dead.push(r.reason));
    await job.run();
    assert.deepEqual(dead, ['sink "r": column "celsius": invalid input syntax for type double precision: "warm"']);
  });

  it("a failure that is no bad value (the table's column type does not match) fails the job with an error naming the sink and table", { timeout: 120_000 }, async () => {
    const table = tableName();
    await sql.unsafe(`create table "${table}" (device text, at timestamptz, celsius double precision, meta jsonb)`);
    const job = new Job({ name: "pg-bad-table" });
    job
      .fromIterable([{ device: "x", at: 0, celsius: 1 }])
      .sinkTo(postgresSink<Reading>({ name: "r", job: "pg-bad-table", url: pgUrl(), table, columns: { ...columns, at: { type: "bigint", value: (r) => r.at } } }));
    await assert.rejects(job.run(), (e: Error) => /postgres sink "r" \(table readings_\w+\) failed to move the staged rows into the table: column "at" is of type timestamp with time zone but expression is of type bigint/.test(e.message));
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
describe("postgres sink: a job restored from an older savepoint (real server)", () => {
  let sql: Sql;
  before(() => {
    sql = postgres(pgUrl(), { max: 2, onnotice: () => {} });
  });
  after(async () => {
    await sql.end({ timeout: 5 });
  });

  for (const twoPhase of ["prepared", "staging"] as const) {
    it(`writes the output of the events after the savepoint again, none skipped (${twoPhase})`, { timeout: 120_000 }, async () => {
      // Run 1 ends at checkpoint n (the savepoint), run 2 continues its state directory to m > n and commits
      // progress rows up to m. Restored into a fresh directory, the job must not take its checkpoints n + 1..m
      // for the ones committed before: a new version of the job (v2) writes every event after the savepoint.
      // (The sink also clears its progress rows when it opens without a restored handle, which a savepoint
      // does not carry; the ids now continue above m too, which the log line checks.)
      const table = tableName();
      const name = uniqueJob();
      const dirs = mkdtempSync(join(tmpdir(), "gress-pg-sp-"));
      try {
        const runOnce = async (stateDir: string, count: number, version: string, fromSavepoint?: string): Promise<string[]> => {
          const logs: string[] = [];
          const job = new Job({ name, state: lmdbState({ path: stateDir }), checkpoints: { intervalMs: 50, ...(fromSavepoint === undefined ? {} : { fromSavepoint }), log: (m) => logs.push(m) } });
          job
            .source(generator({ name: "events", seed: 3, count, make: (i) => ({ i }) }))
            .sinkTo(
              postgresSink<{ i: number }>({
                name: "out",
                job: name,
                url: pgUrl(),
                table,
                createTable: true,
                twoPhase,
                columns: { i: { type: "integer", value: (e) => e.i }, version: { type: "text", value: () => version } },
                log: () => {},
              }),
            );
          await job.run();
          await job.state.close();
          return logs;
        };
        const state = join(dirs, "state");
        await runOnce(state, 2_000, "v1");
        const sp = join(dirs, "sp");
        const info = await writeSavepoint(state, sp);
        await runOnce(state, 4_000, "v1");
        const [progress] = await sql.unsafe(`select max(checkpoint_id)::int as top from gress_sink_progress where job = $1 and sink = 'out'`, [name]);
        const top = progress?.top as number;
        assert.ok(top > info.checkpointId, `run 2 committed checkpoints after the savepoint's ${info.checkpointId} (up to ${top})`);

        const logs = await runOnce(join(dirs, "fresh"), 4_000, "v2", sp);
        const rows = await sql.unsafe(`select i from "${table}" where version = 'v2' order by i`);
        assert.deepEqual(
          rows.map((r) => r.i),
          Array.from({ length: 2_000 }, (_, k) => 2_000 + k),
          "the restored job wrote every event after the savepoint",
        );
        const [v1] = await sql.unsafe(`select count(*)::int as n, count(distinct i)::int as d from "${table}" where version = 'v1'`);
        assert.deepEqual([v1?.n, v1?.d], [4_000, 4_000], "the earlier runs' rows are there once each");
        assert.ok(logs.some((m) => m.includes(`checkpoint ids continue from ${top + 1}`)), logs.join("\n"));
      } finally {
        rmSync(dirs, { recursive: true, force: true });
      }
    });
  }
});

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

/** Runs the TimescaleDB job in a child; kills it `killAfterMs` after records flow, or lets it finish (undefined). */
function runTimescaleJob(args: string, killAfterMs: number | undefined): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, argv] = childCommand(TIMESCALE_JOB);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...argv, args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    child.stdout.on("data", (d: Uint8Array) => {
      stdout += String(d);
      if (killAfterMs !== undefined && timer === undefined && stdout.includes("running")) timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    });
    child.stderr.on("data", (d: Uint8Array) => (stderr += String(d)));
    child.on("error", reject);
    child.on("close", (code) => {
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const TIMESCALE_JOB = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "postgres-timescale-job.ts");

describe("TimescaleDB: a checkpointed job killed with SIGKILL writes readings and their 1-minute counts into hypertables (real server)", () => {
  const N = 9_000; // 450 s of event time at 20 readings/s: 8 whole minutes and a part
  const readings = tableName();
  const counts = `${readings}_counts`;
  const dir = mkdtempSync(join(tmpdir(), "gress-pg-timescale-"));
  let sql: Sql;
  let kills = 0;
  let runs = 0;
  before(async () => {
    sql = postgres(pgUrl(), { max: 2, onnotice: () => {} });
    assert.ok(await timescaleAvailable(sql), NO_TIMESCALE);
    const args = JSON.stringify({ url: pgUrl(), readings, counts, stateDir: join(dir, "state"), count: N, ratePerSecond: 3_000 });
    // Kill the job at different moments of its 3 s run until it finishes by itself.
    for (const delay of [400, 900, 250, 1_300, 600, undefined, undefined]) {
      const r = await runTimescaleJob(args, delay);
      runs++;
      if (r.stdout.includes("done")) break;
      if (r.code !== null) throw new Error(`the job failed (exit ${r.code}):\n${r.stderr.slice(-3000)}`);
      kills++;
    }
  });
  after(async () => {
    await sql.end({ timeout: 5 });
    rmSync(dir, { recursive: true, force: true });
  });

  it("both tables are hypertables on their time columns", { timeout: 60_000 }, async () => {
    const rows = await sql`select hypertable_name, column_name from timescaledb_information.dimensions where hypertable_name in (${readings}, ${counts}) order by 1`;
    assert.deepEqual(
      rows.map((r) => `${r.hypertable_name}.${r.column_name}`),
      [`${readings}.at`, `${counts}.window_start`],
    );
  });

  it("every reading is written exactly once across the kills", { timeout: 60_000 }, async (t) => {
    t.diagnostic(`${kills} kills with SIGKILL in ${runs} runs`);
    assert.ok(kills >= 3, `at least 3 kills before the job finished (${kills} kills in ${runs} runs)`);
    const [r] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids, min(id)::int as lo, max(id)::int as hi from "${readings}"`);
    assert.deepEqual({ ...r }, { n: N, ids: N, lo: 0, hi: N - 1 });
  });

  it("a time_bucket query over the readings gives exactly the pipeline's window counts", { timeout: 60_000 }, async () => {
    const bucketed = await sql.unsafe(
      `select device, extract(epoch from time_bucket('1 minute', at))::bigint * 1000 as start, count(*)::int as n from "${readings}" group by 1, 2 order by 1, 2`,
    );
    const windows = await sql.unsafe(`select device, extract(epoch from window_start)::bigint * 1000 as start, readings::int as n from "${counts}" order by 1, 2`);
    const rows = (xs: readonly Record<string, unknown>[]): string[] => xs.map((x) => `${x.device} ${Number(x.start)} ${x.n}`);
    assert.ok(windows.length >= 3 * 8, `${windows.length} windows`);
    // Each window once (no duplicate after a kill), and the same rows as the database's own bucketing.
    assert.deepEqual(rows(windows), rows(bucketed));
  });
});

describe("the Live analytics dashboard's SQL on TimescaleDB (real server)", () => {
  it("its time_bucket queries run on a hypertable like the example's and give the per-minute counts", { timeout: 60_000 }, async () => {
    const sql = postgres(pgUrl(), { max: 1, onnotice: () => {} });
    const schema = `dash_${process.pid}_${Date.now().toString(36)}`;
    try {
      assert.ok(await timescaleAvailable(sql), NO_TIMESCALE);
      await sql.begin(async (tx) => {
        // The example's table (see examples/live-analytics.ts), in a schema of its own so that the dashboard's
        // unqualified "action_counts" finds it.
        await tx.unsafe(`create schema ${schema}`);
        await tx.unsafe(`set local search_path to ${schema}, public`);
        await tx.unsafe("create table action_counts (action text not null, window_start timestamptz not null, window_end timestamptz not null, clicks bigint not null, primary key (action, window_start))");
        await tx.unsafe("select create_hypertable('action_counts', 'window_start')");
        const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);
        // Sliding windows every 10 s over two minutes: view grows, buy stays at 2.
        for (let i = 0; i < 12; i++) {
          const start = new Date(t0 + i * 10_000);
          const end = new Date(t0 + i * 10_000 + 60_000);
          await tx`insert into action_counts values ('view', ${start}, ${end}, ${10 + i}), ('buy', ${start}, ${end}, 2)`;
        }
        // Grafana's $__timeFilter(col) for the dashboard's time range.
        const grafana = (q: string): string => q.replace(/\$__timeFilter\((\w+)\)/g, "$1 BETWEEN '2026-01-01T11:00:00Z' AND '2026-01-01T13:00:00Z'");
        const perMinute = await tx.unsafe(grafana(LIVE_ANALYTICS_SQL.perMinute));
        assert.deepEqual(
          perMinute.map((r) => `${(r.time as Date).toISOString()} ${r.metric} ${r.value}`).sort(),
          ["2026-01-01T12:00:00.000Z buy 2", "2026-01-01T12:00:00.000Z view 15", "2026-01-01T12:01:00.000Z buy 2", "2026-01-01T12:01:00.000Z view 21"],
        );
        const total = await tx.unsafe(grafana(LIVE_ANALYTICS_SQL.total));
        assert.deepEqual(
          total.map((r) => `${(r.time as Date).toISOString()} ${r.clicks}`),
          ["2026-01-01T12:00:00.000Z 17", "2026-01-01T12:01:00.000Z 23"],
        );
        const [latest] = await tx.unsafe(LIVE_ANALYTICS_SQL.latest);
        assert.equal((latest?.latest as Date | undefined)?.toISOString(), "2026-01-01T12:01:50.000Z");
        await tx.unsafe(`drop schema ${schema} cascade`);
      });
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});
