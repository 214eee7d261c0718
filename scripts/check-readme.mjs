#!/usr/bin/env node
// Checks the TypeScript code blocks of README.md and examples/README.md: every ```ts block is type-checked
// (strict, with the repository's compiler options) as a module of its own, and the blocks marked
// ```ts runnable are also run with tsx and must exit 0 within a minute. Imports of "gress" and its subpaths
// are pointed at the sources of this checkout, so the blocks are checked against the code next to them.
// A block marked ```ts fragment is skipped (a piece of a larger program; keep them rare).
//
// The `@example` blocks of the doc comments in lib/, cep/ and connectors/ that import from "gress" (complete
// examples, as the API reference shows them) are type-checked the same way; the others are fragments that
// read as part of their symbol's documentation (`keyed.process({...})`) and are not checked.
//
// Usage: node scripts/check-readme.mjs [--keep]   (--keep leaves the generated files in tmp/readme-check)
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
const documents = ["README.md", "examples/README.md"].filter((f) => existsSync(join(root, f)));
const dir = join(root, "tmp", "readme-check");
const subpaths = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")).exports;

/** The ```ts blocks of a markdown file: their first line number, info string words and code. */
function blocks(file) {
  const lines = readFileSync(join(root, file), "utf8").split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(ts|typescript)(\s.*)?$/.exec(lines[i]);
    if (open === null) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !lines[end].startsWith("```")) end++;
    if (end === lines.length) throw new Error(`${file}:${i + 1}: code block is not closed`);
    out.push({ file, line: start + 1, flags: (open[2] ?? "").trim().split(/\s+/).filter(Boolean), code: lines.slice(start, end).join("\n") });
    i = end;
  }
  return out;
}

/** Every .ts file under dir, recursively, relative to the root. */
function tsFiles(dir) {
  const out = [];
  for (const name of readdirSync(join(root, dir))) {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** The complete ```ts examples (those importing "gress") in the doc comments of a source file. */
function docExamples(file) {
  const lines = readFileSync(join(root, file), "utf8").split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\*\s*```(ts|typescript)\s*$/.test(lines[i])) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*\*\s*```\s*$/.test(lines[end])) end++;
    const code = lines
      .slice(start, end)
      .map((l) => l.replace(/^\s*\* ?/, ""))
      .join("\n");
    if (/from\s+["']gress(\/[a-z-]+)?["']/.test(code)) out.push({ file, line: start + 1, flags: [], code });
    i = end;
  }
  return out;
}

/** The block's code with "gress" imports pointing at the sources (same line count, so tsc's lines match). */
function pointAtSources(code, from) {
  return code.replace(/(from\s+|import\s*\(\s*|import\s+)(["'])(gress(?:\/[a-z-]+)?)\2/g, (_whole, lead, quote, spec) => {
    const target = subpaths[spec === "gress" ? "." : `./${spec.slice("gress/".length)}`];
    if (target === undefined) throw new Error(`unknown import "${spec}"`);
    let path = relative(from, join(root, target));
    if (!path.startsWith(".")) path = `./${path}`;
    return `${lead}${quote}${path}${quote}`;
  });
}

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const all = [...documents.flatMap(blocks), ...["lib", "cep", "connectors"].flatMap(tsFiles).flatMap(docExamples)];
const checked = all.filter((b) => !b.flags.includes("fragment"));
const names = new Map();
for (const b of checked) {
  const name = `${b.file.replace(/[/.]/g, "_")}_${b.line}.ts`;
  names.set(name, b);
  // `export {}` makes every block a module (top-level await, no clashes between blocks' names).
  writeFileSync(join(dir, name), `${pointAtSources(b.code, dir)}\nexport {};\n`);
}
const base = JSON.parse(readFileSync(join(root, "tsconfig.json"), "utf8")).compilerOptions;
// The sources' own ambient declarations (e.g. connectors/kafka/kafkajs-internals.d.ts) are part of the program,
// as they are when the repository itself is type-checked.
const ambient = ["lib", "cep", "connectors"].map((d) => join(root, d, "**", "*.d.ts"));
writeFileSync(
  join(dir, "tsconfig.json"),
  JSON.stringify(
    { compilerOptions: { ...base, isolatedDeclarations: false, declaration: false, noEmit: true, noUnusedLocals: false }, include: ["*.ts", ...ambient] },
    null,
    2,
  ),
);

const problems = [];
const tsc = spawnSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(dir, "tsconfig.json"), "--pretty", "false"], {
  cwd: root,
  encoding: "utf8",
});
if (tsc.status !== 0) {
  // Report errors at the README's lines, not the generated file's; errors inside lib/ are reported as they are.
  for (const line of `${tsc.stdout}${tsc.stderr}`.split("\n").filter(Boolean)) {
    const m = /([^/\s]+\.ts)\((\d+),(\d+)\): (.*)$/.exec(line);
    const b = m === null ? undefined : names.get(m[1]);
    problems.push(b === undefined ? line : `${b.file}:${b.line + Number(m[2]) - 1}:${m[3]}: ${m[4]}`);
  }
}

let ran = 0;
for (const [name, b] of names) {
  if (!b.flags.includes("runnable")) continue;
  ran++;
  const run = spawnSync(process.execPath, ["--import", "tsx", join(dir, name)], { cwd: root, encoding: "utf8", timeout: 60_000, env: { ...process.env, NO_COLOR: "1" } });
  if (run.status !== 0) {
    const why = run.error !== undefined ? run.error.message : `exit ${run.status ?? run.signal}`;
    problems.push(`${b.file}:${b.line}: runnable block failed (${why}):\n${`${run.stdout}${run.stderr}`.trim().split("\n").slice(-15).join("\n")}`);
  }
}
if (!process.argv.includes("--keep")) rmSync(dir, { recursive: true, force: true });

const skipped = all.length - checked.length;
const fromDocs = all.filter((b) => !b.file.endsWith(".md")).length;
console.log(
  `${documents.join(", ")} and doc comments: ${all.length} ts blocks (${fromDocs} from doc comments), ${checked.length} type-checked, ${ran} run, ${skipped} fragment(s) skipped`,
);
if (problems.length > 0) {
  console.error(`\nREADME check failed:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log("README examples ok");
