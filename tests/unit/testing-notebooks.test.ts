/**
 * The gress/testing notebooks (examples/exactly-once-fraud.ipynb, examples/order-insensitive-window.ipynb):
 * their code cells, run in order as one module on whichever runtime runs this test, give what the notebooks
 * promise — the correct versions pass 200 runs, the broken ones are caught with a shrunk counterexample, and
 * each renders its chart. This checks the notebooks' code; .ci/run (scripts/check-notebook.sh) also runs
 * them on Deno's Jupyter kernel.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import process from "node:process";
import { describe, it } from "node:test";

/** Runs a notebook's code cells as one module; each cell's last line (the displayed value) is exported as out<i>. */
async function runNotebook(name: string): Promise<Record<string, unknown>> {
  const notebook = JSON.parse(readFileSync(new URL(`../../examples/${name}`, import.meta.url), "utf8")) as {
    cells: { cell_type: string; source: string[] }[];
    metadata: { kernelspec: { name: string } };
  };
  assert.equal(notebook.metadata.kernelspec.name, "deno");
  const cells = notebook.cells.filter((c) => c.cell_type === "code").map((c) => c.source.join(""));
  const body = cells.map((c, i) => {
    const lines = c.trimEnd().split("\n");
    const last = lines.pop() ?? "";
    return last.startsWith("import") ? c : `${lines.join("\n")}\nexport const out${i} = ${last}`;
  });
  const file = new URL(`../../examples/.notebook-${name}-${process.pid}.ts`, import.meta.url);
  writeFileSync(file, body.join("\n"));
  try {
    return (await import(file.href)) as Record<string, unknown>;
  } finally {
    rmSync(file, { force: true });
  }
}

/** The SVG of a chart cell's value. */
function svgOf(value: unknown): string {
  const display = (value as Record<symbol, () => Record<string, string>>)[Symbol.for("Jupyter.display")];
  assert.equal(typeof display, "function", "the cell displays a chart");
  const svg = display!()["image/svg+xml"]!;
  assert.match(svg, /^<svg [\s\S]*<rect [\s\S]*<\/svg>$/);
  return svg;
}

describe("gress/testing notebooks", () => {
  it("exactly-once-fraud.ipynb: the rule passes 200 crash runs; the eager sink is caught, shrunk and charted", async () => {
    const out = await runNotebook("exactly-once-fraud.ipynb");
    assert.equal(out.out2, "the card-testing rule is exactly-once under crashes: 200 runs passed");
    const caught = String(out.out3);
    assert.match(caught, /^caught: true, after \d+ run\(s\), shrunk \d+ times\ncounterexample: \[.*@\d+.*,every \d: .*checkpoint#\d.*\]\nnot exactly-once/);
    assert.match(caught, /in the run with crashes, not in the failure-free run:\n {4}"c\d: /);
    assert.match(String(out.out4), /^transactional sink: (\d+) alert\(s\) committed; sink committing in its pre-commit: (\d+)$/);
    const [, good, bad] = /: (\d+) alert.*: (\d+)$/.exec(String(out.out4))!;
    assert.ok(Number(bad) > Number(good), "the eager sink committed more alerts after the same crashes");
    const svg = svgOf(out.out5);
    assert.match(svg, /transactional sink[\s\S]*sink committing in its pre-commit/);
  });

  it("order-insensitive-window.ipynb: the arrival-order window is caught, the fix passes 200 runs, the chart differs only for the bug", async () => {
    const out = await runNotebook("order-insensitive-window.ipynb");
    assert.match(String(out.out1), /^caught: true, shrunk \d+ times\nthe results depend on arrival order \(within 5000 ms\)/);
    assert.equal(out.out2, "the fixed window is order-insensitive: 200 runs passed");
    const svg = svgOf(out.out3);
    // Bars: the last-arrived version keeps 19 (in order) and 24 (as arrived) for the first window; the fix 19 both times.
    const labels = [...svg.matchAll(/text-anchor="middle">(\d+)<\/text>/g)].map((m) => Number(m[1]));
    assert.deepEqual(labels, [19, 24, 19, 19, 21, 27, 21, 21]);
  });
});
