/**
 * Durability that a crash test cannot see. SIGKILL leaves the page cache intact, so a missing fsync goes
 * unnoticed by every kill test; what a lost sync breaks is the order of events on a machine that loses power.
 * These tests trace a real job with `strace -f` — LMDB state at its production durability ("fsync", the
 * default), an HTTP ingest source with its fsynced ingest log, a transactional file sink — and check the
 * order of the system calls:
 *
 * - a file-sink commit (the rename of a pre-committed part file to its final name) starts only after the
 *   checkpoint's LMDB transaction was synced (`fdatasync` of data.mdb after its last write) and after the
 *   part file itself was synced;
 * - an HTTP 2xx answer starts only after the ingest-log segment holding the batch was synced.
 *
 * Removing either sync (or the coordinator's wait for LMDB's `flushed()`) makes these fail: see
 * `npm run test:mutate`. They need strace and permission to trace (root here); without it they are skipped
 * with the reason printed.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { before, describe, it } from "node:test";
import { tempDirs } from "../support/temp.ts";
import { basename, dirname } from "node:path";
import { type Call, type FileWrite, fileWrites, firstWriteContaining, isHttp2xx, lastWriteBefore, notDurableBefore, parseTrace, renamePaths } from "./strace.ts";

const FIXTURE = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "fixtures", "http-file-job.ts");
const BATCHES = 12;
const PER_BATCH = 25;
const SYNC_DELAY_US = 50_000;

/** Why strace cannot trace here, or undefined if it can. */
function straceUnavailable(): string | undefined {
  if (process.platform !== "linux") return `strace tracing needs Linux (this is ${process.platform})`;
  const r = spawnSync("strace", ["-f", "-qq", "-o", "/dev/null", "true"], { encoding: "utf8" });
  if (r.error !== undefined) return `strace cannot be started: ${r.error.message}`;
  if (r.status !== 0) return `strace cannot trace here (exit ${r.status}): ${r.stderr.trim()}`;
  return undefined;
}

const unavailable = straceUnavailable();
if (unavailable !== undefined) console.log(`durability tests skipped: ${unavailable}`);

describe("durability: acknowledgements wait for the syncs they depend on (strace)", { skip: unavailable, timeout: 180_000 }, () => {
  const temp = tempDirs("gress-durability-");
  let calls: Call[] = [];
  let writes: FileWrite[] = [];
  let dir = "";

  before(() => {
    dir = temp();
    const trace = join(dir, "trace");
    const r = spawnSync(
      "strace",
      [
        "-f",
        "-qq",
        "-y",
        // Long enough to hold a log entry's first record and an LMDB page's checkpoint record.
        "-s",
        "4096",
        "-e",
        "trace=openat,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,rename,renameat,renameat2",
        // A slow disk: every sync takes 50 ms more, so an acknowledgement that does not wait for its sync
        // is sent while the sync is still running, every time, instead of only when it loses a race.
        "-e",
        `inject=fsync,fdatasync:delay_exit=${SYNC_DELAY_US}`,
        "-o",
        trace,
        process.execPath,
        "--import",
        "tsx",
        FIXTURE,
        JSON.stringify({ dir: join(dir, "job"), batches: BATCHES, perBatch: PER_BATCH }),
      ],
      { encoding: "utf8", timeout: 150_000 },
    );
    assert.equal(r.status, 0, `the traced job failed (exit ${r.status}, signal ${r.signal}): ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`done ${BATCHES * PER_BATCH}\\n`));
    calls = parseTrace(readFileSync(trace, "utf8"));
    writes = fileWrites(calls);
  });

  it("a file-sink commit starts only after the checkpoint that records it and the part file are synced", () => {
    const dataFile = join(dir, "job", "state", "data.mdb");
    const outDir = join(dir, "job", "out");
    const commits = calls.filter((c) => {
      const r = renamePaths(c);
      return r !== undefined && dirname(r.to) === outDir && /^out-\d+\.ndjson$/.test(basename(r.to));
    });
    assert.equal(commits.length, BATCHES, "one sink commit per batch (the fixture waits for each)");
    const problems = commits.flatMap((c) => {
      const { from } = renamePaths(c)!;
      // The checkpoint's LMDB transaction holds the sink's handle, which names the temporary file.
      const checkpoint = firstWriteContaining(writes, (p) => p === dataFile, basename(from));
      const part = lastWriteBefore(writes, (p) => p === from, c);
      return [
        notDurableBefore(calls, checkpoint, c, `LMDB write of the checkpoint holding ${basename(from)}`),
        notDurableBefore(calls, part, c, `part file ${basename(from)}`),
      ].filter((p) => p !== undefined);
    });
    assert.deepEqual(problems, [], `${problems.length} problems in ${commits.length} sink commits`);
  });

  it("an HTTP 2xx of the ingest source starts only after the ingest-log write holding its batch is synced", () => {
    const logDir = join(dir, "job", "log");
    // The client posts one batch at a time: the k-th answer is for the k-th batch, whose first record is i = k·perBatch.
    const answers = calls.filter(isHttp2xx);
    assert.equal(answers.length, BATCHES, "every batch was answered 2xx");
    const problems = answers.flatMap((a, k) => {
      const marker = `{\\"i\\":${k * PER_BATCH},`;
      const entry = firstWriteContaining(writes, (p) => dirname(p) === logDir, marker);
      return [notDurableBefore(calls, entry, a, `ingest-log write of batch ${k}`)].filter((p) => p !== undefined);
    });
    assert.deepEqual(problems, [], `${problems.length} of ${answers.length} answers came before their batch was durable`);
  });
});
