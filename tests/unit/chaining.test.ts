import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Observable, Subject } from "rxjs";
import { type Element, END, Job, operate, record, Stream, watermark } from "../../lib/index.ts";

// Operator chaining: consecutive operators built with operate() run in one subscription and call each other
// directly. These tests pin down that this changes nothing a pipeline can observe.

/** A pass-through operator that logs its lifecycle under `name`. */
function traced<T>(name: string, log: string[]) {
  return operate<Element<T>, Element<T>>((downstream) => {
    log.push(`init ${name}`);
    return {
      next(e) {
        if (e.kind === "record") log.push(`${name} ${String(e.value)}`);
        downstream.next(e);
      },
      complete() {
        log.push(`complete ${name}`);
      },
      teardown() {
        log.push(`teardown ${name}`);
      },
    };
  });
}

function input<T>(job: Job): [Subject<Element<T>>, Stream<T>] {
  const subject = new Subject<Element<T>>();
  return [subject, new Stream<T>(job, subject.asObservable())];
}

describe("operator chaining", () => {
  it("a chain of operators subscribes its source once, and elements pass every operator in order", () => {
    const job = new Job();
    let subscriptions = 0;
    const source = new Observable<Element<number>>((sub) => {
      subscriptions++;
      sub.next(record(1, 0));
      sub.next(watermark(5));
      sub.next(record(2, 6));
      sub.complete();
    });
    const log: string[] = [];
    const out: Element<number>[] = [];
    new Stream<number>(job, source)
      .transform(traced("a", log))
      .map((x) => x * 10)
      .transform(traced("b", log))
      .filter((x) => x > 10)
      .elements.subscribe((e) => out.push(e));
    assert.equal(subscriptions, 1);
    // Bodies are created last to first, as a stack of piped operators would be.
    assert.deepEqual(log.slice(0, 2), ["init b", "init a"]);
    assert.deepEqual(log.slice(2, 6), ["a 1", "b 10", "a 2", "b 20"]);
    assert.deepEqual(log.slice(6), ["complete a", "complete b", "teardown a", "teardown b"]);
    assert.deepEqual(out, [watermark(5), record(20, 6, undefined, undefined)]);
  });

  it("an operator that throws fails the stream once; nothing flows after, and every operator is torn down", () => {
    const job = new Job();
    const [subject, stream] = input<number>(job);
    const log: string[] = [];
    const boom = operate<Element<number>, Element<number>>((downstream) => ({
      next(e) {
        if (e.kind === "record" && e.value === 2) throw new Error("boom");
        downstream.next(e);
      },
    }));
    const values: unknown[] = [];
    const errors: unknown[] = [];
    stream
      .transform(traced("a", log))
      .transform(boom)
      .transform(traced("b", log))
      .elements.subscribe({ next: (e) => values.push(e.kind === "record" ? e.value : e.kind), error: (e) => errors.push(e) });
    subject.next(record(1, 0));
    subject.next(record(2, 0));
    subject.next(record(3, 0));
    assert.deepEqual(values, [1]);
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /boom/);
    assert.ok(!log.includes("a 3"), "the source was unsubscribed: record 3 reached no operator");
    assert.ok(log.includes("teardown a") && log.includes("teardown b"));
    assert.equal(subject.observed, false);
  });

  it("an operator that reports an error through downstream.error fails the stream the same way", () => {
    const job = new Job();
    const [subject, stream] = input<number>(job);
    const failing = operate<Element<number>, Element<number>>((downstream) => ({
      next(e) {
        if (e.kind === "record" && e.value < 0) downstream.error(new RangeError(`negative: ${e.value}`));
        else downstream.next(e);
      },
    }));
    const errors: unknown[] = [];
    const values: number[] = [];
    stream
      .transform(failing)
      .map((x) => x + 1)
      .elements.subscribe({ next: (e) => e.kind === "record" && values.push(e.value), error: (e) => errors.push(e) });
    subject.next(record(1, 0));
    subject.next(record(-1, 0));
    subject.next(record(5, 0));
    assert.deepEqual(values, [2]);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof RangeError);
  });

  it("a stream with two consumers runs its chain once and each consumer continues on its own chain", () => {
    const job = new Job();
    const [subject, stream] = input<number>(job);
    const log: string[] = [];
    const shared = stream.transform(traced("shared", log));
    const left: number[] = [];
    const right: number[] = [];
    // As in a job: the whole graph is built before anything subscribes.
    const l = shared.map((x) => x + 1);
    const r = shared.map((x) => x * 2);
    l.elements.subscribe((e) => e.kind === "record" && left.push(e.value));
    r.elements.subscribe((e) => e.kind === "record" && right.push(e.value));
    subject.next(record(1, 0));
    subject.next(record(2, 0));
    subject.next(END);
    assert.deepEqual(log, ["init shared", "shared 1", "shared 2"]);
    assert.deepEqual(left, [2, 3]);
    assert.deepEqual(right, [2, 4]);
  });

  it("a plain RxJS operator in the middle splits the chain and still sees every element", () => {
    const job = new Job();
    const [subject, stream] = input<number>(job);
    const seen: string[] = [];
    const out: number[] = [];
    stream
      .map((x) => x + 1)
      .transform(
        (source) =>
          new Observable<Element<number>>((sub) =>
            source.subscribe({
              next: (e) => {
                seen.push(e.kind);
                sub.next(e);
              },
              complete: () => sub.complete(),
            }),
          ),
      )
      .map((x) => x * 10)
      .elements.subscribe((e) => e.kind === "record" && out.push(e.value));
    subject.next(record(1, 0));
    subject.next(watermark(3));
    subject.next(record(2, 4));
    assert.deepEqual(seen, ["record", "watermark", "record"]);
    assert.deepEqual(out, [20, 30]);
  });
});
