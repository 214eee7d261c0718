/**
 * Poison records against the real systems: a record that no sink can serialise or map, or that nests too
 * deeply to be serialised at all, goes to dead letters with the reason; the rest is delivered and the job
 * does not fail (before, it failed with ERR_SINK, and again after every restart on the same record).
 * @module
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import postgres from "postgres";
import { fileSource } from "../../connectors/file/index.ts";
import { kafkaSink, kafkaSource } from "../../connectors/kafka/index.ts";
import { postgresSink, type Sql } from "../../connectors/postgres/index.ts";
import { DEAD_LETTERS, Job, lmdbState, type SideRecord } from "../../lib/index.ts";
import { tempDirs } from "../support/temp.ts";
import { brokers, createTopic, produce, readCommitted, uniqueName } from "./kafka-support.ts";

const tempDir = tempDirs("gress-poison-");

/** The record: a valid JSON array nested 5,000 levels deep (about 10 KB). */
const DEEP_TEXT = `${"[".repeat(5000)}${"]".repeat(5000)}`;

/** An array nested `depth` levels deep, built in memory (as a user's decoder or a map could make it). */
function nested(depth: number): unknown[] {
  let v: unknown[] = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function pgUrl(): string {
  const v = process.env.GRESS_PG_URL;
  if (v === undefined || v === "") throw new Error('GRESS_PG_URL is not set: run `eval "$(scripts/services env)"` first');
  return v;
}

interface Row {
  readonly a: number;
  readonly b: unknown;
}

describe("poison records: dead letters, never a failed job (Kafka)", () => {
  it("Kafka → Kafka: the 5,000-deep array is a dead letter of the source, a null whose key function throws one of the sink; the rest is committed", { timeout: 120_000 }, async () => {
    const input = uniqueName("poison-in");
    const output = uniqueName("poison-out");
    await createTopic(input, 1);
    await createTopic(output, 1);
    await produce(input, [{ value: '{"id":1}' }, { value: DEEP_TEXT }, { value: "null" }, { value: '{"id":2}' }]);

    const job = new Job({ name: uniqueName("poison-kafka") });
    const stream = job.source(kafkaSource<{ id: number }>({ name: "in", brokers: brokers(), topics: [input], groupId: uniqueName("g"), bounded: true }));
    const sunk = stream.sinkTo(kafkaSink<{ id: number }>({ name: "out", brokers: brokers(), topic: output, key: (r) => String(r.id), transactionalId: uniqueName("tx") }));
    const dead: SideRecord[] = [];
    stream.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
    sunk.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
    await job.run();

    assert.deepEqual(
      (await readCommitted(output)).map((m) => [m.key, m.value]),
      [
        ["1", '{"id":1}'],
        ["2", '{"id":2}'],
      ],
    );
    assert.equal(dead.length, 2, JSON.stringify(dead.map((d) => d.reason)));
    const [deep, nul] = dead.sort((x, y) => x.reason.localeCompare(y.reason));
    assert.match(deep?.reason ?? "", /^nested too deeply: arrays and objects more than 128 levels deep/);
    assert.equal((deep?.value as { size?: number } | undefined)?.size, DEEP_TEXT.length);
    assert.equal(nul?.value, null);
    assert.match(nul?.reason ?? "", /^sink "out": key failed: .*null/);
  });

  it("Kafka sink: a value nested 100,000 deep (JSON.stringify overflows the stack) is a dead letter, the others are committed", { timeout: 120_000 }, async () => {
    const output = uniqueName("poison-deep");
    await createTopic(output, 1);
    const job = new Job({ name: uniqueName("poison-kafka-deep") });
    const dead: SideRecord[] = [];
    job
      .fromIterable<unknown>([{ id: 1 }, nested(100_000), { id: 2 }])
      .sinkTo(kafkaSink<unknown>({ name: "out", brokers: brokers(), topic: output, transactionalId: uniqueName("tx") }))
      .sideRecords(DEAD_LETTERS)
      .subscribe((r) => void dead.push(r));
    await job.run();
    assert.deepEqual(
      (await readCommitted(output)).map((m) => m.value),
      ['{"id":1}', '{"id":2}'],
    );
    assert.equal(dead.length, 1);
    assert.match(dead[0]?.reason ?? "", /^sink "out": serialize failed: .*call stack/i);
  });
});

describe("poison records: dead letters, never a failed job (PostgreSQL)", () => {
  let sql: Sql;
  before(() => {
    sql = postgres(pgUrl(), { max: 2, onnotice: () => {} });
  });
  after(async () => {
    await sql.end({ timeout: 5 });
  });
  const table = (): string => `poison_${process.pid}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`;

  it("NDJSON → PostgreSQL: a null line meets the extractor (r) => r.b and the 5,000-deep line the decoder; both are dead letters, the rows land", { timeout: 120_000 }, async () => {
    const dir = tempDir();
    const path = join(dir, "in.ndjson");
    writeFileSync(path, ['{"a":1,"b":"x"}', "null", DEEP_TEXT, '{"a":2,"b":"y"}', ""].join("\n"));
    const name = table();
    const job = new Job({ name: uniqueName("poison-pg") });
    const stream = job.source(fileSource<Row>({ path }));
    const sunk = stream.sinkTo(
      postgresSink<Row>({
        name: "rows",
        job: job.name,
        url: pgUrl(),
        table: name,
        createTable: true,
        columns: { a: { type: "bigint", value: (r) => r.a }, b: { type: "text", value: (r) => r.b } },
      }),
    );
    const dead: SideRecord[] = [];
    stream.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
    sunk.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(r));
    await job.run();

    const rows = await sql.unsafe(`select a::int as a, b from "${name}" order by a`);
    assert.deepEqual(
      rows.map((r) => [r.a, r.b]),
      [
        [1, "x"],
        [2, "y"],
      ],
    );
    assert.equal(dead.length, 2, JSON.stringify(dead.map((d) => d.reason)));
    const reasons = dead.map((d) => d.reason).sort();
    assert.match(reasons[0] ?? "", /^file ".*in\.ndjson" line 3 \(byte 21\): nested too deeply: arrays and objects more than 128 levels deep/);
    assert.match(reasons[1] ?? "", /^sink "rows": column "a" \(bigint\): .*null/);
    assert.equal(dead.find((d) => d.reason.startsWith("sink"))?.value, null);
  });

  it("values PostgreSQL would refuse (a jsonb nested 100,000 deep, a fraction for bigint, NUL in text, an invalid time) are dead letters; the batch commits with checkpoints", { timeout: 120_000 }, async () => {
    interface Doc {
      readonly id: number;
      readonly doc?: unknown;
      readonly text?: string;
      readonly at?: number;
    }
    const name = table();
    const job = new Job({ name: uniqueName("poison-pg-types"), state: lmdbState({ path: tempDir() }), checkpoints: { intervalMs: 50 } });
    const dead: SideRecord[] = [];
    const good = Array.from({ length: 100 }, (_, i): Doc => ({ id: i, doc: { i }, text: `t${i}`, at: 1_700_000_000_000 + i }));
    const bad: Doc[] = [{ id: 1000, doc: nested(100_000) }, { id: 1.5 }, { id: 1001, text: "nul\u0000byte" }, { id: 1002, at: Number.NaN }];
    job
      .fromIterable([...good.slice(0, 50), ...bad, ...good.slice(50)])
      .sinkTo(
        postgresSink<Doc>({
          name: "docs",
          job: job.name,
          url: pgUrl(),
          table: name,
          createTable: true,
          key: ["id"],
          columns: {
            id: { type: "bigint", value: (d) => d.id },
            doc: { type: "jsonb", value: (d) => d.doc },
            text: { type: "text", value: (d) => d.text },
            at: { type: "timestamptz", value: (d) => d.at },
          },
        }),
      )
      .sideRecords(DEAD_LETTERS)
      .subscribe((r) => void dead.push(r));
    await job.run();
    const rows = await sql.unsafe(`select id::int as id from "${name}" order by id`);
    assert.deepEqual(
      rows.map((r) => r.id),
      good.map((d) => d.id),
    );
    assert.deepEqual(
      dead.map((d) => d.reason.split(": ").slice(0, 2).join(": ")),
      ['sink "docs": column "doc" (jsonb)', 'sink "docs": column "id" (bigint)', 'sink "docs": column "text" (text)', 'sink "docs": column "at" (timestamptz)'],
    );
    assert.match(dead[1]?.reason ?? "", /bigint needs an integer, got number 1\.5$/);
  });
});
