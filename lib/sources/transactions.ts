/**
 * Generated card transactions and user profiles, for the fraud-detection example and benchmarks. Both are
 * {@link generator} sources: event `i` is a pure function of (seed, i), so runs are deterministic and
 * replayable.
 *
 * Transactions are ordinary purchases on `cards` cards, plus planted fraud: in one block of 60 events out of
 * `fraudEvery`, one card makes three small "test" charges (under 2.00) and, a few seconds later, a large one
 * (500 or more) — the card-testing pattern. Card `c` belongs to user `c % users`.
 *
 * User profiles are a changelog: one record per user (home country, account age, risk tier), emitted in the
 * hour before the first transaction, then occasional updates.
 * @module
 */
import { type GeneratorOptions, type GeneratorSource, generator, hash32 } from "./generator.ts";

/** A card transaction. */
export interface Transaction {
  readonly id: number;
  readonly card: string;
  readonly user: string;
  readonly amount: number;
  readonly merchant: string;
  readonly country: string;
  /** Event time, epoch ms. */
  readonly at: number;
}

/** A user profile version. */
export interface UserProfile {
  readonly user: string;
  readonly homeCountry: string;
  readonly accountAgeDays: number;
  readonly riskTier: "low" | "medium" | "high";
  readonly at: number;
}

/** Options of {@link transactions}. */
export interface TransactionOptions extends Omit<GeneratorOptions<Transaction>, "make"> {
  readonly cards?: number;
  readonly users?: number;
  /** One block of 60 events in this many carries a card-testing sequence. Default 25. */
  readonly fraudEvery?: number;
}

const COUNTRIES = ["DE", "FR", "NL", "US", "GB", "ES", "IT", "BR"] as const;
const MERCHANTS = ["grocer", "fuel", "books", "travel", "games", "electronics", "pharmacy", "cafe"] as const;
const BLOCK = 60;

/** A seeded stream of card transactions with planted card-testing fraud. */
export function transactions(options: TransactionOptions = {}): GeneratorSource<Transaction> {
  const { cards = 500, users = 200, fraudEvery = 25, ...rest } = options;
  const seed = rest.seed ?? 42;
  return generator<Transaction>({
    name: "transactions",
    eventsPerSecond: 20,
    ...rest,
    make(i, at, r) {
      const block = Math.floor(i / BLOCK);
      const offset = i % BLOCK;
      const fraud = hash32(seed, block, 7) % fraudEvery === 0;
      const fraudCard = hash32(seed, block, 11) % cards;
      let card = r.int(cards);
      let amount = Math.round((5 + 195 * r.next() * r.next()) * 100) / 100;
      if (fraud && (offset === 0 || offset === 7 || offset === 15)) {
        card = fraudCard;
        amount = Math.round((0.5 + 1.49 * r.next()) * 100) / 100;
      } else if (fraud && offset === 40) {
        card = fraudCard;
        amount = Math.round((500 + 2500 * r.next()) * 100) / 100;
      } else if (card === fraudCard) {
        card = (card + 1) % cards;
      }
      const user = `user-${card % users}`;
      const home = COUNTRIES[((card % users) * 7) % COUNTRIES.length]!;
      const country = r.next() < 0.9 ? home : COUNTRIES[r.int(COUNTRIES.length)]!;
      return { id: i, card: `card-${card}`, user, amount, merchant: MERCHANTS[r.int(MERCHANTS.length)]!, country, at };
    },
  });
}

/** Options of {@link userProfiles}. */
export interface UserProfileOptions extends Omit<GeneratorOptions<UserProfile>, "make" | "count" | "startTime" | "eventsPerSecond"> {
  readonly users?: number;
  /** Start of the transactions the profiles must precede. Default 2026-01-01T00:00:00Z. */
  readonly before?: number;
}

/** A seeded changelog of user profiles: every user once, in the hour before `before`, then one update each. */
export function userProfiles(options: UserProfileOptions = {}): GeneratorSource<UserProfile> {
  const { users = 200, before = Date.UTC(2026, 0, 1), ...rest } = options;
  const count = users * 2;
  return generator<UserProfile>({
    name: "profiles",
    ...rest,
    count,
    eventsPerSecond: count / 3600,
    startTime: before - 3_600_000,
    make(i, at, r) {
      const u = i % users;
      const tier = r.next();
      return {
        user: `user-${u}`,
        homeCountry: COUNTRIES[(u * 7) % COUNTRIES.length]!,
        accountAgeDays: 1 + r.int(3000),
        riskTier: tier < 0.7 ? "low" : tier < 0.92 ? "medium" : "high",
        at,
      };
    },
  });
}
