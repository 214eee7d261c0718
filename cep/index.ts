/**
 * gress/cep: complex event processing and correlation.
 *
 * - {@link pattern} builds a typed pattern (FlinkCEP's Pattern API: contiguities, quantifiers, iterative
 *   conditions, groups, `within`, after-match skip strategies). A pattern is also plain JSON data.
 * - {@link match} compiles it to an NFA and runs it per key over a stream, in event time (records sorted
 *   until the watermark passes them) or processing time. It emits completed matches and timed-out partial
 *   matches as one typed stream; absences ("A not followed by B within 5 min") complete when the time passes.
 *   Partial matches share a versioned, reference-counted buffer in keyed state, so checkpoints cover them.
 * - {@link matchDynamic} runs a set of patterns that changes while the job runs (rules as JSON on a control
 *   stream), each result tagged with its rule's id and version.
 * - {@link intervalJoin}, {@link windowJoin} and {@link tableJoin} correlate two keyed streams in event time.
 *
 * @example
 * ```ts
 * import { fromIterable, sinkFn } from "gress";
 * import { isMatch, match, pattern } from "gress/cep";
 *
 * type Tx = { card: string; amount: number };
 * const tx = fromIterable<Tx>([{ card: "c1", amount: 1 }, { card: "c1", amount: 1 }, { card: "c1", amount: 1 }, { card: "c1", amount: 900 }]);
 * const p = pattern<Tx>()
 *   .begin("small").where((t) => t.amount < 2).times(3)
 *   .followedBy("large").where((t) => t.amount > 500)
 *   .within(10 * 60_000);
 * match(tx.keyBy((t) => t.card), p).filter(isMatch).sinkTo(sinkFn("alerts", (m) => console.log(m.key, m.events.large)));
 * await tx.job.run();
 * ```
 * @module
 */
export { type Cond, compile, compileCondition, type Nfa } from "./compile.ts";
export {
  type DynamicMatchOptions,
  matchDynamic,
  RULE_ERRORS,
  type RuleChange,
  type RuleRejection,
  type RuleResult,
  SHADOW_MATCHES,
} from "./dynamic.ts";
export type { Joined, Sided } from "./joins/common.ts";
export { type IntervalJoinOptions, intervalJoin } from "./joins/interval.ts";
export { type TableJoined, type TableJoinOptions, tableJoin } from "./joins/table.ts";
export { type WindowJoined, type WindowJoinOptions, windowJoin } from "./joins/window.ts";

export {
  CEP_OVERFLOW,
  type DroppedPartialMatch,
  isMatch,
  isTimeout,
  type Match,
  type MatchEvents,
  type MatchOptions,
  match,
  matchElements,
  type PatternResult,
  type Timeout,
} from "./matcher.ts";
export type { LimitPolicy } from "./nfa.ts";
export {
  type Condition,
  type ConditionContext,
  type ConditionInput,
  type ConditionRegistry,
  type ConditionSpec,
  type Contiguity,
  type FieldCondition,
  type FieldOp,
  type NamedCondition,
  named,
  Pattern,
  type PatternSpec,
  pattern,
  type QuantifierSpec,
  type SkipStrategy,
  type StepKind,
  type StepSpec,
  skip,
  validatePattern,
} from "./pattern.ts";
