/**
 * The small helper every Gress operator is built on, and the operator chaining that makes a pipeline cheap.
 *
 * `operate(init)` turns per-subscription operator logic into an RxJS operator, as RxJS' internal `operate()`
 * does: it subscribes to the source, forwards errors and completion, and hands each element to the body.
 *
 * The operator it returns also carries its `init`, so that a {@link Stream} can chain consecutive operators
 * into one RxJS subscription, like Flink's operator chaining: inside a chain each operator calls the next
 * one's `next` directly, instead of going through two RxJS subscribers per operator. Chaining changes
 * nothing observable: every operator's failure still ends the stream with an error, completion still flows
 * through every body's `complete` in order, and teardown reaches every body.
 * @module
 */
import { Observable } from "rxjs";

/**
 * Where an operator body sends its output: the next operator of its chain, or an RxJS subscriber.
 *
 * Call its methods on the object (`downstream.next(x)`), as with an RxJS Subscriber: they are methods of a
 * class, not free functions. To hand one to a callback, wrap or bind it (`(x) => downstream.next(x)`).
 *
 * @example
 * ```ts
 * import { type Downstream, type Element, fromIterable, operate } from "gress";
 *
 * // Call its methods on the object; wrap them to pass them as callbacks.
 * const later = operate<Element<number>, Element<number>>((downstream: Downstream<Element<number>>) => ({
 *   next: (e) => downstream.next(e),
 *   complete: () => {},
 * }));
 * const s = fromIterable([1]).transform(later);
 * ```
 */
export interface Downstream<O> {
  next(value: O): void;
  error(err: unknown): void;
  complete(): void;
  /**
   * True if a record handed to `next` is finished with when the call returns: no operator after this point
   * keeps the record object or passes it on past the chain (they may keep its value). Whoever calls `next`
   * may then hand over one record object again and again, refilled, instead of a new one per record. Set by
   * chain links from their bodies' {@link OperatorBody.records}; absent (false) everywhere else.
   */
  readonly transient?: boolean;
}

/**
 * Per-subscription operator logic: handle one element, optionally flush at completion and tear down.
 *
 * @example
 * ```ts
 * import { type Element, fromIterable, operate, type OperatorBody, record } from "gress";
 *
 * // A body that sums the records and emits the total at the end of the input.
 * const total = operate<Element<number>, Element<number>>((downstream) => {
 *   let sum = 0;
 *   let last = 0;
 *   const body: OperatorBody<Element<number>> = {
 *     next(e) {
 *       if (e.kind === "record") {
 *         sum += e.value;
 *         last = e.timestamp;
 *       } else if (e.kind !== "end") downstream.next(e);
 *     },
 *     complete() {
 *       downstream.next(record(sum, last));
 *     },
 *     records: "consume",
 *   };
 *   return body;
 * });
 * console.log(await fromIterable([1, 2, 3]).transform(total).collect()); // [6]
 * ```
 */
export interface OperatorBody<I> {
  /** Handles one element. Read once, when the chain is built: replacing it on the body later has no effect. */
  next(value: I): void;
  /** The input ended. Output emitted here still goes out before the completion. */
  complete?(): void;
  /**
   * The body completes its downstream itself, perhaps later (a sink waiting for its last writes): after
   * `complete()` the chain does not complete the downstream for it.
   */
  readonly completesItself?: boolean;
  teardown?(): void;
  /**
   * What the body does with the record objects (the envelopes, not the values in them) it is given, once
   * `next` returned: "consume" if it neither keeps them nor passes them on (it emits new records), "forward"
   * if it keeps none but may pass them on unchanged. Absent: it may keep them, which is always safe. Read
   * once, when the chain is built.
   */
  readonly records?: "consume" | "forward";
}

/** Creates the body of one operator for one subscription, given where its output goes. */
// biome-ignore lint/suspicious/noExplicitAny: a chain links bodies of different element types
export type OperatorInit<I = any, O = any> = (downstream: Downstream<O>) => OperatorBody<I>;

/**
 * An RxJS operator built by {@link operate}; it can be chained with its neighbours.
 *
 * @example
 * ```ts
 * import { type ChainableOperator, type Element, fromIterable, operate } from "gress";
 *
 * // An RxJS operator that also carries its init, so that a Stream can chain it with its neighbours.
 * const pass: ChainableOperator<Element<string>, Element<string>> = operate((downstream) => ({ next: (e) => downstream.next(e), records: "forward" }));
 * const s = fromIterable(["a"]).transform(pass);
 * ```
 */
export interface ChainableOperator<I, O> {
  (source: Observable<I>): Observable<O>;
  readonly init: OperatorInit<I, O>;
}

/**
 * Builds an operator from a factory that is called once per subscription with the downstream.
 *
 * @example
 * ```ts
 * import { type Element, fromIterable, operate, record } from "gress";
 *
 * // A chainable operator that numbers records: it joins the operator chain (no extra RxJS subscription).
 * const numbered = operate<Element<string>, Element<[number, string]>>((downstream) => {
 *   let n = 0;
 *   return {
 *     next(e) {
 *       if (e.kind === "record") downstream.next(record([n++, e.value], e.timestamp, e.key));
 *       else downstream.next(e);
 *     },
 *     records: "consume",
 *   };
 * });
 * console.log(await fromIterable(["a", "b"]).transform(numbered).collect()); // [[0, "a"], [1, "b"]]
 * ```
 */
export function operate<I, O>(init: (downstream: Downstream<O>) => OperatorBody<I>): ChainableOperator<I, O> {
  const op = (source: Observable<I>): Observable<O> => chain(source, [init]);
  return Object.assign(op, { init });
}

/**
 * An Observable that can also push straight into the first operator of a chain, without an RxJS subscriber
 * in between: Gress sources are these, so a record goes from the source into the chain in one call.
 * Subscribing to it as an Observable works as usual.
 */
export class DirectSource<T> extends Observable<T> {
  readonly #connect: (downstream: Downstream<T>) => () => void;
  /** @param connect starts pushing into `downstream`, and returns the function that stops it */
  constructor(connect: (downstream: Downstream<T>) => () => void) {
    super((subscriber) => connect(subscriber));
    this.#connect = connect;
  }
  /** Starts pushing into `downstream`; returns the function that stops it. */
  connect(downstream: Downstream<T>): () => void {
    return this.#connect(downstream);
  }
}

/** True if `op` was built by {@link operate}, so it can join a chain. */
export function isChainable<I, O>(op: (source: Observable<I>) => Observable<O>): op is ChainableOperator<I, O> {
  return typeof (op as Partial<ChainableOperator<I, O>>).init === "function";
}

/**
 * Runs `inits` (first to last) as one chain on `source`: one subscription upstream, direct calls inside.
 * Bodies are created last to first, as a stack of piped operators would be on subscription.
 *
 * Completion behaves as it does between RxJS subscribers: once an operator completes its output, nothing more
 * reaches the operators after it from that side, and everything before it — the source and the operators in
 * between — is torn down at once. That holds at the end of the input (the source is closed before a sink
 * starts flushing) and when an operator ends its output early, as `take` does.
 */
export function chain<O>(source: Observable<unknown>, inits: readonly OperatorInit[]): Observable<O> {
  return new Observable<O>((subscriber) => {
    const state: ChainState = { stopped: false, fail: () => {}, tearDownBefore: () => {} };
    state.fail = (err: unknown): void => {
      if (state.stopped) return;
      state.stopped = true;
      subscriber.error(err);
    };
    const bodies: OperatorBody<unknown>[] = new Array(inits.length);
    let stopSource: (() => void) | undefined;
    let sourceDone = false;
    let tornDown = 0;
    // Tears down the source and the bodies before body `k`, first to last; each only once.
    state.tearDownBefore = (k: number): void => {
      if (!sourceDone) {
        sourceDone = true;
        stopSource?.();
      }
      for (; tornDown < k; tornDown++) bodies[tornDown]?.teardown?.();
    };
    // The downstream of the last body is the subscriber; that of each other body is a link into the next body.
    let down: Downstream<unknown> = {
      next: (v) => {
        if (!state.stopped) subscriber.next(v as O);
      },
      error: state.fail,
      complete: () => {
        if (state.stopped) return;
        state.stopped = true;
        subscriber.complete();
      },
    };
    try {
      for (let i = inits.length - 1; i >= 0; i--) {
        const body = inits[i]!(down);
        bodies[i] = body;
        down = new Link(i, body, down, state);
      }
    } catch (err) {
      // A body that could not be created fails the subscription; the ones created already are undone.
      for (const body of bodies) body?.teardown?.();
      throw err;
    }
    const head = down;
    if (source instanceof DirectSource) {
      stopSource = source.connect(head);
    } else {
      const subscription = source.subscribe({ next: (v) => head.next(v), error: state.fail, complete: () => head.complete() });
      stopSource = () => subscription.unsubscribe();
    }
    // The source completed while it was being connected: it is done already.
    if (sourceDone) stopSource();
    return () => {
      state.stopped = true;
      state.tearDownBefore(bodies.length);
    };
  });
}

interface ChainState {
  /** Set once the chain failed, completed or was unsubscribed: nothing more flows. */
  stopped: boolean;
  fail: (err: unknown) => void;
  /** Tears down the source and the bodies before the given index. */
  tearDownBefore: (index: number) => void;
}

/**
 * The downstream through which body `index` is fed: a failure of the body fails the chain.
 *
 * A class rather than a closure per link: V8 inlines by function, and every job would otherwise bring a new
 * closure of the same function to the hot call sites, which its optimising compiler then inlines less. The
 * link calls the body's `next` function it took at creation, so that the call does not first look `next` up
 * on bodies of many different classes.
 */
class Link implements Downstream<unknown> {
  readonly transient: boolean;
  #done = false;
  readonly #index: number;
  readonly #body: OperatorBody<unknown>;
  readonly #next: (value: unknown) => void;
  readonly #after: Downstream<unknown>;
  readonly #state: ChainState;
  constructor(index: number, body: OperatorBody<unknown>, after: Downstream<unknown>, state: ChainState) {
    this.#index = index;
    this.#body = body;
    this.#next = body.next;
    this.#after = after;
    this.#state = state;
    this.transient = body.records === "consume" || (body.records === "forward" && after.transient === true);
  }
  next(value: unknown): void {
    if (this.#done || this.#state.stopped) return;
    try {
      this.#next.call(this.#body, value);
    } catch (err) {
      this.#state.fail(err);
    }
  }
  error(err: unknown): void {
    this.#state.fail(err);
  }
  complete(): void {
    if (this.#done || this.#state.stopped) return;
    this.#done = true;
    // Nothing before this body can reach it any more.
    this.#state.tearDownBefore(this.#index);
    try {
      this.#body.complete?.();
    } catch (err) {
      this.#state.fail(err);
      return;
    }
    if (this.#body.completesItself !== true) this.#after.complete();
  }
}
