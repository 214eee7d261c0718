/**
 * `gress run --workers N` refuses bad input before it starts any worker process: --workers that is not a
 * positive integer, a missing --brokers, an option of single-process mode, a scale-out option without
 * --workers, and a pipeline with a source that is not Kafka. (The workers themselves run against the real
 * broker in tests/integration/scaleout-cli.test.ts.) And the parent's exit: it waits for every worker and
 * exits with the first non-zero code, the workers' output prefixed with their index.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { main } from "../../lib/cli.ts";
import { type WorkerFlags, workerFlags, workerInstanceId } from "../../lib/cli-workers.ts";
import { ConfigError } from "../../lib/errors.ts";
import { runScaledOut } from "../../lib/scaleout/worker.ts";

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** Runs the CLI in this process with console output captured. */
async function cli(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

describe("gress run --workers: bad input", () => {
  const pipeline = fixture("pipeline.ts");

  for (const bad of ["0", "-1", "1.5", "abc"]) {
    it(`--workers ${bad} is an error naming --workers`, async () => {
      const r = await cli(["run", pipeline, `--workers=${bad}`, "--brokers", "127.0.0.1:1"]);
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, /^ERR_CONFIG: invalid options: run\.workers: /, r.err);
      assert.doesNotMatch(r.err, /started \d+ workers/);
    });
  }

  it("--workers without a value is a usage error", async () => {
    const r = await cli(["run", pipeline, "--workers"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /option --workers needs a value \(N\)/);
  });

  it("--workers without --brokers names --brokers", async () => {
    const r = await cli(["run", pipeline, "--workers", "2"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /--brokers HOST:PORT\[,HOST:PORT\.\.\.\] is required/);
  });

  it("an option of single-process mode is refused with --workers, naming it", async () => {
    const r = await cli(["run", pipeline, "--workers", "2", "--brokers", "127.0.0.1:1", "--restart", "fixed-delay", "--retain", "3"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /--restart, --retain are not supported in scale-out mode/);
  });

  it("a scale-out option without --workers is a usage error", async () => {
    const r = await cli(["run", pipeline, "--brokers", "127.0.0.1:1"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--brokers is a scale-out option: give --workers N with it/);
  });

  it("a pipeline with a bounded Kafka source is refused before any worker starts, naming it", async () => {
    const r = await cli(["run", fixture("scaleout-bounded-pipeline.ts"), "--workers", "2", "--brokers", "127.0.0.1:1"]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /a scale-out job runs until it is stopped, but Kafka source "backfill" is bounded \(bounded: true\)/);
    assert.doesNotMatch(r.err, /started \d+ workers/);
  });

  it("a pipeline with a non-Kafka source is refused before any worker starts, naming that source and not the Kafka one", async () => {
    const r = await cli(["run", fixture("scaleout-mixed-sources-pipeline.ts"), "--workers", "2", "--brokers", "127.0.0.1:1"]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /a scale-out job reads only Kafka topics, but source "rides" \(not Kafka: \w+\) is not Kafka: ingest into a Kafka topic first/);
    assert.doesNotMatch(r.err, /"orders"/);
    assert.doesNotMatch(r.err, /started \d+ workers/);
  });
});

describe("gress run --workers: static membership (--instance-id)", () => {
  const pipeline = fixture("pipeline.ts");
  const flags = (extra: Record<string, string>): WorkerFlags => workerFlags({ brokers: "127.0.0.1:1", workers: "2", ...extra }, "orders");

  it("each worker's group instance id: <job>-<host>-<state dir hash>-<index> by default on @platformatic/kafka, <prefix>-<index> with a prefix, none with none or on kafkajs", () => {
    const byDefault = workerInstanceId(flags({ "kafka-client": "platformatic" }), 1, "node-a");
    assert.match(byDefault ?? "", /^orders-node-a-[0-9a-f]{8}-1$/);
    assert.equal(workerInstanceId(flags({ "kafka-client": "platformatic" }), 1, "node-a"), byDefault, "stable for the same state directory");
    assert.equal(workerInstanceId(flags({ "kafka-client": "platformatic", "state-dir": "state/orders" }), 1, "node-a"), byDefault, "state/<job> is the default directory");
    const other = workerInstanceId(flags({ "kafka-client": "platformatic", "state-dir": "/srv/other" }), 1, "node-a");
    assert.match(other ?? "", /^orders-node-a-[0-9a-f]{8}-1$/);
    assert.notEqual(other, byDefault, "a second command on the host with its own state directory gets other ids");
    assert.equal(workerInstanceId(flags({ "kafka-client": "platformatic", "instance-id": "eu-1" }), 0, "node-a"), "eu-1-0");
    assert.equal(workerInstanceId(flags({ "kafka-client": "platformatic", "instance-id": "none" }), 0, "node-a"), undefined);
    assert.equal(workerInstanceId(flags({ "kafka-client": "kafkajs" }), 0, "node-a"), undefined);
    assert.equal(workerInstanceId(flags({ "kafka-client": "kafkajs", "instance-id": "none" }), 0, "node-a"), undefined);
  });

  it("--instance-id with kafkajs is refused before any worker starts, naming the option", async () => {
    const r = await cli(["run", pipeline, "--workers", "2", "--brokers", "127.0.0.1:1", "--kafka-client", "kafkajs", "--instance-id", "eu"]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /--instance-id \(static membership\) needs the @platformatic\/kafka client; kafkajs has none/);
    assert.doesNotMatch(r.err, /started \d+ workers/);
  });

  it("--instance-id with whitespace is an error naming it; without --workers it is a usage error", async () => {
    const r = await cli(["run", pipeline, "--workers", "2", "--brokers", "127.0.0.1:1", "--instance-id", "a b"]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /run\.instance-id: a prefix without whitespace, or none/);
    const u = await cli(["run", pipeline, "--instance-id", "eu"]);
    assert.equal(u.code, 2);
    assert.match(u.err, /--instance-id is a scale-out option: give --workers N with it/);
  });

  it("runScaledOut refuses an empty or whitespace instanceId, and one on kafkajs, with a ConfigError naming instanceId (before connecting)", () => {
    const run = (instanceId: string, client: "kafkajs" | "platformatic") => () => runScaledOut({ name: "orders", kafka: { brokers: ["127.0.0.1:1"], client }, state: "unused", instanceId }, () => undefined);
    for (const bad of ["", "a b", " "]) assert.throws(run(bad, "platformatic"), (e: unknown) => e instanceof ConfigError && /instanceId must be a non-empty string without whitespace/.test(e.message));
    assert.throws(run("w-0", "kafkajs"), (e: unknown) => e instanceof ConfigError && /instanceId "w-0": kafkajs has no static membership/.test(e.message));
  });
});

describe("gress run --workers: the parent process", () => {
  it("starts the workers with this runtime, prefixes their output, waits for all and exits with the first non-zero code", { timeout: 60_000 }, async () => {
    const bin = fileURLToPath(new URL("../../bin/gress.mjs", import.meta.url));
    const runtime = "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports", bin] : [bin];
    const child = spawn(process.execPath, [...runtime, "run", fixture("scaleout-exit-pipeline.ts"), "--workers", "2", "--brokers", "127.0.0.1:1"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout?.on("data", (d: Buffer) => void (out += d.toString()));
    child.stderr?.on("data", (d: Buffer) => void (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    assert.equal(code, 3, `${out}\n${err}`);
    assert.match(out, /^\[worker 1\] worker 1 ends with code 3$/m);
    // Worker 0 ended after worker 1, and the parent waited for it.
    assert.match(out, /^\[worker 0\] worker 0 ends with code 0$/m);
    assert.match(err, /gress: started 2 workers of job "scaleout-exit-pipeline"/);
    assert.match(err, /gress: worker 1 exited with code 3; it is not restarted/);
    assert.doesNotMatch(err, /worker 0 exited/);
  });
});

describe("gress status: bad input", () => {
  it("without a job name is a usage error", async () => {
    const r = await cli(["status", "--brokers", "127.0.0.1:1"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /gress status: missing job name/);
  });

  it("without --brokers names --brokers", async () => {
    const r = await cli(["status", "orders"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^ERR_CONFIG: invalid options: status\.brokers: required: --brokers HOST:PORT\[,HOST:PORT\.\.\.\]/);
  });

  it("--brokers with no broker in the list names --brokers", async () => {
    const r = await cli(["status", "orders", "--brokers", " , "]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^ERR_CONFIG: invalid options: status\.brokers: /);
  });

  it("brokers that cannot be reached: the error says which group and brokers", async () => {
    const r = await cli(["status", "orders", "--brokers", "127.0.0.1:1"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^gress status: could not read group gress-orders from 127\.0\.0\.1:1: /);
  });
});
