/**
 * Connector benchmarks against the real services (`scripts/services up`, then `eval "$(scripts/services env)"`).
 *
 * - Kafka: a topic of small JSON events (3 partitions). Baseline: a raw kafkajs consumer (eachBatch) that
 *   parses each value and keeps the same filter + count, written by hand. Gress: kafkaSource (bounded) →
 *   filter → map → a counting sink, i.e. consuming *and* processing. Target: Gress ≥ 0.8× raw.
 * - PostgreSQL: the same rows written by the Gress sink (bulk insert into staging + INSERT … SELECT into the
 *   table, committed once) against a raw COPY … FROM STDIN of the rows into an identical table.
 *
 * `npm run bench -- connectors`
 * @module
 */
import process from "node:process";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { kafkaSource } from "../connectors/kafka/index.ts";
import { postgresSink } from "../connectors/postgres/index.ts";
import { Job, sinkFn } from "../lib/index.ts";
import { compare, fmt } from "./harness.ts";

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

  const raw = async (): Promise<number> => {
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
    if (kept !== expected) throw new Error(`raw computed ${kept}, expected ${expected}`);
    return seen;
  };

  const gress = async (): Promise<number> => {
    const job = new Job({ name: "bench-kafka" });
    let kept = 0;
    let n = 0;
    const stream = job.source(kafkaSource<Event>({ name: "in", brokers, topics: [topic], groupId: `bench-gress-${++round}`, bounded: true }));
    stream
      .tap(() => n++)
      .filter(keep)
      .map((e) => e.amount)
      .sinkTo(sinkFn("sum", (a) => void (kept += a)));
    await job.run();
    if (kept !== expected) throw new Error(`gress computed ${kept}, expected ${expected}`);
    return n;
  };

  const r = await compare("kafka consume+process (300k, 3 parts)", gress, raw, 5);
  console.log(`kafka: gress/raw = ${r.ratio.toFixed(2)}x (target >= 0.80x)`);
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
}

async function postgresBench(): Promise<void> {
  const url = env("GRESS_PG_URL");
  const count = 100_000;
  const sql = postgres(url, { max: 2, onnotice: () => {} });
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

  const gress = async (): Promise<number> => {
    await sql.unsafe(`truncate ${gressTable}`);
    const job = new Job({ name: "bench-pg" });
    job.fromIterable(rows).sinkTo(
      postgresSink<(typeof rows)[number]>({
        name: "rows",
        job: "bench-pg",
        sql,
        table: gressTable,
        batchSize: 5000,
        columns: {
          id: { type: "bigint", value: (r) => r.id },
          user_name: { type: "text", value: (r) => r.user },
          amount: { type: "integer", value: (r) => r.amount },
          at: { type: "timestamptz", value: (r) => r.at },
        },
      }),
    );
    await job.run();
    const [c] = await sql.unsafe(`select count(*)::int as n from ${gressTable}`);
    if (c?.n !== count) throw new Error(`gress wrote ${c?.n} rows, expected ${count}`);
    return count;
  };

  const r = await compare("postgres sink vs raw COPY (100k rows)", gress, copy, 5);
  console.log(`postgres: gress sink ${fmt(r.gress)} rows/s, raw COPY ${fmt(r.baseline)} rows/s, ratio ${r.ratio.toFixed(2)}x`);
  await sql.unsafe(`drop table if exists ${gressTable}, ${copyTable}`);
  await sql.end({ timeout: 5 });
}

/** Runs both connector benchmarks. */
export async function run(): Promise<void> {
  const only = process.env.GRESS_BENCH_ONLY; // "kafka" or "postgres" to run one half
  if (only !== "postgres") await kafkaBench();
  if (only !== "kafka") await postgresBench();
}
