/**
 * A deterministic, seeded generator source for demos, tests and benchmarks. Event `i` is a pure function of
 * (seed, i), so the source is replayable: its position is the index of the next event, and seeking is O(1).
 *
 * Built-in kinds: Nexmark-style auction events (`nexmark`: persons, auctions and bids in Nexmark's 1:3:46
 * proportion) and ride-sharing events (`rides`: ride requests and available drivers per area, with demand
 * hot spots that move over time). `make` gives any other event.
 *
 * Event time advances by `1000 / eventsPerSecond` ms per event from `startTime`, minus a random delay of up
 * to `maxDelayMs`, so the stream is out of order by at most that bound. `ratePerSecond` throttles emission in
 * processing time (the job's Clock); without it the source runs as fast as downstream allows.
 * @module
 */
import { z } from "zod";
import { validate } from "../config.ts";
import { runSoon } from "../runtime.ts";
import type { Positions, Source, SourceContext, SourceProgress } from "../source.ts";

/**
 * 32-bit mix of (seed, index, salt): a counter-based PRNG, so any event can be regenerated alone.
 *
 * @example
 * ```ts
 * import { hash32 } from "gress";
 *
 * // A deterministic 32-bit hash of (seed, index, salt): the same draw on every run.
 * console.log(hash32(1, 42) === hash32(1, 42)); // true
 * ```
 */
export function hash32(seed: number, index: number, salt = 0): number {
  let h = (seed ^ Math.imul(index, 0x9e3779b1) ^ Math.imul(salt, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Uniform [0, 1) for (seed, index, salt).
 *
 * @example
 * ```ts
 * import { uniform } from "gress";
 *
 * // A deterministic uniform draw in [0, 1) for (seed, index, salt).
 * const p = uniform(1, 42, 7);
 * ```
 */
export function uniform(seed: number, index: number, salt = 0): number {
  return hash32(seed, index, salt) / 4294967296;
}

/**
 * Random draws for one event: `next()` returns successive uniforms in [0,1).
 *
 * @example
 * ```ts
 * import { type EventRandom, generator } from "gress";
 *
 * // Random draws that depend only on the seed and the event's index: the same on every replay.
 * const dice = generator({ name: "dice", count: 5, make: (_i, _at, random: EventRandom) => 1 + random.int(6) });
 * ```
 */
export interface EventRandom {
  next(): number;
  int(bound: number): number;
}

/**
 * Options of a generator source.
 *
 * @example
 * ```ts
 * import { generator, type GeneratorOptions } from "gress";
 *
 * // 10 000 events over 4 splits, up to 2 s out of order, 100 per event-time second, throttled to 5 000/s.
 * const options: GeneratorOptions<{ id: number; at: number }> = {
 *   name: "events",
 *   seed: 7,
 *   count: 10_000,
 *   splits: 4,
 *   maxDelayMs: 2_000,
 *   eventsPerSecond: 100,
 *   ratePerSecond: 5_000,
 *   make: (id, at) => ({ id, at }),
 * };
 * const source = generator(options);
 * ```
 */
export interface GeneratorOptions<T> {
  readonly name?: string;
  readonly seed?: number;
  /** Stop after this many events (bounded input). Default: unbounded. */
  readonly count?: number;
  /** Event-time density. Default 1000 events per event-time second. */
  readonly eventsPerSecond?: number;
  /** Event time of the first event. Default 2026-01-01T00:00:00Z. */
  readonly startTime?: number;
  /** Maximum event-time disorder in ms. Default 0 (in order). */
  readonly maxDelayMs?: number;
  /** Processing-time throttle. Default: unthrottled. */
  readonly ratePerSecond?: number;
  /** Number of splits the events are spread over (like partitions). Default 1. */
  readonly splits?: number;
  /** Builds event `i` with event time `timestamp`. */
  readonly make: (index: number, timestamp: number, random: EventRandom) => T;
}

const optionsSchema = z.strictObject({
  name: z.string().min(1).optional(),
  seed: z.number().int().optional(),
  count: z.number().int().nonnegative().optional(),
  eventsPerSecond: z.number().positive().optional(),
  startTime: z.number().finite().optional(),
  maxDelayMs: z.number().nonnegative().optional(),
  ratePerSecond: z.number().positive().optional(),
  splits: z.number().int().positive().optional(),
  make: z.function(),
});

const BATCH = 8192;

/**
 * A generated record together with its event time and split.
 *
 * @example
 * ```ts
 * import type { GeneratedEvent } from "gress";
 *
 * // A generated value with its event time and split.
 * const e: GeneratedEvent<string> = { value: "x", timestamp: 1_000, split: "gen-0" };
 * ```
 */
export interface GeneratedEvent<T> {
  readonly value: T;
  readonly timestamp: number;
  readonly split: string;
}

/**
 * A replayable generator source.
 *
 * @example
 * ```ts
 * import { type GeneratorSource, generator, Job } from "gress";
 *
 * const source: GeneratorSource<number> = generator({ name: "n", count: 3, make: (i) => i });
 * const job = new Job();
 * console.log(await job.source(source).collect()); // [0, 1, 2]
 * ```
 */
export class GeneratorSource<T> implements Source<T> {
  readonly name: string;
  readonly #seed: number;
  readonly #count: number;
  readonly #step: number;
  readonly #start: number;
  readonly #maxDelay: number;
  readonly #rate: number | undefined;
  readonly #splits: number;
  readonly #make: GeneratorOptions<T>["make"];
  #next = 0;
  #paused = false;
  #closed = false;
  #scheduled = false;
  #ctx: SourceContext<T> | undefined;
  #rateOrigin = 0;
  #rateBase = 0;

  constructor(options: GeneratorOptions<T>) {
    const o = validate(optionsSchema, options, "generator");
    this.name = o.name ?? "generator";
    this.#seed = o.seed ?? 42;
    this.#count = o.count ?? Number.POSITIVE_INFINITY;
    this.#step = 1000 / (o.eventsPerSecond ?? 1000);
    this.#start = o.startTime ?? Date.UTC(2026, 0, 1);
    this.#maxDelay = o.maxDelayMs ?? 0;
    this.#rate = o.ratePerSecond;
    this.#splits = o.splits ?? 1;
    this.#make = options.make;
  }

  /** Event `i` exactly as the source emits it. */
  event(i: number): GeneratedEvent<T> {
    let salt = 1;
    const random: EventRandom = {
      next: () => uniform(this.#seed, i, salt++),
      int: (bound) => Math.floor(uniform(this.#seed, i, salt++) * bound),
    };
    const delay = this.#maxDelay === 0 ? 0 : Math.floor(uniform(this.#seed, i, 0) * (this.#maxDelay + 1));
    const timestamp = Math.floor(this.#start + i * this.#step) - delay;
    return { value: this.#make(i, timestamp, random), timestamp, split: `${this.name}-${i % this.#splits}` };
  }

  open(ctx: SourceContext<T>, from?: Positions): void {
    this.#ctx = ctx;
    // A job run again, or restarted after a failure, opens its source again: from `from`, else from the start.
    this.#closed = false;
    this.#paused = false;
    const pos = from?.[this.name];
    if (pos !== undefined && (typeof pos !== "number" || !Number.isInteger(pos) || pos < 0)) {
      throw new TypeError(`generator "${this.name}": position must be a non-negative integer, got ${JSON.stringify(pos)}`);
    }
    this.#next = pos ?? 0;
    this.#rateOrigin = ctx.clock.now();
    this.#rateBase = this.#next;
    if (this.#splits > 1) ctx.announceSplits(Array.from({ length: this.#splits }, (_, i) => `${this.name}-${i}`));
    this.#pump();
  }
  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#ctx !== undefined) {
      // Pacing restarts from now, so a long pause does not turn into a burst.
      this.#rateOrigin = this.#ctx.clock.now();
      this.#rateBase = this.#next;
    }
    this.#schedule(0);
  }
  progress(): SourceProgress | undefined {
    return Number.isFinite(this.#count) ? { done: this.#next, total: this.#count, unit: "records" } : undefined;
  }
  positions(): Positions {
    return { [this.name]: this.#next };
  }
  close(): void {
    this.#closed = true;
  }

  #schedule(delayMs: number): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    const run = (): void => {
      this.#scheduled = false;
      this.#pump();
    };
    if (delayMs <= 0) runSoon(run);
    else this.#ctx?.clock.setTimer(this.#ctx.clock.now() + delayMs, run);
  }

  #pump(): void {
    const ctx = this.#ctx;
    if (ctx === undefined || this.#closed || this.#paused) return;
    let budget = BATCH;
    if (this.#rate !== undefined) {
      const elapsed = ctx.clock.now() - this.#rateOrigin;
      const allowed = Math.floor((elapsed * this.#rate) / 1000) - (this.#next - this.#rateBase);
      if (allowed <= 0) {
        this.#schedule(Math.max(1, Math.ceil(1000 / this.#rate)));
        return;
      }
      budget = Math.min(budget, allowed);
    }
    for (let n = 0; n < budget; n++) {
      if (this.#next >= this.#count) {
        ctx.end();
        return;
      }
      if (this.#paused || this.#closed) return;
      const e = this.event(this.#next);
      this.#next++;
      ctx.emit(e.value, e.timestamp, e.split);
    }
    this.#schedule(0);
  }
}

/**
 * Creates a generator source.
 *
 * @example
 * ```ts
 * import { generator, Job, sinkFn } from "gress";
 *
 * // A deterministic source: value i is computed from i (and the seed), so a replay gives the same records.
 * const job = new Job();
 * job
 *   .source(generator({ name: "squares", count: 5, make: (i) => i * i }))
 *   .sinkTo(sinkFn("print", (n) => console.log(n))); // 0, 1, 4, 9, 16
 * await job.run();
 * ```
 */
export function generator<T>(options: GeneratorOptions<T>): GeneratorSource<T> {
  return new GeneratorSource(options);
}

// ---- Nexmark-style auction events ----

/**
 * A person registered on the auction site.
 *
 * @example
 * ```ts
 * import type { NexmarkEvent, Person } from "gress";
 *
 * const isPerson = (e: NexmarkEvent): e is Person => e.type === "person";
 * ```
 */
export interface Person {
  readonly type: "person";
  readonly id: number;
  readonly name: string;
  readonly city: string;
  readonly state: string;
  readonly dateTime: number;
}
/**
 * An auction opened by a seller.
 *
 * @example
 * ```ts
 * import type { Auction, NexmarkEvent } from "gress";
 *
 * const isAuction = (e: NexmarkEvent): e is Auction => e.type === "auction";
 * ```
 */
export interface Auction {
  readonly type: "auction";
  readonly id: number;
  readonly seller: number;
  readonly category: number;
  readonly initialBid: number;
  readonly expires: number;
  readonly dateTime: number;
}
/**
 * A bid on an auction.
 *
 * @example
 * ```ts
 * import type { Bid, NexmarkEvent } from "gress";
 *
 * const isBid = (e: NexmarkEvent): e is Bid => e.type === "bid";
 * ```
 */
export interface Bid {
  readonly type: "bid";
  readonly auction: number;
  readonly bidder: number;
  readonly price: number;
  readonly channel: string;
  readonly dateTime: number;
}
/**
 * One Nexmark event.
 *
 * @example
 * ```ts
 * import { Job, type NexmarkEvent, nexmark } from "gress";
 *
 * const job = new Job();
 * const prices = job
 *   .source(nexmark({ count: 1_000 }))
 *   .flatMap((e: NexmarkEvent) => (e.type === "bid" ? [e.price] : []));
 * ```
 */
export type NexmarkEvent = Person | Auction | Bid;

const CITIES = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
const STATES = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CHANNELS = ["apple", "google", "facebook", "baidu"];

/**
 * Nexmark-style events: in every 50, 1 person, 3 auctions and 46 bids.
 *
 * @example
 * ```ts
 * import { Job, nexmark, sinkFn } from "gress";
 *
 * const job = new Job();
 * // The NEXMark auction benchmark's persons, auctions and bids, seeded and reproducible.
 * job.source(nexmark({ count: 1_000 })).filter((e) => e.type === "bid").sinkTo(sinkFn("bids", () => {}));
 * await job.run();
 * ```
 */
export function nexmark(options: Omit<GeneratorOptions<NexmarkEvent>, "make"> = {}): GeneratorSource<NexmarkEvent> {
  return generator<NexmarkEvent>({
    name: "nexmark",
    ...options,
    make(i, dateTime, r) {
      const epoch = Math.floor(i / 50);
      const offset = i % 50;
      if (offset === 0) {
        return { type: "person", id: epoch, name: `person-${epoch}`, city: CITIES[r.int(CITIES.length)]!, state: STATES[r.int(STATES.length)]!, dateTime };
      }
      if (offset <= 3) {
        const id = epoch * 3 + offset - 1;
        return { type: "auction", id, seller: r.int(epoch + 1), category: 10 + r.int(5), initialBid: 1 + r.int(100), expires: dateTime + 10_000 + r.int(100_000), dateTime };
      }
      // Bids go mostly to recent auctions ("hot" auctions), as in Nexmark.
      const auctions = epoch * 3 + 3;
      const auction = r.next() < 0.9 ? Math.max(0, auctions - 1 - r.int(Math.min(auctions, 100))) : r.int(auctions);
      return { type: "bid", auction, bidder: r.int(epoch + 1), price: 1 + r.int(10_000), channel: CHANNELS[r.int(CHANNELS.length)]!, dateTime };
    },
  });
}

// ---- Ride-sharing events ----

/**
 * A rider asking for a ride, or a driver becoming available, in an area.
 *
 * @example
 * ```ts
 * import { Job, type RideEvent, rides } from "gress";
 *
 * const job = new Job();
 * const requests = job.source(rides({ count: 100 })).filter((r: RideEvent) => r.type === "request").map((r) => `${r.area}@${r.at}`);
 * ```
 */
export interface RideEvent {
  readonly type: "request" | "driver";
  readonly id: number;
  readonly area: string;
  readonly at: number;
}

/**
 * Options of the ride-event generator.
 *
 * @example
 * ```ts
 * import { type RideOptions, rides } from "gress";
 *
 * const options: RideOptions = { count: 50_000, areas: 25, seed: 3, maxDelayMs: 5_000 };
 * const source = rides(options);
 * ```
 */
export type RideOptions = Omit<GeneratorOptions<RideEvent>, "make"> & { readonly areas?: number };

/**
 * Ride requests and available drivers over `areas` areas. Drivers are spread evenly; requests concentrate on
 * a hot spot that moves to another area every 15 minutes of event time, so surge pricing has work to do.
 *
 * @example
 * ```ts
 * import { Job, rides, sinkFn } from "gress";
 *
 * const job = new Job();
 * // A deterministic, seeded stream of ride requests and driver availability over 10 areas.
 * job.source(rides({ count: 1_000 })).filter((r) => r.type === "request").sinkTo(sinkFn("print", (r) => console.log(r.area, r.at)));
 * await job.run();
 * ```
 */
export function rides(options: RideOptions = {}): GeneratorSource<RideEvent> {
  const { areas = 12, ...rest } = options;
  const start = rest.startTime ?? Date.UTC(2026, 0, 1);
  return generator<RideEvent>({
    name: "rides",
    ...rest,
    make(i, at, r) {
      const hot = (((Math.floor((at - start) / (15 * 60_000)) % areas) + areas) % areas);
      if (r.next() < 0.5) return { type: "driver", id: i, area: `area-${r.int(areas)}`, at };
      const area = r.next() < 0.12 ? hot : r.int(areas);
      return { type: "request", id: i, area: `area-${area}`, at };
    },
  });
}
