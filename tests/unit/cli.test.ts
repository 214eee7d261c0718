import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { readCommitted } from "../../connectors/file/index.ts";
import { latestCheckpoint } from "../../lib/checkpoint/storage.ts";
import { main, parseArgs } from "../../lib/cli.ts";
import { Job, sinkFn, VirtualClock } from "../../lib/index.ts";
import { serveMetrics } from "../../lib/server.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-cli-proc-");
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** The real CLI (bin/gress.mjs) under the runtime running the tests, as a child process. */
function startCli(args: readonly string[], env: Record<string, string> = {}): ChildProcess & { out: () => string; err: () => string; exited: Promise<{ code: number | null; signal: string | null }> } {
  const bin = fileURLToPath(new URL("../../bin/gress.mjs", import.meta.url));
  const runtime = "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports", bin] : [bin];
  const child = spawn(process.execPath, [...runtime, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => void (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => void (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
  return Object.assign(child, { out: () => out, err: () => err, exited });
}

/**
 * Sends a signal with process.kill rather than child.kill: Deno's child_process reports a child it signalled
 * through child.kill as killed by that signal, even when the child handled it and exited with a code.
 */
function signal(child: ChildProcess, name: NodeJS.Signals): void {
  process.kill(child.pid as number, name);
}

/** Runs the CLI to its end. */
async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = startCli(args, env);
  const { code } = await child.exited;
  return { code, out: child.out(), err: child.err() };
}

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs `fn` with console.log/error captured. */
async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await fn();
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

describe("gress CLI", () => {
  it("parses positionals, --flag value, --flag=value and bare flags", () => {
    assert.deepEqual(parseArgs(["run", "p.ts", "--port", "0", "--name=x", "--verbose"]), {
      positional: ["run", "p.ts"],
      flags: { port: "0", name: "x", verbose: "true" },
    });
  });

  it("demo runs surge pricing on generated rides and prints surging areas and a summary", async () => {
    const r = await capture(() => main(["demo", "--events", "40000", "--rate", "10000000"]));
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /surge ×\d\.\d/);
    const done = /done: 40,000 events in [\d.]+ s, (\d+) windows, (\d+) with surge/.exec(r.out);
    assert.ok(done, r.out.slice(-500));
    assert.ok(Number(done[1]) > 0 && Number(done[2]) > 0 && Number(done[2]) < Number(done[1]));
  });

  it("run loads a pipeline module, runs it to the end and serves metrics meanwhile", async () => {
    const fixture = new URL("./fixtures/pipeline.ts", import.meta.url).pathname;
    const r = await capture(() => main(["run", fixture, "--port", "0"]));
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/);
    const mod = (await import("./fixtures/pipeline.ts")) as { written: number[] };
    assert.deepEqual(mod.written, [10, 20, 30, 40]);
  });

  it("run with checkpoints, then savepoint, then run --from-savepoint resumes the state and the input position", async () => {
    const root = mkdtempSync(join(tmpdir(), "gress-cli-"));
    const fixture = new URL("./fixtures/counting-pipeline.ts", import.meta.url).pathname;
    const mod = (await import("./fixtures/counting-pipeline.ts")) as { emitted: string[] };
    try {
      process.env.GRESS_FIXTURE_INPUT = "a,b,a";
      const first = await capture(() =>
        main(["run", fixture, "--port", "0", "--name", "words", "--state-dir", join(root, "s1"), "--checkpoint-interval", "20"]),
      );
      assert.equal(first.code, 0, first.err);
      assert.deepEqual(mod.emitted.splice(0), ["a:1", "b:1", "a:2"]);

      const sp = await capture(() => main(["savepoint", "words", "--state-dir", join(root, "s1"), "--to", join(root, "sp")]));
      assert.equal(sp.code, 0, sp.err);
      assert.match(sp.out, /savepoint \S+ of job "words" \(checkpoint \d+\) written to /);

      // The input grew by two words; the restored job starts after the third and remembers the counts.
      process.env.GRESS_FIXTURE_INPUT = "a,b,a,c,a";
      const second = await capture(() =>
        main(["run", fixture, "--port", "0", "--name", "words", "--state-dir", join(root, "s2"), "--from-savepoint", join(root, "sp")]),
      );
      assert.equal(second.code, 0, second.err);
      assert.deepEqual(mod.emitted.splice(0), ["c:1", "a:3"]);
    } finally {
      delete process.env.GRESS_FIXTURE_INPUT;
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("run --from-checkpoint picks a retained checkpoint, and names the ones kept when it is not there", async () => {
    const root = mkdtempSync(join(tmpdir(), "gress-cli-"));
    const fixture = new URL("./fixtures/counting-pipeline.ts", import.meta.url).pathname;
    const mod = (await import("./fixtures/counting-pipeline.ts")) as { emitted: string[] };
    const state = join(root, "s");
    try {
      process.env.GRESS_FIXTURE_INPUT = "a,b,a";
      const first = await capture(() => main(["run", fixture, "--port", "0", "--name", "words", "--state-dir", state, "--retain", "2"]));
      assert.equal(first.code, 0, first.err);
      mod.emitted.splice(0);
      const sp = await capture(() => main(["savepoint", "words", "--state-dir", state, "--to", join(root, "sp")]));
      const latest = Number(/\(checkpoint (\d+)\)/.exec(sp.out)?.[1]);
      assert.ok(latest > 0, sp.out + sp.err);

      const missing = await capture(() => main(["run", fixture, "--port", "0", "--name", "words", "--state-dir", state, "--from-checkpoint", "999"]));
      assert.equal(missing.code, 1);
      assert.match(missing.err, new RegExp(`no checkpoint 999 to restore; it keeps (\\d+, )?${latest}`));

      // The latest checkpoint is after the last word: restoring it and growing the input continues the counts.
      process.env.GRESS_FIXTURE_INPUT = "a,b,a,b";
      const again = await capture(() => main(["run", fixture, "--port", "0", "--name", "words", "--state-dir", state, "--from-checkpoint", String(latest)]));
      assert.equal(again.code, 0, again.err);
      assert.deepEqual(mod.emitted.splice(0), ["b:2"]);
    } finally {
      delete process.env.GRESS_FIXTURE_INPUT;
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("savepoint of a job without state fails with a clear error", async () => {
    const r = await capture(() => main(["savepoint", "nothing-here", "--state-dir", join(tmpdir(), "gress-no-such-dir")]));
    assert.equal(r.code, 1);
    assert.match(r.err, /gress-no-such-dir/);
  });

  it("rejects a bad flag value with the field named, and an unknown command with usage", async () => {
    const bad = await capture(() => main(["demo", "--events", "-3"]));
    assert.equal(bad.code, 1);
    assert.match(bad.err, /ERR_CONFIG: invalid options: demo\.events: Too small: expected number to be >0, got -3/);
    const unknown = await capture(() => main(["frobnicate"]));
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /usage:/);
  });
});

describe("gress CLI as a process", () => {
  it("--version prints the package version; every command has --help on stdout with its options", async () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    const v = await cli(["--version"]);
    assert.deepEqual([v.code, v.out.trim()], [0, `gress ${pkg.version}`], v.err);
    const run = await cli(["run", "--help"]);
    assert.equal(run.code, 0, run.err);
    assert.match(run.out, /^usage: gress run <pipeline\.ts\|\.js> \[options\]/);
    assert.match(run.out, /--checkpoint-interval MS +take a checkpoint every MS ms/);
    assert.match(run.out, /--restart STRATEGY +what a failure does: none \(default\), fixed-delay or exponential-backoff/);
    assert.match(run.out, /--help +show this help/);
    for (const c of ["demo", "savepoint"]) {
      const h = await cli([c, "--help"]);
      assert.equal(h.code, 0, h.err);
      assert.match(h.out, new RegExp(`^usage: gress ${c}`));
      assert.match(h.out, /options:\n {2}--/);
    }
    const help = await cli(["help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /commands:\n {2}demo/);
  });

  it("an unknown command or option is named, with the usage, and exits 2", async () => {
    const cmd = await cli(["frobnicate"]);
    assert.equal(cmd.code, 2);
    assert.match(cmd.err, /^gress: unknown command "frobnicate"\n\nusage: gress <command>/);
    const opt = await cli(["run", fixture("pipeline.ts"), "--colour", "red", "--port", "0"]);
    assert.equal(opt.code, 2);
    assert.match(opt.err, /^gress run: unknown option --colour\n\nusage: gress run/);
    const none = await cli([]);
    assert.equal(none.code, 2);
    assert.match(none.err, /missing command/);
  });

  it("a missing pipeline file says so; a pipeline that throws while building prints its stack", async () => {
    const missing = await cli(["run", "no/such/pipeline.ts", "--port", "0"]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /no such file: no\/such\/pipeline\.ts/);
    const throwing = await cli(["run", fixture("throwing-pipeline.ts"), "--port", "0"]);
    assert.equal(throwing.code, 1);
    assert.match(throwing.err, /failed while building the pipeline:\nError: GRESS_TOPIC is not set\n\s+at topicFromEnvironment .*throwing-pipeline\.ts/);
  });

  it("a run ends with a summary, and warns about dead letters saying where they are", async () => {
    const r = await cli(["run", fixture("dead-letter-pipeline.ts"), "--port", "0"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /job "dead-letter-pipeline" finished after \d+\.\d s\n {2}in {3}numbers: 5 records\n {2}out {2}kept: 3 records\n {2}dead letters: 2, late records: 0, checkpoints: 0, restarts: 0/);
    assert.match(r.err, /warning: 2 records went to dead letters \(map-1: 2\)\. They are on the DEAD_LETTERS side output/);
  });

  it("--restart restarts a failing job, logging one line per restart without a stack", async () => {
    const dir = tempDir();
    const r = await cli([
      "run",
      fixture("flaky-sink-pipeline.ts"),
      "--port",
      "0",
      "--state-dir",
      join(dir, "state"),
      "--checkpoint-interval",
      "20",
      "--restart",
      "fixed-delay",
      "--restart-attempts",
      "3",
      "--restart-delay",
      "10",
    ]);
    assert.equal(r.code, 0, r.err);
    const restarts = r.err.split("\n").filter((l) => l.includes("restart"));
    assert.deepEqual(restarts, [
      'gress: job "flaky-sink-pipeline": restart 1/3 in 0.0 s after ERR_SINK: sink "flaky" failed to write: connection lost',
      'gress: job "flaky-sink-pipeline": restart 2/3 in 0.0 s after ERR_SINK: sink "flaky" failed to write: connection lost',
    ]);
    assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
    assert.match(r.out, /restarts: 2/);
    const bad = await cli(["run", fixture("flaky-sink-pipeline.ts"), "--port", "0", "--restart-attempts", "3"]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /run\.restart: give --restart fixed-delay or exponential-backoff with the other restart options/);
  });

  it("SIGTERM stops gracefully: a last checkpoint commits everything read, and the exit code is 0", async () => {
    const dir = tempDir();
    const state = join(dir, "state");
    const out = join(dir, "out");
    const child = startCli(["run", fixture("endless-pipeline.ts"), "--port", "0", "--state-dir", state, "--checkpoint-interval", "100000"], { GRESS_FIXTURE_OUT: out });
    await until(() => child.out().includes("flowing"), "the first record");
    await new Promise((r) => setTimeout(r, 300));
    signal(child, "SIGTERM");
    const { code } = await child.exited;
    assert.equal(code, 0, child.err());
    assert.match(child.err(), /SIGTERM: stopping "endless-pipeline" gracefully/);
    assert.match(child.out(), /job "endless-pipeline" stopped by SIGTERM after [\d.]+ s\n {2}in {3}ticks: [\d,]+ records/);
    assert.match(child.out(), /checkpoints: 1,/, "the interval is long: the one checkpoint is the stop's");
    const backend = new LmdbStateBackend({ path: state, durability: "process" });
    const cp = latestCheckpoint(backend.meta);
    await backend.close();
    const committed = readCommitted<{ i: number }>(out, "out");
    const position = (cp?.positions.ticks as Record<string, number> | undefined)?.ticks;
    assert.ok(committed.length > 0, "something was committed");
    assert.equal(committed.length, position, "every record before the stop's checkpoint is committed, and nothing after it");
    assert.deepEqual(
      committed.map((r) => r.i),
      committed.map((_, j) => j),
    );
  });

  it("a second signal stops at once, while the graceful stop still waits", async () => {
    const dir = tempDir();
    const child = startCli(["run", fixture("endless-pipeline.ts"), "--port", "0", "--state-dir", join(dir, "state"), "--checkpoint-interval", "100000"], {
      GRESS_FIXTURE_OUT: join(dir, "out"),
      GRESS_FIXTURE_HANG: "1",
    });
    await until(() => child.out().includes("flowing"), "the first record");
    signal(child, "SIGINT");
    await until(() => child.err().includes("stopping"), "the graceful stop");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(child.exitCode, null, "the graceful stop waits for the pre-commit that never completes");
    signal(child, "SIGINT");
    const { code } = await child.exited;
    assert.equal(code, 130);
    assert.match(child.err(), /SIGINT again: stopping at once/);
  });
});

describe("metrics server", () => {
  it("serves Prometheus text, health, status JSON and the live page", async () => {
    const job = new Job({ name: "served" });
    job.fromIterable([1, 2, 3]).map((x) => x + 1).sinkTo(sinkFn("null", () => {}));
    await job.run();
    const server = await serveMetrics(job, { status: "running" }, 0);
    try {
      const base = `http://127.0.0.1:${server.port}`;
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /gress_records_in_total\{operator="map-1",job="served"\} 3/);
      assert.match(metrics, /# TYPE gress_records_in_total counter/);
      const health = await fetch(`${base}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: "running", job: "served" });
      const status = (await (await fetch(`${base}/status`)).json()) as { operators: { id: string; out: number }[] };
      assert.deepEqual(status.operators.find((o) => o.id === "map-1")?.out, 3);
      assert.match(await (await fetch(`${base}/`)).text(), /<title>Gress<\/title>/);
      assert.equal((await fetch(`${base}/nope`)).status, 404);
    } finally {
      await server.close();
    }
  });

  it("status shows each operator's event-time lag: processing time minus its watermark", async () => {
    const job = new Job({ name: "lagging", clock: new VirtualClock(100_000) });
    job.metrics.operator("window-1").watermark = 40_000;
    job.metrics.operator("map-1");
    const server = await serveMetrics(job, { status: "running" }, 0);
    try {
      const status = (await (await fetch(`http://127.0.0.1:${server.port}/status`)).json()) as {
        operators: { id: string; eventTimeLagMs: number | null }[];
      };
      assert.deepEqual(
        status.operators.map((o) => [o.id, o.eventTimeLagMs]),
        [
          ["window-1", 60_000],
          ["map-1", null],
        ],
      );
    } finally {
      await server.close();
    }
  });

  it("reports 503 on /health once the job failed", async () => {
    const job = new Job({ name: "failing" });
    const server = await serveMetrics(job, { status: "failed", error: "boom" }, 0);
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/health`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: "failed", job: "failing", error: "boom" });
    } finally {
      await server.close();
    }
  });
});
