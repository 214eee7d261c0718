/**
 * Checks of a scale-out job's configuration against what Kafka reports, as pure functions that throw a
 * ConfigError naming the topics or sources at fault (docs/SCALE-OUT.md, section 7).
 *
 * Contract (for the worker runtime): call them at start, before any task runs, with the metadata read from
 * the broker (partition counts; `topicConfig(topic)` for a changelog topic) and the job's sources.
 * - {@link checkCopartitioned}: the input topics of one sub-topology have equal partition counts; returns it.
 * - {@link checkChangelogTopic}: a changelog topic is compacted and has one partition per task.
 * - {@link checkScaleOutSources}: every source is a Kafka source (the others cannot be split into tasks).
 * @module
 */
import { ConfigError } from "../errors.ts";

/**
 * The partition count shared by `topics` (read together by one sub-topology: a join, a union, or one source of
 * several topics), from `partitionCounts` (topic → count). A ConfigError naming every topic and its count
 * when they differ, or naming a topic the metadata does not know.
 */
export function checkCopartitioned(topics: readonly string[], partitionCounts: ReadonlyMap<string, number>): number {
  if (topics.length === 0) throw new ConfigError("a sub-topology reads no input topic", [{ path: ["topics"], code: "no_topics", message: "no input topic" }]);
  const missing = topics.filter((t) => !partitionCounts.has(t));
  if (missing.length > 0) {
    throw new ConfigError(`input topic${missing.length > 1 ? "s" : ""} ${missing.map((t) => `"${t}"`).join(", ")} not found in the cluster metadata; create ${missing.length > 1 ? "them" : "it"} first`, missing.map((t) => ({ path: ["topics", t], code: "unknown_topic", message: "not in the metadata" })));
  }
  const counts = topics.map((t) => [t, partitionCounts.get(t)!] as const);
  const first = counts[0]![1];
  if (counts.every(([, c]) => c === first)) return first;
  const list = counts.map(([t, c]) => `"${t}" has ${c} partition${c === 1 ? "" : "s"}`).join(", ");
  throw new ConfigError(
    `co-partitioned input topics need equal partition counts, but ${list}: partition p of each is read by the same task; give them the same number of partitions, or repartition one of them with keyBy`,
    counts.map(([t, c]) => ({ path: ["topics", t], code: "partition_count", message: `${c} partitions` })),
  );
}

/**
 * A changelog topic as found on the broker: its `cleanup.policy` must include `compact` (else old state
 * values would be deleted after the retention time, and a restore would lose keys), and, when given, its
 * partition count must be the number of tasks of its sub-topology.
 */
export function checkChangelogTopic(topic: string, config: ReadonlyMap<string, string>, partitions?: { readonly actual: number; readonly expected: number }): void {
  const policy = config.get("cleanup.policy");
  const policies = (policy ?? "delete").split(",").map((p) => p.trim());
  if (!policies.includes("compact")) {
    throw new ConfigError(
      `changelog topic "${topic}" has cleanup.policy=${policy ?? "delete (the default)"}, but a changelog must be compacted: Kafka would delete state older than the topic's retention, and a restore would miss it. Set cleanup.policy=compact on it (kafka-configs --alter --entity-type topics --entity-name ${topic} --add-config cleanup.policy=compact), or delete it so the job creates it`,
      [{ path: ["changelog", topic, "cleanup.policy"], code: "not_compacted", message: `cleanup.policy=${policy ?? "delete"}` }],
    );
  }
  if (partitions !== undefined && partitions.actual !== partitions.expected) {
    throw new ConfigError(
      `changelog topic "${topic}" has ${partitions.actual} partition${partitions.actual === 1 ? "" : "s"}, but its sub-topology has ${partitions.expected} task${partitions.expected === 1 ? "" : "s"} (one changelog partition each): the input topics' partition counts changed since it was created; delete the changelog topic (its state is lost) or restore the partition counts`,
      [{ path: ["changelog", topic, "partitions"], code: "partition_count", message: `${partitions.actual} ≠ ${partitions.expected}` }],
    );
  }
}

/** A source of the job, as the runtime knows it: its name and its kind ("kafka", "nats", "http", "websocket", "file", ...). */
export interface ScaleOutSourceInfo {
  readonly name: string;
  readonly kind: string;
  /** A bounded Kafka source (`bounded: true`). */
  readonly bounded?: boolean;
}

/**
 * Every source of a scale-out job must be a Kafka source: a task reads partition p of its topics, and no other
 * source can be split that way (each worker would read all of a NATS subject, a file, or an HTTP endpoint).
 * A ConfigError naming each other source and its kind, pointing to ingestion into Kafka.
 */
export function checkScaleOutSources(sources: readonly ScaleOutSourceInfo[]): void {
  const others = sources.filter((s) => s.kind !== "kafka");
  const bounded = sources.filter((s) => s.kind === "kafka" && s.bounded === true);
  if (others.length === 0 && bounded.length > 0) {
    // Its tasks would end one by one, each at the end offsets its current owner saw, and the job would not.
    const list = bounded.map((s) => `"${s.name}"`).join(", ");
    throw new ConfigError(
      `a scale-out job runs until it is stopped, but Kafka source${bounded.length > 1 ? "s" : ""} ${list} ${bounded.length > 1 ? "are" : "is"} bounded (bounded: true): a scale-out job does not end when its input does; run a bounded job in single-process mode, or drop bounded and stop the workers when the input is read (gress status shows each task's lag)`,
      bounded.map((s) => ({ path: ["sources", s.name, "bounded"], code: "not_supported", message: "bounded source in scale-out mode" })),
    );
  }
  if (others.length === 0) return;
  const list = others.map((s) => `"${s.name}" (${s.kind})`).join(", ");
  throw new ConfigError(
    `a scale-out job reads only Kafka topics, but source${others.length > 1 ? "s" : ""} ${list} ${others.length > 1 ? "are" : "is"} not Kafka: ingest into a Kafka topic first (a single-process job from the source to a Kafka sink), then read that topic in the scale-out job; or run this job in single-process mode`,
    others.map((s) => ({ path: ["sources", s.name], code: "not_partitionable", message: `${s.kind} source in scale-out mode` })),
  );
}

/**
 * A repartition topic as found on the broker: it must have one partition per task (the input topics' count),
 * since task p reads partition p and upstream tasks write `murmur2(key) % P`; and it must not be compacted
 * (compaction would drop all but the last record of a key, and the watermark records, which have no key).
 */
export function checkRepartitionTopic(topic: string, config: ReadonlyMap<string, string>, partitions: { readonly actual: number; readonly expected: number }): void {
  if (partitions.actual !== partitions.expected) {
    throw new ConfigError(
      `repartition topic "${topic}" has ${partitions.actual} partition${partitions.actual === 1 ? "" : "s"}, but the job's input topics have ${partitions.expected} (one task per partition, and task p reads partition p of the repartition topic): the input topics changed since it was created, or another job uses the name; delete the topic (it holds only records in transit) or use another job name`,
      [{ path: ["repartition", topic, "partitions"], code: "partition_count", message: `${partitions.actual} ≠ ${partitions.expected}` }],
    );
  }
  const policy = config.get("cleanup.policy") ?? "delete";
  if (policy.split(",").map((p) => p.trim()).includes("compact")) {
    throw new ConfigError(
      `repartition topic "${topic}" has cleanup.policy=${policy}, but a repartition topic must not be compacted: compaction keeps only the last record per key, so records in transit would be lost; set cleanup.policy=delete on it, or delete it so the job creates it`,
      [{ path: ["repartition", topic, "cleanup.policy"], code: "compacted", message: `cleanup.policy=${policy}` }],
    );
  }
}
