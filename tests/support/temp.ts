/**
 * Temporary directories for tests: each call of the returned function makes a fresh directory under the OS
 * temp folder, and all of them are removed after the test file has run.
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";

/** Returns a maker of fresh temporary directories named `<prefix>XXXXXX`, removed after the file's tests. */
export function tempDirs(prefix: string): () => string {
  const made: string[] = [];
  after(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    made.push(d);
    return d;
  };
}
