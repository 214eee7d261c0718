/**
 * Configuration checks of scale-out jobs (lib/scaleout/config-checks.ts): co-partitioned topics, the changelog
 * topic, and sources that cannot be split into tasks. Each error names what is at fault.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { kafkaSource, runScaledOut } from "../../connectors/kafka/index.ts";
import { isGressError, sinkFn } from "../../lib/index.ts";
import { checkChangelogTopic, checkCopartitioned, checkScaleOutSources } from "../../lib/scaleout/config-checks.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-so-config-");

const configError = (f: () => unknown): Error => {
  try {
    f();
  } catch (e) {
    assert.ok(isGressError(e, "ERR_CONFIG"), String(e));
    return e;
  }
  assert.fail("expected a ConfigError");
};

describe("checkCopartitioned", () => {
  const counts = new Map([
    ["orders", 12],
    ["payments", 8],
    ["refunds", 12],
    ["single", 1],
  ]);
  it("returns the shared partition count", () => {
    assert.equal(checkCopartitioned(["orders", "refunds"], counts), 12);
    assert.equal(checkCopartitioned(["single"], counts), 1);
  });
  it("names every topic and its count when they differ, and says how to fix it", () => {
    const e = configError(() => checkCopartitioned(["orders", "payments", "single"], counts));
    assert.match(e.message, /"orders" has 12 partitions, "payments" has 8 partitions, "single" has 1 partition:/);
    assert.match(e.message, /repartition one of them with keyBy/);
  });
  it("names topics the metadata does not know", () => {
    assert.match(configError(() => checkCopartitioned(["orders", "ordres"], counts)).message, /input topic "ordres" not found/);
    assert.match(configError(() => checkCopartitioned([], counts)).message, /reads no input topic/);
  });
});

describe("checkChangelogTopic", () => {
  it("accepts compact (also compact,delete) with the right partition count", () => {
    checkChangelogTopic("gress-j-0-changelog", new Map([["cleanup.policy", "compact"]]), { actual: 12, expected: 12 });
    checkChangelogTopic("gress-j-0-changelog", new Map([["cleanup.policy", "delete,compact"]]));
  });
  it("refuses a changelog that is not compacted, naming the topic and its policy", () => {
    const e = configError(() => checkChangelogTopic("gress-j-0-changelog", new Map([["cleanup.policy", "delete"]])));
    assert.match(e.message, /changelog topic "gress-j-0-changelog" has cleanup\.policy=delete, but a changelog must be compacted/);
    assert.match(configError(() => checkChangelogTopic("t", new Map())).message, /cleanup\.policy=delete \(the default\)/);
  });
  it("refuses a changelog with another partition count than tasks", () => {
    const e = configError(() => checkChangelogTopic("gress-j-1-changelog", new Map([["cleanup.policy", "compact"]]), { actual: 8, expected: 12 }));
    assert.match(e.message, /"gress-j-1-changelog" has 8 partitions, but its sub-topology has 12 tasks/);
  });
});

describe("checkScaleOutSources", () => {
  it("accepts Kafka sources only", () => {
    checkScaleOutSources([
      { name: "orders", kind: "kafka" },
      { name: "payments", kind: "kafka" },
    ]);
    checkScaleOutSources([]);
  });
  it("names each other source and its kind, and points to ingesting into Kafka first", () => {
    const e = configError(() =>
      checkScaleOutSources([
        { name: "orders", kind: "kafka" },
        { name: "clicks", kind: "http" },
        { name: "ticks", kind: "nats" },
      ]),
    );
    assert.match(e.message, /sources "clicks" \(http\), "ticks" \(nats\) are not Kafka: ingest into a Kafka topic first/);
    const one = configError(() => checkScaleOutSources([{ name: "live", kind: "websocket" }]));
    assert.match(one.message, /source "live" \(websocket\) is not Kafka: ingest into a Kafka topic first/);
  });
  it("refuses a bounded Kafka source, naming it: a scale-out job does not end when its input does", () => {
    checkScaleOutSources([{ name: "orders", kind: "kafka", bounded: false }]);
    const e = configError(() =>
      checkScaleOutSources([
        { name: "orders", kind: "kafka" },
        { name: "backfill", kind: "kafka", bounded: true },
      ]),
    );
    assert.match(e.message, /Kafka source "backfill" is bounded \(bounded: true\): a scale-out job does not end when its input does; run a bounded job in single-process mode/);
    assert.doesNotMatch(e.message, /"orders"/);
  });
});

describe("a scale-out worker with a bounded Kafka source", () => {
  it("fails to start with the ConfigError, before it contacts the brokers", { timeout: 60_000 }, async () => {
    const brokers = ["127.0.0.1:9"]; // nothing listens there
    const worker = runScaledOut({ name: "bounded", kafka: { brokers, client: "platformatic" }, state: tempDir(), log: () => {} }, (job) => {
      job.source(kafkaSource({ name: "backfill", brokers, topics: ["orders"], groupId: "g", bounded: true })).sinkTo(sinkFn("out", () => {}));
    });
    await assert.rejects(worker.started, (e: Error) => isGressError(e, "ERR_CONFIG") && /Kafka source "backfill" is bounded/.test(e.message));
    await worker.done.catch(() => undefined);
  });
});

describe("a scale-out worker whose brokers cannot be reached", () => {
  it("fails saying that it could not read the input topic from the brokers, not that the topic is missing", { timeout: 60_000 }, async () => {
    const brokers = ["127.0.0.1:9"]; // nothing listens there
    const worker = runScaledOut({ name: "unreachable", kafka: { brokers, client: "platformatic" }, state: tempDir(), log: () => {} }, (job) => {
      job.source(kafkaSource({ name: "in", brokers, topics: ["orders"], groupId: "g" })).sinkTo(sinkFn("out", () => {}));
    });
    await assert.rejects(worker.started, (e: Error) => {
      assert.ok(isGressError(e, "ERR_SOURCE"), String(e));
      assert.match(e.message, /scale-out job "unreachable": cannot read the partitions of input topic "orders" from the brokers: /);
      assert.doesNotMatch(e.message, /not found/);
      return true;
    });
    await assert.rejects(worker.done);
  });
});
