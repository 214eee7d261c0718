/**
 * Dynamic CEP rules: patterns that arrive as data on a control stream and are added, changed and removed
 * while the job runs, without a restart. {@link matchDynamic} runs, per live version of each rule, one
 * pattern matcher (`matchElements`, unchanged) over the keyed input, and tags every result with the rule's
 * id and version.
 *
 * Contract (event time):
 * - A change is applied when it arrives. If the operator's watermark is then `w`, it takes effect at
 *   `T = w + 1`: events at or behind `w` were matched under the old version, later ones under the new.
 *   The control stream's own watermarks are ignored (rules take effect in arrival order and never hold the
 *   input's event time back).
 * - A version yields the matches (and timeouts) that *start* at or after its `T`. The version it replaces
 *   keeps those that started before `T`, with the change's `policy`: `"finish"` (default) lets its open
 *   partial matches complete or time out under the old pattern (it starts no new ones); `"drop"` drops
 *   them at once, so only what the old version emitted before the change stays (what completed before `T`;
 *   a match that ends in `notNext` is known complete only at the next event, so it is dropped if that event
 *   is at `T` or later). These are the results of a job restarted at the change with the same policy. With
 *   an after-match skip strategy other than noSkip, the old version's partial matches are no longer pruned
 *   by the matches it would have started at `T` or later, as they would be in one static run.
 * - A superseded version's instance and state are freed as soon as it can emit nothing more: at the change
 *   under `"drop"`; under `"finish"`, at the first watermark at which it holds no partial match.
 * - `pattern: null` removes the rule (with the policy, as a change does). Versions of a rule must increase.
 * - Shadow mode: a change with `shadow: true` runs a candidate version beside the active one on the same
 *   events; its results go to the {@link SHADOW_MATCHES} side output, counted per rule and version in
 *   `gress_cep_shadow_matches_total`. A later change with the same version and `shadow` false promotes it:
 *   its results that start at or after the promotion go to the main output, and the active version is
 *   superseded as by any change.
 * - A change that is malformed or whose pattern is invalid (`Pattern.fromJSON` or the compiler rejects it)
 *   goes to the {@link RULE_ERRORS} side output with a PatternError, is counted in
 *   `gress_cep_rule_changes_total{outcome="rejected"}`, and the rules stay as they were.
 * - The set of versions is a state table of the operator (`<uid>/rules`), and each version's matcher keeps
 *   its NFA state in tables of its own (`<uid>/<rule>@<version>/...`), so checkpoints and savepoints cover
 *   both; on restore the versions are rebuilt from the table. The records the watermark has not passed are
 *   kept in `<uid>/buffer`, to be matched by a version added later.
 *
 * Named conditions (`{ fn: "name" }` in a pattern) must be in the `conditions` registry given up front: a
 * pattern read from a control stream can only use predicates the job has.
 * @module
 */
import { Counter } from "prom-client";
import { filter as rxFilter, startWith } from "rxjs";
import { z } from "zod";
import { validate } from "../lib/config.ts";
import { type Element, type Key, LATE_DATA, MAX_WATERMARK, MIN_WATERMARK, type OutputTag, outputTag, record, sideRecord, type StreamRecord, watermark } from "../lib/element.ts";
import { ConfigError, PatternError, StateError } from "../lib/errors.ts";
import { type JobMetrics, OperatorMetrics } from "../lib/metrics.ts";
import { type Downstream, isChainable, type OperatorBody, operate } from "../lib/operate.ts";
import type { OperatorContext } from "../lib/operator-context.ts";
import type { StateBackend, StateTable } from "../lib/state/backend.ts";
import { declareTime, Stream, timeOf } from "../lib/stream.ts";
import { compile } from "./compile.ts";
import { type MatchOptions, matchElements, type PatternResult } from "./matcher.ts";
import { type ConditionContext, type ConditionRegistry, type ConditionSpec, Pattern, type PatternSpec, type StepSpec } from "./pattern.ts";

/**
 * A change of the rule set, as it arrives on the control stream: version `version` of rule `id` with
 * `pattern` (the JSON form of `Pattern.toJSON()`), or its removal (`pattern: null`).
 *
 * @example
 * ```ts
 * import { pattern, type RuleChange } from "gress/cep";
 *
 * type Tx = { amount: number };
 * // Version 2 of rule "big-after-small": partial matches of version 1 are dropped at the change.
 * const change: RuleChange = {
 *   id: "big-after-small",
 *   version: 2,
 *   pattern: pattern<Tx>().begin("small").where({ field: "amount", op: "<", value: 2 }).followedBy("big").where({ field: "amount", op: ">", value: 500 }).within(600_000).toJSON(),
 *   policy: "drop",
 * };
 * const removal: RuleChange = { id: "big-after-small", version: 3, pattern: null };
 * ```
 */
export interface RuleChange {
  /** The rule's id: letters, digits, `_`, `.`, `:` or `-`. */
  readonly id: string;
  /** A non-negative integer, greater than every version of the rule seen before (except to promote a shadow). */
  readonly version: number;
  /** The pattern as JSON (see `PatternSpec`), or null to remove the rule. */
  readonly pattern: PatternSpec | null;
  /** What happens to the partial matches of the version this change replaces. Default "finish". */
  readonly policy?: "finish" | "drop";
  /** Run this version as a shadow beside the active one (its results go to SHADOW_MATCHES). Default false. */
  readonly shadow?: boolean;
}

/**
 * A result of {@link matchDynamic}: a match or a timeout, with the id and version of the rule that produced it.
 *
 * @example
 * ```ts
 * import type { RuleResult } from "gress/cep";
 *
 * const describe = (r: RuleResult<{ amount: number }>): string => `${r.ruleId}@${r.version} ${r.kind} for ${String(r.key)} from ${r.start}`;
 * ```
 */
export type RuleResult<E> = PatternResult<E, string> & { readonly ruleId: string; readonly version: number };

/**
 * A rule change that was rejected: the change as it arrived, the PatternError, and its message.
 *
 * @example
 * ```ts
 * import type { RuleRejection } from "gress/cep";
 *
 * const log = (r: RuleRejection): void => console.error(`rule change rejected: ${r.message}`, r.change);
 * ```
 */
export interface RuleRejection {
  readonly change: unknown;
  readonly error: PatternError;
  readonly message: string;
}

/**
 * Side output of rejected rule changes (see {@link RuleRejection}).
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { matchDynamic, RULE_ERRORS, type RuleChange } from "gress/cep";
 *
 * const tx = fromIterable([{ card: "c1", amount: 5, at: 1 }], { timestamp: (t) => t.at });
 * const changes = fromIterable<RuleChange>([{ id: "r1", version: 1, pattern: { version: 1, steps: [], skip: { kind: "noSkip" } } }]);
 * const results = matchDynamic(tx.keyBy((t) => t.card), changes, { uid: "rules" });
 * results.sideOutput(RULE_ERRORS).sinkTo(sinkFn("rejected", (r) => console.error(r.message))); // ... a pattern needs at least one step
 * ```
 */
export const RULE_ERRORS: OutputTag<RuleRejection> = outputTag("cep-rule-errors");

/**
 * Side output of the results of shadow versions (changes with `shadow: true`), to compare before promoting.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { matchDynamic, pattern, type RuleChange, SHADOW_MATCHES } from "gress/cep";
 *
 * type Tx = { card: string; amount: number; at: number };
 * const spec = (min: number) => pattern<Tx>().begin("big").where({ field: "amount", op: ">", value: min }).toJSON();
 * const changes = fromIterable<RuleChange>([
 *   { id: "big", version: 1, pattern: spec(1_000) },
 *   { id: "big", version: 2, pattern: spec(500), shadow: true },
 * ]);
 * const tx = fromIterable<Tx>([{ card: "c1", amount: 700, at: 5 }], { timestamp: (t) => t.at });
 * const results = matchDynamic(tx.keyBy((t) => t.card), changes, { uid: "rules" });
 * results.sideOutput(SHADOW_MATCHES).sinkTo(sinkFn("candidate", (r) => console.log(r.ruleId, r.version, r.kind)));
 * ```
 */
export const SHADOW_MATCHES: OutputTag<RuleResult<unknown>> = outputTag("cep-shadow-matches");

/**
 * Options of {@link matchDynamic}: the operator's uid, the named conditions patterns may use, and the
 * matcher's limits (as in `match`, for every version).
 *
 * @example
 * ```ts
 * import type { DynamicMatchOptions } from "gress/cep";
 *
 * type Tx = { amount: number; country: string };
 * const options: DynamicMatchOptions<Tx> = {
 *   uid: "fraud-rules",
 *   // In effect from the start; the control stream changes them later.
 *   initial: [{ id: "foreign", version: 1, pattern: { version: 1, steps: [{ name: "f", kind: "relaxed", where: { fn: "foreign" }, quantifier: { min: 1, max: 1, optional: false, greedy: false, inner: "relaxed" } }], skip: { kind: "noSkip" } } }],
 *   conditions: { foreign: (t) => t.country !== "NL" },
 *   maxPartialMatches: 1_000,
 * };
 * ```
 */
export interface DynamicMatchOptions<E> {
  /** Stable operator id: the rule set and every version's state are stored under it. */
  readonly uid?: string;
  /**
   * Rules in effect from the start of event time, applied before any record or change when the job starts
   * without restored rule state (a restored job has its rules in its state). A bad one fails the call.
   */
  readonly initial?: readonly RuleChange[];
  /** The predicates a pattern may name (`{ fn: "name" }`). */
  readonly conditions?: ConditionRegistry<E>;
  /** Bound on partial matches per key and version. Default 10 000. */
  readonly maxPartialMatches?: number;
  /** At the bound: as in `match`. */
  readonly onLimit?: MatchOptions["onLimit"];
  /** Side output for late records. Default "late". */
  readonly lateTag?: string;
  /** Orders records of a key with equal timestamps (see `match`). */
  comparator?(a: E, b: E): number;
}

const optionsSchema = z.strictObject({
  uid: z.string().optional(),
  initial: z.array(z.unknown()).optional(),
  conditions: z.record(z.string(), z.custom<(e: unknown) => boolean>((f) => typeof f === "function", "a function (event, ctx) => boolean")).optional(),
  maxPartialMatches: z.number().int().positive().optional(),
  onLimit: z.enum(["drop-oldest", "reject-new", "fail"]).optional(),
  lateTag: z.string().min(1).optional(),
  comparator: z.custom<(a: unknown, b: unknown) => number>((f) => typeof f === "function", "a function (a, b) => number").optional(),
});

/** One version of a rule, as stored in the operator's `rules` table (plain data). */
interface VersionRow {
  readonly id: string;
  readonly version: number;
  readonly spec: PatternSpec;
  /** Matches count from here (event time, inclusive). */
  readonly from: number;
  /** Superseded at this time (matches must start before it), or null while current. */
  to: number | null;
  /** How it was superseded. */
  policy: "finish" | "drop";
  shadow: boolean;
  /** A promoted shadow: its results starting before this time still go to the shadow output. */
  promotedAt: number | null;
}

/** A running version: its matcher's body, metrics, the tables it opened, and the guard's bound. */
interface Live {
  readonly row: VersionRow;
  readonly body: OperatorBody<Element<unknown>>;
  readonly metrics: OperatorMetrics;
  readonly tables: StateTable<unknown>[];
  readonly guard: { to: number };
}

/** Records arrived but not yet behind the watermark (arrival order), for versions added later. */
interface ReplayBuffer {
  t: number[];
  k: (Key | undefined)[];
  v: unknown[];
}

const ID = /^[A-Za-z0-9_.:-]+$/;
// A condition name no user registry has: the guard that keeps a superseded version from starting matches.
const GUARD = "\u0000rule-version-guard";

/**
 * Matches a changing set of patterns on `input`, per key if it is keyed. The rules come from `changes`
 * ({@link RuleChange}s, e.g. JSON read from a Kafka topic); every result carries the rule's id and version.
 * Event time only. See the module comment for when a change takes effect and what happens to the partial
 * matches of the version it replaces.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { matchDynamic, pattern, type RuleChange } from "gress/cep";
 *
 * type Tx = { card: string; amount: number; at: number };
 * const rule = (max: number) => pattern<Tx>().begin("small").where({ field: "amount", op: "<", value: max }).followedBy("big").where({ field: "amount", op: ">", value: 500 }).within(60_000).toJSON();
 * const changes = fromIterable<RuleChange>([{ id: "small-then-big", version: 1, pattern: rule(2) }]);
 * const tx = fromIterable<Tx>([{ card: "c1", amount: 1, at: 0 }, { card: "c1", amount: 900, at: 5_000 }], { timestamp: (t) => t.at });
 * const alerts = matchDynamic(tx.keyBy((t) => t.card), changes, { uid: "fraud-rules" });
 * console.log((await alerts.collect()).map((r) => `${r.ruleId}@${r.version} ${r.kind} ${r.start}..`)); // ["small-then-big@1 match 0.."]
 * ```
 * @param input the (keyed) stream to match
 * @param changes the rule changes, applied in arrival order
 * @param options uid, named conditions, matcher limits
 * @returns the matches and timeouts of every rule, tagged with its id and version
 */
export function matchDynamic<E>(input: Stream<E>, changes: Stream<RuleChange>, options: DynamicMatchOptions<NoInfer<E>> = {}): Stream<RuleResult<E>> {
  const o = validate(optionsSchema, options, "matchDynamic");
  // Initial rules are checked now: a bad one is a mistake in the job, not in the control stream.
  for (const c of options.initial ?? []) {
    const change = readChange(c);
    if (change.pattern !== null) buildPattern(change.id, change.version, change.pattern, o.conditions ?? {}, { to: Number.POSITIVE_INFINITY });
  }
  if (timeOf(input) === "arrival") {
    // Changes take effect at the watermark, and records wait for it: without one, nothing would match before
    // the end of the input and the records kept for new versions would grow without bound.
    throw new ConfigError(
      "matchDynamic matches in event time, but its input has no event time: its records carry the time they arrived and no watermark comes before the end of the input. Add .withTimestamps(strategy) before keyBy (e.g. boundedOutOfOrderness(5_000, { timestamp: (e) => e.at })), or give the source a watermark strategy",
      [{ path: ["matchDynamic", "input"], code: "event-time-without-timestamps", message: "the input has no timestamps or watermarks" }],
    );
  }
  const ctx = input.job.operator("cep-dynamic", o.uid);
  const stats = ruleStats(input.job.metrics, ctx.id);
  type In = { readonly input: 1; readonly value: E } | { readonly input: 2; readonly value: unknown };
  const left = input.map((value): In => ({ input: 1, value }));
  // The control stream never holds event time back: its watermarks count as +∞ from the start.
  const right = changes
    .transform((elements) => elements.pipe(rxFilter((e) => e.kind !== "watermark"), startWith(watermark(MAX_WATERMARK))))
    .map((value): In => ({ input: 2, value }));
  // Changes first: a control stream that emits at once (a bounded list, a compacted topic read to its end
  // synchronously) is applied before the first records.
  // The merged stream belongs to the input's job (union would give it the first stream's).
  const merged = new Stream<In>(input.job, right.union(left).elements);
  return declareTime(merged.transform(dynamicElements<E>(ctx, o.conditions ?? {}, options, stats)), timeOf(input));
}

interface RuleStats {
  applied: number;
  rejected: number;
  /** Shadow results per "rule@version". */
  readonly shadow: Map<string, number>;
}

// Per job registry, per operator: the counts the prom-client counters read at each scrape.
const statsByJob = new WeakMap<JobMetrics, Map<string, RuleStats>>();

function ruleStats(metrics: JobMetrics, operator: string): RuleStats {
  let all = statsByJob.get(metrics);
  if (all === undefined) {
    const ops = new Map<string, RuleStats>();
    all = ops;
    statsByJob.set(metrics, ops);
    new Counter({
      name: "gress_cep_rule_changes_total",
      help: "Rule changes a dynamic CEP operator applied or rejected.",
      labelNames: ["operator", "outcome"],
      registers: [metrics.registry],
      collect(this: Counter) {
        this.reset();
        for (const [op, s] of ops) {
          this.inc({ operator: op, outcome: "applied" }, s.applied);
          this.inc({ operator: op, outcome: "rejected" }, s.rejected);
        }
      },
    });
    new Counter({
      name: "gress_cep_shadow_matches_total",
      help: "Results (matches and timeouts) of shadow rule versions, per rule and version.",
      labelNames: ["operator", "rule", "version"],
      registers: [metrics.registry],
      collect(this: Counter) {
        this.reset();
        for (const [op, s] of ops) {
          for (const [rv, n] of s.shadow) {
            const at = rv.lastIndexOf("@");
            this.inc({ operator: op, rule: rv.slice(0, at), version: rv.slice(at + 1) }, n);
          }
        }
      },
    });
  }
  const s: RuleStats = { applied: 0, rejected: 0, shadow: new Map() };
  all.set(operator, s);
  return s;
}

/** Names of the steps that take events (groups flattened), for the guard's "has this partial match started?". */
function positiveSteps(steps: readonly StepSpec[], out: string[] = []): string[] {
  for (const st of steps) {
    if (st.group) positiveSteps(st.group, out);
    else if (st.kind !== "notNext" && st.kind !== "notFollowedBy") out.push(st.name);
  }
  return out;
}

/** `spec` with the guard added to the condition of every step that takes events. */
function guarded(spec: PatternSpec): PatternSpec {
  const g: ConditionSpec = { fn: GUARD };
  const walk = (steps: readonly StepSpec[]): StepSpec[] =>
    steps.map((st) => {
      if (st.group) return { ...st, group: walk(st.group) };
      if (st.kind === "notNext" || st.kind === "notFollowedBy") return st;
      return { ...st, where: st.where === undefined ? g : { and: [st.where, g] } };
    });
  return { ...spec, steps: walk(spec.steps) };
}

/** Reads and checks a rule change; throws a PatternError naming what is wrong. */
function readChange(raw: unknown): RuleChange {
  if (typeof raw !== "object" || raw === null) throw new PatternError(`a rule change must be an object { id, version, pattern }, got ${short(raw)}`);
  const c = raw as Record<string, unknown>;
  if (typeof c.id !== "string" || !ID.test(c.id)) throw new PatternError(`rule change: id must be a string of letters, digits, '_', '.', ':' or '-', got ${short(c.id)}`);
  if (typeof c.version !== "number" || !Number.isSafeInteger(c.version) || c.version < 0) {
    throw new PatternError(`rule "${c.id}": version must be a non-negative integer, got ${short(c.version)}`);
  }
  if (c.policy !== undefined && c.policy !== "finish" && c.policy !== "drop") throw new PatternError(`rule "${c.id}" version ${c.version}: policy must be "finish" or "drop", got ${short(c.policy)}`);
  if (c.shadow !== undefined && typeof c.shadow !== "boolean") throw new PatternError(`rule "${c.id}" version ${c.version}: shadow must be a boolean, got ${short(c.shadow)}`);
  if (!("pattern" in c)) throw new PatternError(`rule "${c.id}" version ${c.version}: pattern is missing (null removes the rule)`);
  return c as unknown as RuleChange;
}

function short(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Builds the pattern of a version, as the matcher will run it (guarded); any failure is a PatternError. */
function buildPattern<E>(id: string, version: number, spec: unknown, registry: ConditionRegistry<E>, guard: { to: number }): Pattern<E, string, string> {
  const where = `rule "${id}" version ${version}`;
  try {
    // Checked as given first, so that errors name the user's pattern, not the guarded one.
    Pattern.fromJSON<E>(spec, registry);
    const s = spec as PatternSpec;
    const steps = positiveSteps(s.steps);
    const cond = (_e: E, c: ConditionContext<E, string>): boolean => {
      if (c.timestamp < guard.to) return true;
      // At or after the version's end: only partial matches that already took an event go on.
      for (const st of steps) if (c.eventsFor(st).length > 0) return true;
      return false;
    };
    const p = Pattern.fromJSON<E>(guarded(s), { ...registry, [GUARD]: cond });
    compile(p.spec, p.conditions);
    return p;
  } catch (err) {
    if (err instanceof PatternError) throw new PatternError(`${where}: ${err.message}`, { cause: err });
    throw new PatternError(`${where}: the pattern is malformed (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
}

const sameSpec = (a: unknown, b: unknown): boolean => canonical(a) === canonical(b);
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/** The operator over the tagged union of input records (1) and rule changes (2). */
function dynamicElements<E>(ctx: OperatorContext, registry: ConditionRegistry<E>, options: DynamicMatchOptions<E>, stats: RuleStats) {
  const m = ctx.metrics;
  m.partialMatches = 0;
  const lateTag = options.lateTag ?? LATE_DATA.id;
  const matchOptions: MatchOptions<E> = {
    ...(options.maxPartialMatches !== undefined ? { maxPartialMatches: options.maxPartialMatches } : {}),
    ...(options.onLimit !== undefined ? { onLimit: options.onLimit } : {}),
    ...(options.comparator !== undefined ? { comparator: options.comparator } : {}),
  };
  // Key: rule id, namespace: version.
  const rules = ctx.state.table<VersionRow>(ctx.id, "rules");
  // Key: rule id: the highest version accepted (versions must increase, removals included).
  const versions = ctx.state.table<number>(ctx.id, "versions");
  const bufferState = ctx.state.table<ReplayBuffer>(ctx.id, "buffer");
  const wmState = ctx.state.table<number>(ctx.id, "watermark");
  type In = { readonly input: 1; readonly value: E } | { readonly input: 2; readonly value: unknown };

  return operate<Element<In>, Element<RuleResult<E>>>((downstream) => {
    let wm = wmState.get("", "") ?? MIN_WATERMARK;
    const buffer: ReplayBuffer = bufferState.get("", "") ?? { t: [], k: [], v: [] };
    let bufferMin = buffer.t.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
    let bufferDirty = false;
    const live = new Map<string, Live>(); // by "id@version"
    let freedTimeouts = 0;

    // The timestamp of the change being applied: that of its rejection on the side output.
    let changeTs = 0;
    // An initial rule that cannot be applied (say, a version given twice) fails the job's start.
    let failed: PatternError | undefined;
    let initializing = false;
    const reject = (change: unknown, error: PatternError): void => {
      if (initializing) {
        failed = error;
        return;
      }
      stats.rejected++;
      downstream.next(sideRecord(RULE_ERRORS.id, { change, error, message: error.message } satisfies RuleRejection, changeTs, error.message));
    };

    const start = (row: VersionRow): Live => {
      const guard = { to: row.to ?? Number.POSITIVE_INFINITY };
      const p = buildPattern<E>(row.id, row.version, row.spec, registry, guard);
      const id = `${ctx.id}/${row.id}@${row.version}`;
      const tables: StateTable<unknown>[] = [];
      const base = ctx.state;
      // The version's own view of the backend: it records the tables the matcher opens, to clear them when freed.
      const state: StateBackend = {
        kind: base.kind,
        table: <V>(op: string, name: string, o?: Parameters<StateBackend["table"]>[2]) => {
          const t = base.table<V>(op, name, o);
          tables.push(t as StateTable<unknown>);
          return t;
        },
        snapshot: () => base.snapshot(),
        restore: (s) => base.restore(s),
        close: () => base.close(),
      };
      const metrics = new OperatorMetrics(id);
      const inner: OperatorContext = { id, clock: ctx.clock, state, metrics, onUserError: ctx.onUserError };
      const op = matchElements<E, string>(inner, p, matchOptions);
      if (!isChainable(op)) throw new StateError(`CEP operator "${ctx.id}": the matcher is not a chainable operator`);
      const entry: { live?: Live } = {};
      const out: Downstream<Element<PatternResult<E, string>>> = {
        next: (e) => {
          if (e.kind === "record") emit(entry.live!, e);
          else if (e.kind === "side") downstream.next(e);
          // Its watermarks, barriers and end are the operator's own, which it forwards itself.
        },
        error: (err) => downstream.error(err),
        complete: () => {},
      };
      const l: Live = { row, body: op.init(out) as OperatorBody<Element<unknown>>, metrics, tables, guard };
      entry.live = l;
      return l;
    };

    const emit = (l: Live, e: StreamRecord<PatternResult<E, string>>): void => {
      const row = l.row;
      const r = e.value;
      // The guard keeps a superseded version from starting matches; this only makes sure of it.
      if (row.to !== null && r.start >= row.to) return;
      const value = { ...r, ruleId: row.id, version: row.version } as RuleResult<E>;
      if (row.shadow || (row.promotedAt !== null && r.start < row.promotedAt)) {
        const rv = `${row.id}@${row.version}`;
        stats.shadow.set(rv, (stats.shadow.get(rv) ?? 0) + 1);
        downstream.next(sideRecord(SHADOW_MATCHES.id, value, e.timestamp, `shadow version ${row.version} of rule "${row.id}"`));
        return;
      }
      m.recordsOut++;
      downstream.next(record(value, e.timestamp, e.key));
    };

    const free = (l: Live): void => {
      const key = `${l.row.id}@${l.row.version}`;
      live.delete(key);
      l.body.teardown?.();
      for (const t of l.tables) {
        const rows = [...t.entries()];
        for (const [k, ns] of rows) t.delete(k, ns);
      }
      rules.delete(l.row.id, l.row.version);
      freedTimeouts += l.metrics.timeouts;
    };

    // A superseded version is freed once it holds no partial match, as of a watermark it has processed
    // (its gauge is exact after each watermark; after a restore it is trusted only from the next one).
    const freeIfDone = (l: Live): void => {
      if (l.row.to !== null && l.metrics.watermark >= wm && l.metrics.partialMatches === 0) free(l);
    };

    const supersede = (l: Live, at: number, policy: "finish" | "drop"): void => {
      l.row.to = at;
      l.row.policy = policy;
      l.guard.to = at;
      rules.put(l.row.id, l.row.version, l.row);
      if (policy === "drop") free(l);
      else freeIfDone(l);
    };

    const current = (id: string, shadow: boolean): Live | undefined => {
      for (const l of live.values()) if (l.row.id === id && l.row.to === null && l.row.shadow === shadow) return l;
      return undefined;
    };

    const apply = (raw: unknown): void => {
      let c: RuleChange;
      try {
        c = readChange(raw);
      } catch (err) {
        reject(raw, err as PatternError);
        return;
      }
      const at = wm + 1;
      const policy = c.policy ?? "finish";
      const shadow = c.shadow === true;
      const seen = versions.get(c.id, "");
      const candidate = current(c.id, true);
      if (!shadow && c.pattern !== null && candidate !== undefined && candidate.row.version === c.version) {
        // Promotion of the shadow version.
        if (!sameSpec(candidate.row.spec, c.pattern)) {
          reject(raw, new PatternError(`rule "${c.id}" version ${c.version}: runs as a shadow with a different pattern; promote it with the same pattern, or send a new version`));
          return;
        }
        const active = current(c.id, false);
        if (active !== undefined && active.row.version > c.version) {
          reject(raw, new PatternError(`rule "${c.id}": the shadow version ${c.version} is older than the active version ${active.row.version}; send it as a new version to promote it`));
          return;
        }
        if (active !== undefined) supersede(active, at, policy);
        candidate.row.shadow = false;
        candidate.row.promotedAt = at;
        rules.put(c.id, c.version, candidate.row);
        stats.applied++;
        return;
      }
      if (seen !== undefined && c.version <= seen) {
        reject(raw, new PatternError(`rule "${c.id}": version ${c.version} is not newer than version ${seen}, seen before`));
        return;
      }
      const target = current(c.id, shadow);
      if (c.pattern === null) {
        if (target === undefined) {
          reject(raw, new PatternError(`rule "${c.id}" version ${c.version}: there is no ${shadow ? "shadow " : ""}version of this rule to remove`));
          return;
        }
        supersede(target, at, policy);
      } else {
        const row: VersionRow = { id: c.id, version: c.version, spec: c.pattern, from: at, to: null, policy: "finish", shadow, promotedAt: null };
        let l: Live;
        try {
          l = start(row);
        } catch (err) {
          if (err instanceof PatternError) {
            reject(raw, err);
            return;
          }
          throw err;
        }
        live.set(`${c.id}@${c.version}`, l);
        rules.put(c.id, c.version, row);
        // The new version sees the records the watermark has not passed: exactly the events from `at` on.
        for (let i = 0; i < buffer.t.length; i++) l.body.next(record(buffer.v[i] as E, buffer.t[i]!, buffer.k[i]));
        l.body.next(watermark(wm));
        if (target !== undefined) supersede(target, at, policy);
      }
      versions.put(c.id, "", c.version);
      stats.applied++;
    };

    const gauge = (): void => {
      let partials = 0;
      let timeouts = freedTimeouts;
      for (const l of live.values()) {
        partials += l.metrics.partialMatches;
        timeouts += l.metrics.timeouts;
      }
      m.partialMatches = partials;
      m.timeouts = timeouts;
      m.buffered = partials + buffer.t.length;
    };

    const onWatermark = (e: Element<In> & { kind: "watermark" }): void => {
      if (e.timestamp <= wm) return;
      wm = e.timestamp;
      m.watermark = wm;
      wmState.put("", "", wm);
      if (bufferMin <= wm) {
        let n = 0;
        let min = Number.POSITIVE_INFINITY;
        for (let i = 0; i < buffer.t.length; i++) {
          const t = buffer.t[i]!;
          if (t <= wm) continue;
          buffer.t[n] = t;
          buffer.k[n] = buffer.k[i];
          buffer.v[n] = buffer.v[i];
          n++;
          if (t < min) min = t;
        }
        buffer.t.length = n;
        buffer.k.length = n;
        buffer.v.length = n;
        bufferMin = min;
        bufferDirty = true;
      }
      for (const l of [...live.values()]) {
        l.body.next(e);
        freeIfDone(l);
      }
      gauge();
    };

    const onRecord = (e: StreamRecord<In>): void => {
      const t = e.value;
      if (t.input === 2) {
        changeTs = e.timestamp;
        apply(t.value);
        return;
      }
      m.recordsIn++;
      const ts = e.timestamp;
      if (ts <= wm) {
        m.lateRecords++;
        downstream.next(sideRecord(lateTag, t.value, ts, `late: timestamp ${ts} is at or behind the watermark ${wm} of pattern operator "${ctx.id}"`));
        return;
      }
      if (buffer.t.length === 0) bufferState.put("", "", buffer);
      buffer.t.push(ts);
      buffer.k.push(e.key);
      buffer.v.push(t.value);
      if (ts < bufferMin) bufferMin = ts;
      bufferDirty = true;
      if (live.size === 0) return;
      const inner = record(t.value, ts, e.key);
      for (const l of live.values()) l.body.next(inner);
    };

    const onBarrier = (e: Element<In>): void => {
      for (const l of live.values()) l.body.next(e as Element<unknown>);
      if (bufferDirty) bufferState.put("", "", buffer);
      bufferDirty = false;
    };

    // Rebuild the versions from the table (a fresh start, or a restore): each matcher restores its own state.
    for (const [, , row] of rules.entries()) {
      let l: Live;
      try {
        l = start(row);
      } catch (err) {
        throw new StateError(`CEP operator "${ctx.id}": version ${row.version} of rule "${row.id}" in the restored state cannot be rebuilt: ${(err as Error).message}`, { cause: err });
      }
      live.set(`${row.id}@${row.version}`, l);
    }
    if (versions.entries().next().done === true) {
      initializing = true;
      for (const c of options.initial ?? []) {
        apply(c);
        if (failed !== undefined) throw failed;
      }
      initializing = false;
    }

    return {
      next(e) {
        switch (e.kind) {
          case "record":
            return onRecord(e);
          case "watermark":
            onWatermark(e);
            return downstream.next(e);
          case "barrier":
            onBarrier(e);
            return downstream.next(e);
          case "end":
            onWatermark(watermark(MAX_WATERMARK) as Element<In> & { kind: "watermark" });
            onBarrier(e);
            gauge();
            return downstream.next(e);
          default:
            return downstream.next(e as Element<RuleResult<E>>);
        }
      },
      teardown() {
        for (const l of live.values()) l.body.teardown?.();
      },
    };
  });
}
