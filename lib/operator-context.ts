/**
 * The contract between a job and what runs in it: what an operator gets from its job
 * ({@link OperatorContext}), and the job as its streams and sink operators see it ({@link JobContext}).
 *
 * Operators and streams depend on these interfaces, not on `Job` itself, so that the job (which creates
 * streams and the checkpoint coordinator) and the operators do not import each other in a cycle. `Job`
 * implements {@link JobContext}.
 *
 * @example
 * ```ts
 * import { Job, type OperatorContext } from "gress";
 *
 * const ctx: OperatorContext = new Job().operator("audit");
 * console.log(ctx.id, ctx.onUserError); // "audit-1" "dead-letter"
 * ```
 * @module
 */
import type { Observable } from "rxjs";
import type { CheckpointCoordinator } from "./checkpoint/coordinator.ts";
import type { Clock } from "./clock.ts";
import type { FlowControl } from "./flow.ts";
import type { JobMetrics, OperatorMetrics } from "./metrics.ts";
import type { Source } from "./source.ts";
import type { StateBackend } from "./state/backend.ts";

/**
 * What to do when a user function throws on a record: send the record to dead letters (default) or fail
 * the job.
 *
 * @example
 * ```ts
 * import { Job, type UserErrorPolicy } from "gress";
 *
 * const policy: UserErrorPolicy = "fail";
 * const job = new Job({ onUserError: policy });
 * ```
 */
export type UserErrorPolicy = "dead-letter" | "fail";

/**
 * What every operator gets from its job (from `job.operator(kind, uid)`): its id, under which its state,
 * metrics and dead letters are kept, and the job's clock, state backend and user-error policy.
 *
 * @example
 * ```ts
 * import { Job, type OperatorContext } from "gress";
 *
 * const ctx: OperatorContext = new Job().operator("enrich", "enrich-v1");
 * ctx.metrics.recordsIn++;
 * const seen = ctx.state.table<number>(ctx.id, "seen");
 * ```
 */
export interface OperatorContext {
  /** The operator's id: its uid, or `kind-N` in construction order. */
  readonly id: string;
  readonly clock: Clock;
  readonly state: StateBackend;
  readonly metrics: OperatorMetrics;
  readonly onUserError: UserErrorPolicy;
}

/**
 * The job as its streams and sink operators see it: what they need to create operators, register sinks,
 * and take part in flow control and checkpoints. Implemented by `Job`.
 *
 * @example
 * ```ts
 * import { Job, type JobContext } from "gress";
 *
 * const job: JobContext = new Job({ name: "clicks" });
 * console.log(job.name, job.maxInFlight); // "clicks" 1024
 * ```
 */
export interface JobContext {
  readonly name: string;
  readonly clock: Clock;
  readonly state: StateBackend;
  readonly metrics: JobMetrics;
  readonly flow: FlowControl;
  /** Default bound on unacknowledged writes per sink. */
  readonly maxInFlight: number;
  readonly onUserError: UserErrorPolicy;
  /** The checkpoint coordinator, when the job was created with `checkpoints`. */
  readonly checkpoints: CheckpointCoordinator | undefined;
  /** Sources registered so far. */
  readonly sources: readonly Source<unknown>[];
  /** Allocates the context of a new operator (see `Job.operator`). */
  operator(kind: string, uid?: string): OperatorContext;
  /** Registers a runner (a sink chain) to be subscribed when the job runs. */
  register(runner: () => Observable<unknown>): void;
  /** Registers the closing of a source or sink, which the job's run() waits for. */
  trackRelease(closing: Promise<unknown>): void;
  /** Runs the job (see `Job.run`): for a stream made without a job, e.g. by `fromObservable(obs)`. */
  run(): Promise<void>;
  /** Stops the running job at once (see `Job.cancel`). */
  cancel(): void;
  /** Stops the running job gracefully (see `Job.stop`). */
  stop(): Promise<void>;
}
