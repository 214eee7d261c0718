import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BadRecordError, DEAD_LETTERS, type Element, Job, operate, type OperatorBody, record, type Sink, sinkFn, type Source, type SourceContext } from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
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

describe("record reuse by sinks (keepsRecords: false)", () => {
  /** A sink that notes the record objects it is given, the value and time each had, and keeps the value. */
  function watchingSink(keepsRecords: boolean | undefined, seen: { obj: unknown; value: number; timestamp: number }[], extra: Partial<Sink<number>> = {}): Sink<number> {
    return {
      name: "watching",
      ...(keepsRecords === undefined ? {} : { keepsRecords }),
      write(value, r) {
        seen.push({ obj: r, value, timestamp: r.timestamp });
      },
      ...extra,
    };
  }

  it("a sink that keeps no record object is handed one, refilled; any other sink a new one per record", async () => {
    for (const keeps of [false, undefined, true]) {
      const job = new Job({ name: `sink-reuse-${keeps}` });
      const seen: { obj: unknown; value: number; timestamp: number }[] = [];
      job
        .source(new ManualSource())
        .map((v) => v + 1)
        .sinkTo(watchingSink(keeps, seen));
      await job.run();
      assert.deepEqual(
        seen.map((s) => [s.value, s.timestamp]),
        [
          [2, 10],
          [3, 20],
          [4, 30],
        ],
      );
      assert.equal(new Set(seen.map((s) => s.obj)).size, keeps === false ? 1 : 3, `keepsRecords ${keeps}`);
    }
  });

  it("records held behind a checkpoint barrier keep their values when the sink's record object is refilled", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gress-reuse-"));
    try {
      const job = new Job({ name: "sink-reuse-held", state: new LmdbStateBackend({ path: dir, mapSize: 64 * 1024 * 1024, durability: "process" }), checkpoints: { intervalMs: 2, log: () => {} } });
      const seen: { obj: unknown; value: number; timestamp: number }[] = [];
      let preCommitting = false;
      let emittedMeanwhile = 0;
      const slowPreCommit = async (): Promise<unknown> => {
        preCommitting = true;
        // Long enough that records after the barrier arrive, and are held, before it resolves.
        await new Promise((r) => setTimeout(r, 3));
        preCommitting = false;
        return null;
      };
      // Emits batches of 100 on every timer turn and does not stop on pause (as a source may still deliver a batch it
      // has fetched): records reach the sink while a barrier holds it.
      let emitted = 0;
      const eager: Source<number> = {
        name: "eager",
        open(ctx) {
          const batch = (): void => {
            if (preCommitting) emittedMeanwhile++;
            for (let k = 0; k < 100 && emitted < 20_000; k++) ctx.emit(emitted, emitted++);
            if (emitted < 20_000) setTimeout(batch, 0);
            else ctx.end();
          };
          setTimeout(batch, 0);
        },
        pause() {},
        resume() {},
        positions: () => ({ eager: emitted }),
        close() {},
      };
      job
        .source(eager)
        .map((v) => v * 2)
        .sinkTo(watchingSink(false, seen, { preCommit: slowPreCommit, commit: async () => {} }));
      await job.run();
      await job.state.close();
      assert.ok(emittedMeanwhile > 0, "batches came while a pre-commit held the sink");
      assert.deepEqual(
        seen.map((s) => s.value),
        Array.from({ length: 20_000 }, (_, i) => i * 2),
        "every record once, in order, with its own value",
      );
      assert.ok(new Set(seen.map((s) => s.obj)).size < 20_000, "the sink was handed refilled record objects");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a write that fails later for a bad record dead-letters that record's value, though its object was refilled since", async () => {
    const job = new Job({ name: "sink-reuse-async-bad" });
    const written: number[] = [];
    const sink: Sink<number> = {
      name: "async",
      keepsRecords: false,
      write(value) {
        written.push(value);
        return new Promise<void>((resolve, reject) => setTimeout(() => (value === 2 ? reject(new BadRecordError(`no room for ${value}`)) : resolve()), 1));
      },
    };
    const out = job.source(new ManualSource()).sinkTo(sink);
    const dead: string[] = [];
    out.sideRecords(DEAD_LETTERS).subscribe((r) => void dead.push(`${String(r.value)} at ${r.timestamp}: ${r.reason}`));
    await job.run();
    assert.deepEqual(written, [1, 2, 3]);
    assert.deepEqual(dead, ['2 at 20: sink "async": no room for 2']);
  });
});
