/**
 * The risk-scoring service of the fraud-detection example, and the async step that calls it.
 *
 * The service is a small HTTP server on loopback (`POST /score` with the features as JSON, answering
 * `{ "score": 0.93 }`): a logistic model over a few features of a card-testing match. It stands in for a
 * model server; the pipeline reaches it with `mapAsync`, with a timeout and retries. The client keeps the
 * scores in an `AsyncCache` (bounded LRU with TTL) by features: the model is deterministic, so equal
 * features get the score without a request. (The `cache` option of `mapAsync` would cache the whole alert
 * the step returns, which depends on more than the features.)
 *
 * The server starts on the first call and stops when `close()` is called (the example's alert sink closes it
 * when the job ends); after a close, the next call starts it again (a restarted job).
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AsyncCache, type AsyncCallContext, type AsyncOptions, type Clock, SystemClock } from "../lib/index.ts";

/** What the model looks at. */
export interface RiskFeatures {
  /** The large charge, in the card's currency. */
  readonly amount: number;
  /** How many small test charges came before it. */
  readonly tests: number;
  /** Days since the account was opened; undefined without a profile. */
  readonly accountAgeDays: number | undefined;
  /** The large charge was made outside the owner's home country. */
  readonly abroad: boolean;
  /** The owner's risk tier; undefined without a profile. */
  readonly riskTier: "low" | "medium" | "high" | undefined;
}

/** The model: a logistic function of the features, rounded to 3 decimals. */
export function logisticScore(f: RiskFeatures): number {
  const z =
    -3.2 +
    0.9 * Math.log10(Math.max(1, f.amount)) +
    0.35 * f.tests +
    (f.accountAgeDays === undefined ? 0.8 : f.accountAgeDays < 90 ? 1.1 : -0.004 * Math.min(f.accountAgeDays, 365)) +
    (f.abroad ? 1.3 : 0) +
    (f.riskTier === "high" ? 1.2 : f.riskTier === "medium" ? 0.5 : f.riskTier === "low" ? -0.4 : 0.6);
  return Math.round(1000 / (1 + Math.exp(-z))) / 1000;
}

function isFeatures(v: unknown): v is RiskFeatures {
  if (typeof v !== "object" || v === null) return false;
  const f = v as Record<string, unknown>;
  return typeof f.amount === "number" && typeof f.tests === "number" && typeof f.abroad === "boolean";
}

/** The scoring service and a client for it. */
export interface ScoringService {
  /** Scores one match: POSTs the features, resolves with the score. Pass the call's signal on. */
  score(features: RiskFeatures, call?: AsyncCallContext): Promise<number>;
  /** Scores by features (hits and misses counted). */
  readonly cache: AsyncCache<string, number>;
  /** Requests the server answered so far. */
  readonly requests: number;
  /** True from the first call until close(). */
  readonly running: boolean;
  /** Stops the server (if it runs). */
  close(): Promise<void>;
}

/** The options the example gives `mapAsync` for the scoring step. */
export const SCORING_OPTIONS: AsyncOptions<unknown> = {
  // Up to 64 requests in flight; alerts leave in the order of the matches.
  concurrency: 64,
  ordered: true,
  timeoutMs: 2_000,
  retry: { maxAttempts: 3, backoff: "exponential", delayMs: 50, maxDelayMs: 500 },
  uid: "risk-score",
};

/** A scoring service on 127.0.0.1 (an ephemeral port), started by the first call; `clock` times the cache. */
export function scoringService(clock: Clock = new SystemClock()): ScoringService {
  let server: Promise<{ server: Server; url: string }> | undefined;
  let requests = 0;
  // Equal features, equal score: no request for features scored in the last minute.
  const cache = new AsyncCache<string, number>({ maxEntries: 10_000, ttlMs: 60_000 }, clock);
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      let features: unknown;
      try {
        features = JSON.parse(body);
      } catch {
        features = undefined;
      }
      if (req.method !== "POST" || req.url !== "/score" || !isFeatures(features)) {
        res.writeHead(400, { "content-type": "application/json", connection: "close" }).end(JSON.stringify({ error: "POST /score with the features as JSON" }));
        return;
      }
      requests++;
      res.writeHead(200, { "content-type": "application/json", connection: "close" }).end(JSON.stringify({ score: logisticScore(features) }));
    });
  };
  const start = (): Promise<{ server: Server; url: string }> =>
    new Promise((resolve, reject) => {
      const s = createServer(handle);
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve({ server: s, url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/score` }));
    });
  const request = async (features: RiskFeatures, call: AsyncCallContext | undefined): Promise<number> => {
    server ??= start();
    const { url } = await server;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", connection: "close" },
      body: JSON.stringify(features),
      ...(call === undefined ? {} : { signal: call.signal }),
    });
    const answer = (await res.json()) as { score?: unknown; error?: unknown };
    if (!res.ok || typeof answer.score !== "number") throw new Error(`scoring service answered ${res.status}: ${String(answer.error ?? "no score")}`);
    return answer.score;
  };
  return {
    cache,
    async score(features, call) {
      const key = JSON.stringify([features.amount, features.tests, features.accountAgeDays, features.abroad, features.riskTier]);
      return cache.getOrLoad(key, () => request(features, call));
    },
    get requests() {
      return requests;
    },
    get running() {
      return server !== undefined;
    },
    async close() {
      const running = server;
      server = undefined;
      if (running === undefined) return;
      const { server: s } = await running;
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}
