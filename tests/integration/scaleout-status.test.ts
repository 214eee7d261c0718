/**
 * The status topic of a scale-out job (lib/scaleout/status.ts) on the real broker, with the client
 * GRESS_KAFKA_CLIENT names (@platformatic/kafka by default; CI runs it on kafkajs too):
 * - A task handed over to another worker: its old owner reports it as it was when it let it go, before the
 *   new owner's first record. Two workers in this process, a status interval of 10 minutes (so that only the
 *   records a worker writes on its own occasions count): worker A reads both partitions to their end, then B
 *   joins and takes one task; the input is written after A's records of its tasks' start. A's last record of
 *   that task, before B's first, must show everything A read
 *   (records in, the partition's watermark at its last record, the checkpoint it handed over with); B read
 *   nothing of it. Without the record A sends before it rejoins, A's last record was the one from the task's
 *   start (nothing read), and nothing of what A did showed (the kafkajs-only failure of scaleout-cli).
 * - The status sender closed while its producer connects: it sends nothing and leaves no connection open.
 * @module
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import { kafkaSink, kafkaSource, runScaledOut, type ScaleOutWorker, splitOf } from "../../connectors/kafka/index.ts";
import { boundedOutOfOrderness, type Job } from "../../lib/index.ts";
import { decodeTaskStatus, kafkajsStatusSender, statusTopic, type TaskStatusRecord } from "../../lib/scaleout/status.ts";
import { brokers, clientName, createTopic, kafka, produce, uniqueName } from "./kafka-support.ts";

const PER_PARTITION = 100;
const BOUND_MS = 100;
/** Event time of record i (of either partition). */
const T0 = Date.UTC(2026, 0, 1);
const eventTime = (i: number): number => T0 + 10 * i;
/** A partition's watermark once its last record was read. */
const FINAL = eventTime(PER_PARTITION - 1) - BOUND_MS - 1;

/** Every record of `topic` (one partition) in offset order, read to its current end. */
async function readAll(topic: string): Promise<{ offset: number; record: TaskStatusRecord }[]> {
  const admin = kafka().admin();
  await admin.connect();
  const end = Number((await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect()))[0]?.high ?? 0);
  const consumer = kafka().consumer({ groupId: uniqueName("status-read"), maxWaitTimeInMs: 100 });
  const out: { offset: number; record: TaskStatusRecord }[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    await consumer.run({
      eachMessage: async ({ message: m }) => {
        const d = decodeTaskStatus(m.key === null ? null : new Uint8Array(m.key), m.value === null ? null : new Uint8Array(m.value));
        if (d.kind === "status") out.push({ offset: Number(m.offset), record: d.record });
        if (Number(m.offset) + 1 >= end) done();
      },
    });
    if (end > 0) await Promise.race([finished, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${topic}: not read to offset ${end} in 20 s`)), 20_000)))]);
    return out;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
}

/** Open TCP connections of this process to the brokers. */
function brokerSockets(): number {
  const ports = new Set(brokers().map((b) => Number(b.split(":").at(-1))));
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => {
    const s = h as { remotePort?: unknown; destroyed?: unknown };
    return typeof s.remotePort === "number" && ports.has(s.remotePort) && s.destroyed !== true;
  }).length;
}

const until = async (what: string, f: () => boolean, ms: number, log: readonly string[] = []): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; log:\n${log.join("\n")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe(`scale-out status topic (${clientName()}, real broker)`, () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("the status sender closed while its producer connects sends nothing and leaves no connection to the brokers", { timeout: 30_000 }, async () => {
    const topic = uniqueName("status-sender");
    await createTopic(topic, 1);
    await until("the test's own connections closed", () => brokerSockets() === 0, 5000);
    const sender = kafkajsStatusSender(brokers(), uniqueName("status-sender"));
    // The first send starts the producer's connect; close comes before it completed.
    const sent = sender.send(topic, [{ key: "0_0", value: new TextEncoder().encode("{}") }]).then(
      () => "sent",
      (e: unknown) => `refused: ${e instanceof Error ? e.message : String(e)}`,
    );
    await sender.close();
    assert.match(await sent, /^refused: status sender .* is closed$/);
    await assert.rejects(sender.send(topic, [{ key: "0_0", value: new TextEncoder().encode("{}") }]), /is closed/);
    // The connect completed after close: it disconnected at once (a socket may take a moment to go).
    await until("no connection of the closed sender", () => brokerSockets() === 0, 5000).catch(() => undefined);
    assert.equal(brokerSockets(), 0, "connections to the brokers left open by the closed status sender");
    const records = await readAll(topic).catch(() => []);
    assert.equal(records.length, 0);
  });

  it("a task handed over to another worker: its old owner's last record, before the new owner's first, shows all it read", { timeout: 90_000 }, async () => {
    const input = uniqueName("sst-in");
    const output = uniqueName("sst-out");
    await createTopic(input, 2);
    await createTopic(output, 2);
    const name = uniqueName("sst");
    const pipeline = (job: Job): void => {
      job
        .source(kafkaSource<{ i: number }>({ name: "in", brokers: brokers(), topics: [input], groupId: "unused-in-scale-out" }), {
          watermarks: boundedOutOfOrderness<{ i: number }>(BOUND_MS, { timestamp: (e) => eventTime(e.i) }),
        })
        .sinkTo(kafkaSink<{ i: number }>({ name: "out", brokers: brokers(), topic: output }));
    };
    const log: string[] = [];
    const start = (id: string): ScaleOutWorker => {
      const state = mkdtempSync(join(tmpdir(), `gress-sst-${id}-`));
      dirs.push(state);
      return runScaledOut({ name, kafka: { brokers: brokers(), client: clientName() }, state, sessionTimeoutMs: 10_000, statusIntervalMs: 600_000, checkpoints: { intervalMs: 600_000 }, log: (m) => void log.push(`[${id}] ${m}`) }, pipeline);
    };
    const a = start("A");
    let b: ScaleOutWorker | undefined;
    try {
      await a.started;
      await until("worker A running both tasks", () => a.tasks.length === 2 && a.taskStatus.length === 2 && a.taskStatus.every((r) => r.state === "running"), 30_000, log);
      // Its records of the tasks' start are in the status topic: the input comes after them, so that without
      // a later record of A's nothing of what it read would show.
      for (let i = 0; ; i++) {
        const started = (await readAll(statusTopic(name))).filter((h) => h.record.state === "running");
        if (new Set(started.map((h) => h.record.task)).size === 2) break;
        if (i === 100) throw new Error(`worker A's status records of its running tasks not in ${statusTopic(name)}; log:\n${log.join("\n")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await produce(
        input,
        [0, 1].flatMap((partition) => Array.from({ length: PER_PARTITION }, (_, i) => ({ partition, value: JSON.stringify({ i }) }))),
      );
      // A reads both partitions to their end.
      const read = (r: TaskStatusRecord): boolean => r.recordsIn === PER_PARTITION && r.splits?.[splitOf(input, Number(r.task.split("_")[1]))] === FINAL;
      await until("worker A reading both partitions to their end", () => a.tasks.length === 2 && a.taskStatus.length === 2 && a.taskStatus.every(read), 30_000, log);
      const memberA = a.taskStatus[0]?.worker.member;
      assert.ok(memberA !== undefined);
      b = start("B");
      const wb = b;
      await b.started;
      await until("one task moved to worker B and running there", () => wb.tasks.length === 1 && a.tasks.length === 1 && wb.taskStatus[0]?.state === "running", 30_000, log);
      const moved = b.tasks[0] as string;
      const memberB = b.taskStatus[0]?.worker.member;
      assert.ok(memberB !== undefined && memberB !== memberA);
      // B's record of the task's start goes out after it runs (the status sender's queue): read until it is there.
      let history: { offset: number; record: TaskStatusRecord }[] = [];
      for (let i = 0; ; i++) {
        history = (await readAll(statusTopic(name))).filter((h) => h.record.task === moved);
        if (history.some((h) => h.record.worker.member === memberB)) break;
        if (i === 100) break; // the assertion below says what the topic held
        await new Promise((r) => setTimeout(r, 100));
      }
      const seen = history.map((h) => `${h.offset}:${h.record.worker.member === memberA ? "A" : h.record.worker.member === memberB ? "B" : "?"}:${h.record.state}:in=${h.record.recordsIn}:wm=${h.record.watermark === null ? "-" : h.record.watermark - T0}`).join(" ");
      // Each failure shows the task's records and both workers' logs (their rejoins, checkpoints and status sends).
      const why = (what: string): string => `${what}: ${seen}\nlog:\n${log.join("\n")}`;
      const firstB = history.findIndex((h) => h.record.worker.member === memberB);
      assert.ok(firstB > 0, why(`B's records of task ${moved} follow A's`));
      const lastA = history
        .slice(0, firstB)
        .filter((h) => h.record.worker.member === memberA)
        .at(-1)?.record;
      // As A handed it over: all of its partition read, the partition's watermark at its last record, the
      // task's own at most that, and the checkpoint it was handed over with.
      assert.equal(lastA?.recordsIn, PER_PARTITION, why(`A's last record of task ${moved} before B's first shows what A read`));
      assert.equal(lastA?.splits?.[splitOf(input, Number(moved.split("_")[1]))], FINAL, why("the partition's watermark at its last record"));
      assert.ok(lastA?.watermark !== null && lastA?.watermark !== undefined && lastA.watermark <= FINAL, why("the task's watermark at most the partition's"));
      assert.ok(lastA?.checkpoint !== undefined, why(`A's last record names its checkpoint: ${JSON.stringify(lastA)}`));
      // B read nothing of it: the checkpoint A handed over with had all of it.
      for (const h of history.slice(firstB)) if (h.record.worker.member === memberB) assert.equal(h.record.recordsIn, 0, why("B read nothing of the task"));
    } finally {
      await b?.stop().catch(() => undefined);
      await a.stop().catch(() => undefined);
    }
  });
});
