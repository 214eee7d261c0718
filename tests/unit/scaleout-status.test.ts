/**
 * The scale-out status topic (lib/scaleout/status.ts) without a broker: the record codec (round trip, and every
 * kind of bad record as "invalid" with a reason, never an exception), the merge of the topic's records into the
 * latest per task with staleness, a task's record computed from its Job's metrics, the /metrics gauges, the
 * publisher's best-effort behaviour (a topic that is not compacted, a failing send, the "stopped" records at
 * stop, the bounded wait of a publish before a rejoin), the statusIntervalMs option's check, and the task lines
 * of `gress status`. The same on the real broker: tests/integration/scaleout-cli.test.ts and scaleout-status.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KafkaClient } from "../../connectors/kafka/client.ts";
import { formatJobStatus, type JobStatus } from "../../lib/cli-status.ts";
import { JobMetrics } from "../../lib/metrics.ts";
import {
  decodeTaskStatus,
  encodeTaskStatus,
  mergeTaskStatus,
  StatusPublisher,
  type StatusSender,
  statusMetrics,
  statusTopic,
  type TaskStatusRecord,
  type TaskStatusSource,
  taskStatus,
} from "../../lib/scaleout/status.ts";
import type { TaskJob } from "../../lib/scaleout/task.ts";
import { runScaledOut } from "../../lib/scaleout/worker.ts";
import { ConfigError } from "../../lib/errors.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function record(task: string, at: number, extra: Partial<TaskStatusRecord> = {}): TaskStatusRecord {
  return {
    v: 1,
    task,
    worker: { host: "h1", pid: 42, member: "m-1" },
    state: "running",
    restore: { from: 0, offset: 40, end: 40, applied: 40, done: true, elapsedMs: 300 },
    watermark: at - 2000,
    splits: { "in-0": at - 2000 },
    recordsIn: 10,
    recordsOut: 9,
    checkpoint: { id: 3, at: at - 500 },
    at,
    ...extra,
  };
}

describe("status record codec", () => {
  it("round-trips a record, keyed by its task", () => {
    const r = record("0_3", 1_700_000_000_000);
    assert.deepEqual(decodeTaskStatus(enc("0_3"), encodeTaskStatus(r)), { kind: "status", record: r });
    const bare = record("0_1", 5, { restore: undefined, splits: undefined, checkpoint: undefined, watermark: null, state: "starting" });
    const { restore: _r, splits: _s, checkpoint: _c, ...plain } = bare;
    assert.deepEqual(decodeTaskStatus(enc("0_1"), encodeTaskStatus(plain)), { kind: "status", record: plain });
  });

  it("a null value is a tombstone for its key; without a key it is invalid", () => {
    assert.deepEqual(decodeTaskStatus(enc("0_2"), null), { kind: "tombstone", task: "0_2" });
    assert.equal(decodeTaskStatus(null, null).kind, "invalid");
  });

  it("says what is wrong with a record that is not a status record, without throwing", () => {
    const reason = (key: string | null, value: Uint8Array): string => {
      const d = decodeTaskStatus(key === null ? null : enc(key), value);
      assert.equal(d.kind, "invalid");
      return (d as { reason: string }).reason;
    };
    assert.match(reason("0_0", new Uint8Array([0xff, 0xfe, 0x00])), /not UTF-8 JSON/);
    assert.match(reason("0_0", enc("{not json")), /not UTF-8 JSON/);
    assert.match(reason("0_0", enc("[1,2]")), /not a status record/);
    assert.match(reason("0_0", enc(JSON.stringify({ ...record("0_0", 1), v: 2 }))), /not a status record: v:/);
    assert.match(reason("0_0", enc(JSON.stringify({ ...record("0_0", 1), watermark: "soon" }))), /not a status record: watermark:/);
    assert.match(reason("0_0", enc(JSON.stringify({ ...record("0_0", 1), state: "dancing" }))), /not a status record: state:/);
    assert.match(reason("0_1", encodeTaskStatus(record("0_0", 1))), /key "0_1" is not its task "0_0"/);
    assert.match(reason(null, encodeTaskStatus(record("0_0", 1))), /key null is not its task/);
  });
});

describe("mergeTaskStatus", () => {
  const topic = statusTopic("orders");
  const now = 1_700_000_100_000;
  const at = (offset: number, r: TaskStatusRecord | null, key = r?.task ?? "0_0"): { offset: number; key: Uint8Array; value: Uint8Array | null } => ({ offset, key: enc(key), value: r === null ? null : encodeTaskStatus(r) });

  it("keeps each task's latest record in topic order, sorted by partition", () => {
    const m = mergeTaskStatus(topic, [at(0, record("0_10", now - 100)), at(1, record("0_2", now - 5000)), at(2, record("0_2", now - 200, { worker: { host: "h2", pid: 7 } })), at(3, record("0_0", now - 300))], now, 10_000);
    assert.deepEqual(
      m.tasks.map((t) => [t.record.task, t.record.worker.host, t.ageMs]),
      [
        ["0_0", "h1", 300],
        ["0_2", "h2", 200],
        ["0_10", "h1", 100],
      ],
    );
    assert.deepEqual(m.warnings, []);
  });

  it("marks a record older than the limit as stale, unless its task was stopped", () => {
    const m = mergeTaskStatus(topic, [at(0, record("0_0", now - 10_001)), at(1, record("0_1", now - 10_000)), at(2, record("0_2", now - 60_000, { state: "stopped" })), at(3, record("0_3", now - 60_000, { state: "restoring" }))], now, 10_000);
    assert.deepEqual(
      m.tasks.map((t) => [t.record.task, t.stale]),
      [
        ["0_0", true],
        ["0_1", false],
        ["0_2", false],
        ["0_3", true],
      ],
    );
    // A newer record of the task's next owner is current again.
    const moved = mergeTaskStatus(topic, [at(0, record("0_0", now - 30_000)), at(1, record("0_0", now - 500, { worker: { host: "h2", pid: 8 } }))], now, 10_000);
    assert.deepEqual(
      moved.tasks.map((t) => [t.record.worker.host, t.stale]),
      [["h2", false]],
    );
  });

  it("a tombstone forgets the task; garbage is left out with a warning naming the topic and offset", () => {
    const m = mergeTaskStatus(
      topic,
      [at(0, record("0_0", now)), at(1, record("0_1", now)), at(2, null, "0_0"), { offset: 3, key: enc("0_1"), value: enc("garbage") }, { offset: 4, key: null, value: encodeTaskStatus(record("0_5", now)) }],
      now,
      10_000,
    );
    assert.deepEqual(
      m.tasks.map((t) => t.record.task),
      ["0_1"],
    );
    assert.equal(m.warnings.length, 2);
    assert.match(m.warnings[0]!, /^gress-orders-status offset 3: record left out, not UTF-8 JSON/);
    assert.match(m.warnings[1]!, /^gress-orders-status offset 4: record left out, its key null/);
  });
});

/** A task whose Job is a stand-in with real JobMetrics (the fields taskStatus reads). */
function fakeTask(id: string, state: TaskStatusSource["statusView"]["state"]): { task: TaskStatusSource; metrics: JobMetrics; history: { id: number }[] } {
  const metrics = new JobMetrics("j");
  const history: { id: number }[] = [];
  const job = {
    metrics,
    sources: [{ name: "in" }, { name: "keyBy-3-repartition" }],
    shuffles: [{ operator: "keyBy-3", topic: "gress-j-1-repartition" }],
    checkpoints: { history },
  } as unknown as TaskJob;
  const progress = { job: "j", task: id, from: 10, offset: 25, end: undefined, applied: 15, skipped: 0, elapsedMs: 1234.5, firstRecordMs: 3, done: false };
  return { task: { id, statusView: { state, restore: { progress, end: 50 }, job } }, metrics, history };
}

describe("taskStatus", () => {
  it("reports the lowest operator watermark, the input partitions' watermarks, records without the repartition topic, restore and checkpoint", () => {
    const { task, metrics, history } = fakeTask("0_4", "restoring");
    metrics.operator("watermarks-1").watermark = 9_000;
    metrics.operator("watermarks-1").splits.set("in-4", { current: () => 9_000 });
    metrics.operator("watermarks-1").splits.set("in-x", { current: () => Number.NEGATIVE_INFINITY });
    metrics.operator("shuffleRead-4").watermark = 7_000;
    metrics.operator("map-2"); // no event time: left out, not the minimum
    metrics.source("in").emitted = 100;
    metrics.source("keyBy-3-repartition").emitted = 1000;
    metrics.sink("out").written = 60;
    metrics.sink("keyBy-3-repartition").written = 1000;
    const seen = new Map<string, { id: number; at: number }>();
    const r = taskStatus(task, { host: "h", pid: 1 }, 50_000, seen);
    assert.deepEqual(r, {
      v: 1,
      task: "0_4",
      worker: { host: "h", pid: 1 },
      state: "restoring",
      restore: { from: 10, offset: 25, end: 50, applied: 15, done: false, elapsedMs: 1235 },
      watermark: 7_000,
      splits: { "in-4": 9_000 },
      recordsIn: 100,
      recordsOut: 60,
      at: 50_000,
    });
    // A checkpoint's time is when it was first seen complete.
    history.push({ id: 1 });
    assert.deepEqual(taskStatus(task, { host: "h", pid: 1 }, 51_000, seen).checkpoint, { id: 1, at: 51_000 });
    assert.deepEqual(taskStatus(task, { host: "h", pid: 1 }, 52_000, seen).checkpoint, { id: 1, at: 51_000 });
    history.push({ id: 2 });
    assert.deepEqual(taskStatus(task, { host: "h", pid: 1 }, 53_000, seen).checkpoint, { id: 2, at: 53_000 });
  });

  it("before its Job exists a task has no watermark and no records", () => {
    const r = taskStatus({ id: "0_0", statusView: { state: "starting", restore: undefined, job: undefined } }, { host: "h", pid: 1, member: "m" }, 7, new Map());
    assert.deepEqual(r, { v: 1, task: "0_0", worker: { host: "h", pid: 1, member: "m" }, state: "starting", watermark: null, recordsIn: 0, recordsOut: 0, at: 7 });
  });
});

describe("statusMetrics", () => {
  it("one gauge per field and task, with the worker's labels", () => {
    const text = statusMetrics([record("0_1", 10_000), record("0_2", 10_000, { watermark: null, splits: undefined, restore: undefined, checkpoint: undefined, state: "starting" })], 'job="j",worker="0"').join("\n");
    assert.match(text, /^gress_task_state\{job="j",worker="0",task="0_1",state="running"\} 1$/m);
    assert.match(text, /^gress_task_watermark_ms\{job="j",worker="0",task="0_1"\} 8000$/m);
    assert.match(text, /^gress_task_split_watermark_ms\{job="j",worker="0",task="0_1",split="in-0"\} 8000$/m);
    assert.match(text, /^gress_task_records_in\{job="j",worker="0",task="0_1"\} 10$/m);
    assert.match(text, /^gress_task_restore_offset\{job="j",worker="0",task="0_1"\} 40$/m);
    assert.match(text, /^gress_task_restore_end_offset\{job="j",worker="0",task="0_1"\} 40$/m);
    assert.match(text, /^gress_task_last_checkpoint_id\{job="j",worker="0",task="0_1"\} 3$/m);
    assert.match(text, /^gress_task_state\{job="j",worker="0",task="0_2",state="starting"\} 1$/m);
    assert.doesNotMatch(text, /gress_task_watermark_ms\{[^}]*task="0_2"/);
  });
});

describe("StatusPublisher", () => {
  /** A client whose status topic has `policy`, and a sender that records or fails. */
  function setup(policy: string, fail: () => boolean) {
    const sent: { topic: string; key: string; record: TaskStatusRecord }[] = [];
    const log: string[] = [];
    const created: string[] = [];
    const client = {
      createTopic: async (t: string) => void created.push(t),
      topicConfig: async () => new Map([["cleanup.policy", policy]]),
    } as unknown as KafkaClient;
    let closed = false;
    const sender: StatusSender = {
      send: async (topic, records) => {
        if (fail()) throw new Error("broker gone");
        for (const r of records) {
          const d = decodeTaskStatus(enc(r.key), r.value);
          assert.equal(d.kind, "status");
          sent.push({ topic, key: r.key, record: (d as { record: TaskStatusRecord }).record });
        }
      },
      close: async () => void (closed = true),
    };
    const tasks = [fakeTask("0_0", "running").task, fakeTask("0_1", "running").task];
    let now = 1000;
    const p = new StatusPublisher({ job: "j", client, sender, tasks: () => tasks, member: () => "m-9", log: (m) => log.push(m), intervalMs: 60_000, now: () => now });
    return { p, sent, log, created, closed: () => closed, tick: (ms: number) => (now += ms) };
  }
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

  it("creates the topic, publishes a record per task, and at stop a 'stopped' record for the tasks it stopped", async () => {
    const s = setup("compact", () => false);
    s.p.start();
    s.p.publish();
    s.tick(500);
    await s.p.stop(["0_1"]);
    assert.deepEqual(s.created, ["gress-j-status"]);
    assert.deepEqual(
      s.sent.map((x) => [x.topic, x.key, x.record.state, x.record.at, x.record.worker.member]),
      [
        ["gress-j-status", "0_0", "running", 1000, "m-9"],
        ["gress-j-status", "0_1", "running", 1000, "m-9"],
        ["gress-j-status", "0_1", "stopped", 1500, "m-9"],
      ],
    );
    assert.ok(s.closed());
    assert.deepEqual(s.log, []);
  });

  it("a status topic that is not compacted is used, with a warning naming it", async () => {
    const s = setup("delete", () => false);
    s.p.start();
    s.p.publish();
    await s.p.stop([]);
    assert.equal(s.sent.length, 2);
    assert.equal(s.log.length, 1);
    assert.match(s.log[0]!, /status topic gress-j-status has cleanup\.policy=delete, not compact/);
  });

  it("a failing send is logged once, not thrown, and logged again when it recovers", async () => {
    let failing = true;
    const s = setup("compact", () => failing);
    s.p.start();
    s.p.publish();
    s.p.publish();
    await settle();
    assert.equal(s.log.length, 1);
    assert.match(s.log[0]!, /status topic gress-j-status: publishing failed, retrying every interval: broker gone/);
    failing = false;
    s.p.publish();
    await s.p.stop([]);
    assert.equal(s.sent.length, 2);
    assert.match(s.log[1]!, /publishing again/);
  });
});

describe("StatusPublisher, a status topic that cannot be created at start", () => {
  it("publishes nothing while it fails, logs that once, tries again with the next records, and publishes once it works", async () => {
    let up = false;
    let attempts = 0;
    const log: string[] = [];
    const sent: string[] = [];
    const client = {
      createTopic: async () => {
        attempts++;
        if (!up) throw new Error("brokers away");
      },
      topicConfig: async () => new Map([["cleanup.policy", "compact"]]),
    } as unknown as KafkaClient;
    const sender: StatusSender = { send: async (_, records) => void sent.push(...records.map((r) => r.key)), close: async () => {} };
    const p = new StatusPublisher({ job: "j", client, sender, tasks: () => [fakeTask("0_0", "running").task], member: () => "m", log: (m) => log.push(m), intervalMs: 60_000 });
    p.start();
    p.publish();
    p.publish();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(sent, []);
    assert.equal(log.length, 1, log.join("\n"));
    assert.match(log[0]!, /status topic gress-j-status could not be created or checked, no task status is published until it can .*trying again every interval: brokers away/);
    up = true;
    // The next interval's records wait for the check retried after the last failure; each failed wait retries.
    for (let i = 0; i < 3 && sent.length === 0; i++) {
      p.publish();
      await new Promise((r) => setTimeout(r, 20));
    }
    await p.stop([]);
    assert.ok(attempts >= 2, `the topic was tried again (${attempts} attempts)`);
    assert.deepEqual(sent.slice(-1), ["0_0"], "published once the topic could be created");
    assert.match(log.at(-1)!, /created or checked, publishing/);
  });
});

describe("StatusPublisher stop", () => {
  it("does not wait more than 2 s for a send that hangs", async () => {
    const log: string[] = [];
    const client = { createTopic: async () => {}, topicConfig: async () => new Map([["cleanup.policy", "compact"]]) } as unknown as KafkaClient;
    const sender: StatusSender = { send: () => new Promise<void>(() => {}), close: async () => {} };
    const p = new StatusPublisher({ job: "j", client, sender, tasks: () => [fakeTask("0_0", "running").task], member: () => undefined, log: (m) => log.push(m), intervalMs: 60_000 });
    p.start();
    p.publish();
    const began = performance.now();
    await p.stop(["0_0"]);
    const took = performance.now() - began;
    assert.ok(took >= 1900 && took < 4000, `stop took ${took} ms`);
    assert.deepEqual(log, ["status topic gress-j-status: the last status records were not sent within 2000 ms; stopping without them"]);
  });
});

describe("StatusPublisher.publishAndWait (before a rejoin)", () => {
  const client = { createTopic: async () => {}, topicConfig: async () => new Map([["cleanup.policy", "compact"]]) } as unknown as KafkaClient;

  it("sends a record per task now and resolves true once it was sent; after stop it sends nothing", async () => {
    const sent: string[] = [];
    const sender: StatusSender = { send: async (_, records) => void sent.push(...records.map((r) => r.key)), close: async () => {} };
    const p = new StatusPublisher({ job: "j", client, sender, tasks: () => [fakeTask("0_0", "running").task, fakeTask("0_1", "running").task], member: () => "m", log: () => {}, intervalMs: 60_000 });
    p.start();
    assert.equal(await p.publishAndWait(1000), true);
    assert.deepEqual(sent, ["0_0", "0_1"]);
    await p.stop([]);
    assert.equal(await p.publishAndWait(1000), false);
    assert.deepEqual(sent, ["0_0", "0_1"]);
  });

  it("waits no longer than it is given for a send that hangs", async () => {
    const log: string[] = [];
    let release!: () => void;
    const hanging = new Promise<void>((r) => (release = r));
    const sender: StatusSender = { send: () => hanging, close: async () => {} };
    const p = new StatusPublisher({ job: "j", client, sender, tasks: () => [fakeTask("0_0", "running").task], member: () => undefined, log: (m) => log.push(m), intervalMs: 60_000 });
    p.start();
    const began = performance.now();
    assert.equal(await p.publishAndWait(300), false);
    const took = performance.now() - began;
    assert.ok(took >= 250 && took < 2000, `publishAndWait took ${took} ms`);
    release();
    await p.stop([]);
    assert.deepEqual(log, []);
  });
});

describe("runScaledOut statusIntervalMs", () => {
  it("is refused unless a number of ms > 0, with a ConfigError naming it", () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, "1000" as unknown as number]) {
      assert.throws(
        () => runScaledOut({ name: "j", kafka: { brokers: ["127.0.0.1:1"] }, state: "unused", statusIntervalMs: bad }, () => {}),
        (e: unknown) => e instanceof ConfigError && /scale-out job "j": statusIntervalMs must be a number of ms > 0, got /.test(e.message) && e.issues[0]?.path[0] === "statusIntervalMs",
        String(bad),
      );
    }
  });
});

describe("gress status task lines", () => {
  it("show each task's worker, state, watermark as ISO time, restore progress, and STALE for an old record", () => {
    const now = Date.parse("2026-12-05T08:00:00.000Z");
    const s: JobStatus = {
      group: "gress-j",
      state: "Stable",
      members: [],
      partitions: [],
      checkpoints: [],
      staleAfterMs: 10_000,
      warnings: ["gress-j-status offset 3: record left out, not UTF-8 JSON"],
      tasks: [
        { record: record("0_0", now - 1000, { watermark: now - 3500 }), ageMs: 1000, stale: false },
        { record: record("0_1", now - 20_000, { state: "restoring", restore: { from: 10, offset: 40, end: 110, applied: 30, done: false, elapsedMs: 800 } }), ageMs: 20_000, stale: true },
      ],
    };
    const text = formatJobStatus("j", s, now);
    assert.match(text, /^ {4}0_0 +h1:42 +running +2026-12-05T07:59:56\.500Z +2\.5 s +done: 40 records in 0\.3 s +10 +9 +3 \(1\.5 s ago\) +1\.0 s ago$/m);
    assert.match(text, /^ {4}0_1 +h1:42 +restoring +\S+ +2\.0 s +30\/100 \(30%\) .* 20\.0 s ago STALE$/m);
    assert.match(text, /stale: older than 10\.0 s/);
    assert.match(text, /^ {2}warning: gress-j-status offset 3: record left out/m);
  });
});
