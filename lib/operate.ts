/**
 * The small helper every Gress operator is built on: it subscribes to the source with an observer that
 * forwards errors and completion, and lets the operator decide what to do with each element. It is the
 * public-API equivalent of RxJS' internal `operate()`.
 * @module
 */
import { Observable, type Subscriber } from "rxjs";

/** Per-subscription operator logic: handle one element, optionally flush at completion and tear down. */
export interface OperatorBody<I> {
  next(value: I): void;
  complete?(): void;
  teardown?(): void;
}

/** Builds an operator from a factory that is called once per subscription with the downstream subscriber. */
export function operate<I, O>(
  init: (downstream: Subscriber<O>) => OperatorBody<I>,
): (source: Observable<I>) => Observable<O> {
  return (source) =>
    new Observable<O>((downstream) => {
      const body = init(downstream);
      const subscription = source.subscribe({
        next: (value) => {
          try {
            body.next(value);
          } catch (err) {
            downstream.error(err);
          }
        },
        error: (err) => downstream.error(err),
        complete: () => {
          try {
            body.complete?.();
            downstream.complete();
          } catch (err) {
            downstream.error(err);
          }
        },
      });
      return () => {
        subscription.unsubscribe();
        body.teardown?.();
      };
    });
}
