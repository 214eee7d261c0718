/**
 * The user profiles of the fraud example's `--services` run, in PostgreSQL: the example writes each user's
 * latest generated profile into a table of its own, and the pipeline looks a match's user up there with
 * `mapAsync` (the profile as it is now, where the run on generated data joins the profile as it was at the
 * time of the match). Lookups go through an `AsyncCache` by user (30 s), and a call whose signal is aborted
 * (its timeout, a cancelled job) cancels its query.
 * @module
 */
import postgres from "postgres";
import { AsyncCache, type AsyncCallContext, type Clock, SystemClock } from "../lib/index.ts";
import type { UserProfile } from "../lib/sources/transactions.ts";

/** Profiles by user, from PostgreSQL. */
export interface ProfileStore {
  /** The user's profile, or undefined when the table has none. */
  lookup(user: string, call?: AsyncCallContext): Promise<UserProfile | undefined>;
  /** Profiles by user (hits and misses counted). */
  readonly cache: AsyncCache<string, UserProfile | null>;
  /** Queries sent to PostgreSQL so far. */
  readonly queries: number;
  /** Drops the table and closes the connections. */
  close(): Promise<void>;
}

interface Row {
  readonly user_id: string;
  readonly home_country: string;
  readonly account_age_days: number;
  readonly risk_tier: UserProfile["riskTier"];
  readonly updated_at: string;
}

/** Creates `table` (a plain identifier) at `url`, fills it with the latest of `profiles` per user, and returns the store. */
export async function postgresProfiles(url: string, table: string, profiles: Iterable<UserProfile>, clock: Clock = new SystemClock()): Promise<ProfileStore> {
  if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`table name "${table}": use lower-case letters, digits and _`);
  const sql = postgres(url, { max: 8, onnotice: () => {} });
  const latest = new Map<string, UserProfile>();
  for (const p of profiles) if ((latest.get(p.user)?.at ?? Number.NEGATIVE_INFINITY) <= p.at) latest.set(p.user, p);
  try {
    await sql`create table ${sql(table)} (user_id text primary key, home_country text not null, account_age_days integer not null, risk_tier text not null, updated_at bigint not null)`;
    const rows = [...latest.values()].map((p) => ({
      user_id: p.user,
      home_country: p.homeCountry,
      account_age_days: p.accountAgeDays,
      risk_tier: p.riskTier,
      updated_at: p.at,
    }));
    if (rows.length > 0) await sql`insert into ${sql(table)} ${sql(rows)}`;
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }
  let queries = 0;
  // null: the table has no profile for the user (cached too; undefined would not be).
  const cache = new AsyncCache<string, UserProfile | null>({ maxEntries: 10_000, ttlMs: 30_000 }, clock);
  const query = async (user: string, call: AsyncCallContext | undefined): Promise<UserProfile | null> => {
    queries++;
    const q = sql<Row[]>`select user_id, home_country, account_age_days, risk_tier, updated_at from ${sql(table)} where user_id = ${user}`;
    const cancel = (): void => void q.cancel();
    call?.signal.addEventListener("abort", cancel, { once: true });
    try {
      const [row] = await q;
      if (row === undefined) return null;
      return { user: row.user_id, homeCountry: row.home_country, accountAgeDays: row.account_age_days, riskTier: row.risk_tier, at: Number(row.updated_at) };
    } finally {
      call?.signal.removeEventListener("abort", cancel);
    }
  };
  return {
    cache,
    async lookup(user, call) {
      return (await cache.getOrLoad(user, () => query(user, call))) ?? undefined;
    },
    get queries() {
      return queries;
    },
    async close() {
      try {
        await sql`drop table if exists ${sql(table)}`;
      } finally {
        await sql.end({ timeout: 5 });
      }
    },
  };
}
