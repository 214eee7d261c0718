#!/usr/bin/env node
// Runs the same node:test files on Node (node --test with tsx), Bun (bun test) and Deno (deno test), and
// ends with one line "N passed, N failed". Exits non-zero if any runtime fails or runs no test.
//
//   node scripts/test.mjs [--runtime node|bun|deno]... [--suite unit|property|crash|integration|faults]...
//                         [--match REGEXP] [--exclude REGEXP]   (only the test files whose path matches / not)
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = process.argv.slice(2);
const pick = (flag) => args.flatMap((a, i) => (args[i - 1] === flag ? [a] : []));
const runtimes = pick("--runtime").length > 0 ? pick("--runtime") : ["node", "bun", "deno"];
// Integration tests need the services (scripts/services up); they run only when asked for.
const suites = pick("--suite").length > 0 ? pick("--suite") : ["unit", "property", "crash"];

function files(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".test.ts") ? [p] : [];
  });
}
const match = pick("--match").map((r) => new RegExp(r));
const exclude = pick("--exclude").map((r) => new RegExp(r));
const testFiles = suites
  .flatMap((s) => files(join("tests", s)))
  .filter((f) => match.every((r) => r.test(f)) && !exclude.some((r) => r.test(f)))
  .sort();
if (testFiles.length === 0) {
  console.error(`no test files in ${suites.join(", ")}${match.length + exclude.length > 0 ? " matching --match/--exclude" : ""}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}

const bin = (name) => join("node_modules", ".bin", name);
const env = { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" };
// The fault suite's scenarios append their figures here; they are summed at the end.
const figuresFile = suites.includes("faults") ? join(tmpdir(), `gress-fault-figures-${process.pid}.jsonl`) : undefined;
if (figuresFile !== undefined) env.GRESS_FAULT_FIGURES = figuresFile;
const commands = {
  node: [process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...testFiles]],
  bun: [bin("bun"), ["test", "--timeout", "120000", ...testFiles.map((f) => `./${f}`)]],
  deno: [bin("deno"), ["test", "-A", "--no-check", "--unstable-sloppy-imports", ...testFiles]],
};

// Each runner's own report is parsed; a missing summary counts as a failure of that runtime. The failed count
// is every failure the runner reported, which its summary line alone does not give: node's "# fail" leaves out
// suites that failed by themselves (a throwing hook) and "# cancelled" tests; bun's "fail" leaves out its
// "errors" (thrown between tests); deno counts top-level tests or steps, and groups (describe) among them.
const parse = {
  node: (out) => {
    if (Number.isNaN(num(out, /^# pass (\d+)/m))) return { pass: Number.NaN, fail: Number.NaN };
    return { pass: num(out, /^# pass (\d+)/m), fail: failureReports.node(out.split("\n")).length };
  },
  bun: (out) => ({ pass: num(out, /^\s*(\d+) pass/m), fail: num(out, /^\s*(\d+) fail/m) + (num(out, /^\s*(\d+) errors?$/m) || 0) }),
  deno: (out) => {
    if (!/^(ok|FAILED) \| \d+ passed/m.test(out)) return { pass: Number.NaN, fail: Number.NaN };
    // Its per-test lines: "name ... ok (1ms)" for a test, and for a group (describe) "name ..." before its
    // steps and "name ... ok|FAILED (…)" after them. A group counts only if it failed by itself (a hook). A
    // test that prints is also split in two ("name ...", its output, "name ... ok"), but has no step between.
    const open = [];
    let pass = 0;
    for (const line of out.split("\n")) {
      const header = /^(\s*)(.+) \.\.\.$/.exec(line);
      if (header) {
        if (open.length > 0) open.at(-1).steps++;
        open.push({ name: `${header[1]}${header[2]}`, steps: 0 });
        continue;
      }
      const result = /^(\s*)(.+) \.\.\. (ok|FAILED|ignored)\b/.exec(line);
      if (!result) continue;
      if (open.at(-1)?.name === `${result[1]}${result[2]}`) {
        const group = open.pop();
        if (group.steps > 0) continue;
      } else if (open.length > 0) open.at(-1).steps++;
      if (result[3] === "ok") pass++;
    }
    // Deno lists every failure once under FAILURES, a throwing hook's group included.
    const lines = out.split("\n");
    const at = lines.findIndex((l) => /^\s*FAILURES\s*$/.test(l));
    let fail = 0;
    if (at !== -1) for (let i = at + 1; i < lines.length && !/^(ok|FAILED) \|/.test(lines[i]); i++) if (/ => /.test(lines[i])) fail++;
    return { pass, fail };
  },
};
// The report of each failed test: node's TAP "not ok" line with its YAML diagnostics; bun's "(fail)" line
// with the error lines it printed before it; deno prints its own FAILURES section at the end of its output.
const failureReports = {
  node: (lines) =>
    lines.flatMap((line, i) => {
      if (!/^\s*not ok \d+/.test(line) || /# SKIP|# TODO/.test(line)) return [];
      const end = lines.findIndex((l, j) => j > i && /^\s*\.\.\.\s*$/.test(l));
      const block = lines.slice(i, end === -1 ? i + 40 : Math.min(end + 1, i + 60)).join("\n");
      // A suite that failed only because a test in it failed adds nothing to that test's report.
      return /failureType: 'subtestsFailed'/.test(block) ? [] : [block];
    }),
  bun: (lines) => lines.flatMap((line, i) => (/^\(fail\)/.test(line.trim()) ? [lines.slice(Math.max(0, i - 25), i + 1).join("\n")] : [])),
  deno: (lines) => {
    const at = lines.findIndex((l) => /^\s*ERRORS\s*$/.test(l));
    return at === -1 ? [] : [lines.slice(at, at + 200).join("\n")];
  },
};
function num(out, re) {
  const m = re.exec(out);
  return m ? Number(m[1]) : Number.NaN;
}

let passed = 0;
let failed = 0;
let bad = false;
let totalCrashKills = 0;
for (const rt of runtimes) {
  const [cmd, cmdArgs] = commands[rt] ?? [];
  if (cmd === undefined) throw new Error(`unknown runtime ${rt}`);
  console.log(`\n=== ${rt}: ${testFiles.length} files ===`);
  const started = Date.now();
  const r = spawnSync(cmd, cmdArgs, { env, encoding: "utf8", maxBuffer: 256 * 1024 * 1024, timeout: 30 * 60_000 });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
  const out = `${r.stdout ?? ""}\n${r.stderr ?? ""}`.replace(/\u001b\[[0-9;]*m/g, "");
  process.stdout.write(out.split("\n").slice(-80).join("\n"));
  // Every skipped test is listed with its reason, wherever it sits in the runner's output.
  const skips = out.split("\n").filter((l) => /# SKIP|^\(skip\)|\.\.\. ignored/.test(l.trim()));
  if (skips.length > 0) console.log(`\n${rt}: skipped tests:\n${skips.map((l) => `  ${l.trim()}`).join("\n")}`);
  // Every failed test is listed with its diagnostics, so a failure above the tail is never hidden.
  const failures = failureReports[rt](out.split("\n"));
  if (failures.length > 0) console.log(`\n${rt}: failed tests:\n${failures.join("\n")}`);
  const { pass, fail } = parse[rt](out);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (Number.isNaN(pass) || Number.isNaN(fail) || pass === 0) {
    console.log(`\n${rt}: no test summary found (exit ${r.status}, ${seconds}s) — counted as failed`);
    failed++;
    bad = true;
    continue;
  }
  console.log(`\n${rt}: ${pass} passed, ${fail} failed (exit ${r.status}, ${seconds}s)`);
  // The crash tests print "crash kills: N …": the SIGKILLs this runtime survived.
  const crashKills = [...out.matchAll(/crash kills: (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  if (crashKills > 0) console.log(`${rt}: crash suite: ${crashKills} SIGKILLs`);
  totalCrashKills += crashKills;
  passed += pass;
  failed += fail;
  if (fail > 0 || r.status !== 0) bad = true;
}
if (figuresFile !== undefined) {
  const rows = existsSync(figuresFile) ? readFileSync(figuresFile, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
  rmSync(figuresFile, { force: true });
  const sum = (k) => rows.reduce((n, r) => n + r[k], 0);
  console.log(
    `\nfault suite: ${rows.length} scenarios passed their exactly-once check; faults injected ${sum("faults")}, kills ${sum("kills")}, restarts ${sum("restarts")}, records compared ${sum("records")}, lost = ${sum("lost")}, duplicated = ${sum("duplicated")}`,
  );
}
if (totalCrashKills > 0) console.log(`\ncrash suite: ${totalCrashKills} SIGKILLs over ${runtimes.join(", ")}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(bad ? 1 : 0);
