/**
 * A token bucket: `ratePerSecond` tokens are added continuously up to `burst`. A source takes one token per
 * record. Pull sources wait (`delayFor`) before fetching; push sources either reject (HTTP 429 with the
 * `delayFor` as Retry-After) or take on debt and pause the sender until the bucket is positive again.
 * Time comes from the job's clock, so tests run on virtual time.
 * @module
 */
import type { Clock } from "../../lib/clock.ts";

/** Options of a {@link TokenBucket}. */
export interface TokenBucketOptions {
  /** Tokens (records) per second. */
  readonly ratePerSecond: number;
  /** Bucket size: the largest burst. Default: one second's worth. */
  readonly burst?: number;
}

/** A token bucket on a clock. */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #clock: Pick<Clock, "now">;
  #tokens: number;
  #at: number;

  constructor(options: TokenBucketOptions, clock: Pick<Clock, "now">) {
    if (!(options.ratePerSecond > 0)) throw new RangeError(`rate limit: ratePerSecond must be > 0, got ${options.ratePerSecond}`);
    this.ratePerSecond = options.ratePerSecond;
    this.burst = options.burst ?? Math.max(1, options.ratePerSecond);
    if (!(this.burst >= 1)) throw new RangeError(`rate limit: burst must be >= 1, got ${this.burst}`);
    this.#clock = clock;
    this.#tokens = this.burst;
    this.#at = clock.now();
  }

  /** Tokens available now (negative while in debt). */
  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Takes `n` tokens if they are all available; returns whether it did. */
  tryTake(n = 1): boolean {
    this.#refill();
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Takes `n` tokens even if that puts the bucket in debt (for input that already arrived). */
  take(n = 1): void {
    this.#refill();
    this.#tokens -= n;
  }

  /** Milliseconds until `n` tokens are available (0 if they are now). */
  delayFor(n = 1): number {
    this.#refill();
    const missing = Math.min(n, this.burst) - this.#tokens;
    return missing <= 0 ? 0 : Math.ceil((missing * 1000) / this.ratePerSecond);
  }

  #refill(): void {
    const now = this.#clock.now();
    if (now > this.#at) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) * this.ratePerSecond) / 1000);
      this.#at = now;
    }
  }
}
