/**
 * The PostgreSQL sink's prepared path (`twoPhase`, PREPARE TRANSACTION / COMMIT PREPARED) on a real server:
 * exactly once across a crash between a checkpoint's pre-commit and its commit (the prepared transaction is
 * left, the restored job commits it) and across a crash before the checkpoint completed (the leftover is rolled
 * back and its rows replayed); a value the server refuses is a dead letter there too; and on a server with
 * `max_prepared_transactions = 0` the sink falls back to its staging table (or, forced, refuses to start).
 *
 * The prepared tests use GRESS_PG_URL when that server allows prepared transactions (scripts/services sets
 * max_prepared_transactions), and otherwise a scratch server of the same PostgreSQL binaries started here; the
 * fallback test always has a server with 0 (GRESS_PG_URL's, or a scratch one). Which one is printed.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import postgres from "postgres";
import { type PostgresSinkHandle, postgresSink, type Sql } from "../../connectors/postgres/index.ts";
import { ConfigError, record } from "../../lib/index.ts";
import { childCommand } from "../crash/harness.ts";
import { freePort } from "../support/tcp-proxy.ts";

function pgUrl(): string {
  const v = process.env.GRESS_PG_URL;
  if (v === undefined || v === "") throw new Error('GRESS_PG_URL is not set: run `scripts/services up pg` and `eval "$(scripts/services env)"` first');
  return v;
}

let n = 0;
const tableName = (): string => `prep_${process.pid}_${Date.now().toString(36)}_${++n}`;

async function setting(url: string): Promise<{ maxPrepared: number; major: number }> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [r] = await sql.unsafe("select current_setting('max_prepared_transactions')::int as m, current_setting('server_version_num')::int as v");
    return { maxPrepared: Number(r?.m), major: Math.floor(Number(r?.v) / 10_000) };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** A PostgreSQL server of its own (the binaries scripts/services uses) in a temporary directory, on a free port. */
interface Scratch {
  readonly url: string;
  stop(): void;
}
async function scratchServer(major: number, maxPrepared: number): Promise<Scratch> {
  const bin = `/usr/lib/postgresql/${major}/bin`;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "gress-pg-scratch-"));
  // PostgreSQL refuses to run as root: as root, run it as the postgres user (as scripts/services does).
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  const run = (cmd: string, args: string[]): void => {
    execFileSync(asRoot ? "runuser" : cmd, asRoot ? ["-u", "postgres", "--", cmd, ...args] : args, { stdio: ["ignore", "ignore", "pipe"] });
  };
  const data = join(dir, "data");
  run(`${bin}/initdb`, ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"]);
  const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c full_page_writes=off -c max_prepared_transactions=${maxPrepared}`;
  run(`${bin}/pg_ctl`, ["-D", data, "-l", join(dir, "log"), "-w", "-t", "60", "-o", opts, "start"]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => {
      try {
        run(`${bin}/pg_ctl`, ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** The server for a test: GRESS_PG_URL's when its max_prepared_transactions is what the test needs, else a scratch one. */
async function serverWith(prepared: boolean): Promise<{ url: string; stop(): void; what: string }> {
  const shared = await setting(pgUrl());
  if (shared.maxPrepared > 0 === prepared) return { url: pgUrl(), stop: () => {}, what: `GRESS_PG_URL (max_prepared_transactions = ${shared.maxPrepared})` };
  const max = prepared ? 16 : 0;
  const s = await scratchServer(shared.major, max);
  return { ...s, what: `a scratch PostgreSQL ${shared.major} with max_prepared_transactions = ${max} (GRESS_PG_URL has ${shared.maxPrepared})` };
}

const PREPARED_JOB = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "postgres-prepared-job.ts");

function runJob(args: object, failpoint: string | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const [cmd, argv] = childCommand(PREPARED_JOB);
  const env = { ...process.env };
  if (failpoint === undefined) delete env.GRESS_FAILPOINT;
  else env.GRESS_FAILPOINT = failpoint;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...argv, JSON.stringify(args)], { stdio: ["ignore", "pipe", "pipe"], env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Uint8Array) => (stdout += String(d)));
    child.stderr.on("data", (d: Uint8Array) => (stderr += String(d)));
    // A run is a few seconds: one that waits on a lock much longer than that is stopped, and its output says so.
    const timer = setTimeout(() => {
      stderr += "\n[test] the job did not end within 60 s: killed\n";
      child.kill("SIGKILL");
    }, 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The prepared transactions of a job's sink "ids" (their ids name the job). */
const preparedOf = async (sql: Sql, job: string): Promise<string[]> =>
  (await sql.unsafe("select gid from pg_prepared_xacts where database = current_database() and position($1 in gid) > 0 order by gid", [`:${job}:ids:`])).map((r) => String(r.gid));

describe("postgres sink, prepared transactions (real server)", () => {
  let server: { url: string; stop(): void; what: string };
  let sql: Sql;
  before(async () => {
    server = await serverWith(true);
    sql = postgres(server.url, { max: 2, onnotice: () => {} });
  });
  after(async () => {
    await sql?.end({ timeout: 5 });
    server?.stop();
  });

  for (const [failpoint, when] of [
    ["after-flush:3", "between the pre-commit and the commit of checkpoint 3 (the checkpoint is durable, the prepared transaction is left)"],
    ["checkpoint-snapshot:3", "before checkpoint 3 completed (its transaction is prepared, the checkpoint is not durable)"],
  ] as const) {
    it(`a job killed ${when} writes every row exactly once after its restart`, { timeout: 120_000 }, async (t) => {
      t.diagnostic(`server: ${server.what}`);
      const table = tableName();
      const job = `${table}_job`;
      const dir = mkdtempSync(join(tmpdir(), "gress-pg-prepared-"));
      const count = 3_000;
      const args = { url: server.url, table, job, stateDir: join(dir, "state"), count, ratePerSecond: 2_000 };
      try {
        const killed = await runJob(args, failpoint);
        assert.equal(killed.signal, "SIGKILL", `the job should die at ${failpoint}: exit ${killed.code}\n${killed.stderr.slice(-2000)}`);
        assert.match(killed.stderr, /checkpoints commit through PREPARE TRANSACTION/);
        // The crash left checkpoint 3's transaction prepared, its rows not visible.
        const left = await preparedOf(sql, job);
        assert.equal(left.length, 1, `prepared transactions left: ${left.join(", ")}`);
        assert.match(left[0] as string, new RegExp(`^gress:[0-9a-f]{8}:${job}:ids:[0-9a-f]{8}:3$`));
        const [progress] = await sql.unsafe("select max(checkpoint_id)::int as id from gress_sink_progress where job = $1 and sink = 'ids'", [job]);
        assert.equal(progress?.id, 2, "checkpoints 1 and 2 committed");

        const rerun = await runJob(args, undefined);
        assert.equal(rerun.code, 0, rerun.stderr.slice(-3000));
        assert.match(rerun.stdout, /done/);
        const [c] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids, min(id)::int as lo, max(id)::int as hi from "${table}"`);
        assert.deepEqual({ ...c }, { n: count, ids: count, lo: 0, hi: count - 1 });
        assert.deepEqual(await preparedOf(sql, job), [], "no prepared transaction of the job is left");
      } finally {
        rmSync(dir, { recursive: true, force: true });
        // After a failure: nothing of this test may hold locks on the server.
        for (const gid of await preparedOf(sql, job)) await sql.unsafe(`rollback prepared '${gid}'`);
        await sql.unsafe(`drop table if exists "${table}"`);
      }
    });
  }

  it("a value the server refuses is a dead letter with its reason; the checkpoint's other rows commit once", { timeout: 60_000 }, async () => {
    const table = tableName();
    const job = `${table}_job`;
    const columns = { id: { type: "integer", value: (r: { id: number; v: string }) => r.id }, v: { type: "double precision", value: (r: { id: number; v: string }) => r.v } };
    const sink = postgresSink<{ id: number; v: string }>({ name: "ids", job, url: server.url, table, createTable: true, batchSize: 300, twoPhase: "prepared", log: () => {}, columns });
    const dead: string[] = [];
    await sink.open?.({ jobName: job, checkpointIntervalMs: 100, deadLetter: (v, _t, reason) => void dead.push(`${(v as { id: number }).id}: ${reason}`) });
    const bad = new Set([0, 299, 300, 777, 999]);
    for (let id = 0; id < 1_000; id++) {
      const r = { id, v: bad.has(id) ? "warm" : String(id) };
      await sink.write(r, record(r, id));
    }
    const h1 = (await sink.preCommit?.(1)) as PostgresSinkHandle;
    // Judged by the pre-commit (before the barrier), and nothing visible before the commit.
    assert.deepEqual(
      dead,
      [...bad].map((id) => `${id}: column "v": invalid input syntax for type double precision: "warm"`),
    );
    assert.equal(typeof h1.gid, "string");
    assert.deepEqual(await preparedOf(sql, job), [h1.gid]);
    assert.equal((await sql.unsafe(`select count(*)::int as n from "${table}"`))[0]?.n, 0);
    await sink.commit?.(1, h1);
    await sink.commit?.(1, h1); // idempotent: gone, and its progress row says committed
    await sink.close?.();
    const [c] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids from "${table}"`);
    assert.deepEqual({ ...c }, { n: 1_000 - bad.size, ids: 1_000 - bad.size });
    await sql.unsafe(`drop table "${table}"`);
  });

  it("a server's idle_in_transaction_session_timeout shorter than the pauses between batches does not end the checkpoint's open transaction", { timeout: 60_000 }, async () => {
    const table = tableName();
    const job = `${table}_job`;
    // Sessions of this pool are ended by the server after 150 ms idle inside a transaction.
    const short = postgres(server.url, { max: 3, onnotice: () => {}, connection: { idle_in_transaction_session_timeout: 150 } });
    try {
      // A COPY ends after 100 000 rows (or at the pre-commit); the transaction waits for the next one idle.
      const sink = postgresSink<{ id: number }>({ name: "ids", job, sql: short, table, createTable: true, batchSize: 50_000, twoPhase: "prepared", log: () => {}, columns: { id: { type: "integer", value: (r) => r.id } } });
      await sink.open?.({ jobName: job, checkpointIntervalMs: 1000 });
      for (let id = 0; id < 100_000; id++) await sink.write({ id }, record({ id }, id));
      await new Promise((r) => setTimeout(r, 400));
      for (let id = 100_000; id < 100_010; id++) await sink.write({ id }, record({ id }, id));
      const h = (await sink.preCommit?.(1)) as PostgresSinkHandle;
      await sink.commit?.(1, h);
      await sink.close?.();
      const [c] = await sql.unsafe(`select count(*)::int as n from "${table}"`);
      assert.equal(c?.n, 100_010);
      await sql.unsafe(`drop table "${table}"`);
    } finally {
      await short.end({ timeout: 5 });
    }
  });

  it("a checkpoint id that has a progress row already (a second instance of the job and sink) is refused with an error, its rows rolled back", { timeout: 60_000 }, async () => {
    const table = tableName();
    const job = `${table}_job`;
    const opts = { name: "ids", job, url: server.url, table, createTable: true, twoPhase: "prepared" as const, log: () => {}, columns: { id: { type: "integer", value: (r: { id: number }) => r.id } } };
    const write = async (sink: ReturnType<typeof postgresSink<{ id: number }>>, from: number, to: number): Promise<void> => {
      for (let id = from; id < to; id++) await sink.write({ id }, record({ id }, id));
    };
    const first = postgresSink<{ id: number }>(opts);
    await first.open?.({ jobName: job, checkpointIntervalMs: 100 });
    await write(first, 0, 100);
    const h1 = (await first.preCommit?.(1)) as PostgresSinkHandle;
    await first.commit?.(1, h1);
    await write(first, 100, 200);
    const h2 = (await first.preCommit?.(2)) as PostgresSinkHandle;
    await first.commit?.(2, h2);
    await first.close?.();
    // A second sink of the same job and sink name (the coordinator of one job numbers its checkpoints above
    // the progress rows, see committedCheckpoint, so only another instance reaches an id with a row).
    const again = postgresSink<{ id: number }>(opts);
    assert.equal(await again.committedCheckpoint?.(job), 2, "the highest progress row");
    await again.commit?.(1, h1);
    await again.open?.({ jobName: job, checkpointIntervalMs: 100 });
    await write(again, 100, 200);
    await assert.rejects(again.preCommit?.(2) as Promise<unknown>, (e: unknown) => e instanceof Error && /checkpoint 2 of job ".*" has a progress row already, so another instance of this job and sink/.test(e.message));
    await again.close?.();
    const [c] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids from "${table}"`);
    assert.deepEqual({ ...c }, { n: 200, ids: 200 });
    assert.deepEqual(await preparedOf(sql, job), []);
    await sql.unsafe(`drop table "${table}"`);
  });

  it("a checkpoint's handle from more than 100 checkpoints ago (its progress row trimmed) commits on a new sink, without writing its rows again", { timeout: 120_000 }, async () => {
    const table = tableName();
    const job = `${table}_job`;
    const opts = { name: "ids", job, url: server.url, table, createTable: true, twoPhase: "prepared" as const, log: () => {}, columns: { id: { type: "integer", value: (r: { id: number }) => r.id } } };
    const first = postgresSink<{ id: number }>(opts);
    await first.open?.({ jobName: job, checkpointIntervalMs: 100 });
    const checkpoints = 105;
    let h1: PostgresSinkHandle | undefined;
    for (let id = 1; id <= checkpoints; id++) {
      await first.write({ id }, record({ id }, id));
      const h = (await first.preCommit?.(id)) as PostgresSinkHandle;
      await first.commit?.(id, h);
      h1 ??= h;
    }
    await first.close?.();
    assert.equal(typeof h1?.gid, "string");
    const [kept] = await sql.unsafe("select min(checkpoint_id)::int as lo, max(checkpoint_id)::int as hi from gress_sink_progress where job = $1 and sink = 'ids'", [job]);
    assert.ok((kept?.lo as number) > 1 && kept?.hi === checkpoints, `checkpoint 1's progress row is trimmed: ${JSON.stringify(kept)}`);
    // Restored from a savepoint at checkpoint 1: recovery commits its handle (done long ago), then the job runs on.
    const again = postgresSink<{ id: number }>(opts);
    await again.commit?.(1, h1 as PostgresSinkHandle);
    await again.open?.({ jobName: job, checkpointIntervalMs: 100 });
    await again.close?.();
    const [c] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids from "${table}"`);
    assert.deepEqual({ ...c }, { n: checkpoints, ids: checkpoints });
    assert.deepEqual(await preparedOf(sql, job), []);
    await sql.unsafe(`drop table "${table}"`);
  });

  it("a handle of this run whose transaction was rolled back outside the sink fails the commit, even with a later progress row", { timeout: 60_000 }, async () => {
    const table = tableName();
    const job = `${table}_job`;
    const opts = { name: "ids", job, url: server.url, table, createTable: true, twoPhase: "prepared" as const, log: () => {}, columns: { id: { type: "integer", value: (r: { id: number }) => r.id } } };
    const sink = postgresSink<{ id: number }>(opts);
    await sink.open?.({ jobName: job, checkpointIntervalMs: 100 });
    try {
      await sink.write({ id: 1 }, record({ id: 1 }, 1));
      const h1 = (await sink.preCommit?.(1)) as PostgresSinkHandle;
      await sql.unsafe(`rollback prepared '${h1.gid}'`);
      // A row above it, as a second instance of the same job and sink would write.
      await sql.unsafe("insert into gress_sink_progress (job, sink, checkpoint_id) values ($1, 'ids', 7)", [job]);
      await assert.rejects(Promise.resolve(sink.commit?.(1, h1)), /is gone and no progress row of checkpoint 1 was committed: it was rolled back outside this sink/);
    } finally {
      await sink.close?.();
      await sql.unsafe(`drop table "${table}"`);
    }
  });

  it("open() rolls back the sink's leftover prepared transaction before its DDL: createTable + timeColumn does not wait on its lock", { timeout: 120_000 }, async (t) => {
    // The test database (a hypertable when it has TimescaleDB) and a database of its own without it (an index).
    const db = `gress_prep_plain_${process.pid}_${Date.now().toString(36)}`;
    await sql.unsafe(`create database ${db}`);
    const plain = new URL(server.url);
    plain.pathname = `/${db}`;
    try {
      for (const url of [server.url, plain.href]) {
        const table = tableName();
        const job = `${table}_job`;
        const opts = { name: "ids", job, url, table, createTable: true, timeColumn: "at", twoPhase: "prepared" as const, log: () => {}, columns: { id: { type: "integer", value: (r: { id: number }) => r.id }, at: { type: "timestamptz", value: (r: { id: number }) => r.id } } };
        const other = postgres(url, { max: 1, onnotice: () => {} });
        let leftover: string | undefined;
        let restarted: ReturnType<typeof postgresSink<{ id: number }>> | undefined;
        try {
          // The killed run: checkpoint 1 committed, checkpoint 2 prepared (an insert into the table), never completed.
          const killed = postgresSink<{ id: number }>(opts);
          await killed.open?.({ jobName: job, checkpointIntervalMs: 100 });
          await killed.write({ id: 1 }, record({ id: 1 }, 1));
          const h1 = (await killed.preCommit?.(1)) as PostgresSinkHandle;
          await killed.commit?.(1, h1);
          await killed.write({ id: 2 }, record({ id: 2 }, 2));
          const h2 = (await killed.preCommit?.(2)) as PostgresSinkHandle;
          leftover = h2.gid ?? undefined;
          await killed.close?.(); // its pool ends; the prepared transaction stays, as after a SIGKILL
          const kind = killed.hypertable ? "hypertable" : "plain table with an index";
          t.diagnostic(`${url === server.url ? "test database" : "database without TimescaleDB"}: ${kind}`);
          assert.equal(typeof leftover, "string");
          // Restored at checkpoint 1: recovery commits it again, then the sink opens.
          restarted = postgresSink<{ id: number }>(opts);
          await restarted.commit?.(1, h1);
          const began = Date.now();
          let timer: NodeJS.Timeout | undefined;
          const opened = await Promise.race([
            Promise.resolve(restarted.open?.({ jobName: job, checkpointIntervalMs: 100 })).then(() => "opened"),
            new Promise<string>((resolve) => (timer = setTimeout(() => resolve("still waiting after 10 s"), 10_000))),
          ]).finally(() => clearTimeout(timer));
          assert.equal(opened, "opened", `open() of the ${kind}`);
          t.diagnostic(`open() took ${Date.now() - began} ms`);
          assert.deepEqual(await preparedOf(other, job), [], "the leftover is rolled back");
          leftover = undefined;
          await restarted.write({ id: 2 }, record({ id: 2 }, 2));
          const h2again = (await restarted.preCommit?.(2)) as PostgresSinkHandle;
          await restarted.commit?.(2, h2again);
          const [c] = await other.unsafe(`select count(*)::int as n, count(distinct id)::int as ids from "${table}"`);
          assert.deepEqual({ ...c }, { n: 2, ids: 2 });
        } finally {
          // Unblocks an open() still waiting (before the fix it waits for ever, holding every sink's DDL lock).
          if (leftover !== undefined) await other.unsafe(`rollback prepared '${leftover}'`).catch(() => undefined);
          await restarted?.close?.();
          await other.unsafe(`drop table if exists "${table}"`);
          await other.end({ timeout: 5 });
        }
      }
    } finally {
      await sql.unsafe(`drop database if exists ${db}`);
    }
  });

  it("another job's leftover on the table: open() creates nothing that exists (no wait), and a lock it needs fails the open after lock_timeout, naming the table", { timeout: 120_000 }, async () => {
    // A database without TimescaleDB: createTable + timeColumn makes an index there.
    const db = `gress_prep_lock_${process.pid}_${Date.now().toString(36)}`;
    await sql.unsafe(`create database ${db}`);
    const url = new URL(server.url);
    url.pathname = `/${db}`;
    const other = postgres(url.href, { max: 2, onnotice: () => {} });
    const gids: string[] = [];
    const holdInsert = async (table: string): Promise<void> => {
      const gid = `gress-test-${table}`;
      const c = await other.reserve();
      try {
        await c.unsafe("begin");
        await c.unsafe(`insert into "${table}" (id, at) values (-1, now())`);
        await c.unsafe(`prepare transaction '${gid}'`);
        gids.push(gid);
      } finally {
        c.release();
      }
    };
    const columns = { id: { type: "integer", value: (r: { id: number }) => r.id }, at: { type: "timestamptz", value: (r: { id: number }) => r.id } };
    const sinkOn = (table: string, job: string): ReturnType<typeof postgresSink<{ id: number }>> =>
      postgresSink<{ id: number }>({ name: "ids", job, url: url.href, table, createTable: true, timeColumn: "at", log: () => {}, columns });
    try {
      // The table and its index exist: the second job's open does not touch them.
      const shared = tableName();
      const first = sinkOn(shared, `${shared}_a`);
      await first.open?.({ jobName: `${shared}_a`, checkpointIntervalMs: 100 });
      await first.close?.();
      await holdInsert(shared);
      const second = sinkOn(shared, `${shared}_b`);
      let timer: NodeJS.Timeout | undefined;
      const opened = await Promise.race([
        Promise.resolve(second.open?.({ jobName: `${shared}_b`, checkpointIntervalMs: 100 })).then(() => "opened"),
        new Promise<string>((resolve) => (timer = setTimeout(() => resolve("still waiting after 10 s"), 10_000))),
      ]).finally(() => clearTimeout(timer));
      await other.unsafe(`rollback prepared '${gids.pop()}'`);
      await second.close?.();
      assert.equal(opened, "opened");
      // A table made without the index, held by a prepared transaction: the index cannot be made now.
      const bare = tableName();
      await other.unsafe(`create table "${bare}" (id integer, at timestamptz)`);
      await holdInsert(bare);
      const blocked = sinkOn(bare, `${bare}_job`);
      const began = Date.now();
      await assert.rejects(
        Promise.resolve(blocked.open?.({ jobName: `${bare}_job`, checkpointIntervalMs: 100 })),
        new RegExp(`failed to open: could not create index ${bare}_at_idx on ${bare} \\(SHARE lock\\): table ${bare} stayed locked by another transaction for 15 s \\(lock_timeout`),
      );
      const waited = Date.now() - began;
      assert.ok(waited >= 14_000 && waited < 30_000, `waited ${waited} ms`);
      await blocked.close?.();
    } finally {
      for (const gid of gids) await other.unsafe(`rollback prepared '${gid}'`).catch(() => undefined);
      await other.end({ timeout: 5 });
      await sql.unsafe(`drop database if exists ${db}`);
    }
  });

  it("auto takes the prepared path with a pool of its own (url), and the staging table on the caller's pool (sql), saying why", { timeout: 60_000 }, async () => {
    const table = tableName();
    const said: string[] = [];
    const columns = { id: { type: "integer", value: (r: { id: number }) => r.id } };
    for (const conn of [{ url: server.url }, { sql }]) {
      const sink = postgresSink<{ id: number }>({ name: "ids", job: `${table}_job`, table, createTable: true, log: (m) => void said.push(m), columns, ...conn });
      await sink.open?.({ jobName: `${table}_job`, checkpointIntervalMs: 100 });
      await sink.close?.();
    }
    assert.equal(said.length, 2);
    assert.match(said[0] as string, /checkpoints commit through PREPARE TRANSACTION \(rows written once\): max_prepared_transactions = \d+$/);
    assert.match(said[1] as string, /checkpoints go through a staging table \(rows written twice\): the connection pool is the caller's \(`sql`\)/);
    await sql.unsafe(`drop table "${table}"`);
  });

  it('twoPhase "prepared" with a key is refused when the sink is made', () => {
    assert.throws(
      () => postgresSink<{ id: number }>({ name: "ids", job: "j", url: server.url, table: "t", key: ["id"], twoPhase: "prepared", columns: { id: { type: "integer", value: (r) => r.id } } }),
      (e: unknown) => e instanceof ConfigError && /twoPhase "prepared" is not possible: with a key/.test(e.message),
    );
  });
});

describe("postgres sink on a server with max_prepared_transactions = 0 (real server)", () => {
  let server: { url: string; stop(): void; what: string };
  let sql: Sql;
  before(async () => {
    server = await serverWith(false);
    sql = postgres(server.url, { max: 2, onnotice: () => {} });
  });
  after(async () => {
    await sql?.end({ timeout: 5 });
    server?.stop();
  });

  it("auto falls back to the staging table, says so once and why, and commits exactly once", { timeout: 60_000 }, async (t) => {
    t.diagnostic(`server: ${server.what}`);
    const table = tableName();
    const job = `${table}_job`;
    const said: string[] = [];
    const sink = postgresSink<{ id: number }>({ name: "ids", job, url: server.url, table, createTable: true, log: (m) => void said.push(m), columns: { id: { type: "integer", value: (r) => r.id } } });
    await sink.open?.({ jobName: job, checkpointIntervalMs: 100 });
    for (let id = 0; id < 500; id++) await sink.write({ id }, record({ id }, id));
    const h1 = (await sink.preCommit?.(1)) as PostgresSinkHandle;
    assert.equal(h1.gid, undefined, "a staging handle");
    await sink.commit?.(1, h1);
    await sink.close?.();
    await sink.open?.({ jobName: job, checkpointIntervalMs: 100 });
    await sink.close?.();
    assert.deepEqual(said, [`postgres sink "ids" (table ${table}): checkpoints go through a staging table (rows written twice): max_prepared_transactions is 0 on the server (set it above 0, e.g. 64, in postgresql.conf and restart PostgreSQL)`]);
    const [c] = await sql.unsafe(`select count(*)::int as n, count(distinct id)::int as ids from "${table}"`);
    assert.deepEqual({ ...c }, { n: 500, ids: 500 });
    await sql.unsafe(`drop table "${table}"`);
  });

  it('twoPhase "prepared" fails at open with a ConfigError naming the setting', { timeout: 60_000 }, async () => {
    const table = tableName();
    const sink = postgresSink<{ id: number }>({ name: "ids", job: `${table}_job`, url: server.url, table, createTable: true, twoPhase: "prepared", columns: { id: { type: "integer", value: (r) => r.id } } });
    await assert.rejects(
      Promise.resolve(sink.open?.({ jobName: `${table}_job`, checkpointIntervalMs: 100 })),
      (e: unknown) => e instanceof ConfigError && /postgres sink "ids": twoPhase "prepared" is not possible: max_prepared_transactions is 0 on the server/.test(e.message),
    );
    await sink.close?.();
    await sql.unsafe(`drop table if exists "${table}"`);
  });
});
