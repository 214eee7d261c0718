import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { main, parseArgs } from "../../lib/cli.ts";
import { Job, sinkFn, VirtualClock } from "../../lib/index.ts";
import { serveMetrics } from "../../lib/server.ts";

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
