import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { IngestLog } from "../../connectors/ingest-log/index.ts";
import { encodeEntry } from "../../connectors/ingest-log/source.ts";
import { tempDirs } from "../support/temp.ts";
import { freePort } from "../support/tcp-proxy.ts";

const tempDir = tempDirs("gress-cli-exit-");
/** The job's default closeTimeoutMs: a failed job has released what it can by then. */
const CLOSE_TIMEOUT_MS = 10_000;
/** Starting the runtime and loading the TypeScript sources, which the bound does not include. */
const STARTUP_MS = 10_000;

/** Runs the real CLI (bin/gress.mjs) under the runtime running the tests; kills it if it outlives `killAfterMs`. */
function runCli(args: readonly string[], env: Record<string, string>, killAfterMs: number): Promise<{ code: number | null; err: string; ms: number; killed: boolean }> {
  const bin = fileURLToPath(new URL("../../bin/gress.mjs", import.meta.url));
  const runtime = "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports", bin] : [bin];
  const started = performance.now();
  const child = spawn(process.execPath, [...runtime, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => void (err += d.toString()));
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, killAfterMs);
  return new Promise((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, err, ms: performance.now() - started, killed });
    }),
  );
}

describe("gress run of a failing job", () => {
  it("exits 1 with the sink's error within closeTimeoutMs, though its HTTP source was replaying and a sink left a timer behind", async () => {
    const dir = tempDir();
    const log = await IngestLog.open(dir, { fsync: false });
    const body = new TextEncoder().encode('{"id":1}\n');
    await log.append([encodeEntry({ receivedAt: 1, meta: JSON.stringify({ k: null, t: "ndjson" }), body })]);
    await log.close();
    const fixture = fileURLToPath(new URL("./fixtures/failing-sink-pipeline.ts", import.meta.url));
    const r = await runCli(
      ["run", fixture, "--port", "0"],
      { GRESS_FIXTURE_DIR: dir, GRESS_FIXTURE_PORT: String(await freePort()) },
      CLOSE_TIMEOUT_MS + STARTUP_MS + 10_000,
    );
    assert.equal(r.killed, false, `gress run was still alive after ${Math.round(r.ms)} ms; stderr: ${r.err}`);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /ERR_SINK: sink "poisoned" failed to write: cannot write this record/);
    assert.ok(r.ms < CLOSE_TIMEOUT_MS + STARTUP_MS, `exited after ${Math.round(r.ms)} ms`);
  });
});
