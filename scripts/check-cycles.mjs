#!/usr/bin/env node
// Fails (exit 1) if the modules of lib/, cep/ and connectors/ import each other in a cycle, and prints each
// cycle. Every static `import` / `export ... from` between those files counts, `import type` too: a type-only
// cycle costs nothing at run time, but it still ties the modules into one unit that must be read, changed and
// loaded together, which is what this check is about. Dynamic `import()` does not count (it is how a module
// defers a dependency on purpose).
//
// Usage: node scripts/check-cycles.mjs [--graph]   (--graph also prints every file's local imports)
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

const ROOTS = ["lib", "cep", "connectors"];
const root = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** Every .ts file under dir (recursively), as absolute paths. */
function tsFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** The relative module specifiers a file imports or re-exports statically (type-only ones included). */
function localImports(file) {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, false);
  const specifiers = [];
  for (const statement of source.statements) {
    if ((ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) && statement.moduleSpecifier !== undefined) {
      const spec = statement.moduleSpecifier;
      if (ts.isStringLiteral(spec) && spec.text.startsWith(".")) specifiers.push(spec.text);
    }
  }
  return specifiers;
}

const files = ROOTS.flatMap((r) => (existsSync(join(root, r)) ? tsFiles(join(root, r)) : []));
const known = new Set(files);
/** file -> the files of the checked roots it imports. */
const graph = new Map();
const unresolved = [];
for (const file of files) {
  const edges = [];
  for (const spec of localImports(file)) {
    const target = resolve(dirname(file), spec);
    if (known.has(target)) edges.push(target);
    else if (!existsSync(target)) unresolved.push(`${relative(root, file)}: "${spec}" does not exist`);
  }
  graph.set(file, edges);
}

// Tarjan's strongly connected components: every component of more than one file (or a file importing
// itself) contains a cycle.
let index = 0;
const indexOf = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const components = [];
function connect(v) {
  indexOf.set(v, index);
  low.set(v, index);
  index++;
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v)) {
    if (!indexOf.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), indexOf.get(w)));
  }
  if (low.get(v) === indexOf.get(v)) {
    const component = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v).includes(v)) components.push(component);
  }
}
for (const file of files) if (!indexOf.has(file)) connect(file);

/** One shortest cycle through `start` inside its component (BFS), as a list of files ending at start. */
function cycleThrough(start, members) {
  const inside = new Set(members);
  const previous = new Map([[start, undefined]]);
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of graph.get(v)) {
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = previous.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (inside.has(w) && !previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

if (process.argv.includes("--graph")) {
  for (const [file, edges] of graph) console.log(`${relative(root, file)} -> ${edges.map((e) => relative(root, e)).join(", ")}`);
}
for (const problem of unresolved) console.error(`unresolved import: ${problem}`);
if (components.length > 0) {
  console.error(`${components.length} import cycle(s) among ${ROOTS.join("/, ")}/:`);
  for (const component of components) {
    const names = component.map((f) => relative(root, f)).sort();
    console.error(`\n  ${names.length} files: ${names.join(", ")}`);
    console.error(`  e.g. ${cycleThrough(component[component.length - 1], component).map((f) => relative(root, f)).join(" -> ")}`);
  }
}
if (components.length > 0 || unresolved.length > 0) process.exit(1);
console.log(`no import cycles among ${files.length} modules of ${ROOTS.join("/, ")}/`);
