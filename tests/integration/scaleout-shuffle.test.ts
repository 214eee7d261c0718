/**
 * Shuffles in scale-out jobs, on the real broker (issue 11): the input is partitioned by `region`, the keyBy is
 * on `user`, then an event-time tumbling window counts per user (tests/integration/scaleout-shuffle-pipeline.ts).
 * Two worker processes share the 4 tasks; every record crosses the repartition topic to the task that owns its
 * user, and the watermark crosses it in-band (a downstream task's watermark is the minimum over the upstream
 * tasks). The window results must equal the single-process reference run of the same pipeline exactly, with no
 * result twice, also when a worker is killed with SIGKILL mid-run. The same job with the keyBy wrongly declared
 * `copartitioned` (no shuffle) is run too, and must differ: each task counts only its own regions' share of a
 * user, which is what any keyBy did in a task before shuffles existed. An existing repartition topic with the
 * wrong partition count stops the worker with a ConfigError. Runs on the client GRESS_KAFKA_CLIENT
 * names (@platformatic/kafka by default).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Job, sinkFn } from "../../lib/index.ts";
import { brokers, clientName, createTopic, produce, readCommitted, uniqueName } from "./kafka-support.ts";
import { current, outputCounter, started, startWorker, until } from "./scaleout-support.ts";
import { decodeShuffleRecord } from "../../lib/scaleout/shuffle.ts";
import { expectedCounts, type ShuffleEvent, shuffleEvents, type UserCount, windowPipeline } from "./scaleout-shuffle-pipeline.ts";

const PARTITIONS = 4;
const COUNT = 4000;
const REGIONS = 8;
const USERS = 12;

/** Results as `user@start → count`; a (user, window) that came twice is listed in `twice`. */
function tally(results: readonly UserCount[]): { counts: Map<string, number>; twice: string[] } {
  const counts = new Map<string, number>();
  const twice: string[] = [];
  for (const r of results) {
    const k = `${r.user}@${r.start}`;
    if (counts.has(k)) twice.push(k);
    counts.set(k, r.count);
  }
  return { counts, twice };
}

/**
 * The input records that the repartition topic hands a read_committed reader more than once, each as
 * `i=<event> input partition <p>: <repartition partition>@<offset>, …`. The input partition names the upstream
 * task. Either the task sent them in two committed transactions, or the client handed out the records of an
 * aborted one (kafkajs did, see connectors/kafka/kafkajs-aborted.ts): the window counts then came out too high.
 */
async function shuffledTwice(topic: string): Promise<string[]> {
  const seen = new Map<number, string[]>();
  for (const m of await readCommitted(topic, 60_000)) {
    if (m.bytes === null) continue;
    const r = decodeShuffleRecord(m.bytes);
    if (r.kind !== "record") continue;
    const e = r.value as ShuffleEvent;
    seen.set(e.i, [...(seen.get(e.i) ?? []), `${m.partition}@${m.offset}`]);
  }
  return [...seen]
    .filter(([, at]) => at.length > 1)
    .sort((a, b) => a[0] - b[0])
    .map(([i, at]) => `i=${i} input partition ${(i % REGIONS) % PARTITIONS}: ${at.join(", ")}`);
}

const sorted = (m: ReadonlyMap<string, number>): [string, number][] => [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

describe(`scale-out shuffles on Kafka (${clientName()}, real broker)`, () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  let input = "";
  let events: ShuffleEvent[] = [];
  let reference: Map<string, number> | undefined;

  const setup = async (): Promise<void> => {
    if (input !== "") return;
    input = uniqueName("sh-in");
    await createTopic(input, PARTITIONS);
    const data = shuffleEvents(COUNT, REGIONS, USERS, PARTITIONS);
    events = data.map((d) => d.event);
    await produce(
      input,
      data.map((d) => ({ key: String(d.event.region), value: JSON.stringify(d.event), partition: d.partition })),
    );
  };
  const config = (output: string, job: string, extra: object = {}) => {
    const state = mkdtempSync(join(tmpdir(), "gress-sh-"));
    dirs.push(state);
    return { job, state, brokers: brokers(), client: clientName(), input, output, intervalMs: 500, ratePerSecond: 100, pipeline: "window-shuffle", ...extra };
  };

  it("the single-process reference run gives one count per user and window, equal to the counts of the input", { timeout: 60_000 }, async () => {
    await setup();
    const out: UserCount[] = [];
    const job = new Job({ name: uniqueName("sh-ref") });
    windowPipeline({ input, kafka: { brokers: brokers() }, bounded: true, copartitioned: false, sink: () => sinkFn("collect", (r: UserCount) => void out.push(r)) })(job);
    await job.run();
    const { counts, twice } = tally(out);
    assert.deepEqual(twice, []);
    assert.deepEqual(sorted(counts), sorted(expectedCounts(events)));
    reference = counts;
  });

  it("two workers, keyBy through a repartition topic, one worker killed with SIGKILL mid-run: the window results equal the reference, none twice", { timeout: 150_000 }, async () => {
    await setup();
    assert.ok(reference !== undefined, "the reference run ran");
    const output = uniqueName("sh-out");
    await createTopic(output, PARTITIONS);
    const job = uniqueName("sh2");
    const counter = await outputCounter(output);
    const a = startWorker(config(output, job));
    const b = startWorker(config(output, job));
    const workers = [a, b];
    const expected = reference.size;
    try {
      await until("the workers sharing the tasks and some windows out", () => current(a).length === 2 && current(b).length === 2 && counter.count() >= 12, 90_000, workers);
      const beforeKill = counter.count();
      assert.ok(beforeKill < expected - 20, `the kill comes mid-run (${beforeKill} of ${expected} windows out)`);
      const bTasks = current(b);
      const aStarts = started(a).length;
      b.child.kill("SIGKILL");
      assert.equal((await b.exited).signal, "SIGKILL");
      await until("every window after the kill", () => counter.count() >= expected, 90_000, workers);
      for (const t of bTasks) assert.ok(started(a).slice(aStarts).includes(t), `worker A took over task ${t}:\n${a.log}`);
      // A duplicate would come after the count is reached: give it time to show.
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGTERM");
      await counter.stop();
    }
    assert.deepEqual(await a.exited, { code: 0, signal: null }, a.log);
    const read = (await readCommitted(output, 60_000)).map((m) => JSON.parse(m.value) as UserCount);
    const { counts, twice } = tally(read);
    try {
      assert.deepEqual(await shuffledTwice(`gress-${job}-1-repartition`), [], "no input record crossed the repartition topic twice");
      assert.deepEqual(twice, [], "no window result twice");
      assert.deepEqual(sorted(counts), sorted(reference));
      assert.equal(read.length, reference.size);
    } catch (err) {
      (err as Error).message += `\nworker logs:\n${workers.map((w) => w.log).join("\n---\n")}`;
      throw err;
    }
  });

  it("an existing repartition topic with another partition count than the inputs is a ConfigError naming it; the worker exits 1", { timeout: 60_000 }, async () => {
    await setup();
    const job = uniqueName("sh-bad");
    const topic = `gress-${job}-1-repartition`;
    await createTopic(topic, 2);
    const w = startWorker(config(uniqueName("sh-out-bad"), job));
    const exited = await w.exited;
    assert.equal(exited.code, 1, w.log);
    assert.match(w.log, new RegExp(`repartition topic "${topic}" has 2 partitions, but the job's input topics have ${PARTITIONS}`));
  });

  it("the same job with the keyBy wrongly declared copartitioned (no shuffle) gives split counts: what the shuffle prevents", { timeout: 90_000 }, async () => {
    await setup();
    assert.ok(reference !== undefined, "the reference run ran");
    const output = uniqueName("sh-out-cp");
    await createTopic(output, PARTITIONS);
    const counter = await outputCounter(output);
    const a = startWorker(config(output, uniqueName("sh-cp"), { copartitioned: true, ratePerSecond: 2000 }));
    try {
      // Every user is in every region, so each task emits a partial count for each (user, window).
      await until("the split results", () => counter.count() >= reference!.size, 60_000, [a]);
    } finally {
      a.child.kill("SIGTERM");
      await counter.stop();
    }
    assert.deepEqual(await a.exited, { code: 0, signal: null }, a.log);
    const read = (await readCommitted(output, 60_000)).map((m) => JSON.parse(m.value) as UserCount);
    const { twice } = tally(read);
    assert.ok(twice.length > 0, "without the shuffle a (user, window) comes from several tasks");
    assert.ok(
      read.every((r) => r.count < (reference!.get(`${r.user}@${r.start}`) ?? 0)),
      "each task's count is only part of the user's",
    );
  });
});
