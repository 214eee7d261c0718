/**
 * Fraud detection: card testing. A fraudster checks a stolen card with a few tiny charges, then makes a large
 * purchase. This pipeline finds three small transactions (< 2.00) followed by a large one (≥ 500) on the same
 * card within 10 minutes, joins each match with the card owner's profile as it was at that moment, scores the
 * risk, and prints the alerts above a threshold. Partial sequences that time out are counted too.
 *
 * Runs on generated data and ends by itself: `node --import tsx examples/fraud-detection.ts`
 * @module
 */
import { isMatch, isTimeout, match, named, pattern, skip, tableJoin } from "../cep/index.ts";
import { boundedOutOfOrderness, Job, monotonic, sinkFn } from "../lib/index.ts";
import { type Transaction, transactions, userProfiles } from "../lib/sources/transactions.ts";

/** An alert for one suspicious card. */
export interface Alert {
  readonly card: string;
  readonly user: string;
  readonly tests: readonly number[];
  readonly amount: number;
  readonly country: string;
  readonly risk: number;
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

/** Builds the job; `count` bounds the input. `alert` receives each alert. */
export function fraudDetection(count = 30_000, alert: (a: Alert) => void = (a) => console.log(JSON.stringify(a))): { job: Job; stats: FraudStats } {
  const stats: FraudStats = { matches: 0, timeouts: 0, alerts: 0 };
  const job = new Job({ name: "fraud-detection" });
  const tx = job.source(transactions({ count, maxDelayMs: 2_000 })).withTimestamps(boundedOutOfOrderness<Transaction>(2_000));
  const profiles = job.source(userProfiles()).withTimestamps(monotonic());

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
  const enriched = tableJoin(
    suspicious.keyBy((s) => s.user),
    profiles.keyBy((p) => p.user),
    { mode: "left", uid: "profile-join" },
  );
  enriched
    .map(({ left: s, right: profile }): Alert => {
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
      return {
        card: s.card,
        user: s.user,
        tests: s.tests,
        amount: s.large.amount,
        country: s.large.country,
        risk: Math.min(1, Math.round(risk * 100) / 100),
        reasons,
        at: new Date(s.large.at).toISOString(),
      };
    })
    .filter((a) => a.risk >= RISK_THRESHOLD)
    .sinkTo(
      sinkFn("alerts", (a) => {
        stats.alerts++;
        alert(a);
      }),
    );
  return { job, stats };
}

// Run when executed directly (Node has no import.meta.main before 24; Bun and Deno set it).
if ((import.meta as { main?: boolean }).main ?? process.argv[1]?.endsWith("fraud-detection.ts")) {
  const started = Date.now();
  const { job, stats } = fraudDetection(30_000, (a) => {
    console.log(`ALERT ${a.at} ${a.card} (${a.user}) ${a.amount.toFixed(2)} ${a.country} risk=${a.risk} tests=[${a.tests.join(", ")}] ${a.reasons.join("; ")}`);
  });
  await job.run();
  console.log(`${stats.matches} card-testing matches, ${stats.timeouts} timed out, ${stats.alerts} alerts (risk ≥ ${RISK_THRESHOLD}) in ${Date.now() - started} ms`);
}
