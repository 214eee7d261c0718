/**
 * Errors. Every error Gress throws is a {@link GressError} with a stable `code`, so callers branch on the
 * code, never on the message. Subclasses take `cause` through the standard ErrorOptions.
 *
 * `isGressError(e, code?)` checks a brand symbol from the global symbol registry instead of `instanceof`, so
 * it still works when two copies of the package are loaded (a notebook and a library, say).
 *
 * @example
 * ```ts
 * try { validate(schema, input, "window") } catch (e) { if (isGressError(e, "ERR_CONFIG")) console.log(e.issues) }
 * ```
 * @module
 */

const BRAND: unique symbol = Symbol.for("gress.error") as never;

/**
 * The stable error codes. New codes may be added; existing ones never change meaning.
 *
 * @example
 * ```ts
 * import { type GressErrorCode, isGressError } from "gress";
 *
 * const retryable: GressErrorCode[] = ["ERR_SOURCE", "ERR_SINK", "ERR_CHECKPOINT"];
 * const shouldRetry = (err: unknown): boolean => retryable.some((code) => isGressError(err, code));
 * ```
 */
export type GressErrorCode =
  | "ERR_CONFIG"
  | "ERR_STATE"
  | "ERR_CHECKPOINT"
  | "ERR_SOURCE"
  | "ERR_SINK"
  | "ERR_PATTERN"
  | "ERR_USER_FUNCTION"
  | "ERR_BAD_RECORD"
  | "ERR_CLOSED";

/**
 * One problem found while validating options: where it is, and what was expected.
 *
 * @example
 * ```ts
 * import { ConfigError, Job } from "gress";
 *
 * try {
 *   new Job({ maxInFlight: -1 });
 * } catch (err) {
 *   // Each issue names the field (path) and what is wrong with it.
 *   if (err instanceof ConfigError) for (const issue of err.issues) console.error(issue.path.join("."), issue.message);
 * }
 * ```
 */
export interface ConfigIssue {
  readonly path: readonly (string | number)[];
  readonly code: string;
  readonly message: string;
}

/**
 * Options accepted by every Gress error constructor.
 *
 * @example
 * ```ts
 * import { type GressErrorOptions, SinkError } from "gress";
 *
 * // cause: the underlying error; details: structured context for logs.
 * const options: GressErrorOptions = { cause: new Error("ECONNRESET"), details: { sink: "db", attempt: 3 } };
 * const err = new SinkError("write to db failed", options);
 * ```
 */
export interface GressErrorOptions extends ErrorOptions {
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * Base class of all Gress errors.
 *
 * @example
 * ```ts
 * import { GressError, Job } from "gress";
 *
 * try {
 *   await new Job().run(); // a job without sinks
 * } catch (err) {
 *   if (err instanceof GressError) console.error(err.code, err.message); // ERR_CONFIG job "gress" has no sinks
 * }
 * ```
 */
export class GressError extends Error {
  readonly code: GressErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: GressErrorCode, message: string, options?: GressErrorOptions) {
    super(message, options);
    this.code = code;
    this.details = options?.details ?? {};
    Object.defineProperty(this, BRAND, { value: true });
    this.name = new.target.name;
  }
}

/**
 * Invalid options or configuration. `issues` names each bad field.
 *
 * @example
 * ```ts
 * import { ConfigError, tumbling } from "gress";
 *
 * try {
 *   tumbling(-5);
 * } catch (err) {
 *   if (err instanceof ConfigError) console.error(err.message); // invalid options: tumbling.sizeMs: Too small: ...
 * }
 * ```
 */
export class ConfigError extends GressError {
  readonly issues: readonly ConfigIssue[];
  constructor(message: string, issues: readonly ConfigIssue[], options?: GressErrorOptions) {
    super("ERR_CONFIG", message, options);
    this.issues = issues;
  }
}

/**
 * A state backend failed to read, write, snapshot or restore.
 *
 * @example
 * ```ts
 * import { StateError } from "gress";
 *
 * // Thrown by the state backends (a value that cannot be stored, a closed backend, ...).
 * const err = new StateError("value of table op/t is not cloneable");
 * console.log(err.code); // ERR_STATE
 * ```
 */
export class StateError extends GressError {
  constructor(message: string, options?: GressErrorOptions) {
    super("ERR_STATE", message, options);
  }
}

/**
 * A checkpoint could not be taken, committed or restored.
 *
 * @example
 * ```ts
 * import { CheckpointError, Job, lmdbState } from "gress";
 *
 * const job = new Job({ name: "j", state: lmdbState({ path: "state/j" }), checkpoints: { intervalMs: 1_000, timeoutMs: 5_000 } });
 * job.fromIterable([1]).sinkTo({ name: "s", write() {} });
 * await job.run().catch((err) => {
 *   // A checkpoint that fails or times out fails the job with a CheckpointError.
 *   if (err instanceof CheckpointError) console.error("checkpoint failed:", err.message);
 * });
 * ```
 */
export class CheckpointError extends GressError {
  constructor(message: string, options?: GressErrorOptions) {
    super("ERR_CHECKPOINT", message, options);
  }
}

/**
 * A source failed (connection, decoding of positions, ...).
 *
 * @example
 * ```ts
 * import { isGressError, Job } from "gress";
 *
 * const job = new Job();
 * function* broken(): Generator<number> {
 *   yield 1;
 *   throw new Error("disk gone");
 * }
 * job.fromIterable(broken()).sinkTo({ name: "s", write() {} });
 * await job.run().catch((err) => {
 *   if (isGressError(err, "ERR_SOURCE")) console.error(err.message); // iterable source "iterable-1" failed at index 1: disk gone
 * });
 * ```
 */
export class SourceError extends GressError {
  constructor(message: string, options?: GressErrorOptions) {
    super("ERR_SOURCE", message, options);
  }
}

/**
 * A sink failed to write or commit.
 *
 * @example
 * ```ts
 * import { isGressError, Job } from "gress";
 *
 * const job = new Job();
 * job.fromIterable([1]).sinkTo({ name: "db", write: async () => { throw new Error("connection refused"); } });
 * await job.run().catch((err) => {
 *   if (isGressError(err, "ERR_SINK")) console.error(err.message); // names the sink "db"
 * });
 * ```
 */
export class SinkError extends GressError {
  constructor(message: string, options?: GressErrorOptions) {
    super("ERR_SINK", message, options);
  }
}

/**
 * An invalid pattern definition.
 *
 * @example
 * ```ts
 * import { PatternError } from "gress";
 * import { named } from "gress/cep";
 *
 * try {
 *   named("not an identifier", () => true);
 * } catch (err) {
 *   if (err instanceof PatternError) console.error(err.message);
 * }
 * ```
 */
export class PatternError extends GressError {
  constructor(message: string, options?: GressErrorOptions) {
    super("ERR_PATTERN", message, options);
  }
}

/**
 * A user function (map, filter, aggregate, ...) threw. `details.operator` names the operator.
 *
 * @example
 * ```ts
 * import { Job, UserFunctionError } from "gress";
 *
 * // With onUserError "fail", a throwing user function fails the job with a UserFunctionError.
 * const job = new Job({ onUserError: "fail" });
 * job.fromIterable(["x"]).map((s) => JSON.parse(s) as unknown).sinkTo({ name: "n", write() {} });
 * await job.run().catch((err) => {
 *   if (err instanceof UserFunctionError) console.error(err.message); // user function of operator "map-1" threw: ...
 * });
 * ```
 */
export class UserFunctionError extends GressError {
  constructor(message: string, options?: GressErrorOptions) {
    super("ERR_USER_FUNCTION", message, options);
  }
}

/**
 * A record that cannot be processed (malformed, fails its schema, cannot be serialised or mapped by a sink).
 * It goes to a dead-letter output. A sink's `write` throws it synchronously for a record it cannot take (see
 * `encodeRecord` in sink.ts): the sink operator then dead-letters that record instead of failing the job.
 *
 * @example
 * ```ts
 * import { BadRecordError, isGressError } from "gress";
 *
 * const err = new BadRecordError("row 17 has no id", { details: { row: 17 } });
 * console.log(isGressError(err, "ERR_BAD_RECORD"), err.message); // true "row 17 has no id"
 * ```
 */
export class BadRecordError extends GressError {
  constructor(message: string, options?: GressErrorOptions) {
    super("ERR_BAD_RECORD", message, options);
  }
}

/**
 * True when `e` is a Gress error (from any loaded copy of the package), optionally with the given code.
 *
 * @example
 * ```ts
 * import { isGressError, Job } from "gress";
 *
 * try {
 *   new Job({ name: "has spaces" });
 * } catch (err) {
 *   if (isGressError(err, "ERR_CONFIG")) console.error(err.message); // names the option and the value
 * }
 * ```
 */
export function isGressError(e: unknown, code?: GressErrorCode): e is GressError {
  if (typeof e !== "object" || e === null || (e as Record<symbol, unknown>)[BRAND] !== true) return false;
  return code === undefined || (e as GressError).code === code;
}

/**
 * All error classes in one namespace, for `errors.ConfigError` style access.
 *
 * @example
 * ```ts
 * import { errors } from "gress";
 *
 * // Every error class in one object, e.g. to check across realms or to list them.
 * console.log(Object.keys(errors)); // ["GressError", "ConfigError", ...]
 * ```
 */
export const errors: {
  readonly GressError: typeof GressError;
  readonly ConfigError: typeof ConfigError;
  readonly StateError: typeof StateError;
  readonly CheckpointError: typeof CheckpointError;
  readonly SourceError: typeof SourceError;
  readonly SinkError: typeof SinkError;
  readonly PatternError: typeof PatternError;
  readonly UserFunctionError: typeof UserFunctionError;
  readonly BadRecordError: typeof BadRecordError;
} = {
  GressError,
  ConfigError,
  StateError,
  CheckpointError,
  SourceError,
  SinkError,
  PatternError,
  UserFunctionError,
  BadRecordError,
};
