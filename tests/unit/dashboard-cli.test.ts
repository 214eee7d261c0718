/**
 * `gress dashboard`: prints a checked-in Grafana dashboard, with --job as the job variable's current value.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { main } from "../../lib/cli.ts";

const ROOT = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");

/** Runs main() and collects what it printed to stdout and stderr. */
async function run(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const log = console.log;
  const error = console.error;
  let out = "";
  let err = "";
  console.log = (...a: unknown[]) => void (out += `${a.join(" ")}\n`);
  console.error = (...a: unknown[]) => void (err += `${a.join(" ")}\n`);
  try {
    return { code: await main(args), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

interface Board {
  readonly title: string;
  readonly uid: string;
  readonly templating: { readonly list: { readonly name: string; readonly current?: unknown }[] };
}

describe("gress dashboard", () => {
  it("prints the Gress job dashboard as it is checked in, all jobs selected", async () => {
    const r = await run(["dashboard"]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), JSON.parse(readFileSync(join(ROOT, "dashboards", "gress-job.json"), "utf8")));
  });

  it("--job preselects the job; --board live-analytics prints the other one", async () => {
    const r = await run(["dashboard", "--job", "clicks", "--board", "live-analytics"]);
    assert.equal(r.code, 0, r.err);
    const board = JSON.parse(r.out) as Board;
    assert.equal(board.uid, "gress-live-analytics");
    assert.deepEqual(board.templating.list.find((v) => v.name === "job")?.current, { selected: true, text: ["clicks"], value: ["clicks"] });
  });

  it("an unknown board or option is refused, naming it", async () => {
    const bad = await run(["dashboard", "--board", "nope"]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /board.*nope/);
    const unknown = await run(["dashboard", "--jobs", "x"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /unknown option --jobs/);
  });
});
