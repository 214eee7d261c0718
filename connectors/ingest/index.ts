/**
 * Ingestion basics shared by every source connector: decoders that turn raw bytes into values or a reason
 * (size bound, strict UTF-8, JSON without `__proto__`, optional zod schema), the dead-letter value a source
 * emits for bad bytes, and a token-bucket rate limit per source. Bad input never throws out of a decoder, so
 * it cannot crash a job: the source calls `ctx.deadLetter(value, reason)`, which routes it to the
 * dead-letter side output (`stream.sideOutput(DEAD_LETTERS)`) and counts it.
 * @module
 */
export * from "./decode.ts";
export * from "./quota.ts";
export * from "./token-bucket.ts";
