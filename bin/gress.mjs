#!/usr/bin/env node
// The gress CLI. The installed package runs its built JavaScript (dist/); a checkout of the repository, which
// has the TypeScript sources and no build, runs them: through tsx on Node.js, natively on Bun and Deno.
import { existsSync } from "node:fs";

const sources = new URL("../lib/cli.ts", import.meta.url);
let cli = new URL("../dist/lib/cli.js", import.meta.url);
if (existsSync(sources)) {
  cli = sources;
  if (globalThis.Bun === undefined && globalThis.Deno === undefined) (await import("tsx/esm/api")).register();
}
const { main } = await import(cli.href);
// Exit as soon as main is done. A failed job's run() has released what it could within closeTimeoutMs; a
// connection or timer that a hung close() left behind must not keep the process alive (or answering).
process.exit(await main(process.argv.slice(2)));
