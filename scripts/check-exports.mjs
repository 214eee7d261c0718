#!/usr/bin/env node
// Checks that the npm package (package.json) and the JSR package (deno.json) publish the same thing:
//  - the same subpaths; deno.json maps each to a TypeScript source that exists, and package.json maps it to
//    that source's build output: "types" (first) the .d.ts, "import" and "require" the .js under dist/, which
//    must exist when dist/ has been built;
//  - the same version, and deno.json's import map names every dependency (and optional peer dependency) of
//    package.json at its exact tested version (an npm: specifier, or a subpath of one) and nothing else;
//  - package.json's "engines" is true for every installed production dependency: the minimum Node.js it names,
//    and every later one, satisfy each dependency's own "engines" (a dependency that needs a newer Node.js
//    becomes an optional peer dependency, loaded only by the connector that uses it);
//  - the install hints of the lazily loaded @platformatic/kafka and @confluentinc/schemaregistry name the versions pinned in devDependencies.
// Exits 1 with the differences otherwise.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const deno = JSON.parse(readFileSync("deno.json", "utf8"));
const npmOnly = new Set(["./package.json"]);
const problems = [];

const keys = new Set([...Object.keys(pkg.exports), ...Object.keys(deno.exports)]);
for (const key of keys) {
  if (npmOnly.has(key)) continue;
  const source = deno.exports[key];
  const entry = pkg.exports[key];
  if (source === undefined || entry === undefined) {
    problems.push(`${key}: only in ${source === undefined ? "package.json" : "deno.json"}`);
    continue;
  }
  if (!/^\.\/.+\.ts$/.test(source) || !existsSync(source)) {
    problems.push(`${key}: deno.json maps it to ${source}, not an existing .ts file`);
    continue;
  }
  const built = `./dist/${source.slice(2, -3)}`;
  const want = { types: `${built}.d.ts`, import: `${built}.js`, require: `${built}.js` };
  if (typeof entry !== "object" || Object.keys(entry)[0] !== "types") {
    problems.push(`${key}: package.json must give an object of conditions with "types" first`);
    continue;
  }
  for (const [condition, target] of Object.entries(entry)) {
    if (want[condition] === undefined) problems.push(`${key}: unexpected condition "${condition}"`);
    else if (target !== want[condition]) problems.push(`${key}: "${condition}" is ${target}, expected ${want[condition]}`);
    else if (existsSync("dist") && !existsSync(target)) problems.push(`${key}: ${target} was not built`);
  }
  if (entry.import === undefined) problems.push(`${key}: no "import" condition`);
}

if (pkg.version !== deno.version) problems.push(`version: package.json has ${pkg.version}, deno.json has ${deno.version}`);
// An optional peer dependency is pinned, as tested, in devDependencies.
const deps = { ...pkg.dependencies };
for (const name of Object.keys(pkg.peerDependencies ?? {})) deps[name] = pkg.devDependencies?.[name] ?? pkg.peerDependencies[name];
const mapped = new Set();
for (const [specifier, target] of Object.entries(deno.imports ?? {})) {
  const m = /^npm:((?:@[^/@]+\/)?[^/@]+)@([^/]+)(\/.*)?$/.exec(target);
  if (m === null) {
    problems.push(`deno.json imports ${specifier}: ${target} is not an npm: specifier with a version`);
    continue;
  }
  const [, name, version, subpath = ""] = m;
  mapped.add(name);
  if (specifier !== `${name}${subpath}`) problems.push(`deno.json imports ${specifier}: maps to another package, ${target}`);
  if (deps[name] === undefined) problems.push(`deno.json imports ${name}, which is not a dependency in package.json`);
  else if (deps[name] !== version) problems.push(`deno.json imports ${name}@${version}, package.json depends on ${deps[name]}`);
}
for (const name of Object.keys(deps)) {
  if (!mapped.has(name)) problems.push(`deno.json has no import for the dependency ${name}`);
}

// platformaticKafkaClient and confluentSchemaRegistry import their optional peer dependency on first use and,
// when it is missing, say what to install.
for (const [file, name] of [
  ["connectors/kafka/platformatic.ts", "@platformatic/kafka"],
  ["connectors/registry/confluent.ts", "@confluentinc/schemaregistry"],
]) {
  const source = readFileSync(file, "utf8");
  const hint = /^const LIBRARY_VERSION = "([^"]+)";$/m.exec(source)?.[1];
  const pinned = pkg.devDependencies?.[name];
  if (hint !== pinned) problems.push(`${file}: LIBRARY_VERSION is ${hint ?? "missing"}, devDependencies pin ${name} ${pinned ?? "nowhere"}`);
}

// engines: our minimum, and a far later version (no dependency may stop at an upper bound), must satisfy every
// production dependency's range. Ranges are npm's: "a || b", comparators with >=, >, <=, <, =, ^, ~, x-ranges.
const ours = /^>=\s*(\d+(?:\.\d+){0,2})$/.exec(pkg.engines?.node ?? "");
if (ours === null) problems.push(`engines.node must be ">=MAJOR.MINOR", not ${JSON.stringify(pkg.engines?.node)}`);
else if (existsSync("node_modules")) {
  const minimum = parse(ours[1]);
  // The installed tree under package.json's production dependencies (not what else is in node_modules).
  const tree = JSON.parse(execFileSync("npm", ["ls", "--omit=dev", "--all", "--long", "--json"], { encoding: "utf8", maxBuffer: 64 << 20 }));
  const dirs = new Set();
  const walk = (node) => {
    for (const child of Object.values(node.dependencies ?? {})) {
      if (child.extraneous || child.path === undefined || dirs.has(child.path)) continue;
      dirs.add(child.path);
      walk(child);
    }
  };
  walk(tree);
  for (const dir of dirs) {
    const dep = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const range = dep.engines?.node;
    if (range === undefined) continue;
    for (const v of [minimum, [999, 0, 0]]) {
      const ok = satisfies(v, range);
      if (ok === undefined) problems.push(`engines: cannot read ${dep.name}@${dep.version}'s range ${JSON.stringify(range)}`);
      else if (!ok) problems.push(`engines: ${dep.name}@${dep.version} wants Node.js ${range}; package.json promises ${pkg.engines.node}`);
      if (ok !== true) break;
    }
  }
}

function parse(text) {
  return [...text.split(".").map(Number), 0, 0].slice(0, 3);
}
function compare(a, b) {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}
/** Whether version (a [major, minor, patch]) is in an npm range; undefined if the range is not understood. */
function satisfies(version, range) {
  const alternatives = range.replace(/([<>=^~]+)\s+/g, "$1").split("||");
  let any = false;
  for (const alternative of alternatives) {
    let all = true;
    for (const comparator of alternative.trim().split(/\s+/).filter((c) => c !== "")) {
      const m = /^(<=|>=|<|>|=|\^|~)?v?(\d+|x|\*)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$/.exec(comparator);
      if (m === null) return undefined;
      const [, op = "", ...parts] = m;
      const given = parts.filter((p) => p !== undefined && p !== "x" && p !== "*").map(Number);
      const low = parse(given.join(".") || "0");
      // The first version past the range a partial version or ^/~ stands for.
      const bump = (i) => [...low.slice(0, i), low[i] + 1, 0, 0].slice(0, 3);
      const high = op === "^" ? bump(low[0] > 0 || given.length < 2 ? 0 : 1) : op === "~" ? bump(Math.min(given.length - 1, 1)) : bump(Math.max(given.length - 1, 0));
      const c = compare(version, low);
      const inside =
        given.length === 0 ? true
        : op === ">=" ? c >= 0
        : op === ">" ? compare(version, high) >= 0 || (given.length === 3 && c > 0)
        : op === "<=" ? compare(version, high) < 0
        : op === "<" ? c < 0
        : c >= 0 && compare(version, high) < 0;
      all &&= inside;
    }
    any ||= all;
  }
  return any;
}

if (problems.length > 0) {
  console.error(`package.json and deno.json disagree:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`package.json and deno.json agree: ${keys.size - npmOnly.size} subpaths, ${Object.keys(deps).length} dependencies; engines ${pkg.engines.node} holds for every production dependency`);
