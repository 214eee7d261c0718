/**
 * Idleness across a shuffle on the real broker: the pipeline of tests/integration/scaleout-shuffle-pipeline.ts
 * (keyBy user through a repartition topic, an event-time tumbling window count per user) over 4 input
 * partitions of which one never receives a record, with the source's watermark strategy given an
 * `idleTimeoutMs`. The task of the empty partition never has a watermark to send; it reports IDLE to every
 * downstream task instead, which leave it out of their merged watermark. The window results must equal the
 * single-process reference run with the same strategy (where the empty split is idle), none twice. Before
 * IDLE existed, every downstream task held its watermark forever and no window came out. Runs on the client
 * GRESS_KAFKA_CLIENT names (@platformatic/kafka by default).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Job, sinkFn } from "../../lib/index.ts";
import { brokers, clientName, createTopic, produce, readCommitted, uniqueName } from "./kafka-support.ts";
import { expectedCounts, shuffleEvents, type UserCount, windowPipeline } from "./scaleout-shuffle-pipeline.ts";
import { outputCounter, startWorker, until } from "./scaleout-support.ts";

const PARTITIONS = 4;
/** The events go to partitions 0-2 only (region % 3); partition 3 stays empty. */
const USED = 3;
const IDLE_MS = 3_000;

const key = (r: UserCount): string => `${r.user}@${r.start}`;
const sorted = (m: ReadonlyMap<string, number>): [string, number][] => [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

describe(`scale-out shuffle with an empty input partition (${clientName()}, real broker)`, () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("the empty partition's task reports IDLE: the window results equal the single-process reference with the same idle timeout, none twice", { timeout: 150_000 }, async () => {
    const input = uniqueName("shi-in");
    await createTopic(input, PARTITIONS);
    const data = shuffleEvents(1_500, 6, 12, USED);
    await produce(
      input,
      data.map((d) => ({ key: String(d.event.region), value: JSON.stringify(d.event), partition: d.partition })),
    );

    const ref: UserCount[] = [];
    const job = new Job({ name: uniqueName("shi-ref") });
    windowPipeline({ input, kafka: { brokers: brokers() }, bounded: true, copartitioned: false, idleTimeoutMs: IDLE_MS, sink: () => sinkFn("collect", (r: UserCount) => void ref.push(r)) })(job);
    await job.run();
    const reference = new Map(ref.map((r) => [key(r), r.count]));
    assert.equal(reference.size, ref.length, "the reference has one result per (user, window)");
    assert.deepEqual(sorted(reference), sorted(expectedCounts(data.map((d) => d.event))));

    const output = uniqueName("shi-out");
    await createTopic(output, PARTITIONS);
    const counter = await outputCounter(output);
    const state = mkdtempSync(join(tmpdir(), "gress-shi-"));
    dirs.push(state);
    const w = startWorker({ job: uniqueName("shi"), state, brokers: brokers(), client: clientName(), input, output, intervalMs: 500, ratePerSecond: 1_000, pipeline: "window-shuffle", idleTimeoutMs: IDLE_MS });
    try {
      await until("every window result", () => counter.count() >= reference.size, 90_000, [w]);
      // A duplicate would come after the count is reached: give it time to show.
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      w.child.kill("SIGTERM");
      await counter.stop();
    }
    assert.deepEqual(await w.exited, { code: 0, signal: null }, w.log);
    const read = (await readCommitted(output, 60_000)).map((m) => JSON.parse(m.value) as UserCount);
    const counts = new Map(read.map((r) => [key(r), r.count]));
    assert.equal(read.length, counts.size, "no window result twice");
    assert.deepEqual(sorted(counts), sorted(reference), w.log);
  });
});
