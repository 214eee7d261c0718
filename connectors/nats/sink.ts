/**
 * JetStream sink: publishes each result as JSON and waits for the stream's acknowledgement, so a resolved
 * write is stored. Every message carries a `Nats-Msg-Id`; the stream drops a second message with the same
 * id within its `duplicate_window`, which turns the replay after a recovery into exactly-once output.
 *
 * The default id is `<idPrefix>:<n>`, `n` counting the sink's writes. `n` is in the checkpoint (the
 * pre-commit handle) and recovery restores it through `commit`, so replayed results get the ids they had
 * before the crash — as long as the pipeline is deterministic between the source and the sink. A run
 * without a checkpoint starts at n = 0, which also deduplicates the replay after a crash before the first
 * checkpoint; so a deliberate fresh start within the stream's duplicate window needs a new `idPrefix`, and so
 * does a restore from a savepoint (a savepoint carries no sink handles: n starts at 0 again).
 * Give `msgId` (a function of the record, e.g. its key and window end) when the pipeline is not
 * deterministic. A restart (close, then open again) counts the same way: from the restored checkpoint's n.
 *
 * In a scale-out task (lib/scaleout) the default ids are per task, `<idPrefix>:<task>:<n>`: each task counts
 * its own writes, and its checkpoint (with `n`) moves with it, so the task's next owner replays its results
 * under the same ids, and the ids of two tasks never meet. A `msgId` function must then give ids that differ
 * between tasks too (a key and a window end do).
 *
 * A value that cannot be published (its subject, body or id function throws, e.g. JSON of a cyclic value) is
 * refused by `write` with a BadRecordError, takes no id, and goes to dead letters.
 *
 * @example
 * ```ts
 * stream.sinkTo(natsJetStreamSink({ name: "alerts", servers: "nats://127.0.0.1:4222", subject: "alerts" }));
 * ```
 * @module
 */
import { type JetStreamClient, jetstream } from "@nats-io/jetstream";
import type { StreamRecord } from "../../lib/element.ts";
import { SinkError } from "../../lib/errors.ts";
import { TASK_SINK, taskIoOf } from "../../lib/scaleout/task-io.ts";
import { encodeRecord, type Sink } from "../../lib/sink.ts";
import { type HeldConnection, holdConnection, type NatsConnectOptions } from "./connection.ts";

/**
 * Options of {@link natsJetStreamSink}.
 *
 * @example
 * ```ts
 * import { type NatsJetStreamSinkOptions, natsJetStreamSink } from "gress/nats";
 *
 * type Alert = { id: string; device: string };
 * // The message id de-duplicates replays in JetStream's window.
 * const options: NatsJetStreamSinkOptions<Alert> = { name: "alerts", servers: "localhost:4222", subject: (a) => `alerts.${a.device}`, msgId: (a) => a.id };
 * const sink = natsJetStreamSink(options);
 * ```
 */
export type NatsJetStreamSinkOptions<T> = NatsConnectOptions & {
  readonly name: string;
  /** Subject to publish to, fixed or per record. It must be bound to a stream. */
  readonly subject: string | ((value: T) => string);
  /**
   * Deduplication id of a record. Default: `<idPrefix>:<ordinal>`, the ordinal checkpointed. `record` is
   * valid during the call only (the job refills the object for the next record): keep its fields, not it.
   */
  readonly msgId?: (value: T, record: StreamRecord<T>) => string;
  /** Prefix of the default ids. Default: the sink name. */
  readonly idPrefix?: string;
  /** Message body. Default: JSON of the value. */
  readonly encode?: (value: T) => Uint8Array;
};

/**
 * Counts of a JetStream sink.
 *
 * @example
 * ```ts
 * import { natsJetStreamSink } from "gress/nats";
 *
 * const sink = natsJetStreamSink<{ id: string }>({ name: "out", servers: "localhost:4222", subject: "out" });
 * // After the run: messages published, and those JetStream reported as duplicates (replays).
 * console.log(sink.counts.published, sink.counts.duplicates);
 * ```
 */
export interface NatsSinkCounts {
  published: number;
  /** Publishes the stream reported as duplicates (dropped by Nats-Msg-Id). */
  duplicates: number;
}

/** The pre-commit handle: where the id sequence stands at the checkpoint. */
interface Handle {
  readonly written: number;
}

/**
 * Creates a JetStream sink.
 * @param options connection, subject, id function
 * @returns the sink; `counts` tells published and deduplicated messages apart
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { natsJetStreamSink } from "gress/nats";
 *
 * type Alert = { device: string; level: string };
 * // Published with a Nats-Msg-Id, so that JetStream drops the duplicates of a replay.
 * fromIterable<Alert>([{ device: "d1", level: "high" }]).sinkTo(
 *   natsJetStreamSink<Alert>({ name: "alerts", servers: "localhost:4222", subject: (a) => `alerts.${a.device}` }),
 * );
 * ```
 */
export function natsJetStreamSink<T>(options: NatsJetStreamSinkOptions<T>): Sink<T> & { readonly counts: NatsSinkCounts; readonly [TASK_SINK]: true } {
  const counts: NatsSinkCounts = { published: 0, duplicates: 0 };
  const enc = new TextEncoder();
  const encode = options.encode ?? ((v: T) => enc.encode(JSON.stringify(v)));
  let held: HeldConnection | undefined;
  let js: JetStreamClient | undefined;
  /** The default ids' prefix: per task in a scale-out task (set at open). */
  let prefix = options.idPrefix ?? options.name;
  const msgIdOf = options.msgId;
  let opening: Promise<HeldConnection> | undefined;
  let written = 0;
  let restored = false;
  return {
    name: options.name,
    counts,
    // Safe in a scale-out task: ids per task (see the module comment).
    [TASK_SINK]: true,
    async open(ctx) {
      const task = taskIoOf(ctx?.jobName);
      prefix = `${options.idPrefix ?? options.name}${task === undefined ? "" : `:${task.taskId}`}`;
      opening = holdConnection(options, options.name);
      const h = await opening;
      opening = undefined;
      held = h;
      js = jetstream(h.nc);
    },
    // write reads the record's fields before it returns and keeps no record object.
    keepsRecords: false,
    write(value, record) {
      const client = js;
      if (client === undefined) return Promise.reject(new SinkError(`NATS sink "${options.name}" is not open`));
      // Synchronously, so that a value that cannot be published throws its BadRecordError from write (and
      // takes no id): the sink operator sends it to dead letters.
      const subject = typeof options.subject === "string" ? options.subject : encodeRecord("subject", options.subject, value);
      const body = encodeRecord("encode", encode, value);
      const msgID = msgIdOf === undefined ? `${prefix}:${written + 1}` : encodeRecord("msgId", (v: T) => msgIdOf(v, record), value);
      written++;
      return client.publish(subject, body, { msgID }).then((ack) => {
        if (ack.duplicate) counts.duplicates++;
        else counts.published++;
      });
    },
    async preCommit(): Promise<Handle> {
      // Writes before the barrier have resolved (the sink operator waits for them): they are stored.
      return { written };
    },
    async commit(_checkpointId, handle) {
      // Called on recovery with the restored checkpoint's handle, before any write of this run: continue
      // that run's id sequence so replayed results keep their ids. Later calls (normal commits) are no-ops.
      const h = handle as Partial<Handle> | undefined;
      if (restored || written > 0 || typeof h?.written !== "number") return;
      restored = true;
      written = h.written;
    },
    async abort() {},
    async close() {
      // A restart opens the sink again: recovery's commit() then restores the restored checkpoint's id
      // sequence, or (no checkpoint yet) the ids start again at 1, as the replay does.
      written = 0;
      restored = false;
      js = undefined;
      // A close during open() releases the connection open() was getting.
      const h = held ?? (await opening?.catch(() => undefined));
      held = undefined;
      await h?.release();
    },
  };
}
