#!/usr/bin/env node
// Checks that package.json "exports" and deno.json "exports" name the same subpaths and files, and that
// every file exists. Exits 1 with the differences otherwise.
import { existsSync, readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync("package.json", "utf8")).exports;
const jsr = JSON.parse(readFileSync("deno.json", "utf8")).exports;
const problems = [];
for (const key of new Set([...Object.keys(pkg), ...Object.keys(jsr)])) {
  if (pkg[key] !== jsr[key]) problems.push(`${key}: package.json has ${pkg[key] ?? "nothing"}, deno.json has ${jsr[key] ?? "nothing"}`);
  const file = pkg[key] ?? jsr[key];
  if (!existsSync(file)) problems.push(`${key}: ${file} does not exist`);
}
if (problems.length > 0) {
  console.error(`export maps disagree:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`export maps agree: ${Object.keys(pkg).length} subpaths`);
