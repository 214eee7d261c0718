#!/usr/bin/env node
// Keeps the test suite honest by mutation: applies each mutation of a fixed list (a small bug, a one-line
// change found by a search string that must occur exactly once) to a temporary copy of the repository, runs
// the test files that should catch it on Node, and reports which were caught. Every mutation must be caught.
//
//   node scripts/mutate.mjs              all mutations
//   node scripts/mutate.mjs --quick      the few CI runs (marked quick)
//   node scripts/mutate.mjs NAME...      the named ones
//   node scripts/mutate.mjs --list       list them
//
// First the selected mutations' test files run unmutated (a failure there would make every mutation look
// caught). A search string that no longer occurs exactly once (the code moved) is an error, not a pass.
// Exit code 0 only if everything was caught.
import { spawnSync } from "node:child_process";
import { cpSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";

const WINDOW_TESTS = ["tests/property/window-reference.test.ts", "tests/unit/windows.test.ts", "tests/property/windows.test.ts", "tests/unit/sessions.test.ts"];
const DURABILITY_TESTS = ["tests/durability/ordering.test.ts", "tests/durability/checkpoint-flush.test.ts"];

/** @type {{ name: string, why: string, file: string, search: string, replace: string, tests: string[], quick?: boolean }[]} */
const MUTATIONS = [
  {
    name: "general-window-drops-every-100th",
    why: "the general window path (sessions, global windows, triggers, early firing) drops every 100th record",
    file: "lib/operators/window.ts",
    search: "          m.recordsIn++;\n          try {\n            processRecord(e, key);",
    replace: "          if (++m.recordsIn % 100 === 0) return;\n          try {\n            processRecord(e, key);",
    tests: WINDOW_TESTS,
    quick: true,
  },
  {
    name: "aligned-window-drops-every-100th",
    why: "the aligned tumbling/sliding path drops every 100th record",
    file: "lib/operators/aligned-windows.ts",
    search: "    this.#m.recordsIn++;",
    replace: "    if (++this.#m.recordsIn % 100 === 0) return;",
    tests: WINDOW_TESTS,
    quick: true,
  },
  {
    name: "aligned-sliding-off-by-one",
    why: "a sliding window of the aligned path also gets the records at its end (a window that does not contain them)",
    file: "lib/operators/aligned-windows.ts",
    search: "start > ts - this.#size; start -= this.#slide",
    replace: "start >= ts - this.#size; start -= this.#slide",
    tests: WINDOW_TESTS,
  },
  {
    name: "general-sliding-off-by-one",
    why: "a sliding window of the general path also gets the records at its end",
    file: "lib/operators/window.ts",
    search: "start > ts - assigner.size; start -= assigner.slide",
    replace: "start >= ts - assigner.size; start -= assigner.slide",
    tests: WINDOW_TESTS,
  },
  {
    name: "aligned-lateness-off-by-one",
    why: "a tumbling window of the aligned path takes records one millisecond past its allowed lateness",
    file: "lib/operators/aligned-windows.ts",
    search: "if (this.#lastStart + size - 1 + this.#lateness <= this.#wm) {",
    replace: "if (this.#lastStart + size - 1 + this.#lateness < this.#wm) {",
    tests: WINDOW_TESTS,
  },
  {
    name: "aligned-window-restore-forgets-keys",
    why: "after a restore the aligned path does not rebuild which keys have state in which window",
    file: "lib/operators/aligned-windows.ts",
    search: "    for (const [key, start] of this.#accs.entries()) this.#open(start as number).keys.push(key);",
    replace: "",
    tests: WINDOW_TESTS,
  },
  {
    name: "general-window-restore-forgets-timers",
    why: "after a restore the general path does not rebuild its in-memory window timers",
    file: "lib/operators/window.ts",
    search: "    rebuildOwnTimers();",
    replace: "",
    tests: WINDOW_TESTS,
  },
  {
    name: "sessions-touching-do-not-merge",
    why: "sessions that touch ([0,10) and [10,20)) stay apart, unlike Flink's",
    file: "lib/operators/window.ts",
    search: "if (s[0] <= end && s[1] >= start) overlapping.push(s);",
    replace: "if (s[0] < end && s[1] > start) overlapping.push(s);",
    tests: WINDOW_TESTS,
  },
  {
    name: "session-early-count-not-carried",
    why: "a merged session restarts its early-firing count (the bug the reference model found)",
    file: "lib/operators/window.ts",
    search: "          if (earlyCarried > 0) earlyCounts.put(key, start, earlyCarried);",
    replace: "",
    tests: WINDOW_TESTS,
  },
  {
    name: "general-window-takes-nan-watermark",
    why: "the general window path takes a NaN watermark as its current one (the bug the reference model found)",
    file: "lib/operators/window.ts",
    search: "          if (!(e.timestamp > wm)) return;",
    replace: "          if (e.timestamp <= wm) return;",
    tests: WINDOW_TESTS,
  },
  {
    name: "count-trigger-merge-drops-counts",
    why: "merged sessions restart countTrigger's count instead of adding theirs up",
    file: "lib/windows/triggers.ts",
    search: '      if (c > 0) ctx.setState("count", c);',
    replace: "",
    tests: WINDOW_TESTS,
  },
  {
    name: "count-trigger-off-by-one",
    why: "countTrigger(n) fires on the (n+1)-th record",
    file: "lib/windows/triggers.ts",
    search: "      if (c < n) {",
    replace: "      if (c <= n) {",
    tests: WINDOW_TESTS,
  },
  {
    name: "dirty-limit-does-not-hold-sources",
    why: "a full dirty set asks for a checkpoint but lets the sources run on until it is taken",
    file: "lib/checkpoint/coordinator.ts",
    search: '    this.job.flow.press("checkpoint:dirty-state");',
    replace: "    // mutated: sources not held",
    tests: ["tests/unit/checkpoint-coordinator.test.ts"],
  },
  {
    name: "checkpoint-history-counts-nothing",
    why: "a checkpoint reports no changed state entries",
    file: "lib/checkpoint/coordinator.ts",
    search: "    this.history.push({ id, changedEntries: capture.entries, durationSeconds, final });",
    replace: "    this.history.push({ id, changedEntries: 0, durationSeconds, final });",
    tests: ["tests/unit/checkpoint-coordinator.test.ts"],
  },
  {
    name: "sinks-commit-before-flushed",
    why: "the checkpoint coordinator commits sinks without waiting for LMDB's flushed()",
    file: "lib/checkpoint/coordinator.ts",
    search: "      await this.backend.flushed();",
    replace: "      // mutated: no wait for flushed()",
    tests: DURABILITY_TESTS,
  },
  {
    name: "ingest-log-skips-datasync",
    why: "the ingest log acknowledges appends without its datasync",
    file: "connectors/ingest-log/index.ts",
    search: "      if (this.#fsync) await this.#active.datasync();",
    replace: "      // mutated: no datasync",
    tests: DURABILITY_TESTS,
    quick: true,
  },
  {
    name: "lmdb-never-syncs",
    why: "the LMDB backend opens without sync whatever the durability option says",
    file: "lib/state/lmdb.ts",
    search: '        noSync: o.durability === "process",',
    replace: "        noSync: true,",
    tests: DURABILITY_TESTS,
  },
  {
    name: "file-sink-precommit-skips-fsync",
    why: "the file sink pre-commits its part file without fsync",
    file: "connectors/file/sink.ts",
    search: "    this.#flushBuffer(txn);\n    fsyncSync(txn.fd);\n    closeSync(txn.fd);\n    return {",
    replace: "    this.#flushBuffer(txn);\n    closeSync(txn.fd);\n    return {",
    tests: DURABILITY_TESTS,
  },
];

const args = process.argv.slice(2);
if (args.includes("--list")) {
  for (const m of MUTATIONS) console.log(`${m.quick ? "*" : " "} ${m.name}: ${m.why}`);
  process.exit(0);
}
const named = args.filter((a) => !a.startsWith("--"));
const unknown = named.filter((n) => !MUTATIONS.some((m) => m.name === n));
if (unknown.length > 0) {
  console.error(`unknown mutation(s): ${unknown.join(", ")} (see --list)`);
  process.exit(2);
}
const selected = named.length > 0 ? MUTATIONS.filter((m) => named.includes(m.name)) : args.includes("--quick") ? MUTATIONS.filter((m) => m.quick) : MUTATIONS;

const repo = resolve(import.meta.dirname, "..");
const copy = mkdtempSync(join(tmpdir(), "gress-mutate-"));
const SKIP = new Set(["node_modules", ".git", "dist", ".cache"]);
cpSync(repo, copy, {
  recursive: true,
  // Sockets and the like (service runtime files) cannot be copied; the tests need neither.
  filter: (src) => {
    if (src !== repo && SKIP.has(basename(src)) && resolve(src, "..") === repo) return false;
    const st = lstatSync(src);
    return st.isFile() || st.isDirectory() || st.isSymbolicLink();
  },
});
symlinkSync(join(repo, "node_modules"), join(copy, "node_modules"), "dir");

const env = { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" };
function runTests(files) {
  const started = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...files], {
    cwd: copy,
    env,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    timeout: 15 * 60_000,
  });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  const count = (re) => Number(re.exec(out)?.[1] ?? Number.NaN);
  return { status: r.status, signal: r.signal, pass: count(/^# pass (\d+)/m), fail: count(/^# fail (\d+)/m), seconds: ((Date.now() - started) / 1000).toFixed(1), out };
}

let errors = 0;
try {
  // The unmutated code must pass the selected tests, or "caught" means nothing.
  const baselineFiles = [...new Set(selected.flatMap((m) => m.tests))].sort();
  console.log(`baseline: ${baselineFiles.length} test files on the unmutated copy`);
  const base = runTests(baselineFiles);
  if (base.status !== 0 || !(base.pass > 0)) {
    console.log(base.out.split("\n").slice(-60).join("\n"));
    console.log(`baseline FAILED (exit ${base.status}, ${base.pass} passed, ${base.fail} failed): fix the tests first`);
    console.log(`0/${selected.length} caught`);
    process.exitCode = 1;
  } else {
    console.log(`baseline: ${base.pass} passed (${base.seconds}s)\n`);
    let caught = 0;
    for (const m of selected) {
      const path = join(copy, m.file);
      const original = readFileSync(path, "utf8");
      const occurrences = original.split(m.search).length - 1;
      if (occurrences !== 1) {
        console.log(`ERROR   ${m.name}: its search string occurs ${occurrences} times in ${m.file} (expected once); update the mutation list`);
        errors++;
        continue;
      }
      writeFileSync(path, original.replace(m.search, () => m.replace));
      try {
        const r = runTests(m.tests);
        const isCaught = r.status !== 0;
        if (isCaught) caught++;
        const detail = r.signal ? `killed by ${r.signal}` : `${r.fail} of ${r.pass + r.fail} tests failed`;
        console.log(`${isCaught ? "caught " : "MISSED "} ${m.name} — ${m.why} (${detail}, ${r.seconds}s)`);
        // Which tests caught it (leaf tests only: a suite fails when one of its tests does).
        const failedTests = [...r.out.matchAll(/^\s*not ok \d+ - (.*)$/gm)].map((x) => x[1]).filter((t) => !t.endsWith(".test.ts"));
        for (const t of [...new Set(failedTests)].slice(0, 4)) console.log(`          by: ${t}`);
      } finally {
        writeFileSync(path, original);
      }
    }
    console.log(`\n${caught}/${selected.length} caught${errors > 0 ? `, ${errors} could not be applied` : ""}`);
    if (caught !== selected.length) process.exitCode = 1;
  }
} finally {
  rmSync(copy, { recursive: true, force: true });
}
