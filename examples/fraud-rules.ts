/**
 * Fraud rules from a Kafka topic: the card-testing rule of fraud-detection.ts (three small charges, then a
 * large one on the same card within 10 minutes) is not in the code but in a rules topic, as JSON, and
 * `matchDynamic` applies a new version while the job runs. Each alert names the rule version that raised it.
 *
 * With the services (`scripts/services up && eval "$(scripts/services env)"`):
 *   node --import tsx examples/fraud-rules.ts
 * creates a transactions topic and a rules topic with version 1 (large ≥ 500), runs the job, feeds half the
 * transactions, raises the threshold to 1 500 (version 2) as `set-threshold` does, feeds the other half, and
 * stops the job. From another terminal, a running job's threshold changes with
 *   node --import tsx examples/fraud-rules.ts set-threshold <rules topic> <version> <amount>
 * @module
 */
import { matchDynamic, named, pattern, type RuleChange, type RuleResult } from "../cep/index.ts";
import { boundedOutOfOrderness, Job, sinkFn, type Stream } from "../lib/index.ts";
import { isMainModule } from "../lib/runtime.ts";
import { type Transaction, transactions } from "../lib/sources/transactions.ts";

/** The rule's id in the rules topic. */
export const RULE_ID = "card-testing";

/** Version `version` of the card-testing rule with `threshold` for the large charge, as it goes on the topic. */
export function cardTestingRule(version: number, threshold: number): RuleChange {
  const p = pattern<Transaction>()
    .begin("tests")
    .where(named("small", (t: Transaction) => t.amount < 2))
    .times(3)
    .followedBy("large")
    .where({ field: "amount", op: ">=", value: threshold })
    .within(10 * 60_000);
  // Partial matches of the old version finish under it: a sequence under way is judged by the rule it began with.
  return { id: RULE_ID, version, pattern: p.toJSON(), policy: "finish" };
}

/** An alert: the card, the large amount, and the rule version that matched. */
export interface RuleAlert {
  readonly card: string;
  readonly amount: number;
  readonly version: number;
  readonly at: number;
}

/** The pipeline: transactions (event time from the records) matched by the rules of `changes`. */
export function fraudRulesPipeline(transactionsIn: Stream<Transaction>, changes: Stream<RuleChange>): Stream<RuleAlert> {
  const tx = transactionsIn.withTimestamps(boundedOutOfOrderness<Transaction>(2_000, { timestamp: (t) => t.at }));
  return matchDynamic(tx.keyBy((t) => t.card), changes, {
    uid: "fraud-rules",
    // The predicates a rule may name: "small" is the only one.
    conditions: { small: (t) => t.amount < 2 },
  })
    .filter((r: RuleResult<Transaction>) => r.kind === "match")
    .map((r) => {
      const large = r.events.large?.[0] as Transaction;
      return { card: large.card, amount: large.amount, version: r.version, at: large.at };
    });
}

/** Publishes version `version` of the rule with a new threshold to `topic` (what `set-threshold` runs). */
export async function setThreshold(brokers: readonly string[], topic: string, version: number, threshold: number): Promise<void> {
  const { Kafka, logLevel } = await import("kafkajs");
  const producer = new Kafka({ brokers: [...brokers], clientId: "gress-fraud-rules", logLevel: logLevel.NOTHING }).producer();
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: [{ key: RULE_ID, value: JSON.stringify(cardTestingRule(version, threshold)) }] });
  await producer.disconnect();
}

/** Writes transactions `from` ≤ i < `to` of the generator to `topic`. */
async function feed(brokers: readonly string[], topic: string, from: number, to: number): Promise<void> {
  const { Kafka, logLevel } = await import("kafkajs");
  const source = transactions({ count: to, maxDelayMs: 2_000 });
  const producer = new Kafka({ brokers: [...brokers], clientId: "gress-fraud-rules", logLevel: logLevel.NOTHING }).producer();
  await producer.connect();
  for (let i = from; i < to; i += 5_000) {
    const messages = [];
    for (let j = i; j < Math.min(to, i + 5_000); j++) {
      const e = source.event(j).value;
      messages.push({ key: e.card, value: JSON.stringify(e) });
    }
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();
}

/** What a run saw: the alerts, and the event time at which version 2 took effect. */
export interface FraudRulesRun {
  readonly alerts: RuleAlert[];
  readonly changedAt: number;
}

/**
 * The demo: topics, job, half the transactions, threshold `from` → `to`, the other half, stop. Resolves
 * when the job has stopped.
 */
export async function runFraudRules(brokers: readonly string[], count = 20_000, from = 500, to = 1_500): Promise<FraudRulesRun> {
  const { kafkaSource } = await import("../connectors/kafka/index.ts");
  const { createTopic } = await import("./support/kafka-feed.ts");
  const run = Date.now().toString(36);
  const txTopic = `fraud-rules-tx-${run}`;
  const rulesTopic = `fraud-rules-${run}`;
  await createTopic(brokers, txTopic, 1);
  await createTopic(brokers, rulesTopic, 1);
  await setThreshold(brokers, rulesTopic, 1, from);

  const job = new Job({ name: "fraud-rules" });
  const source = <T>(name: string, topic: string): Stream<T> => job.source(kafkaSource<T>({ name, brokers, topics: [topic], groupId: `fraud-rules-${run}-${name}` }));
  const alerts: RuleAlert[] = [];
  fraudRulesPipeline(source<Transaction>("transactions", txTopic), source<RuleChange>("rules", rulesTopic)).sinkTo(sinkFn("alerts", (a) => void alerts.push(a)));
  const done = job.run();
  const op = job.metrics.operator("fraud-rules");
  const until = async (what: string, ok: () => boolean): Promise<void> => {
    for (let waited = 0; !ok(); waited += 50) {
      if (waited > 60_000) throw new Error(`fraud-rules: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const half = Math.floor(count / 2);
  const lastAt = (i: number): number => transactions({ count, maxDelayMs: 2_000 }).event(i).value.at;
  // The operator's table of the highest version applied per rule, read with queryable state.
  const version = (): unknown => (job.queryState("fraud-rules", "versions", RULE_ID)?.value as Record<string, unknown> | undefined)?.[""];
  await until("version 1", () => version() === 1);
  await feed(brokers, txTopic, 0, half);
  // The first half is matched under version 1 once the watermark is near its end.
  await until("the first half", () => op.watermark >= lastAt(half - 1) - 5_000);
  await setThreshold(brokers, rulesTopic, 2, to);
  await until("version 2", () => version() === 2);
  const changedAt = op.watermark + 1;
  await feed(brokers, txTopic, half, count);
  await until("the second half", () => op.watermark >= lastAt(count - 1) - 5_000);
  await job.stop();
  await done;
  return { alerts, changedAt };
}

if (isMainModule(import.meta.url) && process.argv[2] === "set-threshold") {
  const [, , , topic, version, amount] = process.argv;
  const { brokersFromEnv } = await import("./support/kafka-feed.ts");
  await setThreshold(brokersFromEnv(), topic!, Number(version), Number(amount));
  console.log(`rule ${RULE_ID} version ${version}: large charge ≥ ${amount}, on ${topic}`);
} else if (isMainModule(import.meta.url)) {
  const { brokersFromEnv } = await import("./support/kafka-feed.ts");
  const { alerts, changedAt } = await runFraudRules(brokersFromEnv());
  for (const a of alerts) console.log(`ALERT v${a.version} ${new Date(a.at).toISOString()} ${a.card} ${a.amount.toFixed(2)}`);
  const v1 = alerts.filter((a) => a.version === 1).length;
  console.log(`${alerts.length} alerts: ${v1} under version 1 (≥ 500), ${alerts.length - v1} under version 2 (≥ 1 500, from ${new Date(changedAt).toISOString()})`);
}
