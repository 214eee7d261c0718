/**
 * Fault injection between Gress and PostgreSQL: a private cluster (initdb in a temporary directory) behind a
 * TCP proxy. Generator → per-key sequence numbers in keyed state → PostgreSQL sink (rows COPYed into a staging
 * table, one commit transaction per checkpoint; or, in the scenarios marked "prepared", COPYed into the table
 * in a transaction per checkpoint ended by PREPARE TRANSACTION and committed by COMMIT PREPARED),
 * checkpointed on LMDB, in a child process. The faults are timed
 * by what the sink sends: the staging COPY (its statement, or the row data that follows it), or the
 * progress-row insert of a commit (postgres.js prepares its statements, so their text shows on each new
 * connection; a fault makes the sink reconnect).
 * Also: SIGKILL while the job waits out its restart strategy's back-off.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import postgres from "postgres";
import type { Sequenced } from "../support/sequence.ts";
import { startProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { assertExactlyOnce, type Drive, report, runUntilDone } from "./harness.ts";
import { type PrivatePostgres, startPrivatePostgres } from "./services.ts";

let pg: PrivatePostgres;
let proxy: TcpProxy;

before(async () => {
  pg = await startPrivatePostgres();
  proxy = await startProxy({ targetPort: pg.port });
});
after(async () => {
  await proxy?.stop();
  await pg?.destroy();
});

let tables = 0;

/**
 * Runs a scenario on a fresh table. `restarts`: the wait (ms) of the job's fixed-delay restart strategy before
 * a restart inside the process, or "supervisor": no restart strategy, the supervisor starts the process again.
 */
async function run(
  name: string,
  drive: Drive,
  faults: () => number,
  minFaults: number,
  restarts: number | "supervisor" = 1000,
  count = 6000,
  twoPhase: "prepared" | "staging" = "staging",
): Promise<void> {
  const started = performance.now();
  const table = `faults_${process.pid}_${++tables}`;
  const keys = 7;
  const before = faults();
  const runs = await runUntilDone(
    {
      kind: "pg",
      job: `faults-pg-${process.pid}-${tables}`,
      intervalMs: 300,
      count,
      keys,
      ratePerSecond: 1500,
      pgUrl: pg.url(proxy.port),
      table,
      twoPhase,
      ...(restarts === "supervisor" ? {} : { restart: { strategy: "fixed-delay" as const, attempts: 30, delayMs: restarts } }),
    },
    { restartPauseMs: 1000, maxRuns: 20, runTimeoutMs: 120_000, ...drive },
  );
  proxy.onClientData(undefined);
  assert.equal(runs.hung, 0, `no run hung (${runs.hung} hung and were killed):\n${runs.failures.join("\n---\n").slice(-3000)}`);
  const injected = faults() - before;
  const sql = postgres(pg.url(), { max: 1, onnotice: () => {} });
  let out: Sequenced[];
  try {
    out = (await sql.unsafe(`select key, seq, i from "${table}"`)).map((r) => ({ key: String(r.key), seq: Number(r.seq), i: Number(r.i) }));
  } finally {
    await sql.end({ timeout: 5 });
  }
  const compared = assertExactlyOnce(out, count, keys);
  assert.ok(injected >= minFaults, `at least ${minFaults} faults were injected (got ${injected})`);
  report({
    scenario: `PostgreSQL: ${name}${restarts === "supervisor" ? " (process restarts)" : ""}`,
    faults: injected + runs.kills,
    kills: runs.kills,
    runs: runs.runs,
    restarts: runs.restartsInJob + runs.failed,
    ...compared,
    seconds: (performance.now() - started) / 1000,
  });
  if (runs.failures.length > 0) console.log(`  what the failed runs printed last:\n  ${runs.failures.slice(0, 3).join("\n  ").slice(0, 2000)}`);
}

/** Calls `fault` when a client sends SQL containing `text`, at most `times` times, at least `gapMs` apart. */
function onSql(text: string, times: number, fault: (conn: Parameters<Parameters<TcpProxy["onClientData"]>[0] & object>[0], chunk: Uint8Array) => void, gapMs = 1500): () => number {
  let n = 0;
  let last = 0;
  const dec = new TextDecoder();
  proxy.onClientData((conn, chunk) => {
    if (n >= times || Date.now() - last < gapMs) return;
    if (!dec.decode(chunk).includes(text)) return;
    n++;
    last = Date.now();
    fault(conn, chunk);
  });
  return () => n;
}

/**
 * Calls `fault` on the first chunk a client sends after a chunk containing `text` (the data after a statement:
 * a COPY's rows), at most `times` times, at least `gapMs` apart.
 */
function afterSql(text: string, times: number, fault: (conn: Parameters<Parameters<TcpProxy["onClientData"]>[0] & object>[0], chunk: Uint8Array) => void, gapMs = 1500): () => number {
  let n = 0;
  let last = 0;
  const armed = new WeakSet<object>();
  const dec = new TextDecoder();
  proxy.onClientData((conn, chunk) => {
    if (armed.has(conn)) {
      armed.delete(conn);
      n++;
      last = Date.now();
      fault(conn, chunk);
      return;
    }
    if (n >= times || Date.now() - last < gapMs) return;
    if (dec.decode(chunk).includes(text)) armed.add(conn);
  });
  return () => n;
}

let serverRestarts = 0;
/** Restarts the server right after this chunk went through: the statement is in flight when it goes down. */
function restartServer(): void {
  setTimeout(() => {
    serverRestarts++;
    pg.restart("immediate");
  }, 5);
}

describe("fault injection: PostgreSQL (private cluster behind a proxy)", () => {
  it("the server restarts (crash restart) during a pre-commit's staging COPY", { timeout: 200_000 }, async (t) => {
    const r0 = serverRestarts;
    onSql('copy "gress_stage_', 2, () => restartServer(), 2500);
    await run("server restart during pre-commit", { signal: t.signal }, () => serverRestarts - r0, 2);
  });

  it("the server restarts (crash restart) during a commit transaction", { timeout: 200_000 }, async (t) => {
    const r0 = serverRestarts;
    onSql('insert into "gress_sink_progress"', 2, () => restartServer(), 2500);
    await run("server restart during commit", { signal: t.signal }, () => serverRestarts - r0, 2);
  });

  it("prepared: the server restarts (crash restart) during a pre-commit's PREPARE TRANSACTION", { timeout: 200_000 }, async (t) => {
    const r0 = serverRestarts;
    onSql("prepare transaction 'gress:", 2, () => restartServer(), 2500);
    await run("prepared: server restart during PREPARE TRANSACTION", { signal: t.signal }, () => serverRestarts - r0, 2, 1000, 6000, "prepared");
  });

  it("prepared: the server restarts (crash restart) during a commit's COMMIT PREPARED", { timeout: 200_000 }, async (t) => {
    const r0 = serverRestarts;
    onSql("commit prepared 'gress:", 2, () => restartServer(), 2500);
    await run("prepared: server restart during COMMIT PREPARED", { signal: t.signal }, () => serverRestarts - r0, 2, 1000, 6000, "prepared");
  });

  it("the connection is cut in the middle of a staging COPY's rows (the server gets part of them)", { timeout: 200_000 }, async (t) => {
    const c0 = proxy.faults.cuts;
    afterSql('copy "gress_stage_', 3, (conn, chunk) => conn.cutRequestAfter(Math.floor(chunk.length / 2)), 1500);
    await run("connection cut mid-COPY", { signal: t.signal }, () => proxy.faults.cuts - c0, 3);
  });

  it("SIGKILL while the job waits out its restart strategy's back-off", { timeout: 200_000 }, async (t) => {
    // A commit fails (connection reset), the job logs its restart and waits 5 s; it is killed in that wait.
    const r0 = proxy.faults.resets;
    onSql('insert into "gress_sink_progress"', 1, (conn) => conn.reset());
    let killedInBackoff = 0;
    await run(
      "SIGKILL during restart back-off",
      {
        signal: t.signal,
        onLine: (c, line) => {
          if (c.run === 0 && line.startsWith("restart: restart 1/")) {
            killedInBackoff++;
            setTimeout(() => c.kill(), 500);
          }
        },
      },
      () => proxy.faults.resets - r0,
      1,
      5000,
    );
    assert.equal(killedInBackoff, 1, "the job was killed during a back-off");
  });
});
