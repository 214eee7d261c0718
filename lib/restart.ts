/**
 * Restart strategies: what a job does when it fails while running, as Flink's restart strategies do.
 *
 * - `none` (the default): the first failure ends `run()` with the error.
 * - `fixed-delay`: restart up to `attempts` times, waiting `delayMs` before each restart.
 * - `exponential-backoff`: wait `initialDelayMs`, then `multiplier` times longer before each next restart, up
 *   to `maxDelayMs`, each wait moved by up to ±`jitter` of itself. An attempt that ran `resetAfterMs` without
 *   failing resets the wait (and the count of `attempts`, when given) to the start.
 * - Either restarting strategy may add a failure-rate limit: more than `failureRate.maxFailures` failures
 *   within `failureRate.intervalMs` end the job (Flink's failure-rate strategy is fixed-delay with that limit).
 *
 * Which failures restart: every failure, as in Flink, except those marked non-recoverable: configuration
 * errors (ERR_CONFIG, ERR_PATTERN), found anywhere in the error's `cause` chain, and errors passed through
 * {@link nonRecoverable}. A user function that throws under `onUserError: "fail"` restarts like any other
 * failure; the strategy's bound (attempts, failure rate) is what stops a job that fails on every attempt.
 *
 * A restart happens inside `job.run()`: the failed attempt's sources, operators and sinks are torn down and
 * closed (run() waits for them, at most closeTimeoutMs), the job waits the back-off on its Clock (so tests run
 * on virtual time; `cancel()` ends the wait at once), then runs again from its last completed checkpoint
 * (without checkpoints: from the sources' start positions, with the state it had when run() was called).
 * @module
 */
import { z } from "zod";
import { validate } from "./config.ts";
import { isGressError } from "./errors.ts";

/**
 * More than `maxFailures` failures within `intervalMs` (of the job's Clock) end the job.
 *
 * @example
 * ```ts
 * import { type FailureRateLimit, Job } from "gress";
 *
 * // More than 10 failures within an hour end the job, whatever the back-off.
 * const failureRate: FailureRateLimit = { maxFailures: 10, intervalMs: 3_600_000 };
 * const job = new Job({ restart: { strategy: "exponential-backoff", failureRate } });
 * ```
 */
export interface FailureRateLimit {
  readonly maxFailures: number;
  readonly intervalMs: number;
}

interface RestartBase {
  /** Where each restart (and the decision to give up) is logged, one line each. Default: console.error. */
  readonly log?: (message: string) => void;
}

/**
 * Never restart: the first failure ends the job.
 *
 * @example
 * ```ts
 * import { Job, type NoRestart } from "gress";
 *
 * // The default: the first failure ends run() with the error.
 * const restart: NoRestart = { strategy: "none" };
 * const job = new Job({ restart });
 * ```
 */
export interface NoRestart extends RestartBase {
  readonly strategy: "none";
}

/**
 * Restart a bounded number of times with a fixed wait.
 *
 * @example
 * ```ts
 * import { type FixedDelayRestart, Job } from "gress";
 *
 * // Flink's failure-rate strategy: restart after 10 s, but give up after more than 3 failures in 5 minutes.
 * const restart: FixedDelayRestart = { strategy: "fixed-delay", attempts: 1_000, delayMs: 10_000, failureRate: { maxFailures: 3, intervalMs: 300_000 } };
 * const job = new Job({ restart });
 * ```
 */
export interface FixedDelayRestart extends RestartBase {
  readonly strategy: "fixed-delay";
  /** Restarts before the job fails for good. Default 3. */
  readonly attempts?: number;
  /** Wait before each restart, in ms of the job's Clock. Default 1 000. */
  readonly delayMs?: number;
  readonly failureRate?: FailureRateLimit;
}

/**
 * Restart with a growing wait.
 *
 * @example
 * ```ts
 * import { type ExponentialBackoffRestart, Job } from "gress";
 *
 * // 1 s, 2 s, 4 s, ... up to 1 min between restarts; an hour without failure starts over at 1 s.
 * const restart: ExponentialBackoffRestart = { strategy: "exponential-backoff", initialDelayMs: 1_000, multiplier: 2, maxDelayMs: 60_000, resetAfterMs: 3_600_000 };
 * const job = new Job({ restart, onUserError: "fail" });
 * ```
 */
export interface ExponentialBackoffRestart extends RestartBase {
  readonly strategy: "exponential-backoff";
  /** The first wait, in ms. Default 1 000. */
  readonly initialDelayMs?: number;
  /** The longest wait, in ms. Default 60 000. */
  readonly maxDelayMs?: number;
  /** Each wait is the previous one times this. Default 1.5. */
  readonly multiplier?: number;
  /** Each wait moves by a random amount of up to ±jitter of itself (0..1). Default 0.1. */
  readonly jitter?: number;
  /** An attempt that ran this long (ms) before failing resets the wait and the attempt count. Default 3 600 000. */
  readonly resetAfterMs?: number;
  /** Restarts allowed since the last reset. Default: unbounded. */
  readonly attempts?: number;
  readonly failureRate?: FailureRateLimit;
}

/**
 * The `restart` option of a job.
 *
 * @example
 * ```ts
 * import { Job, lmdbState, type RestartOptions } from "gress";
 *
 * // Restart up to 5 times, 2 s apart, from the last checkpoint.
 * const restart: RestartOptions = { strategy: "fixed-delay", attempts: 5, delayMs: 2_000 };
 * const job = new Job({ name: "orders", state: lmdbState({ path: "state/orders" }), checkpoints: { intervalMs: 5_000 }, restart });
 * ```
 */
export type RestartOptions = NoRestart | FixedDelayRestart | ExponentialBackoffRestart;

const logSchema = z.custom<(m: string) => void>((f) => typeof f === "function", "a function").optional();
const failureRateSchema = z.strictObject({ maxFailures: z.number().int().positive(), intervalMs: z.number().positive() }).optional();

/** The zod schema of {@link RestartOptions} (the job embeds it, so errors read `job.restart.<field>`). */
export const restartOptionsSchema: z.ZodType<unknown> = z.discriminatedUnion("strategy", [
  z.strictObject({ strategy: z.literal("none"), log: logSchema }),
  z.strictObject({
    strategy: z.literal("fixed-delay"),
    attempts: z.number().int().nonnegative().optional(),
    delayMs: z.number().nonnegative().optional(),
    failureRate: failureRateSchema,
    log: logSchema,
  }),
  z
    .strictObject({
      strategy: z.literal("exponential-backoff"),
      initialDelayMs: z.number().positive().optional(),
      maxDelayMs: z.number().positive().optional(),
      multiplier: z.number().min(1).optional(),
      jitter: z.number().min(0).max(1).optional(),
      resetAfterMs: z.number().positive().optional(),
      attempts: z.number().int().nonnegative().optional(),
      failureRate: failureRateSchema,
      log: logSchema,
    })
    .refine((o) => (o.initialDelayMs ?? 1000) <= (o.maxDelayMs ?? 60_000), {
      message: "initialDelayMs must not exceed maxDelayMs",
      path: ["maxDelayMs"],
    }),
]);

/** Checks restart options; throws a ConfigError naming the bad field (`job.restart.delayMs: ...`). */
export function validateRestart(options: unknown, where = "job.restart"): RestartOptions {
  return validate(restartOptionsSchema, options, where) as RestartOptions;
}

const NON_RECOVERABLE: unique symbol = Symbol.for("gress.nonRecoverable") as never;

/**
 * Marks an error as not worth a restart (like Flink's SuppressRestartsException): a job failing with it (or
 * with an error caused by it) ends at once, whatever the restart strategy. Returns the same error.
 *
 * @example
 * ```ts
 * import { Job, nonRecoverable, sinkFn } from "gress";
 *
 * const job = new Job({ restart: { strategy: "fixed-delay", attempts: 10 } });
 * job.fromIterable([1]).sinkTo(
 *   sinkFn("api", async () => {
 *     // A restart cannot fix revoked credentials: end the job at once instead of retrying 10 times.
 *     throw nonRecoverable(new Error("401: API key revoked"));
 *   }),
 * );
 * await job.run().catch((err) => console.error(err.message));
 * ```
 */
export function nonRecoverable<E extends object>(error: E): E {
  Object.defineProperty(error, NON_RECOVERABLE, { value: true });
  return error;
}

/**
 * True unless `error`, or an error in its `cause` chain, is a configuration error or marked non-recoverable.
 *
 * @example
 * ```ts
 * import { ConfigError, isRestartable, nonRecoverable } from "gress";
 *
 * console.log(isRestartable(new Error("connection reset"))); // true
 * console.log(isRestartable(nonRecoverable(new Error("bad credentials")))); // false
 * console.log(isRestartable(new ConfigError("bad option", []))); // false: configuration errors never restart
 * ```
 */
export function isRestartable(error: unknown): boolean {
  let e: unknown = error;
  for (let depth = 0; depth < 16 && typeof e === "object" && e !== null; depth++) {
    if ((e as Record<symbol, unknown>)[NON_RECOVERABLE] === true) return false;
    if (isGressError(e, "ERR_CONFIG") || isGressError(e, "ERR_PATTERN")) return false;
    e = (e as { cause?: unknown }).cause;
  }
  return true;
}

/** A short, stable name of what failed, for logs and metric labels: the Gress code, else the error's class. */
export function failureCode(error: unknown): string {
  if (isGressError(error)) return error.code;
  const name = error instanceof Error ? error.name : undefined;
  return typeof name === "string" && /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name) ? name : "Error";
}

/** The first line of an error's message (never its stack). */
export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const line = message.split("\n", 1)[0] ?? "";
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** What the strategy decided for one failure. */
export type RestartDecision =
  | {
      readonly restart: true;
      /** Wait before the restart, in ms. */
      readonly delayMs: number;
      /** This restart's number (since the last reset, for exponential-backoff). */
      readonly attempt: number;
      /** The allowed number, when bounded. */
      readonly maxAttempts: number | undefined;
    }
  | { readonly restart: false; readonly reason: string };

/**
 * The state of a restart strategy over one `run()`: counts restarts and failures and computes the waits.
 * `random` gives the jitter (tests may fix it).
 */
export class RestartTracker {
  readonly options: RestartOptions;
  readonly #random: () => number;
  /** Restarts counted against `attempts` (since the last reset). */
  #attempts = 0;
  /** The next exponential wait before jitter. */
  #nextDelay = 0;
  /** Times of recent failures, for the failure-rate limit. */
  readonly #failures: number[] = [];

  constructor(options: RestartOptions, random: () => number = Math.random) {
    this.options = options;
    this.#random = random;
    if (options.strategy === "exponential-backoff") this.#nextDelay = options.initialDelayMs ?? 1000;
  }

  /** Decides about a failure at `now` of an attempt that started (began running) at `startedAt`. */
  onFailure(error: unknown, now: number, startedAt: number): RestartDecision {
    const o = this.options;
    if (o.strategy === "none") return { restart: false, reason: "the restart strategy is none" };
    if (!isRestartable(error)) return { restart: false, reason: `${failureCode(error)} is not recoverable` };
    if (o.failureRate !== undefined) {
      const { maxFailures, intervalMs } = o.failureRate;
      this.#failures.push(now);
      while (this.#failures.length > 0 && this.#failures[0]! <= now - intervalMs) this.#failures.shift();
      if (this.#failures.length > maxFailures) {
        return { restart: false, reason: `${this.#failures.length} failures within ${intervalMs} ms exceed the failure-rate limit of ${maxFailures}` };
      }
    }
    if (o.strategy === "fixed-delay") {
      const max = o.attempts ?? 3;
      if (this.#attempts >= max) return { restart: false, reason: `all ${max} restart attempts were used` };
      return { restart: true, delayMs: o.delayMs ?? 1000, attempt: ++this.#attempts, maxAttempts: max };
    }
    const initial = o.initialDelayMs ?? 1000;
    if (now - startedAt >= (o.resetAfterMs ?? 3_600_000)) {
      // The attempt ran stably: the next outage starts the back-off from the beginning.
      this.#attempts = 0;
      this.#nextDelay = initial;
    }
    if (o.attempts !== undefined && this.#attempts >= o.attempts) {
      return { restart: false, reason: `all ${o.attempts} restart attempts were used` };
    }
    const max = o.maxDelayMs ?? 60_000;
    const base = Math.min(this.#nextDelay, max);
    this.#nextDelay = Math.min(base * (o.multiplier ?? 1.5), max);
    const jitter = o.jitter ?? 0.1;
    const delayMs = Math.max(0, Math.round(base * (1 + jitter * (2 * this.#random() - 1))));
    return { restart: true, delayMs, attempt: ++this.#attempts, maxAttempts: o.attempts };
  }
}

/** The one-line log of a restart: `restart 2/5 in 4.0 s after ERR_SINK: <first line of the message>`. */
export function restartLine(decision: Extract<RestartDecision, { restart: true }>, error: unknown): string {
  const n = decision.maxAttempts === undefined ? `${decision.attempt}` : `${decision.attempt}/${decision.maxAttempts}`;
  return `restart ${n} in ${(decision.delayMs / 1000).toFixed(1)} s after ${failureCode(error)}: ${firstLine(error)}`;
}
