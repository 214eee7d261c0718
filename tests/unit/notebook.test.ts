import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { describe, it } from "node:test";

// The notebook's code cells, run in order as one module, on whichever runtime runs this test. This checks
// the code the notebook holds; it does not start a Jupyter kernel.
describe("examples/property-testing.ipynb", () => {
  it("its code cells run in order and the property holds for 200 runs", async () => {
    const notebook = JSON.parse(readFileSync(new URL("../../examples/property-testing.ipynb", import.meta.url), "utf8")) as {
      cells: { cell_type: string; source: string[] }[];
      metadata: { kernelspec: { name: string } };
    };
    assert.equal(notebook.metadata.kernelspec.name, "deno");
    const cells = notebook.cells.filter((c) => c.cell_type === "code").map((c) => c.source.join(""));
    assert.equal(cells.length, 3);
    // Each cell's last expression is what the notebook displays; export it so the test can read it.
    const body = cells.map((c, i) => {
      const lines = c.trimEnd().split("\n");
      const last = lines.pop() ?? "";
      return last.startsWith("import") || last.startsWith("}") ? c : `${lines.join("\n")}\nexport const out${i} = ${last}`;
    });
    const file = new URL(`../../examples/.notebook-${process.pid}.ts`, import.meta.url);
    writeFileSync(file, body.join("\n"));
    try {
      const mod = (await import(file.href)) as Record<string, unknown>;
      assert.deepEqual(mod.out1, ["ann@0=1", "bob@10000=1"]);
      assert.equal(mod.out2, "reordering within the bound never changes the windows: 200 runs passed");
    } finally {
      rmSync(file, { force: true });
    }
  });
});
