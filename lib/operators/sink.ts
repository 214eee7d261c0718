import { Observable } from "rxjs";
import type { Element } from "../element.ts";
import { SinkError } from "../errors.ts";
import type { Job } from "../job.ts";
import type { Sink } from "../sink.ts";

/**
 * Writes every record of a stream to `sink`. At most `maxInFlight` writes are unresolved at a time: when the
 * bound is reached the job's sources are paused, and they resume when half of it has drained. At the end of
 * the input the operator waits for every write, flushes and closes the sink, then completes.
 * A failed write fails the job with a SinkError that names the sink.
 *
 * @param job the job (flow control, metrics)
 * @param sink the destination
 * @param maxInFlight the bound on unresolved writes
 * @returns an Observable that completes when everything was written
 */
export function sinkElements<T>(job: Job, sink: Sink<T>, maxInFlight: number): (source: Observable<Element<T>>) => Observable<never> {
  const m = job.metrics.sink(sink.name);
  m.maxInFlight = maxInFlight;
  const who = `sink:${sink.name}`;
  const fail = (err: unknown, what: string): SinkError =>
    new SinkError(`sink "${sink.name}" failed to ${what}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      details: { sink: sink.name },
    });
  return (source) =>
    new Observable<never>((downstream) => {
      let failed = false;
      let drained: (() => void) | undefined;
      const onError = (err: unknown, what: string): void => {
        if (failed) return;
        failed = true;
        job.flow.release(who);
        downstream.error(fail(err, what));
      };
      const settle = (): void => {
        m.inFlight--;
        m.written++;
        if (m.inFlight <= maxInFlight >> 1) job.flow.release(who);
        if (m.inFlight === 0) drained?.();
      };
      const opened = Promise.resolve().then(() => sink.open?.());
      let ready = false;
      void opened.then(
        () => {
          ready = true;
        },
        (err: unknown) => onError(err, "open"),
      );
      const write = (e: Element<T>): void => {
        if (e.kind !== "record" || failed) return;
        m.inFlight++;
        if (m.inFlight >= maxInFlight) job.flow.press(who);
        let result: void | Promise<void>;
        try {
          result = ready ? sink.write(e.value, e) : opened.then(() => sink.write(e.value, e));
        } catch (err) {
          onError(err, "write");
          return;
        }
        if (result instanceof Promise) result.then(settle, (err: unknown) => onError(err, "write"));
        else settle();
      };
      const subscription = source.subscribe({
        next: write,
        error: (err) => {
          failed = true;
          job.flow.release(who);
          downstream.error(err);
        },
        complete: () => {
          const allWritten = m.inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (drained = r));
          allWritten
            .then(() => opened)
            .then(() => sink.flush?.())
            .then(() => sink.close?.())
            .then(
              () => {
                if (!failed) downstream.complete();
              },
              (err: unknown) => onError(err, "flush or close"),
            );
        },
      });
      return () => {
        job.flow.release(who);
        subscription.unsubscribe();
      };
    });
}
