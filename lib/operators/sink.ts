import { DEAD_LETTERS, type Element, record, sideRecord, type StreamRecord } from "../element.ts";
import type { SinkParticipant } from "../checkpoint/coordinator.ts";
import { BadRecordError, ConfigError, isGressError, SinkError } from "../errors.ts";
import type { JobContext, UserErrorPolicy } from "../operator-context.ts";
import { type ChainableOperator, operate } from "../operate.ts";
import { unsupportedTaskSink } from "../scaleout/task-io.ts";
import type { Sink } from "../sink.ts";

/**
 * Writes every record of a stream to `sink`. At most `maxInFlight` writes are unresolved at a time: when the
 * bound is reached the job's sources are paused, and they resume when half of it has drained. At the end of
 * the input the operator waits for every write, flushes and closes the sink, then completes. When the job
 * fails or is cancelled instead, the sink is closed without a flush, and the job's run() waits for that.
 * A failed write fails the job with a SinkError that names the sink.
 *
 * A record the sink cannot take is not a failed write: when `write` throws a BadRecordError (or its promise
 * rejects with one), the record goes to the operator's DEAD_LETTERS side output with the sink's name and the
 * reason, is counted under `sink:<name>`, and the sink goes on; with the policy "fail" the job fails instead.
 * Without this, a record that no sink can serialise would fail the job again after every restart. A batching
 * sink that learns only later that a record was bad (the database refused its value) reports it through the
 * `deadLetter` of the context its `open` gets, with the same effect.
 *
 * Checkpoint barriers: when one arrives the operator holds back what follows it (and pauses the sources),
 * waits for every pending write, calls `sink.preCommit(checkpointId)` and reports the handle to the job's
 * checkpoint coordinator; then it lets the held elements through. A barrier is handled once even when it
 * arrives on several paths (a union of sources).
 *
 * @param job the job (flow control, metrics)
 * @param sink the destination
 * @param maxInFlight the bound on unresolved writes
 * @param onRecordError what a record the sink cannot take does: go to dead letters, or fail the job
 * @returns the operator that ends a chain; its output (the sink's dead letters) completes when everything was written
 */
export function sinkElements<T>(
  job: JobContext,
  sink: Sink<T>,
  maxInFlight: number,
  onRecordError: UserErrorPolicy = job.onUserError,
): ChainableOperator<Element<T>, Element<never>> {
  const m = job.metrics.sink(sink.name);
  m.maxInFlight = maxInFlight;
  const who = `sink:${sink.name}`;
  const participant: SinkParticipant | undefined = job.checkpoints?.registerSink(sink as Sink<unknown>);
  // End-to-end latency (metrics.ts): a write after a new source sample observes it; a sink with two-phase
  // commit under checkpoints also observes the commit.
  const probe = job.metrics.latency;
  const transactional = participant !== undefined && typeof sink.commit === "function";
  // The sink is done with each record object when write returns: the operator before may refill one.
  const transient = sink.keepsRecords === false;
  const fail = (err: unknown, what: string): SinkError =>
    new SinkError(`sink "${sink.name}" failed to ${what}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      details: { sink: sink.name },
    });
  return operate<Element<T>, Element<never>>((downstream) => {
    let failed = false;
    const drainWaiters: (() => void)[] = [];
    /** Stops writing and takes back the pressure this sink put on the sources. */
    const stop = (): void => {
      failed = true;
      job.flow.release(who);
      job.flow.release(`${who}:barrier`);
    };
    const onError = (err: unknown, what: string): void => {
      if (failed) return;
      stop();
      downstream.error(fail(err, what));
    };
    /** Dead-letters `e` when `err` says the sink cannot take this one record (and the policy allows); else false. */
    const rejected = (value: T, timestamp: number, err: unknown): boolean => {
      if (onRecordError === "fail" || failed || !isGressError(err, "ERR_BAD_RECORD")) return false;
      job.metrics.operator(who).deadLetters++;
      downstream.next(sideRecord(DEAD_LETTERS.id, value, timestamp, `sink "${sink.name}": ${err.message}`));
      return true;
    };
    // Runs once per asynchronous write: nothing here may allocate or touch shared sets unless there is work to do.
    let pressing = false;
    // The latest latency sample this sink observed, and taking the newest one (its entry time).
    let seen = 0;
    const claimSample = (): number => {
      seen = probe.seq;
      return probe.at;
    };
    // Writes in flight of this subscription. Not the metric's field: after a restart, a write of the failed
    // attempt that settles late (or never: a rejected one) must not count in the new attempt's drain.
    let inFlight = 0;
    m.inFlight = 0;
    const settle = (): void => {
      m.inFlight = --inFlight;
      m.written++;
      if (pressing && inFlight <= maxInFlight >> 1) {
        pressing = false;
        job.flow.release(who);
      }
      if (inFlight === 0 && drainWaiters.length > 0) for (const w of drainWaiters.splice(0)) w();
    };
    const drained = (): Promise<void> => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => drainWaiters.push(r)));
    /** A record the sink rejected after its write returned (SinkContext.deadLetter). */
    const deadLetter = (value: unknown, timestamp: number, reason: string): void => {
      if (failed) return;
      if (onRecordError === "fail") {
        onError(new BadRecordError(reason), "write");
        return;
      }
      job.metrics.operator(who).deadLetters++;
      downstream.next(sideRecord(DEAD_LETTERS.id, value, timestamp, `sink "${sink.name}": ${reason}`));
    };
    const opened = Promise.resolve().then(() => {
      const refused = unsupportedTaskSink(job.name, sink);
      if (refused !== undefined) throw new ConfigError(refused, [{ path: ["sinkTo", sink.name], code: "custom", message: "not supported in a scale-out task" }]);
      return sink.open?.({ jobName: job.name, checkpointIntervalMs: job.checkpoints?.intervalMs, deadLetter });
    });
    let ready = false;
    void opened.then(
      () => {
        ready = true;
      },
      (err: unknown) => onError(err, "open"),
    );
    // Keeps the record's value and time, not the record object: it may be refilled (keepsRecords: false).
    const pending = (result: PromiseLike<void>, value: T, timestamp: number): void => {
      m.inFlight = ++inFlight;
      if (inFlight >= maxInFlight && !pressing) {
        pressing = true;
        job.flow.press(who);
      }
      result.then(settle, (err: unknown) => {
        if (!rejected(value, timestamp, err)) return onError(err, "write");
        m.written--; // settle counts a write; this one was dead-lettered instead
        settle();
      });
      if (probe.seq !== seen) {
        const enteredAt = claimSample();
        result.then(
          () => m.observeWritten(enteredAt, transactional),
          () => {},
        );
      }
    };
    // The hot path: a synchronous write is done when it returns and never counts as in flight.
    const write = (e: StreamRecord<T>): void => {
      if (failed) return;
      if (!ready) {
        const own = transient ? record(e.value, e.timestamp, e.key, e.split) : e;
        pending(
          opened.then(() => sink.write(own.value, own)),
          e.value,
          e.timestamp,
        );
        return;
      }
      let result: unknown;
      let async: boolean;
      try {
        result = sink.write(e.value, e);
        // Anything but a thenable (undefined, or null from JavaScript) is a write that is done already.
        async = result !== undefined && result !== null && typeof (result as Partial<PromiseLike<void>>).then === "function";
      } catch (err) {
        if (!rejected(e.value, e.timestamp, err)) onError(err, "write");
        return;
      }
      if (async) pending(result as PromiseLike<void>, e.value, e.timestamp);
      else {
        m.written++;
        if (probe.seq !== seen) m.observeWritten(claimSample(), transactional);
      }
    };

    // Elements after a barrier wait here until the pre-commit for that barrier was issued.
    const COMPLETE = Symbol("complete");
    const held: (Element<T> | typeof COMPLETE)[] = [];
    let heldAt = 0;
    let gated = false;
    let lastBarrier = 0;
    const barrier = (checkpointId: number): void => {
      if (checkpointId <= lastBarrier || failed) return;
      lastBarrier = checkpointId;
      gated = true;
      job.flow.press(`${who}:barrier`);
      const handle = drained()
        .then(() => {
          // Every write before the barrier is done, none after it has started: they commit with this checkpoint.
          m.barrier(checkpointId);
          return opened;
        })
        .then(() => sink.preCommit?.(checkpointId));
      participant?.prepared(checkpointId, handle);
      handle.then(
        () => {
          gated = false;
          job.flow.release(`${who}:barrier`);
          while (!gated && heldAt < held.length) handle_(held[heldAt++]!);
          if (heldAt === held.length) {
            held.length = 0;
            heldAt = 0;
          }
        },
        (err: unknown) => onError(err, `pre-commit checkpoint ${checkpointId}`),
      );
    };
    participant?.attach(barrier);
    // The sink is closed once: by finish after its flush, or by release when the job stops without one.
    let closed = false;
    /** The job failed or was cancelled: close the sink without flushing, to release its connections. */
    const release = (): void => {
      if (closed) return;
      closed = true;
      // What was written since the last completed checkpoint is written again after a restart, or never committed.
      m.forgetUncommitted();
      job.trackRelease(opened.catch(() => {}).then(() => sink.close?.()));
    };
    const finish = (): void => {
      drained()
        .then(() => opened)
        .then(() => sink.flush?.())
        .then(() => {
          if (closed) return;
          closed = true;
          return sink.close?.();
        })
        .then(
          () => {
            if (!failed) downstream.complete();
          },
          (err: unknown) => onError(err, "flush or close"),
        );
    };
    const handle_ = (e: Element<T> | typeof COMPLETE): void => {
      if (e === COMPLETE) finish();
      else if (e.kind === "record") write(e);
      else if (e.kind === "barrier") barrier(e.checkpointId);
    };
    return {
      next(e) {
        // A held record is kept past this call: its own object when the one given may be refilled.
        if (gated) held.push(transient && e.kind === "record" ? record(e.value, e.timestamp, e.key, e.split) : e);
        else if (e.kind === "record") write(e);
        else handle_(e);
      },
      // Completes once every write settled and the sink was flushed and closed (see finish).
      complete() {
        if (gated) held.push(COMPLETE);
        else finish();
      },
      completesItself: true,
      ...(transient ? { records: "consume" as const } : {}),
      // Also runs when anything upstream failed or the job was cancelled: the pipeline stops, so must the
      // pressure it put on sources, and the sink closes (unless finish already closed it).
      teardown() {
        stop();
        release();
      },
    };
  });
}
