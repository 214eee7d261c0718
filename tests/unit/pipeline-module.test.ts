/**
 * `gress run` loads a pipeline module in any project, whatever its package.json "type" (lib/pipeline-module.ts).
 * The installed package is covered by scripts/consumer-test.sh; these run the CLI of this checkout.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { importPipeline } from "../../lib/pipeline-module.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-pipeline-module-");
const lib = pathToFileURL(fileURLToPath(new URL("../../lib/index.ts", import.meta.url))).href;

/** Runs the real CLI (bin/gress.mjs) under the runtime running the tests, in `cwd`. */
function runCli(cwd: string, args: readonly string[]): Promise<{ code: number | null; out: string; err: string }> {
  const bin = fileURLToPath(new URL("../../bin/gress.mjs", import.meta.url));
  const runtime = "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports", bin] : [bin];
  const child = spawn(process.execPath, [...runtime, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => void (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => void (err += d.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, out, err })));
}

/** A pipeline that reports whether the Job it was given is the Job class it imported itself. */
const pipeline = `import { Job, sinkFn } from ${JSON.stringify(lib)};
export default (job: Job): void => {
  console.log(\`same Job class: \${job instanceof Job}\`);
  job.fromIterable([1, 2, 3]).map((x) => x * 2).sinkTo(sinkFn("out", (x) => console.log(\`out \${x}\`)));
};
`;

describe("gress run loads the pipeline module", () => {
  it("a TypeScript pipeline written with import/export, in a CommonJS project (npm init -y), with the CLI's own Gress", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", type: "commonjs" }));
    writeFileSync(join(dir, "pipe.ts"), pipeline);
    const r = await runCli(dir, ["run", "pipe.ts", "--port", "0"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /same Job class: true/);
    assert.deepEqual(r.out.match(/^out \d+$/gm), ["out 2", "out 4", "out 6"]);
  });

  it("a CommonJS module: module.exports = fn, and a compiler's exports.default = fn", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "plain.cjs"), "module.exports = function build() {};\n");
    writeFileSync(
      join(dir, "compiled.cjs"),
      '"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.default = function build() {};\n',
    );
    for (const file of ["plain.cjs", "compiled.cjs"]) {
      const build = await importPipeline(join(dir, file));
      assert.equal(typeof build, "function", file);
      assert.equal((build as { name: string }).name, "build", file);
    }
  });

  it("an ES module in a CommonJS project keeps its default export as it is", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", type: "commonjs" }));
    writeFileSync(join(dir, "pipe.mjs"), "export default { not: 'a function' };\n");
    assert.deepEqual(await importPipeline(join(dir, "pipe.mjs")), { not: "a function" });
  });
});
