/**
 * The status of `gress run`: a line redrawn in place on a terminal, with a progress bar, rate and ETA when the
 * input has a known end; plain lines elsewhere; nothing with --quiet.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { fileSource } from "../../connectors/file/index.ts";
import { ProgressReporter } from "../../lib/cli-progress.ts";
import { generator, Job } from "../../lib/index.ts";

const ROOT = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A stream that records what was written, as a terminal (isTTY) or not. */
function stream(tty: boolean): { isTTY: boolean; columns: number; text: string; write(s: string): boolean } {
  return {
    isTTY: tty,
    columns: 200,
    text: "",
    write(s: string) {
      this.text += s;
      return true;
    },
  };
}

describe("gress run status", () => {
  it("on a terminal: one line redrawn in place, with a progress bar, rate and ETA for a bounded generator", async () => {
    const job = new Job({ name: "bounded" });
    job.source(generator({ name: "gen", count: 4_000, ratePerSecond: 4_000, make: (i) => i })).sinkTo({ name: "out", write() {} });
    const out = stream(true);
    const status = new ProgressReporter(job, out, 300);
    status.start();
    const running = job.run();
    await sleep(700);
    const mid = out.text;
    await running;
    status.stop();
    const lines = mid.split("\r\x1b[2K").filter((l) => l !== "");
    assert.ok(lines.length >= 2, JSON.stringify(mid));
    assert.ok(!mid.includes("\n"), "redrawn in place, never a new line");
    assert.match(lines.at(-1)!, /^\[#+-*\] +\d+% \d+\/4000 records \d+ rec\/s ETA \d+s · in \d+\/s · out \d+\/s · restarts 0$/);
    const percent = Number(/(\d+)%/.exec(lines.at(-1)!)![1]);
    assert.ok(percent > 5 && percent < 95, `about halfway: ${lines.at(-1)}`);
    assert.ok(out.text.endsWith("\r\x1b[2K"), "the line is cleared at the end, for the summary");
  });

  it("a file source shows bytes; an unbounded source has no bar; not on a terminal, plain lines", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gress-progress-"));
    try {
      writeFileSync(join(dir, "in.ndjson"), `${Array.from({ length: 100 }, (_, i) => JSON.stringify({ i })).join("\n")}\n`);
      const job = new Job({ name: "file" });
      job.source(fileSource({ name: "in", path: join(dir, "in.ndjson") })).sinkTo({ name: "out", write() {} });
      await job.run();
      const file = new ProgressReporter(job, stream(false)).status();
      assert.match(file, /^\[#{20}\] 100% 890\/890 bytes [\d.]+[kMG]? B\/s ETA 0s · in \d+\/s · out \d+\/s · restarts 0$/);

      const endless = new Job({ name: "endless" });
      endless.source(generator({ name: "gen", ratePerSecond: 1_000, make: (i) => i })).sinkTo({ name: "out", write() {} });
      const out = stream(false);
      const status = new ProgressReporter(endless, out, 200);
      status.start();
      const running = endless.run();
      await sleep(500);
      endless.cancel();
      await running.catch(() => {});
      status.stop();
      const lines = out.text.split("\n").filter((l) => l !== "");
      assert.ok(lines.length >= 2, out.text);
      for (const l of lines) assert.match(l, /^gress: in \d+\/s · out \d+\/s · restarts 0$/);
      assert.ok(!out.text.includes("\x1b"), "no terminal codes");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gress run --quiet prints only the summary", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "gress-quiet-"));
    try {
      const pipeline = join(dir, "pipeline.ts");
      writeFileSync(
        pipeline,
        `import { generator, sinkFn } from ${JSON.stringify(join(ROOT, "lib", "index.ts"))};\nexport default (job) => { job.source(generator({ name: "gen", count: 100, make: (i) => i })).sinkTo(sinkFn("out", () => {})); };\n`,
      );
      const bin = join(ROOT, "bin", "gress.mjs");
      const runtime = "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports", bin] : [bin];
      const child = spawn(process.execPath, [...runtime, "run", pipeline, "--port", "0", "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Uint8Array) => void (out += String(d)));
      child.stderr.on("data", (d: Uint8Array) => void (err += String(d)));
      const code = await new Promise((r) => child.on("close", r));
      assert.equal(code, 0, err);
      assert.equal(err, "");
      assert.match(out, /^job "pipeline" finished after [\d.]+ s\n {2}in {3}gen: 100 records\n/);
      assert.doesNotMatch(out, /metrics:|gress: in/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
