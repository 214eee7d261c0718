// Shared by the NATS, WebSocket and HTTP integration tests: runs a job whose only branch captures the
// records and the dead letters (with reasons) of one stream, until the test stops it.
import { tap } from "rxjs";
import type { Job } from "../../lib/job.ts";
import { sinkFn } from "../../lib/sink.ts";
import type { Stream } from "../../lib/stream.ts";

/** What a running capture saw so far. */
export interface Capture<T> {
  readonly values: T[];
  readonly deadLetters: { value: unknown; reason: string }[];
  /** Resolves once `predicate` holds (polled), rejects after `timeoutMs`. */
  until(predicate: () => boolean, timeoutMs?: number): Promise<void>;
  /** Cancels the job. */
  stop(): void;
  /** The job's run promise (rejects when the job fails). */
  readonly done: Promise<void>;
}

/** Starts `job` with `stream` as its only sink chain, capturing records and dead letters. */
export function capture<T>(job: Job, stream: Stream<T>): Capture<T> {
  const values: T[] = [];
  const deadLetters: { value: unknown; reason: string }[] = [];
  stream
    .transform((elements) =>
      elements.pipe(
        tap((e) => {
          if (e.kind === "side" && e.tag === "dead-letter") deadLetters.push({ value: e.value, reason: e.reason });
        }),
      ),
    )
    .sinkTo(sinkFn("capture", (v: T) => void values.push(v)));
  let failure: unknown;
  const done = job.run();
  done.catch((e: unknown) => {
    failure = e;
  });
  return {
    values,
    deadLetters,
    done,
    stop: () => job.cancel(),
    async until(predicate, timeoutMs = 10_000) {
      const start = Date.now();
      while (!predicate()) {
        if (failure !== undefined) throw failure;
        if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms (values: ${values.length}, dead letters: ${deadLetters.length})`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}
