/**
 * Gress: stream processing and complex event processing for TypeScript, on RxJS.
 *
 * A {@link Job} owns a pipeline's clock, state and metrics; sources become {@link Stream}s; operators follow
 * Flink's semantics for event time, windows, keyed state and timers.
 *
 * @example
 * ```ts
 * import { Job, nexmark, boundedOutOfOrderness, tumbling, sinkFn } from "gress";
 * const job = new Job({ name: "bids" });
 * job.source(nexmark({ count: 10_000 }))
 *   .filter((e) => e.type === "bid")
 *   .withTimestamps(boundedOutOfOrderness(1_000, { timestamp: (e) => e.dateTime }))
 *   .keyBy((e) => (e.type === "bid" ? e.auction : -1))
 *   .window(tumbling(10_000))
 *   .count()
 *   .sinkTo(sinkFn("print", (r) => console.log(r)));
 * await job.run();
 * ```
 * @module
 */
export * from "./aggregate.ts";
export { AsyncCache, type AsyncCacheOptions } from "./async-cache.ts";
export { type CancelTimer, type Clock, SystemClock, VirtualClock } from "./clock.ts";
export { validate } from "./config.ts";
export * from "./element.ts";
export * from "./errors.ts";
export { AimdRate, downstreamPressure, FlowControl, SourceThrottle, type ThrottleOptions, throttleOptions } from "./flow.ts";
export { Job, type JobOptions, type SourceOptions } from "./job.ts";
export type { JobContext, OperatorContext, UserErrorPolicy } from "./operator-context.ts";
export { bucketQuantile, JobMetrics, LATENCY_BUCKETS, LatencyHistogram, LatencyProbe, OperatorMetrics, SinkMetrics, SourceMetrics } from "./metrics.ts";
export { type ChainableOperator, type Downstream, operate, type OperatorBody } from "./operate.ts";
export { RecordOutput } from "./record-output.ts";
export {
  type ExponentialBackoffRestart,
  type FailureRateLimit,
  type FixedDelayRestart,
  isRestartable,
  type NoRestart,
  nonRecoverable,
  type RestartOptions,
} from "./restart.ts";
export {
  type AsyncCallContext,
  AsyncOperatorMetrics,
  type AsyncOptions,
  AsyncTimeoutError,
  asyncMetrics,
  type KeyedAsyncOptions,
  type RetryPolicy,
} from "./operators/async.ts";
export {
  type BroadcastContext,
  type BroadcastStateDescriptor,
  broadcastState,
  isBroadcastPartitioned,
  type KeyedBroadcastContext,
  type KeyedBroadcastProcessFunction,
  type ReadOnlyBroadcastState,
} from "./operators/broadcast.ts";
export type { CoProcessContext, CoProcessFunction, KeyedCoProcessFunction } from "./operators/connect.ts";
export type { KeyedStateAccess, ProcessContext, ProcessFunction, TimerAccess } from "./operators/process.ts";
export type { FireTiming, WindowOptions, WindowResult } from "./operators/window.ts";
export type { Sink, SinkContext } from "./sink.ts";
export { encodeRecord, sinkFn } from "./sink.ts";
export { type Position, type Positions, type Source, type SourceContext, type SourceProgress, type SourceQuotaStats, type SourceSpillStats, timestampOf } from "./source.ts";
export * from "./sources/from.ts";
export * from "./sources/generator.ts";
export { SpillBuffer, type SpillCounts, type SpilledRecord, type SpillOptions, spillOptions } from "./sources/spill.ts";
export * from "./state/backend.ts";
export * from "./state/keyed.ts";
export { MemoryStateBackend, memoryState } from "./state/memory.ts";
export type { QueriedState } from "./state/queryable.ts";
export { LmdbStateBackend, type LmdbStateOptions, lmdbState } from "./state/lmdb.ts";
export * from "./checkpoint/index.ts";
export {
  BroadcastConnectedStream,
  BroadcastStream,
  ConnectedStreams,
  KeyedConnectedStreams,
  KeyedStream,
  type OperatorOptions,
  Stream,
  WindowedStream,
} from "./stream.ts";
export { type Timer, TimerService } from "./timers.ts";
export * from "./watermarks.ts";
export * from "./windows/assigners.ts";
export * from "./windows/triggers.ts";
