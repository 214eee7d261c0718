/**
 * Connector benchmarks against the real services (`scripts/services up`, then `eval "$(scripts/services env)"`).
 *
 * - Kafka: a topic of small JSON events (3 partitions), read by each Kafka client Gress has. Baselines: the
 *   raw client written by hand (kafkajs: a consumer with eachBatch; @platformatic/kafka: both its consumer
 *   stream read with 'data' events and a loop on its low-level fetch()), parsing each value and keeping the
 *   same filter + sum. Gress: kafkaSource
 *   (bounded, on that client, named explicitly) → filter → map → a summing sink, i.e. consuming *and*
 *   processing. Both clients run in the same process, one after the other, on the same topic. Target: Gress
 *   ≥ 0.9× its raw client. On both clients Gress reads the fetched record batches with its own reader
 *   (connectors/kafka/record-batches.ts; on kafkajs through connectors/kafka/kafkajs-fetch.ts) while the raw
 *   loops get the library's decoded records: the ratios include that difference, which is most of it.
 * - PostgreSQL: the same rows written by the Gress sink against a raw COPY … FROM STDIN of the rows into an
 *   identical table, in one COPY statement. Without checkpoints the sink COPYs 5,000-row batches straight into
 *   the table in one transaction committed at the end of the input. With checkpoints every 100 ms, both
 *   two-phase paths in the same run: "prepared" COPYs straight into the table in a transaction that each
 *   pre-commit ends with PREPARE TRANSACTION (and the progress row) and each commit with COMMIT PREPARED
 *   (needs max_prepared_transactions > 0 on the server; said and skipped otherwise), "staging" COPYs into
 *   the staging table, then INSERT … SELECT into the table with the progress row at each checkpoint's commit.
 * - Files: a CSV file (4 columns, one row in ten with a quoted field holding the delimiter) and an NDJSON file
 *   of the same 1M rows, read by csvSource / fileSource (typed columns; JSON.parse) → filter → map → a summing
 *   sink, against a hand-written chunked parser doing the same work: 1 MiB reads, a carry-over buffer, one
 *   decode per chunk, lines cut with indexOf, a CSV line without a quote split with indexOf and one with
 *   quotes by a small state machine, a row object per CSV line with its integer columns checked as
 *   csvSource checks them (empty is null, anything but a safe integer is refused; JSON.parse per NDJSON
 *   line), the same filter and sum. And an NDJSON file of 300k longer rows (about 330 bytes, with an array
 *   and a nested object: longer than the default maxDepth, so the source's check that no line nests too
 *   deeply is part of what is measured).
 *   Needs no services (`GRESS_BENCH_ONLY=file` runs only this part).
 *
 * `npm run bench -- connectors`
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Consumer, MessagesStreamModes } from "@platformatic/kafka";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { csvSource, fileSource } from "../connectors/file/index.ts";
import { type KafkaClient, kafkajsClient, kafkaSource, platformaticKafkaClient } from "../connectors/kafka/index.ts";
import { postgresConnection, postgresSink } from "../connectors/postgres/index.ts";
import { Job, lmdbState, sinkFn } from "../lib/index.ts";
import { compare, fmt, median } from "./harness.ts";

interface Event {
  readonly id: number;
  readonly user: string;
  readonly amount: number;
}

function env(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set: run scripts/services up and eval "$(scripts/services env)"`);
  return v;
}

let round = 0;

/**
 * A workload that also records the process's CPU time (user + system, all threads) per event of each call;
 * perEvent() is the median over the timed rounds (the first call is compare()'s warm-up).
 */
function cpuTimed(w: () => Promise<number>): { timed: () => Promise<number>; perEvent: () => number } {
  const ns: number[] = [];
  const timed = async (): Promise<number> => {
    const c0 = process.cpuUsage();
    const n = await w();
    const c = process.cpuUsage(c0);
    ns.push(((c.user + c.system) * 1000) / n);
    return n;
  };
  return { timed, perEvent: (): number => median(ns.slice(1)) };
}

async function kafkaBench(): Promise<void> {
  const brokers = env("GRESS_KAFKA_BROKERS").split(",");
  const count = 300_000;
  const topic = `bench-connectors-${process.pid}-${Date.now().toString(36)}`;
  const kafka = new Kafka({ brokers, clientId: "gress-bench", logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  const t0 = performance.now();
  for (let i = 0; i < count; i += 10_000) {
    await producer.send({
      topic,
      messages: Array.from({ length: Math.min(10_000, count - i) }, (_, j) => {
        const id = i + j;
        return { partition: id % 3, value: JSON.stringify({ id, user: `u${id % 1000}`, amount: (id * 37) % 500 }) };
      }),
    });
  }
  await producer.disconnect();
  console.log(`kafka: produced ${fmt(count)} events to ${topic} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const keep = (e: Event): boolean => e.amount >= 100;
  let expected = 0;
  for (let id = 0; id < count; id++) if ((id * 37) % 500 >= 100) expected += (id * 37) % 500;

  const rawKafkajs = async (): Promise<number> => {
    const consumer = kafka.consumer({ groupId: `bench-raw-${++round}`, maxWaitTimeInMs: 100, maxBytesPerPartition: 1024 * 1024 });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let seen = 0;
    let kept = 0;
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              seen++;
              const e = JSON.parse(m.value?.toString("utf8") ?? "null") as Event;
              if (keep(e)) kept += e.amount;
            }
            if (seen >= count) resolve();
          },
        })
        .catch(reject);
    });
    await consumer.disconnect();
    if (kept !== expected) throw new Error(`raw kafkajs computed ${kept}, expected ${expected}`);
    return seen;
  };

  const rawPlatformatic = async (): Promise<number> => {
    const consumer = new Consumer({ clientId: "gress-bench", bootstrapBrokers: brokers, groupId: `bench-raw-${++round}`, maxWaitTime: 100, autocommit: false });
    const stream = await consumer.consume({ topics: [topic], mode: MessagesStreamModes.EARLIEST, autocommit: false, maxBytesPerPartition: 1024 * 1024 });
    let seen = 0;
    let kept = 0;
    await new Promise<void>((resolve, reject) => {
      stream.on("data", (m) => {
        seen++;
        const e = JSON.parse(m.value.toString("utf8")) as Event;
        if (keep(e)) kept += e.amount;
        if (seen >= count) resolve();
      });
      stream.on("error", reject);
    });
    await stream.close();
    await consumer.close(true);
    if (kept !== expected) throw new Error(`raw @platformatic/kafka computed ${kept}, expected ${expected}`);
    return seen;
  };

  // The library's low-level fetch() in a hand-written loop (no group, positions kept here): the most a user
  // gets out of the library, and the path Gress' adapter takes, so the stricter of the two baselines.
  const rawPlatformaticFetch = async (): Promise<number> => {
    const consumer = new Consumer({ clientId: "gress-bench", bootstrapBrokers: brokers, groupId: `bench-raw-${++round}`, maxWaitTime: 100, autocommit: false });
    const metadata = await consumer.metadata({ topics: [topic] });
    const t = metadata.topics.get(topic);
    if (t === undefined) throw new Error(`no metadata for ${topic}`);
    const positions = t.partitions.map(() => 0n);
    let seen = 0;
    let kept = 0;
    while (seen < count) {
      const response = await consumer.fetch({
        node: t.partitions[0]?.leader ?? 0, // one broker here: it leads every partition
        topics: [
          {
            topicId: t.id,
            partitions: positions.map((fetchOffset, partition) => ({ partition, fetchOffset, partitionMaxBytes: 1024 * 1024, currentLeaderEpoch: -1, lastFetchedEpoch: -1 })),
          },
        ],
      });
      for (const p of response.responses[0]?.partitions ?? []) {
        for (const batch of p.records ?? []) {
          for (const r of batch.records) {
            if (batch.firstOffset + BigInt(r.offsetDelta) < (positions[p.partitionIndex] as bigint)) continue;
            seen++;
            const e = JSON.parse((r.value as Buffer).toString("utf8")) as Event;
            if (keep(e)) kept += e.amount;
          }
          positions[p.partitionIndex] = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
        }
      }
    }
    await consumer.close(true);
    if (kept !== expected) throw new Error(`raw @platformatic/kafka fetch loop computed ${kept}, expected ${expected}`);
    return seen;
  };

  // The client is named, not left to the default, so that each line compares Gress and the raw loop on one client.
  // Events are counted by the source's own metric, as the raw loops count them inline, not by an extra operator
  // (a tap would add an operator the raw loops do not have, about 40 ns per event).
  const gress = (client: () => KafkaClient) => async (): Promise<number> => {
    const job = new Job({ name: "bench-kafka" });
    let kept = 0;
    const c = client();
    const src = kafkaSource<Event>({ name: "in", client: c, topics: [topic], groupId: `bench-gress-${++round}`, bounded: true });
    job
      .source(src)
      .filter(keep)
      .map((e) => e.amount)
      .sinkTo(sinkFn("sum", (a) => void (kept += a)));
    await job.run();
    await c.close();
    const emitted = job.metrics.source(src.name).emitted;
    if (kept !== expected || emitted !== count) throw new Error(`gress computed ${kept} from ${emitted} events, expected ${expected} from ${count}`);
    return emitted;
  };

  // The process's CPU time per event of each timed round as well: on this shared machine the wall clock moves
  // with the load by ±0.1 in the ratio, the CPU time much less (the broker's own work is not in it; the
  // clients' socket reads, parsing and GC threads are).
  const cpuLine = (g: { perEvent(): number }, b: { perEvent(): number }): string =>
    `; CPU per event ${g.perEvent().toFixed(0)} ns against ${b.perEvent().toFixed(0)} ns, ratio ${(b.perEvent() / g.perEvent()).toFixed(2)}x`;
  const cpuK = { gress: cpuTimed(gress(() => kafkajsClient({ brokers, clientId: "gress-bench" }))), raw: cpuTimed(rawKafkajs) };
  const kafkajs = await compare("kafka kafkajs consume+process", cpuK.gress.timed, cpuK.raw.timed, 5);
  const onPlatformatic = gress(() => platformaticKafkaClient({ brokers, clientId: "gress-bench" }));
  const platformatic = await compare("kafka platformatic vs its stream", onPlatformatic, rawPlatformatic, 5);
  const cpuF = { gress: cpuTimed(onPlatformatic), raw: cpuTimed(rawPlatformaticFetch) };
  const platformaticFetch = await compare("kafka platformatic vs its fetch()", cpuF.gress.timed, cpuF.raw.timed, 5);
  console.log(
    `kafka (kafkajs 2.2.4):             gress ${fmt(kafkajs.gress)} ev/s, raw ${fmt(kafkajs.baseline)} ev/s, gress/raw = ${kafkajs.ratio.toFixed(2)}x (target >= 0.90x)${cpuLine(cpuK.gress, cpuK.raw)}`,
  );
  console.log(
    `kafka (@platformatic/kafka 2.12.1): gress ${fmt(platformatic.gress)} ev/s, raw stream ${fmt(platformatic.baseline)} ev/s, gress/raw = ${platformatic.ratio.toFixed(2)}x (target >= 0.90x)`,
  );
  console.log(
    `kafka (@platformatic/kafka 2.12.1): gress ${fmt(platformaticFetch.gress)} ev/s, raw fetch() loop ${fmt(platformaticFetch.baseline)} ev/s, gress/raw = ${platformaticFetch.ratio.toFixed(2)}x (target >= 0.90x)${cpuLine(cpuF.gress, cpuF.raw)}`,
  );
  console.log(
    `kafka clients: gress on platformatic / gress on kafkajs = ${(platformatic.gress / kafkajs.gress).toFixed(2)}x; raw platformatic / raw kafkajs = ${(platformatic.baseline / kafkajs.baseline).toFixed(2)}x`,
  );
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
}

async function postgresBench(): Promise<void> {
  const url = env("GRESS_PG_URL");
  const count = 100_000;
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  // The sink's connection, made once like the baseline's (connecting is not what is measured): the one the sink
  // makes for itself from a url, with Nagle's algorithm off (see postgresConnection).
  const sinkSql = postgresConnection(url);
  const suffix = `${process.pid}_${Date.now().toString(36)}`;
  const gressTable = `bench_gress_${suffix}`;
  const copyTable = `bench_copy_${suffix}`;
  const ddl = "(id bigint, user_name text, amount integer, at timestamptz)";
  await sql.unsafe(`create table ${gressTable} ${ddl}`);
  await sql.unsafe(`create table ${copyTable} ${ddl}`);
  const rows = Array.from({ length: count }, (_, id) => ({ id, user: `u${id % 1000}`, amount: (id * 37) % 500, at: 1_700_000_000_000 + id }));

  const copy = async (): Promise<number> => {
    await sql.unsafe(`truncate ${copyTable}`);
    const stream = await sql.unsafe(`copy ${copyTable} (id, user_name, amount, at) from stdin`).writable();
    const chunk: string[] = [];
    const write = (text: string): Promise<void> => new Promise((resolve, reject) => stream.write(text, (err) => (err ? reject(err) : resolve())));
    for (const r of rows) {
      chunk.push(`${r.id}\t${r.user}\t${r.amount}\t${new Date(r.at).toISOString()}\n`);
      if (chunk.length === 5000) await write(chunk.splice(0).join(""));
    }
    if (chunk.length > 0) await write(chunk.join(""));
    await new Promise<void>((resolve, reject) => {
      stream.on("finish", resolve);
      stream.on("error", reject);
      stream.end();
    });
    return count;
  };

  const [setting] = await sql.unsafe("select current_setting('max_prepared_transactions')::int as n");
  const maxPrepared = Number(setting?.n ?? 0);
  const gress = (checkpointMs: number | undefined, twoPhase: "prepared" | "staging" = "staging") => async (): Promise<number> => {
    await sql.unsafe(`truncate ${gressTable}`);
    const dir = checkpointMs === undefined ? undefined : mkdtempSync(join(tmpdir(), "gress-bench-pg-"));
    const checkpointed =
      dir === undefined ? {} : { state: lmdbState({ path: dir, mapSize: 64 * 1024 * 1024, durability: "process" }), checkpoints: { intervalMs: checkpointMs as number, log: () => {} } };
    const job = new Job({ name: "bench-pg", ...checkpointed });
    job.fromIterable(rows).sinkTo(
      postgresSink<(typeof rows)[number]>({
        name: "rows",
        job: "bench-pg",
        sql: sinkSql,
        table: gressTable,
        batchSize: 5000,
        twoPhase,
        log: () => {},
        columns: {
          id: { type: "bigint", value: (r) => r.id },
          user_name: { type: "text", value: (r) => r.user },
          amount: { type: "integer", value: (r) => r.amount },
          at: { type: "timestamptz", value: (r) => r.at },
        },
      }),
    );
    await job.run();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    const [c] = await sql.unsafe(`select count(*)::int as n from ${gressTable}`);
    if (c?.n !== count) throw new Error(`gress wrote ${c?.n} rows, expected ${count}`);
    return count;
  };

  const r = await compare("postgres sink vs raw COPY (100k rows)", gress(undefined), copy, 5);
  // The same with checkpoints every 100 ms: each checkpoint's rows committed (progress row) while the next stream in.
  const p = maxPrepared > 0 ? await compare("postgres sink, checkpoints every 100 ms, prepared transactions", gress(100, "prepared"), copy, 5) : undefined;
  const c = await compare("postgres sink, checkpoints every 100 ms, staging table", gress(100, "staging"), copy, 5);
  console.log(`postgres: gress sink ${fmt(r.gress)} rows/s, raw COPY ${fmt(r.baseline)} rows/s, ratio ${r.ratio.toFixed(2)}x (target >= 0.50x)`);
  if (p === undefined) console.log("postgres, checkpoints every 100 ms, prepared transactions: not measured, max_prepared_transactions is 0 on this server");
  else console.log(`postgres, checkpoints every 100 ms, prepared transactions: gress sink ${fmt(p.gress)} rows/s, raw COPY ${fmt(p.baseline)} rows/s, ratio ${p.ratio.toFixed(2)}x (target >= 0.50x)`);
  console.log(`postgres, checkpoints every 100 ms, staging table: gress sink ${fmt(c.gress)} rows/s, raw COPY ${fmt(c.baseline)} rows/s, ratio ${c.ratio.toFixed(2)}x`);
  await sql.unsafe(`drop table if exists ${gressTable}, ${copyTable}`);
  await sql.end({ timeout: 5 });
  await sinkSql.end({ timeout: 5 });
}

/** Reads `path` in 1 MiB chunks and calls `line(text, start, end)` for each line (without its newline). */
async function chunkedLines(path: string, line: (text: string, start: number, end: number) => void): Promise<void> {
  const file = await open(path, "r");
  const decoder = new TextDecoder();
  let buf = new Uint8Array(1 << 20);
  let carry = 0;
  try {
    for (;;) {
      if (carry === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const { bytesRead } = await file.read(buf, carry, buf.length - carry, null);
      const filled = carry + bytesRead;
      const end = bytesRead === 0 ? filled : buf.lastIndexOf(10, filled - 1) + 1;
      const text = decoder.decode(buf.subarray(0, end));
      let i = 0;
      while (i < text.length) {
        let nl = text.indexOf("\n", i);
        if (nl < 0) nl = text.length;
        if (nl > i) line(text, i, nl);
        i = nl + 1;
      }
      if (bytesRead === 0) return;
      buf.copyWithin(0, end, filled);
      carry = filled - end;
    }
  } finally {
    await file.close();
  }
}

interface Row {
  readonly id: number;
  readonly user: string;
  readonly amount: number;
  readonly note: string;
}

/**
 * Writes the CSV and NDJSON files of `count` rows; returns the sum both sides must compute. A function of its
 * own, so that its millions of line strings are garbage before anything is measured (a heap that still held
 * them made every collection during the runs slower, and the side that allocates more slower still).
 */
function writeRows(count: number, csvPath: string, ndjsonPath: string): number {
  const csvLines: string[] = ["id,user,amount,note"];
  const jsonLines: string[] = [];
  let expected = 0;
  for (let id = 0; id < count; id++) {
    const user = `u${id % 1000}`;
    const amount = (id * 37) % 500;
    const note = id % 10 === 0 ? `late, by ${id % 7} days` : "ok";
    csvLines.push(`${id},${user},${amount},${id % 10 === 0 ? `"${note}"` : note}`);
    jsonLines.push(JSON.stringify({ id, user, amount, note }));
    if (amount >= 100) expected += amount;
  }
  writeFileSync(csvPath, `${csvLines.join("\n")}\n`);
  writeFileSync(ndjsonPath, `${jsonLines.join("\n")}\n`);
  return expected;
}

/**
 * Writes an NDJSON file of `count` longer rows (about 330 bytes: a long text, an array, a nested object),
 * longer than the default maxDepth of 128; returns the sum both sides must compute.
 */
function writeLongRows(count: number, path: string): number {
  const lines: string[] = [];
  let expected = 0;
  for (let id = 0; id < count; id++) {
    const amount = (id * 37) % 500;
    lines.push(JSON.stringify({ id, user: `u${id % 1000}`, amount, note: `${"lorem ipsum ".repeat(20)}${id % 97}`, tags: ["a", `t${id % 13}`], geo: { lat: 48.1 + (id % 10) / 100, lon: 11.5 } }));
    if (amount >= 100) expected += amount;
  }
  writeFileSync(path, `${lines.join("\n")}\n`);
  return expected;
}

/**
 * An "integer" column as csvSource reads it: empty is null, anything but a safe integer is a bad row (the
 * source sends it to dead letters; here it stops the run).
 */
function integer(text: string): number | null {
  if (text === "") return null;
  const v = Number(text);
  if (!Number.isSafeInteger(v)) throw new Error(`not an integer: ${JSON.stringify(text)}`);
  return v;
}

async function fileBench(): Promise<void> {
  const count = 1_000_000;
  const dir = mkdtempSync(join(tmpdir(), "gress-bench-file-"));
  const csvPath = join(dir, "rows.csv");
  const ndjsonPath = join(dir, "rows.ndjson");
  const expected = writeRows(count, csvPath, ndjsonPath);
  const longCount = 300_000;
  const longPath = join(dir, "long.ndjson");
  const longExpected = writeLongRows(longCount, longPath);
  const keep = (r: { amount: number }): boolean => r.amount >= 100;

  // Rows are counted by the source's own metric (the baseline counts inline), not by an extra operator.
  const gress = (source: () => ReturnType<typeof csvSource<Row>>, rows = count, sum = expected) => async (): Promise<number> => {
    const job = new Job({ name: "bench-file" });
    let kept = 0;
    const src = source();
    job
      .source(src)
      .filter(keep)
      .map((r) => r.amount)
      .sinkTo(sinkFn("sum", (a) => void (kept += a)));
    await job.run();
    const emitted = job.metrics.source(src.name).emitted;
    if (kept !== sum || emitted !== rows) throw new Error(`gress computed ${kept} from ${emitted} rows, expected ${sum} from ${rows}`);
    return emitted;
  };
  const gressCsv = gress(() => csvSource<Row>({ path: csvPath, header: true, columns: { id: "integer", user: "string", amount: "integer", note: "string" } }));
  const gressNdjson = gress(() => fileSource<Row>({ path: ndjsonPath }));
  const gressLong = gress(() => fileSource<Row>({ path: longPath }), longCount, longExpected);

  /** A hand-written CSV record parser: indexOf on the line for a bare record, a state machine for a quoted one. */
  const fields: string[] = [];
  const splitCsv = (line: string): number => {
    let k = 0;
    if (line.indexOf('"') < 0) {
      let a = 0;
      for (let c = line.indexOf(","); c >= 0; c = line.indexOf(",", a)) {
        fields[k++] = line.slice(a, c);
        a = c + 1;
      }
      fields[k++] = line.slice(a);
      return k;
    }
    let p = 0;
    while (p <= line.length) {
      if (line.charCodeAt(p) === 34) {
        let f = "";
        let seg = p + 1;
        for (;;) {
          const c = line.indexOf('"', seg);
          if (c < 0) throw new Error(`unterminated quote: ${line}`);
          if (line.charCodeAt(c + 1) === 34) {
            f += line.slice(seg, c + 1);
            seg = c + 2;
          } else {
            f += line.slice(seg, c);
            p = c + 2;
            break;
          }
        }
        fields[k++] = f;
      } else {
        let c = line.indexOf(",", p);
        if (c < 0) c = line.length;
        fields[k++] = line.slice(p, c);
        p = c + 1;
      }
    }
    return k;
  };
  const rawCsv = async (): Promise<number> => {
    let n = -1; // the header
    let kept = 0;
    await chunkedLines(csvPath, (text, i, end) => {
      if (n++ < 0) return;
      if (splitCsv(text.slice(i, end)) !== 4) throw new Error("bad row");
      const row: Row = { id: integer(fields[0] as string) as number, user: fields[1] as string, amount: integer(fields[2] as string) as number, note: fields[3] as string };
      if (keep(row)) kept += row.amount;
    });
    if (kept !== expected) throw new Error(`hand-written CSV computed ${kept}, expected ${expected}`);
    return n;
  };
  const rawNdjsonOf = (path: string, sum: number) => async (): Promise<number> => {
    let n = 0;
    let kept = 0;
    await chunkedLines(path, (text, i, end) => {
      n++;
      const row = JSON.parse(text.slice(i, end)) as Row;
      if (keep(row)) kept += row.amount;
    });
    if (kept !== sum) throw new Error(`hand-written NDJSON computed ${kept}, expected ${sum}`);
    return n;
  };

  // The process's CPU time per row as well: on a shared machine the wall clock moves with the load, the CPU
  // time much less (both sides run in this process; reads and GC threads included).
  const parts = [
    { label: "CSV, 1M rows", name: "file csv vs hand-written (1M rows)", gress: cpuTimed(gressCsv), raw: cpuTimed(rawCsv) },
    { label: "NDJSON, 1M rows", name: "file ndjson vs hand-written (1M)", gress: cpuTimed(gressNdjson), raw: cpuTimed(rawNdjsonOf(ndjsonPath, expected)) },
    { label: "NDJSON, 300k rows of 330 bytes", name: "file ndjson long rows (300k)", gress: cpuTimed(gressLong), raw: cpuTimed(rawNdjsonOf(longPath, longExpected)) },
  ];
  for (const p of parts) {
    const r = await compare(p.name, p.gress.timed, p.raw.timed, 5);
    const g = p.gress.perEvent();
    const b = p.raw.perEvent();
    console.log(
      `file (${p.label}): gress ${fmt(r.gress)} rows/s, hand-written chunked parser ${fmt(r.baseline)} rows/s, ratio ${r.ratio.toFixed(2)}x (target >= 0.80x); CPU per row ${g.toFixed(0)} ns against ${b.toFixed(0)} ns, ratio ${(b / g).toFixed(2)}x`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Runs the connector benchmarks. */
export async function run(): Promise<void> {
  const only = process.env.GRESS_BENCH_ONLY; // "kafka", "postgres" or "file" to run one part
  if (only === undefined || only === "kafka") await kafkaBench();
  if (only === undefined || only === "postgres") await postgresBench();
  if (only === undefined || only === "file") await fileBench();
}
