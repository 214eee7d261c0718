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
    // As between RxJS subscribers: an operator is torn down as soon as the one after it has completed.
    assert.deepEqual(log.slice(6), ["complete a", "teardown a", "complete b", "teardown b"]);
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

  it("an operator that ends its output early stops everything before it; the sink flushes and closes once", async () => {
    const job = new Job();
    const log: string[] = [];
    const take2 = operate<Element<number>, Element<number>>((downstream) => {
      let n = 0;
      return {
        next(e) {
          if (e.kind !== "record") return downstream.next(e);
          downstream.next(e);
          if (++n === 2) downstream.complete();
        },
      };
    });
    job
      .fromIterable([1, 2, 3, 4, 5])
      .tap((x) => log.push(`tap ${x}`))
      .transform(take2)
      .sinkTo({
        name: "out",
        write: (x) => void log.push(`write ${x}`),
        flush: () => void log.push("flush"),
        close: () => void log.push("close"),
      });
    await job.run();
    assert.deepEqual(log, ["tap 1", "write 1", "tap 2", "write 2", "flush", "close"]);
  });

  it("at the end of the input the source is closed before the sink flushes", async () => {
    const job = new Job();
    const log: string[] = [];
    const source = job.fromIterable([1, 2]);
    const inner = job.sources[0]!;
    const close = inner.close.bind(inner);
    inner.close = () => {
      log.push(`source closed, running sources: ${job.runningSources.length}`);
      return close();
    };
    source.map((x) => x).sinkTo({ name: "out", write: () => {}, flush: () => void log.push("flush"), close: () => void log.push("close") });
    await job.run();
    assert.deepEqual(log, ["source closed, running sources: 0", "flush", "close"]);
  });

  it("an operator whose setup throws fails the subscription, and the operators already set up are torn down", () => {
    const job = new Job();
    const [subject, stream] = input<number>(job);
    const log: string[] = [];
    const broken = operate<Element<number>, Element<number>>(() => {
      throw new Error("cannot set up");
    });
    const errors: unknown[] = [];
    stream
      .transform(broken)
      .transform(traced("after", log))
      .elements.subscribe({ error: (e) => errors.push(e) });
    assert.match(String(errors[0]), /cannot set up/);
    assert.deepEqual(log, ["init after", "teardown after"]);
    assert.equal(subject.observed, false);
  });

  it("a sink whose write returns null (JavaScript) counts as a synchronous write", async () => {
    const job = new Job();
    const out: number[] = [];
    const write = (x: number): null => {
      out.push(x);
      return null;
    };
    job.fromIterable([1, 2, 3]).sinkTo({ name: "out", write: write as unknown as (x: number) => void });
    await job.run();
    assert.deepEqual(out, [1, 2, 3]);
  });
});
