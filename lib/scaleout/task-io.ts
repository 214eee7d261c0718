/**
 * How a scale-out task reaches the Kafka connectors that a pipeline module builds with `kafkaSource` and
 * `kafkaSink` (docs/SCALE-OUT.md, section 2). The same pipeline code runs in single-process mode and in a
 * task; in a task:
 * - a Kafka source reads only the task's partitions, from batches the worker's one group consumer routes to
 *   it: the task binds the source to a {@link TaskKafkaIo} (`bindTaskSource`, called by the task's Job for
 *   every source it is given) and the source takes its consumer and end offsets from `io.client`;
 * - a Kafka sink writes into the task's open Kafka transaction, which the task commits with its checkpoint: at
 *   open, the sink looks up the task by its job name (`taskIoOf(ctx.jobName)`; a task's Job has a name of its
 *   own, `<job>/<task>`) and sends through `io.send`.
 * Nothing here is used in single-process mode: no task is registered, so every lookup is undefined.
 * @module
 */
import type { KafkaClient, ProducerRecord } from "../../connectors/kafka/client.ts";

/** What a task offers the Kafka connectors of its pipeline. */
export interface TaskKafkaIo {
  /** The task id (`s_p`). */
  readonly taskId: string;
  /**
   * A client whose consumer reads only the task's partitions (batches routed by the worker), whose
   * `endOffsets` lists only them, and whose other calls go to the worker's client.
   */
  readonly client: KafkaClient;
  /** Sends records inside the task's open transaction (committed with the task's next checkpoint). */
  send(topic: string, records: readonly ProducerRecord[]): Promise<void>;
}

/** The symbol under which a source offers to be bound to a task (a function `(io) => void`). */
export const BIND_TASK: unique symbol = Symbol.for("gress.scaleout.bindTask");

/**
 * The symbol under which a two-phase-commit sink says that it is exactly-once in a scale-out task: it commits
 * through the task's checkpoint (Kafka sinks: their records go into the task's transaction), or it keeps its
 * idempotence per task, finding its task at open with {@link taskIoOf} (PostgreSQL: progress rows and staging
 * per task, rows tagged with the task's incarnation; NATS JetStream: message ids per task). Their pre-commit
 * handles travel in the task's checkpoint record, and the task's next owner commits them again on restore.
 * Any other two-phase-commit sink is refused in a task: its idempotence is per job, not per task, so a task
 * that moves could commit its output twice.
 */
export const TASK_SINK: unique symbol = Symbol.for("gress.scaleout.taskSink");

/** The symbol under which a Kafka source names the topics it reads (so that a worker knows its tasks). */
export const SOURCE_TOPICS: unique symbol = Symbol.for("gress.scaleout.sourceTopics");

/** The symbol under which a Kafka source says that it is bounded (reads to the end offsets seen at open, then ends). */
export const SOURCE_BOUNDED: unique symbol = Symbol.for("gress.scaleout.sourceBounded");

/** A source (or other object) that a task can bind. */
export interface TaskBindable {
  [BIND_TASK]?: (io: TaskKafkaIo) => void;
  readonly [SOURCE_TOPICS]?: readonly string[];
  readonly [SOURCE_BOUNDED]?: boolean;
}

/** The topics a source reads when it is a Kafka source, else undefined. */
export function kafkaTopicsOf(source: unknown): readonly string[] | undefined {
  const topics = (source as TaskBindable | null)?.[SOURCE_TOPICS];
  return Array.isArray(topics) ? topics : undefined;
}

/** What a scale-out job checks of each of its sources (see checkScaleOutSources in config-checks.ts). */
export function scaleOutSourceInfo(source: { readonly name: string }, otherKind: string): { name: string; kind: string; bounded: boolean } {
  const kafka = kafkaTopicsOf(source) !== undefined;
  return { name: source.name, kind: kafka ? "kafka" : otherKind, bounded: kafka && (source as TaskBindable)[SOURCE_BOUNDED] === true };
}

const tasks = new Map<string, TaskKafkaIo>();

/** Registers the task whose Job is named `jobName` (its sinks find it at open). Returns the unregistration. */
export function registerTaskIo(jobName: string, io: TaskKafkaIo): () => void {
  tasks.set(jobName, io);
  return () => {
    if (tasks.get(jobName) === io) tasks.delete(jobName);
  };
}

/**
 * Refuses, in a scale-out task, a two-phase-commit sink that does not commit through the task's checkpoint
 * (see {@link TASK_SINK}); a message for the ConfigError, or undefined when the sink may run.
 */
export function unsupportedTaskSink(jobName: string, sink: { readonly name: string; readonly preCommit?: unknown }): string | undefined {
  if (!tasks.has(jobName) || typeof sink.preCommit !== "function" || (sink as { [TASK_SINK]?: unknown })[TASK_SINK] === true) return undefined;
  return `sink "${sink.name}" cannot run in a scale-out job: its exactly-once commits are per job, not per task, so a task that moves between workers could write twice (Kafka, PostgreSQL and NATS JetStream sinks are exactly-once per task; file sinks and user sinks are not); write to a Kafka topic and move it on from there, or run the job in single-process mode`;
}

/** The task whose Job is named `jobName`, if that Job is a scale-out task. */
export function taskIoOf(jobName: string | undefined): TaskKafkaIo | undefined {
  return jobName === undefined ? undefined : tasks.get(jobName);
}

/** Binds `source` to a task if it supports it (Kafka sources do); true when it did. */
export function bindTaskSource(source: unknown, io: TaskKafkaIo): boolean {
  const bind = (source as TaskBindable | null)?.[BIND_TASK];
  if (typeof bind !== "function") return false;
  bind(io);
  return true;
}
