/**
 * Which Kafka client Gress makes when it is given broker addresses: @platformatic/kafka by default, kafkajs
 * when asked for by name (`client: "kafkajs"`). Sources, sinks and scale-out workers all come through here. A
 * {@link KafkaClient} given directly is used as it is.
 *
 * Why @platformatic/kafka is the default (measured, see docs/SCALE-OUT.md section 12): Gress reads about 1.4×
 * faster on it than on kafkajs; it has transactional offset commits with group metadata (KIP-447), so a zombie
 * task is fenced by the group generation as well as by its transactional id; and its group members heartbeat
 * while a batch is processed, where kafkajs members heartbeat between batches only. kafkajs is no longer
 * maintained and has a read_committed bug Gress works around (connectors/kafka/kafkajs-aborted.ts).
 *
 * @platformatic/kafka is an optional peer dependency: its engines ask for Node.js 22 while Gress supports 20.19
 * (where it runs: the adapter adds the one missing piece), so npm would not install it for a Node 20 project as
 * a dependency of Gress. When it is installed it is the default; when it is not, the default is kafkajs, said
 * once on stderr with how to install it (like `ws`, which uses its optional native helpers when they are
 * there). Naming "platformatic" explicitly asks for the package (a ConfigError on first use that says what to
 * install); naming "kafkajs" never loads it. `GRESS_KAFKA_CLIENT=kafkajs|platformatic` in the environment sets
 * the default for a process (the test suites run the same tests on both clients this way).
 * @module
 */
import process from "node:process";
import { ConfigError } from "../../lib/errors.ts";
import type { KafkaClient } from "./client.ts";
import { kafkajsClient } from "./kafkajs.ts";
import { PLATFORMATIC_KAFKA_VERSION, platformaticKafkaClient } from "./platformatic.ts";

/**
 * The name of a built-in Kafka client: `"platformatic"` (@platformatic/kafka, the default) or `"kafkajs"`.
 *
 * @example
 * ```ts
 * import { type KafkaClientName, kafkaSource } from "gress/kafka";
 *
 * const client: KafkaClientName = "kafkajs";
 * const orders = kafkaSource({ name: "orders", brokers: ["localhost:9092"], client, topics: ["orders"], groupId: "totals" });
 * ```
 */
export type KafkaClientName = "platformatic" | "kafkajs";

/**
 * The client made from broker addresses when none is named, when its package is installed (see the module comment).
 *
 * @example
 * ```ts
 * import { DEFAULT_KAFKA_CLIENT, defaultKafkaClient } from "gress/kafka";
 *
 * if (defaultKafkaClient() !== DEFAULT_KAFKA_CLIENT) console.warn("install @platformatic/kafka for the faster client");
 * ```
 */
export const DEFAULT_KAFKA_CLIENT: KafkaClientName = "platformatic";

/**
 * The default client's name from the environment variable's value and whether @platformatic/kafka is installed;
 * `fallback` when kafkajs is chosen only because it is not. A ConfigError for a value that names no client.
 */
export function chooseKafkaClient(env: string | undefined, installed: () => boolean): { readonly name: KafkaClientName; readonly fallback: boolean } {
  if (env !== undefined && env !== "") {
    if (env !== "platformatic" && env !== "kafkajs") {
      throw new ConfigError(`GRESS_KAFKA_CLIENT is ${JSON.stringify(env)}: it names the default Kafka client, "platformatic" or "kafkajs"`, [
        { path: ["GRESS_KAFKA_CLIENT"], code: "invalid_value", message: 'expected "platformatic" or "kafkajs"' },
      ]);
    }
    return { name: env, fallback: false };
  }
  return installed() ? { name: DEFAULT_KAFKA_CLIENT, fallback: false } : { name: "kafkajs", fallback: true };
}

let chosen: KafkaClientName | undefined;
/**
 * The client made from broker addresses when none is named, in this process: {@link DEFAULT_KAFKA_CLIENT} if its
 * package resolves from here, else kafkajs (said once on stderr). The environment variable `GRESS_KAFKA_CLIENT`
 * ("platformatic" or "kafkajs") sets it instead, e.g. to move a deployment between clients without a code change.
 *
 * @example
 * ```ts
 * import { defaultKafkaClient } from "gress/kafka";
 *
 * console.log(defaultKafkaClient()); // "platformatic" when @platformatic/kafka is installed, else "kafkajs"
 * ```
 */
export function defaultKafkaClient(): KafkaClientName {
  if (chosen === undefined) {
    const choice = chooseKafkaClient(process.env.GRESS_KAFKA_CLIENT, () => {
      try {
        import.meta.resolve("@platformatic/kafka");
        return true;
      } catch {
        return false;
      }
    });
    chosen = choice.name;
    if (choice.fallback) {
      console.error(
        `gress: @platformatic/kafka (the default Kafka client when installed) is not installed; using kafkajs. For the faster client with KIP-447 fencing: npm install @platformatic/kafka@${PLATFORMATIC_KAFKA_VERSION} (an optional peer dependency; it declares Node.js 22 and runs on 20.19)`,
      );
    }
  }
  return chosen;
}

/** The client to use: `client` when it is one, else a new client of the named kind (default: {@link defaultKafkaClient}) for `brokers`. */
export function resolveKafkaClient(brokers: readonly string[], clientId: string, client?: KafkaClient | KafkaClientName): KafkaClient {
  if (client !== undefined && typeof client !== "string") return client;
  return (client ?? defaultKafkaClient()) === "kafkajs" ? kafkajsClient({ brokers, clientId }) : platformaticKafkaClient({ brokers, clientId });
}

/** The check of a `client` option in the sources' and sinks' option schemas: a KafkaClient or a client name. */
export function isKafkaClientOption(c: unknown): c is KafkaClient | KafkaClientName {
  return c === "platformatic" || c === "kafkajs" || typeof (c as KafkaClient | undefined)?.consumer === "function";
}
