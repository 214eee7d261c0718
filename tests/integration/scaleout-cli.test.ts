/**
 * `gress run <pipeline> --workers 2` on the real broker: the parent starts two worker processes; both join the
 * job's group and split its 4 tasks (each /metrics, on port and port + 1, reports 2 tasks); SIGTERM to the
 * parent stops both gracefully (exit 0); the output is every input record exactly once, with per-key
 * sequence numbers 1..n. `gress status` reports the two members with the same tasks and, at the end, no lag.
 * Runs on the client GRESS_KAFKA_CLIENT names (@platformatic/kafka by default).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { readJobStatus } from "../../lib/cli-status.ts";
import { main } from "../../lib/cli.ts";
import { checkSequences, events } from "./kafka-eos-support.ts";
import { brokers, clientName, createTopic, kafka, produce, readCommitted, uniqueName } from "./kafka-support.ts";

const BIN = fileURLToPath(new URL("../../bin/gress.mjs", import.meta.url));
const PIPELINE = fileURLToPath(new URL("./scaleout-cli-pipeline.ts", import.meta.url));

/** A base port p with p and p + 1 free now. */
async function freePortPair(): Promise<number> {
  const listen = (port: number): Promise<number | undefined> =>
    new Promise((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(undefined));
      s.listen(port, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
  for (;;) {
    const p = await listen(0);
    if (p !== undefined && p < 65535 && (await listen(p + 1)) !== undefined) return p;
  }
}

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

  it("two workers split the tasks, each serves /metrics on its port, SIGTERM stops both cleanly, and the output is complete without duplicates", { timeout: 90_000 }, async () => {
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

    const port = await freePortPair();
    const name = uniqueName("so-cli");
    const args = ["run", PIPELINE, "--workers", "2", "--name", name, "--brokers", brokers().join(","), "--kafka-client", clientName(), "--state-dir", state, "--port", String(port), "--checkpoint-interval", "500"];
    const parent = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SO_CLI_BROKERS: brokers().join(","), SO_CLI_INPUT: input, SO_CLI_OUTPUT: output } });
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
      const printed: string[] = [];
      const log0 = console.log;
      console.log = (...a: unknown[]) => void printed.push(a.join(" "));
      const code = await main(["status", name, "--brokers", brokers().join(",")]).finally(() => (console.log = log0));
      assert.equal(code, 0);
      assert.match(printed.join("\n"), new RegExp(`job "${name}": group gress-${name}, Stable, 2 members`));
      assert.match(printed.join("\n"), /total lag: 0$/m);
      assert.match(printed.join("\n"), /^ {2}0_3 .* 0 +\d+ \(\d+\.\d s ago\)$/m);
    } finally {
      if (parent.exitCode === null) process.kill(parent.pid!, "SIGTERM");
      await watch.disconnect();
    }
    assert.deepEqual(await exited, { code: 0, signal: null }, log);
    assert.match(log, /\[worker 0\] worker 0 of "[^"]+" stopped/);
    assert.match(log, /\[worker 1\] worker 1 of "[^"]+" stopped/);
    const read = (await readCommitted(output, 30_000)).map((m) => JSON.parse(m.value) as { key: string; seq: number; i: number });
    assert.equal(read.length, count, "exactly one output per input record");
    assert.deepEqual(checkSequences(read, count, keys), []);
  });
});
