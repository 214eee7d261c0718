/**
 * Fraud detection: card testing. A fraudster checks a stolen card with a few tiny charges, then makes a large
 * purchase. This pipeline finds three small transactions (< 2.00) followed by a large one (≥ 500) on the same
 * card within 10 minutes, joins each match with the card owner's profile as it was at that moment, scores the
 * risk, and prints the alerts above a threshold. Partial sequences that time out are counted too. Each match
 * is also scored by a model behind an HTTP service (started on loopback by the example, see fraud-scoring.ts),
 * called with `mapAsync` (timeout, retries, cache); the alerts carry that score.
 *
 * Runs on generated data and ends by itself: `node --import tsx examples/fraud-detection.ts`.
 * With the services (`scripts/services up && eval "$(scripts/services env)"`), `--services` reads the
 * transactions from a Kafka topic, looks the profiles up in PostgreSQL with `mapAsync` (fraud-profiles.ts)
 * and publishes the alerts to NATS JetStream, with exactly-once checkpoints:
 * `node --import tsx examples/fraud-detection.ts --services`.
 * @module
 */
import { isMatch, isTimeout, match, named, pattern, skip, tableJoin } from "../cep/index.ts";
import { type AsyncCallContext, boundedOutOfOrderness, DEAD_LETTERS, Job, lmdbState, monotonic, type Sink, sinkFn, type Stream } from "../lib/index.ts";
import { isMainModule } from "../lib/runtime.ts";
import { type Transaction, transactions, type UserProfile, userProfiles } from "../lib/sources/transactions.ts";
import { type RiskFeatures, SCORING_OPTIONS, type ScoringService, scoringService } from "./fraud-scoring.ts";

/** An alert for one suspicious card. */
export interface Alert {
  readonly card: string;
  readonly user: string;
  readonly tests: readonly number[];
  readonly amount: number;
  readonly country: string;
  readonly risk: number;
  /** The scoring model's probability that this is fraud (from the scoring service). */
  readonly score: number;
  readonly reasons: readonly string[];
  readonly at: string;
}

const RISK_THRESHOLD = 0.6;

/** Counts of what the pipeline saw, filled while it runs. */
export interface FraudStats {
  matches: number;
  timeouts: number;
  alerts: number;
}

/** Looks a user's profile up in an external system (PostgreSQL in the --services run). */
export type ProfileLookup = (user: string, call: AsyncCallContext) => Promise<UserProfile | undefined>;

/**
 * The pipeline on any stream of transactions (event time from the records). Profiles come either as a stream
 * of profile changes, joined as they were at the time of each match, or from a lookup, called per match.
 */
export function fraudPipeline(transactionsIn: Stream<Transaction>, profilesIn: Stream<UserProfile> | ProfileLookup, stats: FraudStats, scoring: ScoringService): Stream<Alert> {
  const tx = transactionsIn.withTimestamps(boundedOutOfOrderness<Transaction>(2_000));

  const cardTesting = pattern<Transaction>()
    .begin("tests")
    .where(named("small", (t: Transaction) => t.amount < 2))
    .times(3)
    .followedBy("large")
    .where(named("large", (t: Transaction) => t.amount >= 500))
    .within(10 * 60_000)
    // One alert per sequence: a fourth test charge must not produce a second, overlapping match.
    .skip(skip.skipPastLastEvent());

  const results = match(tx.keyBy((t) => t.card), cardTesting, { uid: "card-testing" });
  // Three tests and no large charge within 10 minutes: a first-class output, counted here.
  results.filter(isTimeout).sinkTo(sinkFn("timeouts", () => void stats.timeouts++));

  const suspicious = results.filter(isMatch).map((m) => {
    stats.matches++;
    const large = m.events.large[0]!;
    return { card: large.card, user: large.user, tests: m.events.tests.map((t) => t.amount), large };
  });
  type Suspicious = (typeof suspicious extends Stream<infer S> ? S : never);
  const withProfiles: Stream<{ readonly left: Suspicious; readonly right: UserProfile | undefined }> =
    typeof profilesIn === "function"
      ? // Up to 32 lookups in flight, in order, each timed out after 2 s and tried 3 times.
        suspicious.mapAsync(async (s, call) => ({ left: s, right: await profilesIn(s.user, call) }), {
          concurrency: 32,
          timeoutMs: 2_000,
          retry: { maxAttempts: 3, backoff: "exponential", delayMs: 50 },
          uid: "profile-lookup",
        })
      : tableJoin(
          suspicious.keyBy((s) => s.user),
          profilesIn.withTimestamps(monotonic<UserProfile>()).keyBy((p) => p.user),
          { mode: "left", uid: "profile-join" },
        );
  return withProfiles
    .map(({ left: s, right: profile }) => {
      const reasons = ["card-testing sequence"];
      let risk = 0.5;
      if (profile === undefined) {
        risk += 0.2;
        reasons.push("no profile");
      } else {
        if (profile.riskTier !== "low") {
          risk += profile.riskTier === "high" ? 0.3 : 0.15;
          reasons.push(`${profile.riskTier} risk tier`);
        }
        if (profile.accountAgeDays < 90) {
          risk += 0.2;
          reasons.push("new account");
        }
        if (s.large.country !== profile.homeCountry) {
          risk += 0.25;
          reasons.push(`abroad (${s.large.country}, home ${profile.homeCountry})`);
        }
      }
      if (s.large.amount >= 1500) {
        risk += 0.1;
        reasons.push("very large amount");
      }
      const features: RiskFeatures = {
        amount: s.large.amount,
        tests: s.tests.length,
        accountAgeDays: profile?.accountAgeDays,
        abroad: profile !== undefined && s.large.country !== profile.homeCountry,
        riskTier: profile?.riskTier,
      };
      const alert: Omit<Alert, "score"> = {
        card: s.card,
        user: s.user,
        tests: s.tests,
        amount: s.large.amount,
        country: s.large.country,
        risk: Math.min(1, Math.round(risk * 100) / 100),
        reasons,
        at: new Date(s.large.at).toISOString(),
      };
      return { alert, features };
    })
    // The model's score, from the scoring service: at most 64 requests in flight, each timed out after 2 s
    // and tried 3 times; a match it cannot score goes to dead letters (see the alert sink).
    .mapAsync(async ({ alert, features }, call): Promise<Alert> => ({ ...alert, score: await scoring.score(features, call) }), SCORING_OPTIONS)
    .filter((a) => a.risk >= RISK_THRESHOLD)
    .tap(() => void stats.alerts++);
}

/** The alerts sink of the generated-data run: prints, and stops the scoring service when the job ends. */
function alertSink(alert: (a: Alert) => void, scoring: ScoringService): Sink<Alert> {
  return { name: "alerts", write: alert, close: () => scoring.close() };
}

/** Builds the job on generated data; `count` bounds the input. `alert` receives each alert. */
export function fraudDetection(
  count = 30_000,
  alert: (a: Alert) => void = (a) => console.log(JSON.stringify(a)),
): { job: Job; stats: FraudStats; scoring: ScoringService } {
  const stats: FraudStats = { matches: 0, timeouts: 0, alerts: 0 };
  const job = new Job({ name: "fraud-detection" });
  const scoring = scoringService(job.clock);
  const alerts = fraudPipeline(job.source(transactions({ count, maxDelayMs: 2_000 })), job.source(userProfiles()), stats, scoring);
  alerts.sideOutput(DEAD_LETTERS).sinkTo(sinkFn("unscored", (m) => console.warn("not scored:", JSON.stringify(m))));
  alerts.sinkTo(alertSink(alert, scoring));
  return { job, stats, scoring };
}

/** Kafka transactions → pattern → profile lookup in PostgreSQL → scoring → alerts on NATS JetStream, exactly-once. */
export async function mainServices(count = 30_000): Promise<void> {
  const { kafkaSource } = await import("../connectors/kafka/index.ts");
  const { natsJetStreamSink } = await import("../connectors/nats/index.ts");
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const { connect } = await import("@nats-io/transport-node");
  const { brokersFromEnv, feedTopic } = await import("./support/kafka-feed.ts");
  const { postgresProfiles } = await import("./fraud-profiles.ts");
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const natsUrl = process.env.GRESS_NATS_URL;
  const pgUrl = process.env.GRESS_PG_URL;
  if (natsUrl === undefined || pgUrl === undefined) throw new Error('set GRESS_NATS_URL and GRESS_PG_URL: scripts/services up && eval "$(scripts/services env)"');
  const brokers = brokersFromEnv();
  const run = Date.now().toString(36);
  const txSource = transactions({ count, maxDelayMs: 2_000 });
  const profileSource = userProfiles();
  await feedTopic(brokers, `transactions-${run}`, txSource, count, (t) => t.card, 3);
  const profiles = await postgresProfiles(
    pgUrl,
    `fraud_profiles_${run}`,
    Array.from({ length: 400 }, (_, i) => profileSource.event(i).value),
  );
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: `FRAUD_ALERTS_${run}`, subjects: [`fraud.alerts.${run}`] });

  const stats: FraudStats = { matches: 0, timeouts: 0, alerts: 0 };
  const scoring = scoringService();
  const stateDir = mkdtempSync(join(tmpdir(), "gress-fraud-"));
  const job = new Job({ name: "fraud-detection", state: lmdbState({ path: stateDir }), checkpoints: { intervalMs: 500 } });
  const source = <T>(name: string, topic: string): Stream<T> =>
    job.source(kafkaSource<T>({ name, brokers, topics: [topic], groupId: `fraud-${run}-${name}`, bounded: true }));
  fraudPipeline(source<Transaction>("transactions", `transactions-${run}`), (user, call) => profiles.lookup(user, call), stats, scoring).sinkTo(
    natsJetStreamSink<Alert>({ name: "alerts", servers: natsUrl, subject: `fraud.alerts.${run}`, idPrefix: `fraud-${run}` }),
  );
  await job.run().finally(() => Promise.all([scoring.close(), profiles.close()]));
  const published = (await jsm.streams.info(`FRAUD_ALERTS_${run}`)).state.messages;
  console.log(
    `${count} transactions from Kafka: ${stats.matches} card-testing matches, ${stats.timeouts} timed out; ${profiles.queries} profile queries to PostgreSQL (${profiles.cache.hits} from the cache), ${scoring.requests} scoring requests; ${published} alerts on NATS subject fraud.alerts.${run}`,
  );
  await jsm.streams.delete(`FRAUD_ALERTS_${run}`);
  await nc.close();
  rmSync(stateDir, { recursive: true, force: true });
}

if (isMainModule(import.meta.url) && process.argv.includes("--services")) {
  await mainServices();
} else if (isMainModule(import.meta.url)) {
  const started = Date.now();
  const { job, stats, scoring } = fraudDetection(30_000, (a) => {
    console.log(
      `ALERT ${a.at} ${a.card} (${a.user}) ${a.amount.toFixed(2)} ${a.country} risk=${a.risk} score=${a.score} tests=[${a.tests.join(", ")}] ${a.reasons.join("; ")}`,
    );
  });
  await job.run();
  console.log(
    `${stats.matches} card-testing matches, ${stats.timeouts} timed out, ${stats.alerts} alerts (risk ≥ ${RISK_THRESHOLD}) in ${Date.now() - started} ms; ${scoring.requests} scoring requests`,
  );
}
