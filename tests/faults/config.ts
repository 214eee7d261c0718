/**
 * The configuration of the fault suite's child job (tests/faults/job.ts) and its deterministic input.
 * @module
 */

/** The child's configuration (argv[2] of tests/faults/job.ts, as JSON). */
export interface FaultJobConfig {
  readonly kind: "kafka" | "pg" | "nats";
  readonly job: string;
  readonly stateDir: string;
  readonly intervalMs: number;
  readonly count: number;
  readonly keys: number;
  readonly ratePerSecond: number;
  /** kafka */
  readonly brokers?: string[];
  readonly input?: string;
  readonly output?: string;
  readonly groupId?: string;
  readonly transactionTimeoutMs?: number;
  /** pg */
  readonly pgUrl?: string;
  readonly table?: string;
  /** The PostgreSQL sink's two-phase path (its `twoPhase` option); default "staging". */
  readonly twoPhase?: "prepared" | "staging";
  /** nats */
  readonly natsUrl?: string;
  readonly subject?: string;
  /** The job's restart strategy (lib/restart.ts), when the scenario wants restarts in the process. */
  readonly restart?: { strategy: "fixed-delay"; attempts: number; delayMs: number };
}

/** The key of input record `i`. */
export const keyOf = (i: number, keys: number): string => `k${(i * 7919) % keys}`;
