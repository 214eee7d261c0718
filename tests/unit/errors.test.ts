import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import {
  ConfigError,
  countTrigger,
  errors,
  GressError,
  generator,
  global,
  isGressError,
  Job,
  processingTimeTrigger,
  SinkError,
  session,
  sliding,
  StateError,
  tumbling,
  UserFunctionError,
  validate,
} from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

/** Asserts that `fn` throws a ConfigError whose message and issues name `field`. */
function throwsConfig(fn: () => unknown, field: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    assert.equal(e.code, "ERR_CONFIG");
    assert.ok(e.message.includes(field), `message "${e.message}" should name ${field}`);
    assert.ok(
      e.issues.some((i) => i.path.join(".").includes(field)),
      `issues ${JSON.stringify(e.issues)} should name ${field}`,
    );
    return true;
  });
}

describe("GressError", () => {
  it("has a stable code, a name and a cause", () => {
    const cause = new Error("disk full");
    const e = new StateError("cannot write", { cause, details: { table: "t" } });
    assert.equal(e.code, "ERR_STATE");
    assert.equal(e.name, "StateError");
    assert.equal(e.cause, cause);
    assert.deepEqual(e.details, { table: "t" });
    assert.ok(e instanceof GressError);
    assert.ok(e instanceof Error);
  });

  it("isGressError checks the code when one is given", () => {
    const e = new SinkError("nope");
    assert.equal(isGressError(e), true);
    assert.equal(isGressError(e, "ERR_SINK"), true);
    assert.equal(isGressError(e, "ERR_SOURCE"), false);
  });

  it("isGressError is false for plain errors and non-objects", () => {
    const plain = Object.assign(new Error("x"), { code: "ERR_CONFIG" });
    assert.equal(isGressError(plain), false);
    assert.equal(isGressError(null), false);
    assert.equal(isGressError("ERR_CONFIG"), false);
    assert.equal(isGressError(undefined), false);
  });

  it("isGressError recognises a structurally equal error from another copy of the package by its brand", () => {
    // What a second loaded copy of Gress would produce: its own class, the same global brand symbol.
    class OtherCopyError extends Error {
      readonly code = "ERR_CHECKPOINT";
      constructor(message: string) {
        super(message);
        Object.defineProperty(this, Symbol.for("gress.error"), { value: true });
      }
    }
    const foreign = new OtherCopyError("from the other copy");
    assert.equal(foreign instanceof GressError, false);
    assert.equal(isGressError(foreign), true);
    assert.equal(isGressError(foreign, "ERR_CHECKPOINT"), true);
    assert.equal(isGressError(foreign, "ERR_STATE"), false);
    // A structural look-alike without the brand is not one.
    assert.equal(isGressError({ code: "ERR_CHECKPOINT", message: "x" }), false);
  });

  it("the errors namespace holds every class", () => {
    assert.equal(errors.ConfigError, ConfigError);
    assert.equal(errors.UserFunctionError, UserFunctionError);
    assert.equal(new errors.PatternError("p").code, "ERR_PATTERN");
    assert.equal(new errors.BadRecordError("b").code, "ERR_BAD_RECORD");
    assert.equal(new errors.SourceError("s").code, "ERR_SOURCE");
    assert.equal(new errors.CheckpointError("c").code, "ERR_CHECKPOINT");
  });
});

describe("option validation", () => {
  it("validate() says 'required' for a missing field and shows a wrong value once (not zod's 'received' and ours)", () => {
    const schema = z.strictObject({ brokers: z.string(), n: z.number() });
    assert.throws(() => validate(schema, { n: "x" }, "status"), {
      message: 'invalid options: status.brokers: required (expected string); status.n: Invalid input: expected number, got "x"',
    });
  });

  it("validate() names the place and each bad field, and keeps the issues as data", () => {
    const schema = z.object({ size: z.number().positive(), name: z.string() });
    assert.throws(
      () => validate(schema, { size: -1, name: 3 }, "thing"),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.deepEqual(
          e.issues.map((i) => i.path),
          [
            ["thing", "size"],
            ["thing", "name"],
          ],
        );
        assert.match(e.message, /thing\.size: /);
        assert.match(e.message, /thing\.name: /);
        return true;
      },
    );
  });

  it("tumbling(-5) is a ConfigError naming tumbling.sizeMs", () => {
    throwsConfig(() => tumbling(-5), "tumbling.sizeMs");
    throwsConfig(() => tumbling(Number.POSITIVE_INFINITY), "tumbling.sizeMs");
    throwsConfig(() => tumbling(10, { offsetMs: Number.NaN }), "tumbling.offsetMs");
  });

  it("sliding and session options are validated", () => {
    throwsConfig(() => sliding(10, 0), "sliding.slideMs");
    throwsConfig(() => sliding(0, 5), "sliding.sizeMs");
    throwsConfig(() => sliding(10, 20), "sliding.slideMs");
    throwsConfig(() => session({ gapMs: 0 }), "session.gapMs");
  });

  it("job options are validated", () => {
    throwsConfig(() => new Job({ maxInFlight: 0 }), "job.maxInFlight");
    throwsConfig(() => new Job({ name: "has space" }), "job.name");
    throwsConfig(() => new Job({ onUserError: "ignore" as "fail" }), "job.onUserError");
  });

  it("generator options are validated", () => {
    throwsConfig(() => generator({ count: -1, make: (i) => i }), "generator.count");
    throwsConfig(() => generator({ splits: 0, make: (i) => i }), "generator.splits");
  });

  it("trigger options are validated", () => {
    throwsConfig(() => countTrigger(0), "countTrigger.n");
    throwsConfig(() => processingTimeTrigger(-1), "processingTimeTrigger.intervalMs");
  });

  it("window options are validated when the window is declared", () => {
    const keyed = (f: (k: ReturnType<TestDriver<number, number>["job"]["fromIterable"]>) => unknown): void => {
      const job = new Job();
      f(job.fromIterable([1]));
    };
    throwsConfig(() => keyed((s) => s.keyBy(() => 1).window(tumbling(10), { allowedLatenessMs: -1 }).count()), "window.allowedLatenessMs");
    throwsConfig(() => keyed((s) => s.keyBy(() => 1).window(tumbling(10), { early: { everyCount: 0 } }).count()), "window.early.everyCount");
    throwsConfig(() => keyed((s) => s.keyBy(() => 1).window(global()).count()), "window.trigger");
  });

  it("two operators with the same uid are a configuration error", () => {
    assert.throws(
      () =>
        new TestDriver<number, unknown>((s) =>
          s
            .keyBy(() => 1)
            .window(tumbling(10))
            .count({ uid: "w" })
            .keyBy(() => 1)
            .window(tumbling(10))
            .count({ uid: "w" }),
        ),
      (e: unknown) => isGressError(e, "ERR_CONFIG") && /"w" is used twice/.test(e.message),
    );
  });
});
