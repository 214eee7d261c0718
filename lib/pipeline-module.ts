/**
 * Imports the user's pipeline module for `gress run`, in any project, whatever its package.json "type".
 *
 * Bun and Deno import TypeScript themselves. On Node.js, a TypeScript pipeline is imported through tsx's
 * loader hooks, registered on first use (Gress itself runs as built JavaScript and needs none). One more hook
 * of ours: a file of the user's (outside node_modules) written with `import`/`export` loads as an ES module
 * even in a CommonJS package such as `npm init -y` makes. Loaded as CommonJS, its `import … from "gress"`
 * would become a require() that tsx's CommonJS hook compiles into a second copy of Gress, whose `Job` is not
 * the one the CLI passes in. A CommonJS module keeps working: `module.exports = fn`, or a compiler's
 * `exports.default = fn`.
 * @module
 */
import { pathToFileURL } from "node:url";
import { runtimeName } from "./runtime.ts";

// The resolve hook, as a data: URL so that it loads the same from the sources and from dist/. Files named
// .cjs/.cts are CommonJS by definition and left alone; the syntax test looks for an import or export
// statement at the start of a line, as a module pipeline always has (`export default`).
const ESM_SYNTAX_HOOK = `
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
const esmSyntax = /^[ \\t]*(?:import[\\s{*"']|export[\\s{*])/m;
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  const url = resolved.url;
  if (resolved.format === "module" || !url.startsWith("file:") || url.includes("/node_modules/")) return resolved;
  if (!/\\.(?:js|ts|mts|tsx|jsx)$/.test(new URL(url).pathname)) return resolved;
  let source;
  try {
    source = readFileSync(fileURLToPath(url), "utf8");
  } catch {
    return resolved;
  }
  return esmSyntax.test(source) ? { ...resolved, format: "module" } : resolved;
}
`;

let syntaxHook = false;
let tsx = false;

/** Registers the hook above and, for TypeScript, tsx; each once per process. Node.js only. */
async function registerNodeHooks(typescript: boolean): Promise<void> {
  // Running from the TypeScript sources (this repository), tsx is registered already.
  if (typescript && !tsx && !import.meta.url.endsWith(".ts")) {
    tsx = true;
    (await import("tsx/esm/api")).register();
  }
  if (!syntaxHook) {
    syntaxHook = true;
    const { register } = await import("node:module");
    register(`data:text/javascript,${encodeURIComponent(ESM_SYNTAX_HOOK)}`);
  }
}

/** Imports the module at `file` (a path) and returns what it default-exports. */
export async function importPipeline(file: string): Promise<unknown> {
  if (runtimeName() === "node") await registerNodeHooks(/\.(?:[cm]?ts|tsx)$/.test(file));
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  const exported = mod.default;
  // CommonJS compiled from `export default`: the module object is `{ __esModule: true, default: fn }`.
  if (typeof exported === "object" && exported !== null && "__esModule" in exported && "default" in exported) return exported.default;
  return exported;
}
