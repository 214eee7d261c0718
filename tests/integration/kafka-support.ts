/**
 * Helpers for the Kafka integration tests: the broker address from the environment (a missing variable
 * fails the test with the command to run), the Kafka client Gress runs on (GRESS_KAFKA_CLIENT), unique
 * topics, a plain producer, and an independent read_committed reader written directly on kafkajs (not on
 * Gress' source) to check what a sink committed.
 * @module
 */
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after } from "node:test";
import { CompressionTypes, Kafka, logLevel } from "kafkajs";
import type { KafkaClient } from "../../connectors/kafka/client.ts";
import { kafkajsClient } from "../../connectors/kafka/kafkajs.ts";
import { platformaticKafkaClient } from "../../connectors/kafka/platformatic.ts";

/** The brokers from GRESS_KAFKA_BROKERS, or a clear failure. */
export function brokers(): string[] {
  const v = process.env.GRESS_KAFKA_BROKERS;
  if (v === undefined || v === "") {
    throw new Error('GRESS_KAFKA_BROKERS is not set: run `scripts/services up kafka` and `eval "$(scripts/services env)"` first');
  }
  return v.split(",");
}

/** The Kafka client the tests run Gress' sources and sinks on: GRESS_KAFKA_CLIENT, "platformatic" (default, as in Gress) or "kafkajs". */
export function clientName(): "kafkajs" | "platformatic" {
  const v = process.env.GRESS_KAFKA_CLIENT ?? "platformatic";
  if (v !== "kafkajs" && v !== "platformatic") throw new Error(`GRESS_KAFKA_CLIENT must be "kafkajs" or "platformatic", not ${JSON.stringify(v)}`);
  return v;
}

/** A client of the kind under test; the caller closes it. */
export function testClient(list: readonly string[] = brokers()): KafkaClient {
  return clientName() === "kafkajs" ? kafkajsClient({ brokers: list, clientId: "gress-test" }) : platformaticKafkaClient({ brokers: list, clientId: "gress-test" });
}

/**
 * How a source or sink connects, for the client under test. kafkajs: `{ brokers }`, so the connector makes
 * and closes its own client, as by default. platformatic: `{ client }`; a connector does not close a client
 * it was given, so the test closes it after the current test (`closeAfterTest`) or, in a job's child
 * process, exiting does.
 */
export function connection(list: readonly string[] = brokers(), closeAfterTest = true): { readonly brokers: string[] } | { readonly client: KafkaClient } {
  if (clientName() === "kafkajs") return { brokers: [...list] };
  const client = platformaticKafkaClient({ brokers: list, clientId: "gress-test" });
  if (closeAfterTest) after(() => client.close());
  return { client };
}

let seq = 0;
/** A topic name no other test run uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++seq}`;
}

/** A kafkajs client for test plumbing. */
export function kafka(): Kafka {
  return new Kafka({ brokers: brokers(), clientId: "gress-test", logLevel: logLevel.NOTHING });
}

/** Creates a topic with `partitions` partitions. */
export async function createTopic(topic: string, partitions: number, config: Readonly<Record<string, string>> = {}): Promise<void> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    const configEntries = Object.entries(config).map(([name, value]) => ({ name, value }));
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/** A message to produce in a test. */
export interface TestMessage {
  readonly value: Uint8Array | string | null;
  readonly key?: string;
  readonly partition?: number;
  readonly timestamp?: number;
}

/** Produces messages (non-transactionally, acks=all), in order, in batches. */
export async function produce(topic: string, messages: readonly TestMessage[], options: { readonly gzip?: boolean } = {}): Promise<void> {
  const producer = kafka().producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 5000) {
      await producer.send({
        topic,
        acks: -1,
        ...(options.gzip === true ? { compression: CompressionTypes.GZIP } : {}),
        messages: messages.slice(i, i + 5000).map((m) => ({
          value: m.value === null || typeof m.value === "string" ? m.value : Buffer.from(m.value),
          ...(m.key === undefined ? {} : { key: m.key }),
          ...(m.partition === undefined ? {} : { partition: m.partition }),
          ...(m.timestamp === undefined ? {} : { timestamp: String(m.timestamp) }),
        })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

/** One message read back. */
export interface ReadMessage {
  readonly partition: number;
  readonly offset: number;
  readonly key: string | null;
  readonly value: string;
  /** The value's bytes (for binary formats such as Avro and Protobuf). */
  readonly bytes: Uint8Array | null;
}

/**
 * The read_committed end offsets (last stable offsets) of a topic's partitions, once they have stopped moving.
 * A producer's commit returns when the transaction coordinator has decided, but the commit markers reach the
 * partitions a little later; until then the last stable offset still stands before the committed records, and
 * a reader that stopped there would miss them. Waiting for a second of unchanged offsets covers that delay.
 */
async function stableEndOffsets(k: Kafka, topic: string, timeoutMs: number): Promise<Map<number, number>> {
  const admin = k.admin();
  await admin.connect();
  try {
    const read = async (): Promise<string> =>
      JSON.stringify((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.high)]).sort((a, b) => a[0]! - b[0]!));
    const deadline = Date.now() + timeoutMs;
    let last = await read();
    let since = Date.now();
    while (Date.now() - since < 1_000) {
      if (Date.now() > deadline) throw new Error(`end offsets of ${topic} kept moving for ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
      const now = await read();
      if (now !== last) {
        last = now;
        since = Date.now();
      }
    }
    return new Map(JSON.parse(last) as [number, number][]);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Reads every committed message of `topic` (read_committed, a fresh group) up to the last stable offsets,
 * taken once they stopped moving. Records of a transaction left open lie beyond those offsets and are not
 * read. Fails after `timeoutMs` rather than hang.
 */
export async function readCommitted(topic: string, timeoutMs = 30_000): Promise<ReadMessage[]> {
  const k = kafka();
  const ends = await stableEndOffsets(k, topic, timeoutMs);
  const reached = new Map<number, number>();
  const out: ReadMessage[] = [];
  const done = (): boolean => [...ends].every(([p, end]) => end === 0 || (reached.get(p) ?? 0) >= end);
  if (done()) return out;
  const consumer = k.consumer({ groupId: uniqueName("reader"), readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`read_committed reader of ${topic} did not reach the end offsets ${JSON.stringify([...ends])} within ${timeoutMs} ms (reached ${JSON.stringify([...reached])}); a transaction left open?`)),
        timeoutMs,
      );
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        const p = e.payload as { partition: number; lastOffset: string };
        reached.set(p.partition, Math.max(reached.get(p.partition) ?? 0, Number(p.lastOffset) + 1));
        if (done()) {
          clearTimeout(timer);
          resolve();
        }
      });
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            out.push({ partition, offset: Number(message.offset), key: message.key?.toString() ?? null, value: message.value?.toString() ?? "", bytes: message.value === null ? null : new Uint8Array(message.value) });
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

const MASK = (1n << 64n) - 1n;

/** 64-bit FNV-1a of a string, as a BigInt. */
export function hash64(s: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < s.length; i++) {
    h ^= BigInt(s.charCodeAt(i));
    h = (h * 0x100000001b3n) & MASK;
  }
  return h;
}

/** The set digest (count, Σh, Σh²) mod 2^64 of a multiset of strings: equal multisets, equal digests. */
export function setDigest(values: Iterable<string>): { count: number; sum: bigint; sumSq: bigint } {
  let count = 0;
  let sum = 0n;
  let sumSq = 0n;
  for (const v of values) {
    const h = hash64(v);
    count++;
    sum = (sum + h) & MASK;
    sumSq = (sumSq + ((h * h) & MASK)) & MASK;
  }
  return { count, sum, sumSq };
}

/**
 * Produces text lines with Kafka's own Java console producer, from the jars scripts/services cached: for what
 * the JavaScript clients cannot write (kafkajs has no zstd, and Node.js 20 has no zstd for the other client).
 */
export async function produceWithJava(topic: string, lines: readonly string[], compression: "zstd" | "gzip" | "lz4" | "snappy"): Promise<void> {
  const cache = process.env.GRESS_SERVICES_CACHE ?? join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "gress", "services");
  const home = existsSync(cache) ? readdirSync(cache).find((d) => /^kafka-\d/.test(d) && existsSync(join(cache, d, "libs"))) : undefined;
  if (home === undefined) throw new Error(`no cached Kafka jars under ${cache}: run scripts/services up kafka first`);
  const args = ["-cp", `${join(cache, home, "libs")}/*`, "kafka.tools.ConsoleProducer", "--bootstrap-server", brokers().join(","), "--topic", topic, "--compression-codec", compression];
  const child = spawn("java", [...args, "--producer-property", "acks=all"], { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(`${lines.join("\n")}\n`);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  if (code !== 0) throw new Error(`the Java console producer exited with ${code}: ${stderr.slice(-2000)}`);
}
