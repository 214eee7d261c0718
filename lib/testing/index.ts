/**
 * gress/testing: what users need to test their pipelines — a {@link TestDriver} on virtual time, fast-check
 * arbitraries for out-of-order event streams, a marble-like notation for event time ({@link events}), and
 * checks that are fast-check properties:
 *
 * - {@link checkExactlyOnce}: the committed output after crashes at random points and recoveries equals a
 *   failure-free run's (temporary LMDB state, a sink with two-phase commit);
 * - {@link checkOrderInsensitive}, {@link checkWatermarkSchedule}, {@link checkLateness}: time laws;
 * - {@link checkPatternAgainstReference} (with the brute-force matcher {@link bruteForceMatches}) and
 *   {@link checkNoLeak}: CEP laws.
 *
 * Run a check with `fc.assert(check, { seed })` (await it for checkExactlyOnce) or {@link assertCheck}.
 * @module
 */
export { VirtualClock } from "../clock.ts";
export * from "./arbitraries.ts";
export {
  bruteForceMatches,
  checkNoLeak,
  checkPatternAgainstReference,
  type NoLeakOptions,
  type PatternCheckOptions,
  patternFromReference,
  type ReferenceMatch,
  type ReferencePattern,
  type ReferenceStep,
} from "./cep-reference.ts";
export {
  type CrashPoint,
  type CrashRun,
  type CrashSchedule,
  checkExactlyOnce,
  crashSchedules,
  type ExactlyOnceOptions,
  type InspectableSink,
  runWithCrashes,
  transactionalMemorySink,
} from "./exactly-once.ts";
export {
  assertCheck,
  checkLateness,
  checkOrderInsensitive,
  checkWatermarkSchedule,
  type LatenessOptions,
  type MultiInputPipeline,
  multiInput,
  type OrderInsensitiveOptions,
  type PipelineInputs,
  type Tagged,
  type WatermarkScheduleOptions,
} from "./laws.ts";
export { type EventStep, events, formatEvents, playEvents, recordsOf } from "./marbles.ts";
export { MultiInputTestDriver, TestDriver, type TestDriverOptions } from "./test-driver.ts";
