/**
 * The default Kafka client (connectors/kafka/default-client.ts): @platformatic/kafka when installed, kafkajs
 * otherwise (a fallback, said once), and GRESS_KAFKA_CLIENT overriding both; a value that names no client is a
 * ConfigError naming the variable. The not-installed case with the real package missing is in
 * kafka-optional-peer.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chooseKafkaClient, resolveKafkaClient } from "../../connectors/kafka/default-client.ts";
import { platformaticKafkaClient } from "../../connectors/kafka/index.ts";
import { isGressError } from "../../lib/index.ts";

describe("the default Kafka client", () => {
  const installed = () => true;
  const missing = () => false;
  it("is @platformatic/kafka when installed, else kafkajs as a fallback", () => {
    assert.deepEqual(chooseKafkaClient(undefined, installed), { name: "platformatic", fallback: false });
    assert.deepEqual(chooseKafkaClient(undefined, missing), { name: "kafkajs", fallback: true });
    assert.deepEqual(chooseKafkaClient("", missing), { name: "kafkajs", fallback: true });
  });
  it("is what GRESS_KAFKA_CLIENT names, installed or not (naming platformatic without it fails on first use, saying what to install)", () => {
    for (const has of [installed, missing]) {
      assert.deepEqual(chooseKafkaClient("kafkajs", has), { name: "kafkajs", fallback: false });
      assert.deepEqual(chooseKafkaClient("platformatic", has), { name: "platformatic", fallback: false });
    }
  });
  it("refuses a GRESS_KAFKA_CLIENT that names no client, naming the variable and the choices", () => {
    for (const bad of ["Kafkajs", "librdkafka", " platformatic"]) {
      assert.throws(
        () => chooseKafkaClient(bad, installed),
        (e: Error) => isGressError(e, "ERR_CONFIG") && e.message === `GRESS_KAFKA_CLIENT is ${JSON.stringify(bad)}: it names the default Kafka client, "platformatic" or "kafkajs"`,
      );
    }
  });
  it("is not used for a client given as an object: that one is used as it is", async () => {
    const given = resolveKafkaClient(["127.0.0.1:9"], "t", "kafkajs");
    assert.equal(resolveKafkaClient(["127.0.0.1:9"], "t", given), given);
    await given.close();
  });
  it("platformaticKafkaClient refuses a readRecords that is neither \"gress\" nor \"library\", naming the option", () => {
    for (const bad of ["fast", "", "Library"]) {
      assert.throws(
        () => platformaticKafkaClient({ brokers: ["127.0.0.1:9"], readRecords: bad as "gress" }),
        (e: Error) => isGressError(e, "ERR_CONFIG") && e.message === `platformaticKafkaClient: readRecords must be "gress" or "library", got ${JSON.stringify(bad)}`,
      );
    }
  });
});
