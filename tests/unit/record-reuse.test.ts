import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Element, Job, operate, type OperatorBody, record, sinkFn, type Source, type SourceContext } from "../../lib/index.ts";
import { chain, DirectSource, type Downstream, type OperatorInit } from "../../lib/operate.ts";

// A source hands one record object to a chain again and again when the chain is transient: no operator in
// it keeps a record object or passes one on past the chain. These tests pin when a chain is transient, that
// the records then seen are right, and that a record emitted while another is on its way gets its own object.

type Mode = "consume" | "forward" | undefined;
const body = (mode: Mode): OperatorInit => (down: Downstream<unknown>) => ({
  ...(mode === undefined ? {} : { records: mode }),
  next: (e: unknown) => down.next(e),
});

/** Whether the head of a chain of bodies in these modes tells its caller that it is transient. */
function transient(modes: readonly Mode[]): boolean {
  let seen: boolean | undefined;
  const source = new DirectSource<unknown>((down) => {
    seen = down.transient === true;
    return () => {};
  });
  chain(source, modes.map(body)).subscribe().unsubscribe();
  assert.notEqual(seen, undefined, "the source was connected");
  return seen as boolean;
}

describe("transient chains", () => {
  it("a chain is transient up to its first body that consumes records, through bodies that forward them", () => {
    assert.equal(transient(["consume"]), true);
    assert.equal(transient(["forward", "consume"]), true);
    assert.equal(transient(["forward", "forward", "consume", undefined]), true, "what comes after a consumer does not matter");
  });
  it("a chain is not transient if records may reach its end or a body that may keep them", () => {
    assert.equal(transient(["forward"]), false, "the subscriber after the chain may keep them");
    assert.equal(transient([undefined, "consume"]), false);
    assert.equal(transient(["forward", undefined, "consume"]), false);
  });
  it("a source subscribed without a chain is told nothing", () => {
    let seen: boolean | undefined;
    new DirectSource<unknown>((down) => {
      seen = down.transient;
      return () => {};
    })
      .subscribe()
      .unsubscribe();
    assert.equal(seen, undefined);
  });
});

/** A source the test drives by hand. */
class ManualSource implements Source<number> {
  readonly name = "manual";
  ctx: SourceContext<number> | undefined;
  open(ctx: SourceContext<number>): void {
    this.ctx = ctx;
    for (let i = 1; i <= 3; i++) ctx.emit(i, i * 10);
    ctx.end();
  }
  pause(): void {}
  resume(): void {}
  close(): void {}
}

/** A custom operator that records the record objects it is given and their values, then emits new records. */
function watch(seen: { obj: unknown; value: unknown; timestamp: unknown }[], mode: Mode) {
  return operate<Element<number>, Element<number>>((down) => {
    const b: OperatorBody<Element<number>> = {
      ...(mode === undefined ? {} : { records: mode }),
      next(e) {
        if (e.kind !== "record") return down.next(e);
        seen.push({ obj: e, value: e.value, timestamp: e.timestamp });
        down.next(record(e.value, e.timestamp));
      },
    };
    return b;
  });
}

describe("record reuse by sources", () => {
  it("a source refills one record object for a transient chain, and every record is seen with its own value and time", async () => {
    const job = new Job({ name: "reuse" });
    const seen: { obj: unknown; value: unknown; timestamp: unknown }[] = [];
    const out: number[] = [];
    job
      .source(new ManualSource())
      .transform(watch(seen, "consume"))
      .sinkTo(sinkFn("out", (v) => void out.push(v)));
    await job.run();
    assert.deepEqual(out, [1, 2, 3]);
    assert.deepEqual(
      seen.map((s) => [s.value, s.timestamp]),
      [
        [1, 10],
        [2, 20],
        [3, 30],
      ],
    );
    assert.equal(new Set(seen.map((s) => s.obj)).size, 1, "one record object, refilled");
    assert.equal((seen[0]!.obj as { value: unknown }).value, undefined, "kept between records without its value, so it holds no data alive");
  });

  it("without that promise from the chain every record is a new object", async () => {
    const job = new Job({ name: "no-reuse" });
    const seen: { obj: unknown; value: unknown; timestamp: unknown }[] = [];
    job
      .source(new ManualSource())
      .transform(watch(seen, undefined))
      .sinkTo(sinkFn("out", () => {}));
    await job.run();
    assert.equal(new Set(seen.map((s) => s.obj)).size, 3);
  });

  it("a record emitted while another is on its way (re-entrantly) gets its own object", async () => {
    const job = new Job({ name: "reentrant" });
    const source = new ManualSource();
    const seen: { obj: unknown; value: unknown; timestamp: unknown }[] = [];
    let nested = false;
    job
      .source(source)
      // tap forwards records; on the second one (a refilled object) it makes the source emit another
      // before passing it on.
      .tap((v) => {
        if (v === 2 && !nested) {
          nested = true;
          source.ctx?.emit(100, 1_000);
        }
      })
      .transform(watch(seen, "consume"))
      .sinkTo(sinkFn("out", () => {}));
    await job.run();
    assert.deepEqual(
      seen.map((s) => [s.value, s.timestamp]),
      [
        [1, 10],
        [100, 1_000],
        [2, 20],
        [3, 30],
      ],
      "the record on its way keeps its value and time",
    );
  });
});

describe("record reuse by map and flatMap", () => {
  it("map and flatMap refill one record object for a transient chain after them, with the key and split of their input", async () => {
    for (const op of ["map", "flatMap"] as const) {
      const job = new Job({ name: `reuse-${op}` });
      const seen: { obj: unknown; value: unknown; timestamp: unknown; key: unknown; split: unknown }[] = [];
      const keyed = job.source(new ManualSource()).keyBy((v) => `k${v}`);
      const projected = op === "map" ? keyed.map((v) => v * 100) : keyed.flatMap((v) => [v * 100, v * 100 + 1]);
      projected
        .transform(
          operate<Element<number>, Element<number>>((down) => ({
            records: "consume",
            next(e) {
              if (e.kind !== "record") return down.next(e);
              seen.push({ obj: e, value: e.value, timestamp: e.timestamp, key: e.key, split: e.split });
              down.next(record(e.value, e.timestamp));
            },
          })),
        )
        .sinkTo(sinkFn("out", () => {}));
      await job.run();
      const expected = [1, 2, 3].flatMap((v) => (op === "map" ? [v * 100] : [v * 100, v * 100 + 1]).map((x) => [x, v * 10, `k${v}`, "manual"]));
      assert.deepEqual(
        seen.map((s) => [s.value, s.timestamp, s.key, s.split]),
        expected,
        op,
      );
      assert.equal(new Set(seen.map((s) => s.obj)).size, 1, `${op}: one record object, refilled`);
    }
  });
});
