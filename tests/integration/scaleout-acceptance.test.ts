/**
 * The scale-out acceptance test of issue 11, on the real broker and PostgreSQL. A job over 12 input
 * partitions (tests/integration/scaleout-acceptance-job.ts: input partitioned by region, a repartitioning
 * `keyBy(user)`, an event-time tumbling window count per user and a CEP pattern "A followed by B within 2 s"
 * per user, both to one Kafka topic and one PostgreSQL table) runs in separate worker processes: three at
 * first; then one is killed with SIGKILL, one is added, one is stopped gracefully (SIGTERM), and the killed one
 * is started again on its state directory, each while input is still flowing. Then the Kafka topic
 * (read_committed) and the table must each equal a failure-free single-process reference run of the same
 * pipeline over the same input: the same count, the same set (digest), no output twice, the same window
 * counts and matches. The kills (exactly one process died by a signal) and the rebalances (each event moved
 * tasks, seen in the workers' assignment log lines) are asserted, and so is the acceptance bound on
 * read_committed readers (see `visibilityProbe`). Runs on the client GRESS_KAFKA_CLIENT names (.ci/run runs it
 * on both).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import postgres from "postgres";
import { postgresStagingTable } from "../../connectors/postgres/index.ts";
import { Job, sinkFn } from "../../lib/index.ts";
import { encodeShuffleKey, shufflePartition } from "../../lib/scaleout/shuffle.ts";
import { brokers, clientName, createTopic, kafka, produce, readCommitted, uniqueName } from "./kafka-support.ts";
import { type AcceptanceOutput, acceptancePipeline, outputId } from "./scaleout-acceptance-job.ts";
import { shuffleEvents } from "./scaleout-shuffle-pipeline.ts";
import { current, outputCounter, startWorker, until, type Worker } from "./scaleout-support.ts";

const JOB = join(import.meta.dirname, "scaleout-acceptance-job.ts");
const PARTITIONS = 12;
const COUNT = 12_000;
const REGIONS = 24;
const USERS = 24;
const INTERVAL_MS = 1000;
const TRANSACTION_TIMEOUT_MS = 20_000;
const RATE_PER_TASK = 20;
const TASKS = Array.from({ length: PARTITIONS }, (_, p) => `0_${p}`).sort();

const PG_URL = ((): string => {
  const v = process.env.GRESS_PG_URL;
  if (v === undefined || v === "") throw new Error('GRESS_PG_URL is not set: run `eval "$(scripts/services env)"` first');
  return v;
})();

/** The outputs checked against the reference: no id twice, and count, digest and content equal. */
function checkAgainst(reference: readonly AcceptanceOutput[], got: readonly AcceptanceOutput[], what: string): void {
  const seen = new Set<string>();
  const twice: string[] = [];
  for (const o of got) {
    const id = outputId(o);
    if (seen.has(id)) twice.push(id);
    seen.add(id);
  }
  assert.deepEqual(twice.slice(0, 10), [], `${what}: ${twice.length} outputs came twice`);
  assert.equal(got.length, reference.length, `${what}: the reference's count`);
  const line = (o: AcceptanceOutput): string => `${o.kind} ${o.key} ${o.start} ${o.n}`;
  const digest = (os: readonly AcceptanceOutput[]): string => createHash("sha256").update(os.map(line).sort().join("\n")).digest("hex");
  if (digest(got) !== digest(reference)) {
    const want = new Set(reference.map(line));
    const have = new Set(got.map(line));
    const missing = [...want].filter((l) => !have.has(l));
    const extra = [...have].filter((l) => !want.has(l));
    assert.fail(`${what}: the set differs from the reference: ${missing.length} missing (${missing.slice(0, 5).join("; ")}), ${extra.length} not in it (${extra.slice(0, 5).join("; ")})`);
  }
}

/**
 * The acceptance bound on read_committed readers, measured on the output topic. For an output record at
 * (partition, offset o): u(o) is when a read_uncommitted reader first received it (it was written), and c(o)
 * is when the partition's last stable offset (read_committed ListOffsets, polled every 200 ms) first exceeded
 * o: from then on a read_committed reader can read o, or skip it if its transaction was aborted (a killed
 * worker's). Its blocked time is c(o) − u(o), how long a read_committed reader stood before that record while
 * it was there to read. `maxBlockedMs` is the maximum over every record received, with a record still
 * unresolved at `stop()` counted up to then. u(o) is late by the reader's fetch (up to ~100 ms plus its
 * processing) and c(o) by up to one poll, so the measure is within a few hundred ms of the true one.
 */
async function visibilityProbe(topic: string): Promise<{ stop: () => Promise<{ maxBlockedMs: number; records: number; at: string }> }> {
  const k = kafka();
  const consumer = k.consumer({ groupId: uniqueName("uncommitted"), readUncommitted: true, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  /** Per partition, the records received and not resolved yet: [offset, u] in offset order. */
  const pending = new Map<number, [number, number][]>();
  let max = 0;
  let at = "";
  let records = 0;
  const resolve = (partition: number, lso: number, now: number): void => {
    const list = pending.get(partition) ?? [];
    while (list.length > 0 && (list[0] as [number, number])[0] < lso) {
      const [offset, u] = list.shift() as [number, number];
      if (now - u > max) {
        max = now - u;
        at = `partition ${partition} offset ${offset} at ${new Date(now).toISOString()}`;
      }
    }
  };
  const lso = new Map<number, number>();
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const now = Date.now();
      const list = pending.get(batch.partition) ?? [];
      pending.set(batch.partition, list);
      for (const m of batch.messages) {
        records++;
        if (Number(m.offset) >= (lso.get(batch.partition) ?? 0)) list.push([Number(m.offset), now]);
      }
    },
  });
  const admin = k.admin();
  await admin.connect();
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const offsets = await admin.fetchTopicOffsets(topic);
      const now = Date.now();
      for (const o of offsets) {
        lso.set(o.partition, Number(o.offset));
        resolve(o.partition, Number(o.offset), now);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    stop: async () => {
      polling = false;
      await poller;
      const now = Date.now();
      for (const [p, list] of pending) {
        for (const [offset, u] of list) {
          if (now - u <= max) continue;
          max = now - u;
          at = `partition ${p} offset ${offset}, never resolved`;
        }
      }
      await consumer.disconnect();
      await admin.disconnect();
      return { maxBlockedMs: max, records, at };
    },
  };
}

/**
 * For a run that stalled: the committed outputs missing from the output topic, counted by kind and by the
 * downstream task of their key (the repartition partition of the user), with the first few: a stuck downstream
 * task, a stuck watermark (only the last windows missing) and lost records look different here.
 */
async function missingOutputs(reference: readonly AcceptanceOutput[], topic: string): Promise<string> {
  const have = new Set((await readCommitted(topic, 10_000)).map((m) => outputId(JSON.parse(m.value) as AcceptanceOutput)));
  const missing = reference.filter((o) => !have.has(outputId(o)));
  const by = new Map<string, number>();
  for (const o of missing) {
    const k = `${o.kind}@task 0_${shufflePartition(encodeShuffleKey(o.key), PARTITIONS)}`;
    by.set(k, (by.get(k) ?? 0) + 1);
  }
  const lastStart = Math.max(...reference.filter((o) => o.kind === "w").map((o) => o.start));
  return `missing ${missing.length}: ${JSON.stringify(Object.fromEntries([...by].sort()))}; first: ${missing
    .slice(0, 8)
    .map((o) => `${o.kind} ${o.key} ${o.start}`)
    .join(", ")}; the last window starts at ${lastStart}`;
}

/** The "assignment" lines a worker logged (each one a rebalance that changed its tasks). */
const assignments = (w: Worker): string[] => [...w.log.matchAll(/assignment \d+: \+\[([^\]]*)\] -\[([^\]]*)\]/g)].map((m) => m[0]);
const owned = (ws: readonly Worker[]): string[] => ws.flatMap(current).sort();
const alive = (w: Worker): boolean => w.child.exitCode === null && w.child.signalCode === null;

describe(`scale-out acceptance (${clientName()}, real Kafka and PostgreSQL)`, () => {
  const sql = postgres(PG_URL, { onnotice: () => {} });
  const dirs: string[] = [];
  const tables: string[] = [];
  after(async () => {
    for (const t of tables) await sql.unsafe(`drop table if exists "${t}"`).catch(() => undefined);
    await sql.end({ timeout: 5 });
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("3 workers over 12 partitions, a shuffle, a window and a CEP pattern to Kafka and PostgreSQL; a worker killed, one added, one stopped, the killed one restarted: the outputs equal the failure-free reference", { timeout: 300_000 }, async (t) => {
    const input = uniqueName("acc-in");
    const output = uniqueName("acc-out");
    const table = uniqueName("acc_pg").replace(/-/g, "_");
    const job = uniqueName("acc");
    tables.push(table, ...TASKS.map((task) => postgresStagingTable(`${job}/${task}`, "pg", table)));
    await createTopic(input, PARTITIONS);
    await createTopic(output, PARTITIONS);
    const data = shuffleEvents(COUNT, REGIONS, USERS, PARTITIONS);
    await produce(
      input,
      data.map((d) => ({ key: String(d.event.region), value: JSON.stringify(d.event), partition: d.partition })),
    );
    assert.ok(
      data.every((d) => d.event.sentinel === true || d.event.region % PARTITIONS === d.partition) && new Set(data.filter((d) => d.event.user === "u0").map((d) => d.partition)).size === PARTITIONS,
      "the input is partitioned by region, and a user's events are in every partition: the keyBy must shuffle",
    );

    // The failure-free reference: the same pipeline in one process, bounded.
    const reference: AcceptanceOutput[] = [];
    const ref = new Job({ name: uniqueName("acc-ref") });
    acceptancePipeline({ input, kafka: { brokers: brokers() }, bounded: true, sinks: () => [sinkFn("collect", (o: AcceptanceOutput) => void reference.push(o))] })(ref);
    await ref.run();
    const windows = reference.filter((o) => o.kind === "w");
    assert.equal(
      windows.reduce((n, o) => n + o.n, 0),
      COUNT,
      "the reference's windows count every event once",
    );
    assert.ok(reference.length - windows.length > 1000, `the reference has matches (${reference.length - windows.length})`);
    checkAgainst(reference, reference, "reference");
    const expected = reference.length;
    t.diagnostic(`reference: ${windows.length} window results, ${expected - windows.length} matches`);

    const config = (state?: string) => {
      const dir = state ?? mkdtempSync(join(tmpdir(), "gress-acc-"));
      if (state === undefined) dirs.push(dir);
      return { job, state: dir, brokers: brokers(), client: clientName(), input, output, pgUrl: PG_URL, table, intervalMs: INTERVAL_MS, transactionTimeoutMs: TRANSACTION_TIMEOUT_MS, ratePerSecond: RATE_PER_TASK };
    };
    const counter = await outputCounter(output);
    const probe = await visibilityProbe(output);
    const cfgA = config();
    const cfgB = config();
    const cfgC = config();
    const a = startWorker(cfgA, {}, JOB);
    const b = startWorker(cfgB, {}, JOB);
    const c = startWorker(cfgC, {}, JOB);
    const workers: Worker[] = [a, b, c];
    const midRun = (event: string): void => assert.ok(counter.count() < expected - 200, `${event} comes mid-run (${counter.count()} of ${expected} outputs out)`);
    let blocked: { maxBlockedMs: number; records: number; at: string } | undefined;
    /** Per event, the assignment lines logged after it (by the workers given). */
    const rebalances: Record<string, string[]> = {};
    const since = (ws: readonly Worker[]): (() => string[]) => {
      const marks = ws.map((w) => assignments(w).length);
      return () => ws.flatMap((w, i) => assignments(w).slice(marks[i]));
    };
    try {
      await until("3 workers running 4 tasks each, output flowing", () => [a, b, c].every((w) => current(w).length === 4) && counter.count() > 0, 120_000, workers);

      // 1. C killed with SIGKILL: after its session, A and B take its tasks over (restored from the changelog).
      midRun("the kill");
      const cTasks = current(c);
      const afterKill = since([a, b]);
      c.child.kill("SIGKILL");
      assert.equal((await c.exited).signal, "SIGKILL");
      await until("A and B running every task", () => current(a).length + current(b).length === PARTITIONS && cTasks.every((task) => owned([a, b]).includes(task)), 90_000, workers);
      rebalances.kill = afterKill();

      // 2. D added: it gets a share of the tasks.
      midRun("the added worker");
      const d = startWorker(config(), {}, JOB);
      workers.push(d);
      const afterAdd = since([a, b, d]);
      await until("D running tasks, every task running once", () => current(d).length > 0 && owned([a, b, d]).join() === TASKS.join(), 90_000, workers);
      rebalances.add = afterAdd();

      // 3. B stopped gracefully: it leaves the group, A and D take its tasks.
      midRun("the graceful stop");
      const bTasks = current(b);
      const afterStop = since([a, d]);
      b.child.kill("SIGTERM");
      assert.deepEqual(await b.exited, { code: 0, signal: null }, b.log);
      await until("A and D running every task", () => owned([a, d]).join() === TASKS.join() && bTasks.every((task) => owned([a, d]).includes(task)), 90_000, workers);
      rebalances.stop = afterStop();

      // 4. C started again on its state directory: it gets a share of the tasks back.
      midRun("the restart");
      const c2 = startWorker(cfgC, {}, JOB);
      workers.push(c2);
      const afterRestart = since([a, d, c2]);
      await until("C running tasks again, every task running once", () => current(c2).length > 0 && owned([a, d, c2]).join() === TASKS.join(), 90_000, workers);
      rebalances.restart = afterRestart();

      try {
        await until("every output in Kafka", () => counter.count() >= expected, 150_000, workers);
      } catch (err) {
        (err as Error).message = `${counter.count()} of ${expected} outputs came; ${await missingOutputs(reference, output)}\n${(err as Error).message}`;
        throw err;
      }
      // PostgreSQL commits after Kafka: wait for its last rows (a lost row shows below).
      const rowsNow = async (): Promise<number> => ((await sql.unsafe(`select count(*)::int as n from "${table}"`))[0]?.n as number | undefined) ?? 0;
      for (let waited = 0; waited < 15_000 && (await rowsNow()) < expected; waited += 250) await new Promise((r) => setTimeout(r, 250));
      // Duplicates would come after the count is reached: give them time to show.
      await new Promise((r) => setTimeout(r, 2000));
      blocked = await probe.stop();
      for (const w of [a, d, c2]) w.child.kill("SIGTERM");
      for (const w of [a, d, c2]) assert.deepEqual(await w.exited, { code: 0, signal: null }, w.log);
    } finally {
      for (const w of workers) if (alive(w)) w.child.kill("SIGTERM");
      await counter.stop();
      if (blocked === undefined) await probe.stop().catch(() => undefined);
    }
    const logs = `\nworker logs:\n${workers.map((w) => w.log).join("\n---\n")}`;
    try {
      // The kills: exactly one worker process died by a signal (C, SIGKILL); every other exited 0 on SIGTERM.
      const exits = await Promise.all(workers.map((w) => w.exited));
      assert.deepEqual(
        exits.filter((e) => e.signal !== null),
        [{ code: null, signal: "SIGKILL" }],
      );
      assert.equal(exits.filter((e) => e.code === 0).length, workers.length - 1);
      // The rebalances: each of the 4 events moved tasks, seen in the assignment lines of the workers it concerned.
      t.diagnostic(`rebalances seen per event: ${JSON.stringify(rebalances)}`);
      for (const [event, lines] of Object.entries(rebalances)) assert.ok(lines.some((l) => /\+\[[^\]]+\]/.test(l)), `${event}: a worker logged an assignment that gave it tasks`);
      assert.deepEqual(Object.keys(rebalances), ["kill", "add", "stop", "restart"]);
      // How tasks left a worker other than by a revocation: fenced by a new owner ("migrated").
      t.diagnostic(`tasks ended as migrated: ${workers.map((w) => [...w.log.matchAll(/task \d+_\d+ stopped \(migrated\)/g)].length).join(", ")} (A, B, C, D, C again)`);

      // The outputs equal the reference.
      const topic = (await readCommitted(output, 60_000)).map((m) => JSON.parse(m.value) as AcceptanceOutput);
      checkAgainst(reference, topic, `topic ${output}`);
      const rows = (await sql.unsafe(`select kind, key, start::float8 as start, n::int as n from "${table}"`)).map((r) => ({ kind: r.kind, key: r.key, start: r.start, n: r.n }) as AcceptanceOutput);
      checkAgainst(reference, rows, `table ${table}`);

      // The bound on read_committed readers.
      assert.ok(blocked !== undefined && blocked.records >= expected, `the probe saw the output (${blocked?.records})`);
      t.diagnostic(`longest a read_committed reader stood before a written record: ${blocked.maxBlockedMs} ms (${blocked.at}), over ${blocked.records} records`);
      assert.ok(blocked.maxBlockedMs <= INTERVAL_MS + TRANSACTION_TIMEOUT_MS, `a read_committed reader was blocked ${blocked.maxBlockedMs} ms (${blocked.at}), more than one checkpoint interval plus the transaction timeout`);
    } catch (err) {
      (err as Error).message += logs;
      throw err;
    }
  });
});
