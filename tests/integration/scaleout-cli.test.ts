/**
 * `gress run <pipeline> --workers 2` on the real broker: the parent starts two worker processes; both join the
 * job's group and split its 4 tasks (each /metrics, on port and port + 1, reports 2 tasks); the output is every
 * input record exactly once, with per-key sequence numbers 1..n. `gress status` reports the two members with the
 * same tasks and, at the end, no lag. From the status topic (lib/scaleout/status.ts) it reports each task's
 * worker, a finished restore and an event-time watermark that advances to the task's last input (t0 + 2 × its
 * last i − bound − 1), also on the workers' /metrics. The test follows every record of the status topic: a task
 * that moved when it had read its input to the end reads nothing on its new owner (no watermark there: a
 * source's watermark is not state), and its old owner's last record, sent before it rejoined the group, shows
 * that end. Then worker 1 is killed with SIGKILL: its tasks' records are marked STALE (after --stale-after 3 s,
 * before the group moves them), then the tasks run on worker 0, fresh and restored from their changelogs.
 * SIGTERM to the parent stops worker 0 gracefully (the parent exits 137, for the killed worker), and its tasks'
 * last records say "stopped".
 * Runs on the client GRESS_KAFKA_CLIENT names (@platformatic/kafka by default).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { readJobStatus, readTaskStatus } from "../../lib/cli-status.ts";
import { main } from "../../lib/cli.ts";
import { decodeTaskStatus, type TaskStatusRecord, type TaskStatusView } from "../../lib/scaleout/status.ts";
import { splitOf } from "../../connectors/kafka/index.ts";
import { freePort } from "../support/tcp-proxy.ts";
import { checkSequences, events } from "./kafka-eos-support.ts";
import { brokers, clientName, createTopic, kafka, produce, readCommitted, uniqueName } from "./kafka-support.ts";

const BIN = fileURLToPath(new URL("../../bin/gress.mjs", import.meta.url));
const PIPELINE = fileURLToPath(new URL("./scaleout-cli-pipeline.ts", import.meta.url));
/** The pipeline's watermark bound (ms), as in scaleout-cli-pipeline.ts. */
const BOUND_MS = 100;

/** The task ids a worker's /metrics lists, or undefined while it does not answer. */
async function tasksAt(port: number): Promise<string[] | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return [...text.matchAll(/gress_scaleout_task_running\{[^}]*task="([^"]+)"\} 1/g)].map((m) => m[1] as string).sort();
  } catch {
    return undefined;
  }
}

describe(`gress run --workers (${clientName()}, real broker)`, () => {
  const state = mkdtempSync(join(tmpdir(), "gress-so-cli-"));
  after(() => rmSync(state, { recursive: true, force: true }));

  it("two workers split the tasks, each serves /metrics on its port, gress status shows their tasks' watermarks, restores and stale records of a killed worker, and the output is complete without duplicates", { timeout: 120_000 }, async () => {
    const count = 3000;
    const keys = 30;
    const input = uniqueName("so-cli-in");
    const output = uniqueName("so-cli-out");
    await createTopic(input, 4);
    await createTopic(output, 4);
    await produce(
      input,
      events(count, keys).map((e) => ({ key: e.key, value: JSON.stringify(e) })),
    );
    const watch = kafka().consumer({ groupId: uniqueName("so-cli-watch"), readUncommitted: false, maxWaitTimeInMs: 100 });
    await watch.connect();
    await watch.subscribe({ topics: [output], fromBeginning: true });
    let out = 0;
    await watch.run({ eachBatch: async ({ batch }) => void (out += batch.messages.length) });

    const port = await freePort(2);
    const name = uniqueName("so-cli");
    const args = ["run", PIPELINE, "--workers", "2", "--name", name, "--brokers", brokers().join(","), "--kafka-client", clientName(), "--state-dir", state, "--port", String(port), "--checkpoint-interval", "500"];
    const t0 = Date.now();
    const parent = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SO_CLI_BROKERS: brokers().join(","), SO_CLI_INPUT: input, SO_CLI_OUTPUT: output, SO_CLI_T0: String(t0) } });
    let log = "";
    parent.stdout.on("data", (d: Buffer) => void (log += d.toString()));
    parent.stderr.on("data", (d: Buffer) => void (log += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => parent.on("close", (code, signal) => resolve({ code, signal })));
    const until = async (what: string, f: () => boolean | Promise<boolean>, ms: number): Promise<void> => {
      const deadline = Date.now() + ms;
      while (!(await f())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output so far ${out} of ${count}; log:\n${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    // Every record of the status topic, in order, to see each task's watermark advance: a reader of the latest
    // records only (gress status) can miss the records a task's old owner sent between two of its reads.
    const history: TaskStatusRecord[] = [];
    const follower = kafka().consumer({ groupId: uniqueName("so-cli-status"), maxWaitTimeInMs: 100 });
    let following = false;
    try {
      // Both workers in the group, 2 tasks each, disjoint, all 4 covered: seen on their own ports.
      let split: string[][] = [];
      await until(
        "both workers running 2 tasks each",
        async () => {
          split = [(await tasksAt(port)) ?? [], (await tasksAt(port + 1)) ?? []];
          return split[0]!.length === 2 && split[1]!.length === 2;
        },
        60_000,
      );
      assert.deepEqual([...split[0]!, ...split[1]!].sort(), ["0_0", "0_1", "0_2", "0_3"]);
      assert.ok(out < count, `the workers split the tasks mid-stream (${out} of ${count} out)`);
      // gress status sees the same split in the group.
      const live = await readJobStatus(brokers(), `gress-${name}`);
      assert.equal(live.state, "Stable");
      assert.deepEqual(live.members.map((m) => m.tasks).sort(), [...split].sort());
      assert.match(log, /\[worker 0\] .*metrics http:\/\/127\.0\.0\.1:\d+\/metrics/);
      // Each task's restore from its changelog, on its worker's /metrics (finished: active 0). A task is listed
      // as running from its assignment on, and its restore begins once it has fenced its transactional id: wait.
      for (const [i, tasks] of split.entries()) {
        let text = "";
        const restored = (task: string): boolean => new RegExp(`gress_task_restore_active\\{job="[^"]*",task="${task}",worker="${i}"\\} 0`).test(text);
        await until(
          `worker ${i}'s restore metrics`,
          async () => {
            text = await (await fetch(`http://127.0.0.1:${port + i}/metrics`)).text();
            return tasks.every(restored);
          },
          30_000,
        ).catch(() => undefined);
        for (const task of tasks) assert.ok(restored(task), `task ${task}'s finished restore on worker ${i}'s /metrics:\n${text}`);
      }
      assert.match(log, /\[worker 1\] /);
      const pids = (/started 2 workers of job "[^"]+" \(pids (\d+), (\d+)\)/.exec(log) ?? []).slice(1).map(Number);
      assert.equal(pids.length, 2, log);
      // The status topic: each task on its worker, restored, with a watermark.
      let tasks: TaskStatusView[] = [];
      const byTask = (): Map<string, TaskStatusView> => new Map(tasks.map((t) => [t.record.task, t]));
      const onWorker = (i: number, t: TaskStatusView | undefined): boolean => t !== undefined && t.record.worker.pid === pids[i] && t.record.state === "running" && !t.stale;
      await until(
        "every task's status record with a watermark",
        async () => {
          tasks = (await readTaskStatus(brokers(), name, { staleAfterMs: 3000 })).tasks;
          const m = byTask();
          // A watermark once the task read a record here.
          return split.every((ts, i) => ts.every((task) => onWorker(i, m.get(task)) && (m.get(task)?.record.watermark !== null || m.get(task)?.record.recordsIn === 0)));
        },
        30_000,
      ).catch((e: unknown) => {
        throw new Error(`${e instanceof Error ? e.message : String(e)}\nstatus records: ${JSON.stringify(tasks)}`);
      });
      for (const t of tasks) assert.equal(t.record.restore?.done, true, `task ${t.record.task}'s restore is done: ${JSON.stringify(t.record)}`);
      // The topic exists now (records are in it): follow it from its start.
      await follower.connect();
      following = true;
      await follower.subscribe({ topics: [`gress-${name}-status`], fromBeginning: true });
      await follower.run({
        eachMessage: async ({ message: m }) => {
          const d = decodeTaskStatus(m.key === null ? null : new Uint8Array(m.key), m.value === null ? null : new Uint8Array(m.value));
          if (d.kind === "status") history.push(d.record);
        },
      });
      // The same fields on each worker's /metrics.
      for (const [i, ts] of split.entries()) {
        const text = await (await fetch(`http://127.0.0.1:${port + i}/metrics`)).text();
        for (const task of ts) {
          assert.match(text, new RegExp(`gress_task_state\\{job="[^"]*",worker="${i}",task="${task}",state="running"\\} 1`), text);
          // A watermark (once one was published, it stays).
          if (byTask().get(task)?.record.watermark !== null) assert.match(text, new RegExp(`gress_task_watermark_ms\\{job="[^"]*",worker="${i}",task="${task}"\\} \\d+`), text);
        }
      }
      await until("all output", () => out >= count, 60_000);
      // A duplicate would come after the count is reached: give it time to show.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(out, count, "no output record twice");
      // Every input offset committed with its task's checkpoint: no lag left, per partition and in the text.
      const done = await readJobStatus(brokers(), `gress-${name}`, name);
      assert.deepEqual(
        done.partitions.map((p) => [p.task, p.topic, p.lag]),
        [0, 1, 2, 3].map((p) => [`0_${p}`, input, 0]),
      );
      // Each task's last checkpoint, from its changelog partition: recent, and the one that committed its offsets.
      assert.deepEqual(
        done.checkpoints.map((c) => c.task),
        ["0_0", "0_1", "0_2", "0_3"],
      );
      for (const c of done.checkpoints) assert.ok(c.id >= 1 && Date.now() - c.at < 60_000, `task ${c.task}: checkpoint ${c.id} at ${c.at}`);
      assert.equal(
        done.partitions.reduce((n, p) => n + (p.committed ?? 0), 0),
        count,
      );
      // A record that is not a status record, in the status topic: left out with a warning, the tasks still shown.
      await produce(`gress-${name}-status`, [{ key: "0_1", value: "not a status record" }]);
      const printed: string[] = [];
      const log0 = console.log;
      console.log = (...a: unknown[]) => void printed.push(a.join(" "));
      const code = await main(["status", name, "--brokers", brokers().join(",")]).finally(() => (console.log = log0));
      assert.equal(code, 0);
      assert.match(printed.join("\n"), new RegExp(`job "${name}": group gress-${name}, Stable, 2 members`));
      assert.match(printed.join("\n"), /total lag: 0$/m);
      assert.match(printed.join("\n"), new RegExp(`^ {2}warning: gress-${name}-status offset \\d+: record left out, not UTF-8 JSON`, "m"));
      assert.match(printed.join("\n"), /^ {2}0_3 .* 0 +\d+ \(\d+\.\d s ago\)$/m);

      // Each task's watermark advanced to its last input record's: t0 + 2 × its last i − bound − 1.
      const lastI = new Map<number, number>();
      for (const m of await readCommitted(input, 30_000)) {
        const i = (JSON.parse(m.value) as { i: number }).i;
        lastI.set(m.partition, Math.max(lastI.get(m.partition) ?? -1, i));
      }
      const finalWatermark = (task: string): number => t0 + 2 * (lastI.get(Number(task.split("_")[1])) ?? Number.NaN) - BOUND_MS - 1;
      await until(
        "every task's final watermark",
        async () => {
          tasks = (await readTaskStatus(brokers(), name, { staleAfterMs: 3000 })).tasks;
          // (and the follower has these records too)
          const followed = (r: TaskStatusRecord): boolean => history.some((h) => h.task === r.task && h.at === r.at && h.worker.pid === r.worker.pid);
          return tasks.length === 4 && tasks.every((t) => (t.record.recordsIn === 0 || t.record.watermark === finalWatermark(t.record.task)) && followed(t.record));
        },
        15_000,
      ).catch(() => undefined);
      assert.equal(tasks.length, 4);
      for (const t of tasks) {
        const task = t.record.task;
        const own = history.filter((r) => r.task === task);
        const seen = own.map((r) => `${r.worker.pid}:${r.state}:${r.watermark === null ? "-" : r.watermark - t0}:${r.recordsIn}`).join(" ");
        const w = own.flatMap((r) => (r.watermark === null ? [] : [r.watermark]));
        // Up to its last input's, from below.
        assert.ok(w.length > 0 && w[0]! < Math.max(...w) && Math.max(...w) <= finalWatermark(task), `task ${task}'s watermark advanced towards its last input's (${finalWatermark(task) - t0} after t0): ${seen}`);
        // On the task's current owner: the final watermark, or none when it read nothing there.
        assert.equal(t.record.watermark, t.record.recordsIn === 0 ? null : finalWatermark(task), `task ${task}: ${JSON.stringify(t.record)}; all its records (pid:state:watermark-t0:in): ${seen}`);
        assert.equal(t.record.recordsOut, t.record.recordsIn, `task ${task}: ${JSON.stringify(t.record)}`);
        if (t.record.recordsIn === 0) {
          // It moved after its old owner had read its input to the end: the old owner's last record, sent
          // before it rejoined the group, has its partition's watermark at the end (the task's own may trail
          // by an emission period).
          const before = own.filter((r) => r.worker.pid !== t.record.worker.pid).at(-1);
          const split = splitOf(input, Number(task.split("_")[1]));
          assert.equal(before?.splits?.[split], finalWatermark(task), `task ${task}'s old owner reported the end of its input: ${seen}; its last record: ${JSON.stringify(before)}`);
        }
      }
      assert.ok(
        tasks.some((t) => t.record.recordsIn > 0),
        "some task read records on its current owner",
      );
      // The printed task lines: worker, state, the watermark as ISO time and its lag ("-" for a task that read
      // nothing on its current owner), the finished restore.
      const iso = "\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +-?\\d+\\.\\d s";
      for (const [i, ts] of split.entries()) {
        for (const task of ts) assert.match(printed.join("\n"), new RegExp(`^ {4}${task} +\\S+:${pids[i]} +running +(${iso}|- +-) +done: \\d+ records`, "m"), printed.join("\n"));
      }
      assert.match(printed.join("\n"), new RegExp(`^ {4}0_\\d +\\S+ +running +${iso} `, "m"));

      // Worker 1 killed: its tasks' records go STALE (3 s without a new one; the group moves them only after its
      // 10 s session timeout), then worker 0 runs them, restored from their changelogs.
      process.kill(pids[1]!, "SIGKILL");
      let stale = "";
      await until(
        "the killed worker's tasks marked STALE in gress status",
        async () => {
          const lines: string[] = [];
          console.log = (...a: unknown[]) => void lines.push(a.join(" "));
          await main(["status", name, "--brokers", brokers().join(","), "--stale-after", "3"]).finally(() => (console.log = log0));
          stale = lines.join("\n");
          const staleOf = (task: string): boolean => new RegExp(`^ {4}${task} +\\S+:${pids[1]} +running .* STALE$`, "m").test(stale);
          return split[1]!.every(staleOf);
        },
        12_000,
      );
      for (const task of split[0]!) assert.match(stale, new RegExp(`^ {4}${task} +\\S+:${pids[0]} +running .*\\d s ago$`, "m"), stale);
      await until(
        "every task running on worker 0, restored",
        async () => {
          tasks = (await readTaskStatus(brokers(), name, { staleAfterMs: 3000 })).tasks;
          const m = byTask();
          return ["0_0", "0_1", "0_2", "0_3"].every((task) => onWorker(0, m.get(task)) && m.get(task)?.record.restore?.done === true);
        },
        45_000,
      );
      for (const task of split[1]!) {
        const r = byTask().get(task)!.record.restore!;
        assert.ok(r.applied > 0 && r.offset === r.end, `task ${task} restored its changelog on worker 0: ${JSON.stringify(r)}`);
      }
    } finally {
      if (following) await follower.disconnect();
      if (parent.exitCode === null) process.kill(parent.pid!, "SIGTERM");
      await watch.disconnect();
    }
    // 137: worker 1's SIGKILL (the parent exits with the first failure); worker 0 stopped gracefully.
    assert.deepEqual(await exited, { code: 137, signal: null }, log);
    assert.match(log, /\[worker 0\] worker 0 of "[^"]+" stopped/);
    assert.match(log, /gress: worker 1 exited with SIGKILL/);
    // Worker 0's last records: every task stopped.
    const last = (await readTaskStatus(brokers(), name, { staleAfterMs: 3000 })).tasks;
    assert.deepEqual(
      last.map((t) => [t.record.task, t.record.state, t.stale]),
      ["0_0", "0_1", "0_2", "0_3"].map((t) => [t, "stopped", false]),
    );
    const read = (await readCommitted(output, 30_000)).map((m) => JSON.parse(m.value) as { key: string; seq: number; i: number });
    assert.equal(read.length, count, "exactly one output per input record");
    assert.deepEqual(checkSequences(read, count, keys), []);
  });
});
