#!/usr/bin/env node
// The gress CLI. Gress ships TypeScript sources; on Node.js they load through tsx, while Bun and Deno run
// them natively (`bun lib/cli-main.ts`, `deno run -A lib/cli-main.ts`).
import { register } from "tsx/esm/api";

register();
const { main } = await import("../lib/cli.ts");
process.exitCode = await main(process.argv.slice(2));
