/**
 * A scale-out worker (docs/SCALE-OUT.md, section 3): one process's share of a job that runs as a Kafka
 * consumer group. Every worker of the job runs the same pipeline function; the group decides which tasks
 * (input partitions) each one runs.
 *
 * - **At start** the pipeline is built once on a probe Job (never run) to learn its Kafka sources and operators:
 *   every source must be a Kafka source, and the input topics must have equal partition counts P (task p owns
 *   partition p of each). The topology fingerprint covers the operators, the sources and the partition counts.
 *   The changelog topic `gress-<job>-0-changelog` (P partitions, compacted) is created, or checked.
 * - **One group consumer** (group `gress-<job>`, or `group`) subscribes to the input topics with the task
 *   assignor (lib/scaleout/assignor.ts: whole tasks, balanced, sticky) and routes each fetched batch to the
 *   task that owns its partition.
 * - **Rebalances** are handled by comparing the new assignment with the tasks running: revoked tasks stop,
 *   added tasks start (fence, restore, run), unchanged tasks carry on (their sources seek to their own
 *   positions again). Repeated assignments change nothing. Assignments are applied one at a time, the latest
 *   wins.
 * - **A task that migrated** (its commit fenced, or refused for an older generation) is closed without failing
 *   the worker; it starts again (restored from the changelog) only when a later assignment gives it to this
 *   worker, or at once when its commit was refused for an older group generation and the latest assignment,
 *   of a newer generation, still gives it here. Any other task failure stops the worker with that error.
 * - **Shuffles.** Each `keyBy` not declared `copartitioned` writes through a repartition topic
 *   `gress-<job>-<n>-repartition` (lib/scaleout/shuffle-io.ts), created here with P partitions
 *   (cleanup.policy=delete, retention.ms=-1: records go only when the task that reads them has committed past
 *   them, deleted by its RepartitionPurger; a time limit would delete what a stopped task has not read yet);
 *   the group consumer subscribes to it too, and task p reads its partition p.
 * - **Before a rebalance** (the assignor's `beforeRejoin`, run by the client right before it joins the group again)
 *   the worker pauses its tasks' input and takes one checkpoint of every running task, in its transaction,
 *   without stopping it; only then does its JoinGroup go out. Under the eager protocol nobody else owns these
 *   tasks yet, so nothing races those commits, and a task that moves starts on its new owner from the work
 *   done up to the rebalance, as Kafka Streams commits in onPartitionsRevoked. The wait is bounded (half the
 *   session timeout, at most 5 s): after it the worker rejoins anyway and says so. A checkpoint refused there
 *   (fenced by a new owner) ends its task as "migrated", as a periodic one does. A worker that the group
 *   dropped already (no member id: session or rebalance timeout, UNKNOWN_MEMBER_ID) takes no checkpoint, as
 *   Kafka Streams commits nothing in onPartitionsLost: its tasks may be another member's by now. After the
 *   assignment, kept tasks read on and revoked tasks stop without another checkpoint.
 * - **Stop.** A task stopped with the worker (SIGTERM, `stop()`) first takes a final checkpoint (Job.stop, at most
 *   5 s), so that its next owner does not replay the last interval. A revoked task stops without one: its
 *   checkpoint was taken before the rebalance, and the revocation arrives with the new assignment, when the
 *   new owner is already starting it (see #stopTask).
 * - **Static membership** (`instanceId`, KIP-345, @platformatic/kafka only): the group consumer joins with that
 *   `group.instance.id`. A worker killed and started again with the same id within the session timeout takes its
 *   old place and its tasks back at once, with no rebalance (its tasks fence their transactional ids and restore
 *   as after any move, which also fences a frozen old incarnation). A worker whose id another worker took
 *   (FENCED_INSTANCE_ID: a duplicate, or the old incarnation waking up) fails with an error naming the id and
 *   stops its tasks without a last checkpoint (they belong to the other worker now). `stop()` leaves the group
 *   (the tasks move at once) unless given `{ leaveGroup: false }`, which keeps the place until the session
 *   timeout for a restart.
 * @module
 */
import type { GroupAssignor, KafkaClient, KafkaConsumer, TopicPartition } from "../../connectors/kafka/client.ts";
import { defaultKafkaClient, type KafkaClientName, resolveKafkaClient } from "../../connectors/kafka/default-client.ts";
import { isUnknownTopicError } from "../../connectors/kafka/errors.ts";
import { ConfigError, SourceError } from "../errors.ts";
import { assignTasks, encodeSubscription, taskId, tasksFor } from "./assignor.ts";
import { checkChangelogTopic, checkCopartitioned, checkRepartitionTopic, checkScaleOutSources } from "./config-checks.ts";
import { type TopologyFingerprint, topologyFingerprint } from "./fingerprint.ts";
import { REPARTITION_PURGE_INTERVAL_MS } from "./shuffle-io.ts";
import { kafkajsStatusSender, StatusPublisher, type TaskStatusRecord } from "./status.ts";
import { type BuildPipeline, isGroupGenerationError, isMigrationError, Task, TaskJob } from "./task.ts";
import { kafkaTopicsOf, scaleOutSourceInfo } from "./task-io.ts";
import { settledWithin } from "./wait.ts";

/**
 * Options of {@link runScaledOut}.
 *
 * @example
 * ```ts
 * import { type ScaleOutOptions } from "gress/kafka";
 *
 * const options: ScaleOutOptions = {
 *   name: "orders",
 *   kafka: { brokers: ["localhost:9092"], client: "platformatic" },
 *   state: "state",
 *   checkpoints: { intervalMs: 1_000 },
 * };
 * ```
 */
export interface ScaleOutOptions {
  /** The job name: every worker of the job uses the same. Names the group, the changelog and the transactional ids. */
  readonly name: string;
  /** The brokers (and which client: @platformatic/kafka by default, or "kafkajs"), or a KafkaClient to use. */
  readonly kafka: { readonly brokers: readonly string[]; readonly client?: KafkaClientName } | KafkaClient;
  /** This worker's state directory: a task's LMDB environment is `<state>/<name>/<task>/`. */
  readonly state: string;
  /** Each task's checkpoints. Default interval 1 000 ms (a rebalance replays at most one interval). */
  readonly checkpoints?: { readonly intervalMs?: number; readonly timeoutMs?: number };
  /** The consumer group. Default `gress-<name>`. */
  readonly group?: string;
  /** Group session timeout: how soon a dead worker's tasks move. Default 10 000 (the broker's minimum is usually 6 000). */
  readonly sessionTimeoutMs?: number;
  /**
   * Static membership: this worker's `group.instance.id` (KIP-345), unique among the job's live workers, the
   * same across its restarts (`gress run --workers` gives `<job>-<host>-<index>`). A worker that comes back with
   * it within the session timeout gets its tasks back at once, without a rebalance. Non-empty, no whitespace;
   * @platformatic/kafka only (kafkajs has no static membership: a ConfigError). Default: none (a dynamic member).
   */
  readonly instanceId?: string;
  /** The broker aborts a task transaction open longer than this. Default 60 000. */
  readonly transactionTimeoutMs?: number;
  /** LMDB map size per task, in bytes. Default 1 GiB. */
  readonly mapSize?: number;
  /**
   * How often (at most) each task deletes the repartition records it has consumed and committed
   * (DeleteRecords, as Kafka Streams' `repartition.purge.interval.ms`), in ms. Default 30 000.
   */
  readonly repartitionPurgeIntervalMs?: number;
  /**
   * How often the worker writes a status record per task to `gress-<name>-status` (what `gress status` shows),
   * in ms; it also writes one when a task started and before each rejoin of the group. Default 1 000.
   */
  readonly statusIntervalMs?: number;
  /** Where the worker logs tasks starting, stopping and moving. Default: console.error. */
  readonly log?: (message: string) => void;
}

/**
 * A running worker.
 *
 * @example
 * ```ts
 * import { type ScaleOutWorker, runScaledOut } from "gress/kafka";
 *
 * const worker: ScaleOutWorker = runScaledOut({ name: "copy", kafka: { brokers: ["localhost:9092"] }, state: "state" }, () => {});
 * await worker.started;
 * console.log(worker.tasks); // e.g. ["0_0", "0_2"]
 * await worker.stop();
 * ```
 */
export interface ScaleOutWorker {
  /** Resolves once the worker has joined its group (rejects if it could not start). */
  readonly started: Promise<void>;
  /** Settles when the worker has stopped: resolves after stop(), rejects when a task failed. */
  readonly done: Promise<void>;
  /** The tasks running on this worker now. */
  readonly tasks: readonly string[];
  /** Assignments received so far. */
  readonly rebalances: number;
  /** Each running task's status now: state, restore, watermark, records, last checkpoint (lib/scaleout/status.ts). */
  readonly taskStatus: readonly TaskStatusRecord[];
  /**
   * Stops every task, each after a final checkpoint (when it can still commit one), and leaves the group, so
   * that the tasks move at once. With an `instanceId`, `{ leaveGroup: false }` keeps this worker's place and
   * tasks in the group until the session timeout, for a restart with the same id (no rebalance).
   */
  stop(options?: { readonly leaveGroup?: boolean }): Promise<void>;
}

interface Plan {
  /** The input topics and the repartition topics: a task owns partition p of each. */
  readonly topics: readonly string[];
  readonly partitions: number;
  readonly topology: TopologyFingerprint;
  readonly changelogTopic: string;
}

/** Runs `f` again (for up to 10 s) while the broker says a partition has no leader yet (a topic just created). */
async function settled<R>(f: () => Promise<R>): Promise<R> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await f();
    } catch (err) {
      const text = `${(err as { type?: unknown })?.type ?? ""} ${err instanceof Error ? err.message : String(err)}`;
      if (Date.now() > deadline || !/LEADER|leader|UNKNOWN_TOPIC|does not host this topic/.test(text)) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const key = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;
/** #beforeRejoin does not checkpoint the same paused tasks again within this long (the client retrying its JoinGroup). */
const REJOIN_CHECKPOINT_REUSE_MS = 1000;
/** #beforeRejoin's paused tasks still without an assignment after this long (or the session timeout, if longer) are logged. */
const HELD_WARNING_MS = 30_000;
/** #beforeRejoin waits at most this long (and within its budget) for its tasks' status records to be sent. */
const STATUS_BEFORE_REJOIN_MS = 1000;

/** An instance id is non-empty without whitespace (as Kafka's), and needs a client with static membership. */
function checkInstanceId(o: ScaleOutOptions, client: KafkaClientName | undefined): void {
  const id = o.instanceId;
  if (typeof id !== "string" || !/^\S+$/.test(id)) {
    const message = `must be a non-empty string without whitespace, got ${JSON.stringify(id)}`;
    throw new ConfigError(`scale-out job "${o.name}": instanceId ${message}`, [{ path: ["instanceId"], code: "invalid", message }]);
  }
  if (client === "kafkajs") {
    const message = "kafkajs has no static membership (group.instance.id); use the @platformatic/kafka client or leave instanceId out";
    throw new ConfigError(`scale-out job "${o.name}": instanceId "${id}": ${message}`, [{ path: ["instanceId"], code: "not_supported", message }]);
  }
}

/**
 * Runs one worker of a scale-out job: `build` is the pipeline function (a pipeline module's default export),
 * called once per task on that task's Job. Start the same on as many processes or machines as you like, with
 * the same name: they share the input partitions, each task's state moves with it, and the output stays
 * exactly-once across kills and rebalances. Every source must be a Kafka source; Kafka sinks write in the
 * task's transaction.
 *
 * @example
 * ```ts
 * import type { Job } from "gress";
 * import { kafkaSink, kafkaSource, runScaledOut } from "gress/kafka";
 *
 * type Order = { customer: string; amount: number };
 * // Input keyed by customer (declared copartitioned: no shuffle): the per-customer total lives in the task
 * // that owns the customer's partition. Without the declaration the keyBy goes through a repartition topic.
 * const pipeline = (job: Job) =>
 *   job
 *     .source(kafkaSource<Order>({ name: "orders", brokers: ["localhost:9092"], topics: ["orders"], groupId: "totals" }))
 *     .keyBy((o) => o.customer, { copartitioned: true })
 *     .process<{ customer: string; total: number }>({
 *       processElement(o, ctx) {
 *         const total = ctx.state.value<number>("total");
 *         total.update((total.value() ?? 0) + o.amount);
 *         ctx.emit({ customer: o.customer, total: total.value() ?? 0 });
 *       },
 *     })
 *     .sinkTo(kafkaSink({ name: "totals", brokers: ["localhost:9092"], topic: "totals", key: (t) => t.customer }));
 *
 * const worker = runScaledOut({ name: "totals", kafka: { brokers: ["localhost:9092"] }, state: "state", checkpoints: { intervalMs: 1_000 } }, pipeline);
 * process.once("SIGTERM", () => void worker.stop());
 * await worker.done;
 * ```
 */
export function runScaledOut(options: ScaleOutOptions, build: BuildPipeline): ScaleOutWorker {
  return new Worker(options, build).handle();
}

class Worker {
  readonly #o: ScaleOutOptions;
  readonly #build: BuildPipeline;
  readonly #log: (m: string) => void;
  readonly #client: KafkaClient;
  readonly #ownClient: boolean;
  readonly #group: string;
  readonly #tasks = new Map<string, Task>();
  /** Partition key → the task that owns it. */
  readonly #byPartition = new Map<string, Task>();
  #consumer: KafkaConsumer | undefined;
  #plan: Plan | undefined;
  /** Each task's status, written to `gress-<job>-status` (lib/scaleout/status.ts) when the worker has brokers, not a given client. */
  #status: StatusPublisher | undefined;
  #wanted = new Set<string>();
  /** The tasks whose input #beforeRejoin paused, until the next assignment. */
  #held = new Set<Task>();
  /** Says so if no assignment comes after #beforeRejoin paused tasks (cleared at each assignment). */
  #heldWatch: ReturnType<typeof setTimeout> | undefined;
  /** The last checkpoint #beforeRejoin took of all the tasks it paused: when it ended, and of which tasks. */
  #rejoinCheckpoint: { readonly at: number; readonly tasks: ReadonlySet<Task> } | undefined;
  #applying: Promise<void> = Promise.resolve();
  #rebalances = 0;
  /** The group generation of the latest assignment. */
  #generation = -1;
  #stopped = false;
  /** Another worker took this one's group instance id: its tasks are that worker's now. */
  #fencedOut = false;
  #failure: unknown;
  #stopping: Promise<void> | undefined;
  #resolveDone!: () => void;
  #rejectDone!: (e: unknown) => void;
  readonly done: Promise<void>;
  readonly started: Promise<void>;

  constructor(o: ScaleOutOptions, build: BuildPipeline) {
    const purge = o.repartitionPurgeIntervalMs;
    if (purge !== undefined && !(typeof purge === "number" && Number.isFinite(purge) && purge >= 0)) {
      const message = `must be a number of ms >= 0, got ${String(purge)}`;
      throw new ConfigError(`scale-out job "${o.name}": repartitionPurgeIntervalMs ${message}`, [{ path: ["repartitionPurgeIntervalMs"], code: "invalid", message }]);
    }
    const status = o.statusIntervalMs;
    if (status !== undefined && !(typeof status === "number" && Number.isFinite(status) && status > 0)) {
      const message = `must be a number of ms > 0, got ${String(status)}`;
      throw new ConfigError(`scale-out job "${o.name}": statusIntervalMs ${message}`, [{ path: ["statusIntervalMs"], code: "invalid", message }]);
    }
    this.#o = o;
    this.#build = build;
    this.#log = o.log ?? ((m) => console.error(`gress: ${m}`));
    const k = o.kafka;
    if ("consumer" in k) {
      this.#client = k;
      this.#ownClient = false;
    } else {
      this.#client = resolveKafkaClient(k.brokers, `gress-${o.name}`, k.client);
      this.#ownClient = true;
    }
    this.#group = o.group ?? `gress-${o.name}`;
    if (o.instanceId !== undefined) checkInstanceId(o, "consumer" in k ? undefined : (k.client ?? defaultKafkaClient()));
    this.done = new Promise<void>((res, rej) => {
      this.#resolveDone = res;
      this.#rejectDone = rej;
    });
    this.done.catch(() => undefined);
    this.started = this.#start();
    this.started.catch((err: unknown) => this.#fail(err));
  }

  handle(): ScaleOutWorker {
    const self = this;
    return {
      started: this.started,
      done: this.done,
      get tasks() {
        return [...self.#tasks.keys()].sort();
      },
      get rebalances() {
        return self.#rebalances;
      },
      get taskStatus() {
        return self.#status?.current() ?? [];
      },
      stop: (options) => this.stop(options),
    };
  }

  /** Builds the pipeline once on a probe job: its sources, topics and operators. */
  async #probe(): Promise<Plan> {
    const probe = new TaskJob({ name: this.#o.name }, undefined, { job: this.#o.name, client: this.#client, runtime: undefined });
    await this.#build(probe);
    const sources = probe.givenSources.map((s) => ({ source: s, topics: kafkaTopicsOf(s) }));
    checkScaleOutSources(sources.map((s) => scaleOutSourceInfo(s.source, "not Kafka")));
    const shuffleTopics = new Set(probe.shuffles.map((s) => s.topic));
    const inputs = [...new Set(sources.flatMap((s) => s.topics ?? []))].filter((t) => !shuffleTopics.has(t)).sort();
    const counts = new Map<string, number>();
    for (const t of inputs) {
      const ends = await this.#client.endOffsets(t).catch((err: unknown) => {
        // A topic the brokers do not know is reported below as missing; anything else (brokers that cannot be
        // reached, say) is not about the topic, and says what it is.
        if (isUnknownTopicError(err)) return undefined;
        throw new SourceError(`scale-out job "${this.#o.name}": cannot read the partitions of input topic "${t}" from the brokers: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      });
      if (ends !== undefined && ends.size > 0) counts.set(t, ends.size);
    }
    const partitions = checkCopartitioned(inputs, counts);
    // Each repartition topic has as many partitions as the inputs: task p owns partition p of it too.
    for (const topic of shuffleTopics) {
      // Kept until consumed (retention.ms=-1; the tasks delete what they committed), in segments small and
      // young enough that a purge frees disk soon (Kafka Streams' repartition topic settings).
      await this.#client.createTopic(topic, partitions, {
        replicationFactor: -1,
        config: { "cleanup.policy": "delete", "retention.ms": "-1", "segment.bytes": String(50 * 1024 * 1024), "segment.ms": "600000" },
      });
      const actual = (await settled(() => this.#client.endOffsets(topic))).size;
      const config = await this.#client.topicConfig(topic);
      checkRepartitionTopic(topic, config, { actual, expected: partitions });
      // A topic made before (by an older Gress, or by hand) may delete records by age or size, also ones a
      // stopped task has not read yet. Not refused, so that such a job still starts; said once per start.
      const retention = [`retention.ms=${config.get("retention.ms") ?? "-1"}`, `retention.bytes=${config.get("retention.bytes") ?? "-1"}`].filter((c) => !c.endsWith("=-1"));
      if (retention.length > 0) {
        this.#log(
          `repartition topic "${topic}" has ${retention.join(" and ")}: records a stopped or slow task has not read yet can be deleted (lost); set them to -1 (kafka-configs --alter --entity-type topics --entity-name ${topic} --add-config retention.ms=-1,retention.bytes=-1). Gress deletes consumed records itself.`,
        );
      }
    }
    const topics = [...inputs, ...shuffleTopics].sort();
    const topology = topologyFingerprint({
      operators: probe.operators,
      sources: sources.map((s) => ({ name: s.source.name, topics: s.topics ?? [] })),
      shuffles: probe.shuffles.map((s) => ({ operator: s.operator, topic: s.topic, partitions })),
      partitions: counts,
    });
    const changelogTopic = `gress-${this.#o.name}-0-changelog`;
    await this.#client.createTopic(changelogTopic, partitions, { replicationFactor: -1, config: { "cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.bytes": String(64 * 1024 * 1024) } });
    // Another worker may have created it a moment ago: its partitions can still be without a leader.
    const actual = (await settled(() => this.#client.endOffsets(changelogTopic))).size;
    checkChangelogTopic(changelogTopic, await this.#client.topicConfig(changelogTopic), { actual, expected: partitions });
    return { topics, partitions, topology, changelogTopic };
  }

  async #start(): Promise<void> {
    const plan = await this.#probe();
    this.#plan = plan;
    if (this.#stopped) return;
    const k = this.#o.kafka;
    const sender = "consumer" in k ? undefined : kafkajsStatusSender(k.brokers, `gress-${this.#o.name}-status`);
    this.#status = new StatusPublisher({ job: this.#o.name, client: this.#client, sender, tasks: () => this.#tasks.values(), member: () => this.#consumer?.groupMetadata()?.memberId, log: this.#log, ...(this.#o.statusIntervalMs === undefined ? {} : { intervalMs: this.#o.statusIntervalMs }) });
    this.#status.start();
    const assignor: GroupAssignor = {
      name: "gress-tasks",
      userData: () => encodeSubscription({ v: 1, topology: plan.topology.fingerprint, tasks: {}, owned: [...this.#tasks.keys()] }),
      beforeRejoin: () => this.#beforeRejoin(),
      assign: (members, partitions) => assignTasks({ topology: plan.topology.fingerprint, members, tasks: tasksFor([{ id: 0, topics: plan.topics }], partitions) }).partitions,
    };
    const consumer = this.#client.consumer({
      groupId: this.#group,
      topics: plan.topics,
      fromBeginning: true,
      readCommitted: true,
      sessionTimeoutMs: this.#o.sessionTimeoutMs ?? 10_000,
      assignor,
      ...(this.#o.instanceId === undefined ? {} : { groupInstanceId: this.#o.instanceId }),
    });
    this.#consumer = consumer;
    // Another worker took this one's instance id: it owns the place and these tasks now; this one must not loop.
    consumer.onFailure?.((err, kind) => {
      if (kind !== "fenced") {
        // Records the consumer cannot read (a codec this runtime lacks, a corrupt batch): fetching again would not help.
        this.#fail(new SourceError(`scale-out job "${this.#o.name}": ${err.message}`, { cause: err }));
        return;
      }
      this.#fencedOut = true;
      this.#fail(
        new ConfigError(
          `scale-out job "${this.#o.name}": another worker joined group "${this.#group}" with this worker's instance id "${this.#o.instanceId}" and took its place (FENCED_INSTANCE_ID). Each live worker needs its own instanceId; this one stops (a restarted worker with the same id replaces the old one, which then stops like this).`,
          [{ path: ["instanceId"], code: "duplicate", message: `instance id "${this.#o.instanceId}" is used by another live worker` }],
          { cause: err },
        ),
      );
    });
    consumer.onRebalance((r) => {
      this.#rebalances++;
      this.#generation = r.generation;
      this.#log(`worker of "${this.#o.name}": group generation ${r.generation}, ${r.assigned.length} partitions (+${r.added.length} -${r.revoked.length})${this.#o.instanceId === undefined ? "" : `, instance id ${this.#o.instanceId}`}`);
      // Nothing is read from a partition until its task is ready.
      consumer.pausePartitions(r.added);
      // The tasks paused before the rejoin that the group kept here read on now, not only once the assignment
      // is applied (which may wait behind another task's restore).
      const held = this.#held;
      this.#held = new Set();
      clearTimeout(this.#heldWatch);
      const assigned = new Set(r.assigned.map(key));
      for (const t of held) if (this.#tasks.get(t.id) === t && t.partitions.every((tp) => assigned.has(key(tp)))) t.reassigned();
      this.#wanted = new Set(r.assigned.map((tp) => taskId(0, tp.partition)));
      this.#apply();
    });
    consumer.onPositionAdvanced((t) => this.#byPartition.get(key(t))?.routedFor(t.topic)?.advanced(t));
    await consumer.start(async (batch) => {
      const task = this.#byPartition.get(key(batch));
      const handler = task?.routedFor(batch.topic)?.handler;
      const first = batch.messages[0]?.offset ?? 0;
      if (handler === undefined) {
        // Its task is not (or no longer) running here: stop fetching it until a task takes it.
        consumer.pausePartitions([{ topic: batch.topic, partition: batch.partition }]);
        return first;
      }
      return handler(batch);
    });
  }

  /**
   * Before the group consumer joins the group again: pauses every running task's input and checkpoints each
   * in its transaction (they keep running), waiting at most half the session timeout (5 s at most), so that
   * the JoinGroup still goes out in time. A moved task's next owner then starts from this checkpoint. Then each
   * task's status record (lib/scaleout/status.ts) as handed over, sent before the JoinGroup (1 s at most). Nothing
   * is checkpointed when the group dropped this member (its tasks may be another member's already), nor again
   * when a checkpoint of the same tasks ended less than a second ago (the client retries a failed JoinGroup,
   * running this before each attempt, and the tasks have read nothing since: they are still paused).
   */
  async #beforeRejoin(): Promise<void> {
    const consumer = this.#consumer;
    if (consumer === undefined || this.#stopped) return;
    const tasks = [...this.#tasks.values()].filter((t) => t.running);
    if (tasks.length === 0) return;
    if (consumer.groupMetadata() === undefined) {
      // Both adapters clear the member id when the coordinator does not know this member (UNKNOWN_MEMBER_ID,
      // FENCED_INSTANCE_ID): a commit now would carry no generation the broker can check, for tasks the group
      // may have given to another member. Only the producer fence would stop it. The tasks run on uncommitted
      // until the assignment, as they would with no rebalance: kept ones carry on, revoked ones stop.
      this.#log(`worker of "${this.#o.name}" rejoins its group without checkpointing its tasks: the group dropped it (no member id), so they may be another member's (${tasks.map((t) => t.id).join(", ")})`);
      return;
    }
    const last = this.#rejoinCheckpoint;
    if (last !== undefined && performance.now() - last.at < REJOIN_CHECKPOINT_REUSE_MS && tasks.every((t) => last.tasks.has(t) && this.#held.has(t))) {
      this.#log(`worker of "${this.#o.name}" rejoins its group again ${(performance.now() - last.at).toFixed(0)} ms after checkpointing its tasks, still paused: no new checkpoint`);
      return;
    }
    // Nothing more is read until the assignment: kept tasks resume then (onRebalance), revoked ones stop.
    for (const t of tasks) this.#held.add(t);
    consumer.pausePartitions(tasks.flatMap((t) => t.partitions));
    this.#watchHeld();
    const waitMs = Math.min(5000, Math.floor((this.#o.sessionTimeoutMs ?? 10_000) / 2));
    const began = performance.now();
    const outcome = new Map<string, string>();
    let failed = false;
    const all = Promise.all(
      tasks.map((t) =>
        t.checkpoint().then(
          (id) => void outcome.set(t.id, id === undefined ? "not running" : `checkpoint ${id}`),
          // The task ends as its periodic checkpoints' failures end it (Task.checkpoint): migrated, or the worker fails.
          (err: unknown) => {
            failed = true;
            outcome.set(t.id, `no checkpoint (${err instanceof Error ? err.message : String(err)})`);
          },
        ),
      ),
    );
    const inTime = await settledWithin(all, waitMs);
    if (inTime && !failed) this.#rejoinCheckpoint = { at: performance.now(), tasks: new Set(tasks) };
    // The tasks as they are handed over (paused, checkpointed), on the status topic before the JoinGroup, so
    // before any record of a moved task's next owner; within what is left of the wait (1 s at most).
    await this.#status?.publishAndWait(Math.min(STATUS_BEFORE_REJOIN_MS, Math.max(0, waitMs - (performance.now() - began))));
    const list = tasks.map((t) => `task ${t.id}: ${outcome.get(t.id) ?? "checkpoint still under way"}`).join("; ");
    this.#log(
      inTime
        ? `worker of "${this.#o.name}" rejoins its group after checkpointing its tasks in ${(performance.now() - began).toFixed(0)} ms: ${list}`
        : `worker of "${this.#o.name}" rejoins its group without all its tasks' checkpoints, after waiting ${waitMs} ms (a later JoinGroup would risk the group dropping it): ${list}`,
    );
  }

  /**
   * Logs once if the tasks #beforeRejoin paused are still waiting for an assignment after a while: the rejoin
   * did not succeed (the client keeps trying, or gave up), and they read nothing until one comes.
   */
  #watchHeld(): void {
    clearTimeout(this.#heldWatch);
    const afterMs = Math.max(HELD_WARNING_MS, this.#o.sessionTimeoutMs ?? 10_000);
    this.#heldWatch = setTimeout(() => {
      if (this.#stopped || this.#held.size === 0) return;
      this.#log(
        `worker of "${this.#o.name}": no group assignment ${afterMs} ms after rejoining; tasks ${[...this.#held].map((t) => t.id).join(", ")} stay paused until one comes`,
      );
    }, afterMs);
    (this.#heldWatch as { unref?: () => void }).unref?.();
  }

  /** Applies the latest assignment (one application at a time; a newer assignment is applied after it). */
  #apply(): void {
    this.#applying = this.#applying.then(() => this.#reconcile()).catch((err: unknown) => this.#fail(err));
  }

  async #reconcile(): Promise<void> {
    const plan = this.#plan;
    if (plan === undefined || this.#stopped) return;
    const wanted = this.#wanted;
    const revoked = [...this.#tasks.keys()].filter((id) => !wanted.has(id));
    const added = [...wanted].filter((id) => !this.#tasks.has(id)).sort();
    const unchanged = [...this.#tasks.values()].filter((t) => wanted.has(t.id));
    for (const t of unchanged) t.reassigned();
    if (revoked.length > 0 || added.length > 0) this.#log(`worker of "${this.#o.name}": assignment ${this.#rebalances}: +[${added.join(", ")}] -[${revoked.join(", ")}] =[${unchanged.map((t) => t.id).join(", ")}]`);
    await Promise.all(revoked.map((id) => this.#stopTask(id, "revoked")));
    await Promise.all(added.map((id) => this.#startTask(id, plan)));
  }

  async #stopTask(id: string, why: string): Promise<void> {
    const task = this.#tasks.get(id);
    if (task === undefined) return;
    this.#tasks.delete(id);
    for (const tp of task.partitions) if (this.#byPartition.get(key(tp)) === task) this.#byPartition.delete(key(tp));
    // The worker stopping (it still owns its tasks, nobody else runs them): a last checkpoint first, so the next
    // owner does not replay the last interval. Not on a revocation: its checkpoint was taken before the rejoin
    // (#beforeRejoin), and the revocation arrives with the new assignment, when the new owner is already
    // starting the task; a last checkpoint here raced its fence and stalled the revoking worker's assignments in
    // CI (1f3c903, the SIGSTOP test of scaleout-workers). Migrated or restarting: fenced or refused already.
    await task.stop(why === "worker stopping");
    this.#log(`task ${id} stopped (${why})`);
  }

  async #startTask(id: string, plan: Plan): Promise<void> {
    const consumer = this.#consumer;
    if (consumer === undefined || this.#stopped) return;
    const partition = Number(id.split("_")[1]);
    const task = new Task({
      job: this.#o.name,
      taskId: id,
      partition,
      partitions: plan.partitions,
      topics: plan.topics,
      stateDir: this.#o.state,
      client: this.#client,
      consumer,
      groupId: this.#group,
      changelogTopic: plan.changelogTopic,
      topology: plan.topology,
      intervalMs: this.#o.checkpoints?.intervalMs ?? 1000,
      ...(this.#o.checkpoints?.timeoutMs === undefined ? {} : { checkpointTimeoutMs: this.#o.checkpoints.timeoutMs }),
      transactionTimeoutMs: this.#o.transactionTimeoutMs ?? 60_000,
      mapSize: this.#o.mapSize ?? 1024 * 1024 * 1024,
      repartitionPurgeIntervalMs: this.#o.repartitionPurgeIntervalMs ?? REPARTITION_PURGE_INTERVAL_MS,
      build: this.#build,
      log: this.#log,
    });
    this.#tasks.set(id, task);
    for (const tp of task.partitions) this.#byPartition.set(key(tp), task);
    this.#status?.publishSoon();
    try {
      await task.start((err) => this.#taskEnded(task, err));
      this.#status?.publishSoon();
    } catch (err) {
      if (!isMigrationError(err) || this.#stopped) throw err;
      this.#taskEnded(task, err);
    }
  }

  #taskEnded(task: Task, err: unknown): void {
    if (this.#stopped || this.#tasks.get(task.id) !== task) return;
    if (err !== undefined && !isMigrationError(err)) {
      this.#fail(err);
      return;
    }
    // Refused for an older group generation, while the latest assignment (of a newer generation than the commit
    // used) still gives the task here: nobody else owns it, so it starts again at once (fence, restore, resume).
    // Without this it would wait for an assignment that may never come (platformatic, KIP-447: a commit under
    // way while another member left).
    const plan = this.#plan;
    const generation = task.commitGeneration;
    if (isGroupGenerationError(err) && generation !== undefined && this.#generation > generation && this.#wanted.has(task.id) && plan !== undefined) {
      this.#log(`task ${task.id} restarts: its commit under group generation ${generation} was refused, and generation ${this.#generation} assigns it here (${err instanceof Error ? err.message : String(err)})`);
      this.#applying = this.#applying
        .then(async () => {
          await this.#stopTask(task.id, "restarting");
          if (!this.#stopped && this.#wanted.has(task.id) && !this.#tasks.has(task.id)) await this.#startTask(task.id, plan);
        })
        .catch((e: unknown) => this.#fail(e));
      return;
    }
    // Fenced or refused for an older generation: another worker owns it now, or will. Close this incarnation;
    // if the group still gives the task to this worker, start it again from the changelog.
    this.#log(`task ${task.id} migrated: ${err instanceof Error ? err.message : String(err ?? "its input ended")}`);
    // Not started again until the group's next assignment gives it to this worker: the assignment this worker
    // knows is out of date (another member runs the task now), and starting it again would fence that one.
    this.#wanted.delete(task.id);
    this.#applying = this.#applying.then(() => this.#stopTask(task.id, "migrated")).catch((e: unknown) => this.#fail(e));
  }

  /** Stops the worker because of `err` (not awaited: it may be called from the assignment chain that stop() waits for). */
  #fail(err: unknown): void {
    if (this.#stopped) return;
    this.#failure = err;
    this.#log(`worker of "${this.#o.name}" fails: ${err instanceof Error ? err.message : String(err)}`);
    void this.stop().catch(() => undefined);
  }

  stop(options?: { readonly leaveGroup?: boolean }): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      await this.started.catch(() => undefined);
      await this.#applying.catch(() => undefined);
      const stopping = [...this.#tasks.keys()];
      // Fenced out: the worker that took the instance id runs these tasks; a last checkpoint would race its fence.
      await Promise.all(stopping.map((id) => this.#stopTask(id, this.#fencedOut ? "fenced: another worker has this instance id" : "worker stopping")));
      await this.#status?.stop(stopping);
      await this.#consumer?.stop(options);
      if (this.#ownClient) await this.#client.close();
      if (this.#failure === undefined) this.#resolveDone();
      else this.#rejectDone(this.#failure);
    })();
    return this.#stopping;
  }
}
