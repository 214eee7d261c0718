/**
 * Failpoints for crash tests: named places in the checkpoint protocol where a test can make the process die
 * with SIGKILL, as a real crash would (no finally blocks, no flushing).
 *
 * Armed by the environment variable `GRESS_FAILPOINT=name` (die at the first hit) or `name:n` (die at the
 * n-th hit). Unarmed, a failpoint costs one comparison.
 *
 * Names used by the engine: `between-checkpoints` (a checkpoint is due, records since the last one are
 * processed and written but not committed), `checkpoint-snapshot` (inside the LMDB transaction, half of the
 * state written), `after-commit` (committed, not yet flushed), `after-flush` (durable, sinks not committed),
 * `after-sink-commit` (sinks committed, sources not acknowledged), `recovery` (state restored, pending sink
 * transactions half resolved).
 * @module
 */
import process from "node:process";

const spec = process.env.GRESS_FAILPOINT;
const [armedName, armedHit] = spec === undefined || spec === "" ? [undefined, 0] : parse(spec);
let hits = 0;

function parse(s: string): [string, number] {
  const i = s.lastIndexOf(":");
  if (i < 0) return [s, 1];
  const n = Number(s.slice(i + 1));
  return [s.slice(0, i), Number.isInteger(n) && n > 0 ? n : 1];
}

/**
 * The armed failpoint name, if any.
 *
 * @example
 * ```ts
 * import { armedFailpoint } from "gress";
 *
 * // The failpoint GRESS_FAILPOINT armed in this process, if any.
 * if (armedFailpoint() !== undefined) console.warn(`crash test: will die at ${armedFailpoint()}`);
 * ```
 */
export function armedFailpoint(): string | undefined {
  return armedName;
}

/**
 * Kills the process with SIGKILL if `name` is the armed failpoint and this is its armed hit.
 *
 * @example
 * ```ts
 * import { failpoint } from "gress";
 *
 * // In a crash test, run the job with GRESS_FAILPOINT=after-commit:2 to SIGKILL it at the 2nd hit of this place.
 * failpoint("after-commit");
 * ```
 */
export function failpoint(name: string): void {
  if (armedName !== name || ++hits < armedHit) return;
  process.kill(process.pid, "SIGKILL");
}
