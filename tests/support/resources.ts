/**
 * Checks that a job released what it held: a port that can be bound again, no file left open.
 * @module
 */
import { readdirSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";

/** True when `port` can be bound (nothing listens on it any more). */
export async function bindable(port: number): Promise<boolean> {
  const s = createServer();
  return new Promise<boolean>((resolve) => {
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** The files under `dir` this process has open (Linux: /proc/self/fd). */
export function openFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}
