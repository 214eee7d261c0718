/**
 * The runtime adapter: the only module that knows which runtime (Node.js, Bun or Deno) Gress runs on.
 * Everything else uses web standards and the `node:` built-ins all three implement.
 * @module
 */

/** The runtime Gress is running on. */
export type RuntimeName = "node" | "bun" | "deno";

/** Detects the current runtime. */
export function runtimeName(): RuntimeName {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  if (g.Bun !== undefined) return "bun";
  if (g.Deno !== undefined) return "deno";
  return "node";
}

type Immediate = (fn: () => void) => unknown;
const immediate: Immediate | undefined = (globalThis as { setImmediate?: Immediate }).setImmediate;

/**
 * Runs `fn` on the next turn of the event loop, after pending I/O and timers had their chance — the way a
 * source yields between batches. setImmediate where the runtime has it (all three do today), else a
 * zero-delay timer, which browsers clamp but which is always correct.
 */
export function runSoon(fn: () => void): void {
  if (immediate !== undefined) immediate(fn);
  else setTimeout(fn, 0);
}

/** True when the module with URL `moduleUrl` is the program's entry point (`node file.ts`, `deno run file.ts`). */
export function isMainModule(moduleUrl: string): boolean {
  const entry = (globalThis as { process?: { argv?: string[] } }).process?.argv?.[1];
  if (entry === undefined) return false;
  const path = decodeURIComponent(new URL(moduleUrl).pathname);
  return path === entry || path.replace(/\.[cm]?[jt]s$/, "") === entry.replace(/\.[cm]?[jt]s$/, "");
}
