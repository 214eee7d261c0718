/**
 * Scale-out on the real broker (issue 11, without shuffles): worker processes of one job share the input
 * partitions as tasks; each task's keyed state lives in its changelog and moves with the task; every task
 * checkpoint is one Kafka transaction (output, changelog, checkpoint record, input offsets). The output must
 * equal a failure-free reference: every input record exactly once, and per key the sequence numbers 1..n in
 * input order. Runs on the client GRESS_KAFKA_CLIENT names (@platformatic/kafka by default), as .ci/run does for both.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { events } from "./kafka-eos-support.ts";
import { encodeShuffleKey, shufflePartition } from "../../lib/scaleout/shuffle.ts";
import { brokers, clientName, createTopic, kafka, produce, uniqueName } from "./kafka-support.ts";
import { checkOutput, current, outputCounter, started, startWorker, until } from "./scaleout-support.ts";


describe(`scale-out workers on Kafka (${clientName()}, real broker)`, () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  /** Topics, and the first `produced` input records (all by default); `rest()` produces the others. */
  const setup = async (partitions: number, count: number, keys: number, produced = count) => {
    const input = uniqueName("so-in");
    const output = uniqueName("so-out");
    await createTopic(input, partitions);
    await createTopic(output, partitions);
    const records = events(count, keys).map((e) => ({ key: e.key, value: JSON.stringify(e) }));
    await produce(input, records.slice(0, produced));
    return { input, output, rest: () => produce(input, records.slice(produced)) };
  };
  const config = (input: string, output: string, job: string, ratePerSecond: number) => {
    const state = mkdtempSync(join(tmpdir(), "gress-so-"));
    dirs.push(state);
    return { job, state, brokers: brokers(), client: clientName(), input, output, intervalMs: 500, ratePerSecond };
  };

  // after-txn-commit: the task transaction committed, the LMDB cache not written (the local copy lags by one checkpoint).
  for (const failpoint of ["after-txn-commit"]) {
    it(`one worker runs every task (4 partitions); killed at ${failpoint} and started again on its state directory, it restores and the output equals the reference`, { timeout: 120_000 }, async () => {
      const count = 3000;
      const keys = 40;
      const { input, output } = await setup(4, count, keys);
      const counter = await outputCounter(output);
      const cfg = config(input, output, uniqueName("so1"), 150);
      // The 16th task transaction (4 tasks, every 500 ms): some checkpoints with records are committed, most input is not read yet.
      const first = startWorker(cfg, { GRESS_FAILPOINT: `${failpoint}:16` });
      const crashed = await first.exited;
      assert.equal(crashed.signal, "SIGKILL", `the worker died at the failpoint:\n${first.log}`);
      assert.deepEqual(started(first).sort(), ["0_0", "0_1", "0_2", "0_3"]);
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(counter.count() > 0 && counter.count() < count - 1000, `the crash came mid-stream (${counter.count()} of ${count} out)`);
      const again = startWorker(cfg);
      try {
        await until("all output", () => counter.count() >= count, 90_000, [first, again]);
        assert.deepEqual(started(again).sort(), ["0_0", "0_1", "0_2", "0_3"]);
        // The restarted worker restored from its local copies plus what the changelog holds after them.
        assert.match(again.log, /restored \d+ changelog records from offset [1-9]/, again.log);
        await new Promise((r) => setTimeout(r, 1000));
      } finally {
        again.child.kill("SIGTERM");
        await counter.stop();
      }
      assert.deepEqual(await again.exited, { code: 0, signal: null }, again.log);
      await checkOutput(output, count, keys);
    });
  }

  it("one task's rate limit does not hold the worker's other tasks: both tasks of one worker start producing together", { timeout: 120_000 }, async () => {
    const count = 800;
    const keys = 20;
    const { input, output } = await setup(2, count, keys);
    // Output arrival time per input partition (= task), from the keys: the input was produced keyed, so a
    // key's partition is murmur2(key) % 2, the partitioner the shuffle code computes.
    const firstAt = new Map<number, number>();
    const watch = kafka().consumer({ groupId: uniqueName("rate-watch"), readUncommitted: false, maxWaitTimeInMs: 100 });
    await watch.connect();
    await watch.subscribe({ topics: [output], fromBeginning: true });
    await watch.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const task = shufflePartition(encodeShuffleKey((JSON.parse(m.value?.toString() ?? "{}") as { key: string }).key), 2);
          if (!firstAt.has(task)) firstAt.set(task, Date.now());
        }
      },
    });
    // 400 records per task at 40/s (burst 50): a task's first fetched batch takes ~9 s to go through the limit.
    const w = startWorker(config(input, output, uniqueName("so-rate"), 40));
    try {
      await until("output from both tasks", () => firstAt.size === 2, 60_000, [w]);
      const [a, b] = [firstAt.get(0) as number, firstAt.get(1) as number];
      // Held behind the other task's rate-limited batch, the second task's first output came ~9 s after the first's.
      assert.ok(Math.abs(a - b) < 4000, `the tasks' first outputs came ${Math.abs(a - b)} ms apart`);
    } finally {
      w.child.kill("SIGTERM");
      await watch.disconnect();
    }
    assert.deepEqual(await w.exited, { code: 0, signal: null }, w.log);
  });

  it("a worker stopped gracefully (SIGTERM) commits a final checkpoint of each task: its output is out before any periodic checkpoint, and the next worker resumes from there", { timeout: 120_000 }, async () => {
    const count = 400;
    const keys = 10;
    const { input, output } = await setup(2, count, keys);
    const counter = await outputCounter(output);
    // No periodic checkpoint within the test: whatever is committed comes from the final one.
    const cfg = { ...config(input, output, uniqueName("so-final"), 1000), intervalMs: 600_000 };
    const a = startWorker(cfg);
    let b: ReturnType<typeof startWorker> | undefined;
    try {
      await until("worker A running both tasks", () => current(a).length === 2, 60_000, [a]);
      // 200 records per task at 1 000/s: read well within this wait.
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(counter.count(), 0, "nothing is committed before a checkpoint");
      a.child.kill("SIGTERM");
      assert.deepEqual(await a.exited, { code: 0, signal: null }, a.log);
      assert.equal([...a.log.matchAll(/task 0_\d: final checkpoint \d+ committed/g)].length, 2, a.log);
      await until("the final checkpoints' output", () => counter.count() >= count, 20_000, [a]);
      // The next worker (a fresh state directory) starts both tasks from those checkpoints and replays nothing.
      b = startWorker({ ...cfg, state: config(input, output, cfg.job, 1000).state });
      const started = b;
      await until("worker B running both tasks", () => current(started).length === 2, 60_000, [a, started]);
      assert.equal([...started.log.matchAll(/task 0_\d started in \d+ ms: restored \d+ changelog records from offset 0, checkpoint \d+/g)].length, 2, started.log);
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      for (const w of [a, b]) if (w !== undefined && w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGTERM");
      await counter.stop();
    }
    assert.ok(b !== undefined);
    assert.deepEqual(await b.exited, { code: 0, signal: null }, b.log);
    await checkOutput(output, count, keys);
  });

  it("a local copy older than the changelog's delete.retention.ms is discarded and the task restored in full (compaction may have dropped tombstones since)", { timeout: 120_000 }, async () => {
    const count = 400;
    const keys = 10;
    const { input, output } = await setup(2, count, keys);
    const cfg = config(input, output, uniqueName("so-age"), 1000);
    // The changelog the worker would create, made first with a short delete.retention.ms (the worker accepts an
    // existing compacted changelog with the right partition count).
    const admin = kafka().admin();
    await admin.connect();
    try {
      await admin.createTopics({
        topics: [{ topic: `gress-${cfg.job}-0-changelog`, numPartitions: 2, replicationFactor: 1, configEntries: [{ name: "cleanup.policy", value: "compact" }, { name: "delete.retention.ms", value: "2000" }] }],
        waitForLeaders: true,
      });
    } finally {
      await admin.disconnect();
    }
    const counter = await outputCounter(output);
    const a = startWorker(cfg);
    let b: ReturnType<typeof startWorker> | undefined;
    try {
      await until("all output", () => counter.count() >= count, 60_000, [a]);
      a.child.kill("SIGTERM");
      assert.deepEqual(await a.exited, { code: 0, signal: null }, a.log);
      // Past delete.retention.ms since the local copies' last checkpoint.
      await new Promise((r) => setTimeout(r, 2500));
      b = startWorker(cfg);
      const again = b;
      await until("worker B running both tasks", () => current(again).length === 2, 60_000, [again]);
      const full = [...again.log.matchAll(/task 0_\d started in \d+ ms: restored [1-9]\d* changelog records from offset 0, checkpoint \d+ \(its local copy was older than the changelog's delete\.retention\.ms/g)];
      assert.equal(full.length, 2, again.log);
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      b?.child.kill("SIGTERM");
      await counter.stop();
    }
    assert.deepEqual(await b.exited, { code: 0, signal: null }, b.log);
    await checkOutput(output, count, keys);
  });

  it("a worker joining moves a task: its old owner checkpoints it before rejoining the group, and the new owner starts from that checkpoint (no periodic checkpoint in the run)", { timeout: 180_000 }, async () => {
    const count = 1200;
    const keys = 20;
    // Half the input first, the rest once B runs its task: A cannot reach the end of the input before B joins.
    const { input, output, rest } = await setup(2, count, keys, count / 2);
    const counter = await outputCounter(output);
    // No periodic checkpoint within the test: a checkpoint comes only from a rebalance or a stop.
    const cfg = { ...config(input, output, uniqueName("so-move"), 50), intervalMs: 600_000 };
    const a = startWorker(cfg);
    let b: ReturnType<typeof startWorker> | undefined;
    let c: ReturnType<typeof startWorker> | undefined;
    const admin = kafka().admin();
    await admin.connect();
    try {
      await until("worker A running both tasks", () => current(a).length === 2, 60_000, [a]);
      // A has processed some input of each task (its status records count the records in), and none of its
      // output is committed.
      const status = await outputCounter(`gress-${cfg.job}-status`);
      try {
        const recordsIn = (): Map<string, number> => new Map(status.values().map((v) => JSON.parse(v) as { task: string; recordsIn: number }).map((r) => [r.task, r.recordsIn]));
        await until("A's tasks reading their input", () => [...recordsIn().values()].filter((n) => n >= 20).length === 2, 30_000, [a]);
      } finally {
        await status.stop();
      }
      assert.equal(counter.count(), 0, "nothing is committed before a rebalance or a stop");
      b = startWorker({ ...cfg, state: config(input, output, cfg.job, 50).state });
      const joined = b;
      await until("B running one task, A the other", () => current(joined).length === 1 && current(a).length === 1, 60_000, [a, joined]);
      const moved = current(joined)[0] as string;
      const partition = Number(moved.split("_")[1]);
      // A checkpoint holds what A had processed of the moved task when B joined: the group's offset of its input
      // partition (committed in the checkpoint's transaction, where B resumes) is mid-stream and equals the
      // outputs of that partition's keys committed with it. Without a checkpoint before the rebalance it is 0.
      // Nothing else commits until the workers stop (no periodic checkpoint), so the committed outputs of the
      // partition are awaited up to that offset (the counter reads them as they come) and then compared.
      const offsets = await admin.fetchOffsets({ groupId: `gress-${cfg.job}`, topics: [input] });
      const resumed = Number(offsets[0]?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
      const ofPartition = (k: string): boolean => shufflePartition(encodeShuffleKey(k), 2) === partition;
      const outputsOfPartition = (): number => counter.values().filter((v) => ofPartition((JSON.parse(v) as { key: string }).key)).length;
      const inputs = events(count / 2, keys).filter((e) => ofPartition(e.key)).length;
      assert.ok(resumed > 0 && resumed <= inputs, `the moved task's checkpoint is mid-stream (offset ${resumed} of the ${inputs} produced so far)`);
      const polled = Date.now() + 10_000;
      while (outputsOfPartition() < resumed && Date.now() < polled) await new Promise((r) => setTimeout(r, 100));
      assert.equal(outputsOfPartition(), resumed, "the checkpoint's offset equals the moved task's committed outputs");
      // It is the checkpoint A took before it rejoined the group, and B restored the moved task from it.
      const before = /rejoins its group after checkpointing its tasks in \d+ ms: (.*)/.exec(a.log);
      assert.ok(before !== null, `A checkpointed its tasks before rejoining:\n${a.log}`);
      const id = new RegExp(`task ${moved}: checkpoint (\\d+)`).exec(before[1] as string)?.[1];
      assert.ok(id !== undefined, `A checkpointed task ${moved} before rejoining: ${before[0]}`);
      assert.match(joined.log, new RegExp(`task ${moved} started in \\d+ ms: restored \\d+ changelog records from offset 0, checkpoint ${id}\\b`), joined.log);
      // The rest of the input; both stop gracefully (final checkpoints); a third worker with periodic checkpoints finishes it.
      await rest();
      for (const w of [a, joined]) w.child.kill("SIGTERM");
      for (const w of [a, joined]) assert.deepEqual(await w.exited, { code: 0, signal: null }, w.log);
      c = startWorker({ ...cfg, intervalMs: 500 });
      await until("all output", () => counter.count() >= count, 90_000, [c]);
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(counter.count(), count, "no output record twice");
    } finally {
      for (const w of [a, b, c]) if (w !== undefined && w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGTERM");
      await counter.stop();
      await admin.disconnect();
    }
    assert.ok(c !== undefined);
    assert.deepEqual(await c.exited, { code: 0, signal: null }, c.log);
    await checkOutput(output, count, keys);
  });

  it("two worker processes share the tasks; one is frozen (SIGSTOP) past its session, its tasks move and its late commits are fenced, then, back in the group, it is killed with SIGKILL; the output equals the reference", { timeout: 240_000 }, async () => {
    const count = 10_000;
    const keys = 50;
    const { input, output } = await setup(4, count, keys);
    const job = uniqueName("so2");
    const counter = await outputCounter(output);
    const a = startWorker(config(input, output, job, 150));
    const b = startWorker(config(input, output, job, 150));
    const workers = [a, b];
    const sharing = (): boolean => current(a).length === 2 && current(b).length === 2;
    try {
      await until("the workers sharing the tasks", () => sharing() && counter.count() >= 800, 90_000, workers);
      // A zombie: B is frozen past its session (6 s); A takes B's tasks and fences their transactional ids.
      let bTasks = current(b);
      let aStarts = started(a).length;
      b.child.kill("SIGSTOP");
      await until("worker A taking over B's tasks", () => bTasks.every((t) => started(a).slice(aStarts).includes(t)), 60_000, workers);
      b.child.kill("SIGCONT");
      // B wakes up with tasks it no longer owns: their commits are refused (migrated) or the next assignment revokes them.
      await until("B back in the group, sharing the tasks again", () => sharing() && /migrated|stopped \(revoked\)/.test(b.log), 60_000, workers);
      assert.equal(b.child.exitCode, null, `the zombie did not fail:\n${b.log}`);
      const beforeKill = counter.count();
      assert.ok(beforeKill < count - 1000, `the kill comes mid-stream (${beforeKill} of ${count} out)`);
      bTasks = current(b);
      aStarts = started(a).length;
      b.child.kill("SIGKILL");
      assert.equal((await b.exited).signal, "SIGKILL");
      await until("all output after the kill", () => counter.count() >= count, 120_000, workers);
      // The survivor took over the killed worker's tasks (restored from their changelogs).
      for (const t of bTasks) assert.ok(started(a).slice(aStarts).includes(t), `worker A started task ${t} after the kill:\n${a.log}`);
      // Duplicates would come after the count is reached: give them time to show.
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(counter.count(), count, "no output record twice");
    } finally {
      for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGTERM");
      await counter.stop();
    }
    assert.deepEqual(await a.exited, { code: 0, signal: null }, a.log);
    await checkOutput(output, count, keys);
  });
});
