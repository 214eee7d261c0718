/**
 * In a scale-out task only sinks that are exactly-once per task may run: Kafka sinks (they commit through the
 * task's checkpoint), PostgreSQL and NATS JetStream sinks (idempotent per task). Any other two-phase-commit sink
 * (files, a user's) is refused at open with a ConfigError that names it and says what to do, because its
 * idempotence is per job, not per task; a sink without two-phase commit (a plain function) runs as anywhere
 * else. Outside a task nothing changes. (The PostgreSQL sink's behaviour in a task is tested on the real server
 * in tests/integration/scaleout-postgres.test.ts.)
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileSink } from "../../connectors/file/index.ts";
import { natsJetStreamSink } from "../../connectors/nats/index.ts";
import { postgresSink } from "../../connectors/postgres/index.ts";
import { isGressError, Job, type Sink, sinkFn } from "../../lib/index.ts";
import { registerTaskIo, TASK_SINK, type TaskKafkaIo } from "../../lib/scaleout/task-io.ts";

const twoPhase = (extra: object = {}): Sink<number> & { written: number[] } => {
  const written: number[] = [];
  return {
    name: "staged",
    written,
    write: (v) => void written.push(v),
    preCommit: async (id) => id,
    commit: async () => {},
    abort: async () => {},
    ...extra,
  };
};
// A registered task is all the sink operator looks up; its client and send are never used here.
const io = { taskId: "0_0" } as unknown as TaskKafkaIo;

describe("sinks in a scale-out task", () => {
  it("a two-phase-commit sink that does not commit through the task is refused, naming it", async () => {
    const unregister = registerTaskIo("orders.task-0_0", io);
    try {
      const job = new Job({ name: "orders.task-0_0" });
      const sink = twoPhase();
      job.fromIterable([1, 2, 3]).sinkTo(sink);
      await assert.rejects(job.run(), (e: unknown) => {
        // The sink failed to open; the cause is the ConfigError that says why.
        assert.ok(isGressError(e), String(e));
        assert.match((e as Error).message, /sink "staged" cannot run in a scale-out job: its exactly-once commits are per job, not per task/);
        assert.ok(isGressError((e as Error).cause, "ERR_CONFIG"), String((e as Error).cause));
        return true;
      });
      assert.deepEqual(sink.written, []);
    } finally {
      unregister();
    }
  });

  it("a sink marked as committing through the task, and a plain sink, run", async () => {
    const unregister = registerTaskIo("orders.task-0_1", io);
    try {
      const job = new Job({ name: "orders.task-0_1" });
      const marked = twoPhase({ [TASK_SINK]: true });
      const plain: number[] = [];
      const s = job.fromIterable([1, 2, 3]);
      s.sinkTo(marked);
      s.sinkTo(sinkFn("plain", (v) => void plain.push(v)));
      await job.run();
      assert.deepEqual([marked.written, plain], [[1, 2, 3], [1, 2, 3]]);
    } finally {
      unregister();
    }
  });

  it("the PostgreSQL and NATS JetStream sinks are marked as exactly-once per task; the file sink is not, and is refused", async () => {
    const pg = postgresSink<number>({ name: "pg", job: "orders", url: "postgres://127.0.0.1:1/none", table: "t", columns: { n: { type: "bigint", value: (v) => v } } });
    const nats = natsJetStreamSink<number>({ name: "js", servers: "127.0.0.1:1", subject: "s" });
    const file = fileSink<number>({ name: "files", dir: "unused-dir", prefix: "p" });
    assert.deepEqual([pg[TASK_SINK], nats[TASK_SINK], (file as { [TASK_SINK]?: unknown })[TASK_SINK]], [true, true, undefined]);
    const unregister = registerTaskIo("orders.task-0_2", io);
    try {
      const job = new Job({ name: "orders.task-0_2" });
      job.fromIterable([1]).sinkTo(file);
      await assert.rejects(job.run(), /sink "files" cannot run in a scale-out job/);
    } finally {
      unregister();
    }
  });

  it("outside a task a two-phase-commit sink runs as always", async () => {
    const job = new Job({ name: "orders.task-0_0" });
    const sink = twoPhase();
    job.fromIterable([1, 2, 3]).sinkTo(sink);
    await job.run();
    assert.deepEqual(sink.written, [1, 2, 3]);
  });
});
