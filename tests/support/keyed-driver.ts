/**
 * A TestDriver around one keyed process function: events `{ k, v }` keyed by `k`, for the process and state tests.
 * @module
 */
import type { ProcessFunction } from "../../lib/index.ts";
import { TestDriver } from "../../lib/testing/index.ts";

/** A test event: its key and a value. */
export interface Ev {
  readonly k: string;
  readonly v: number;
}

/** Builds an event. */
export const ev = (k: string, v = 0): Ev => ({ k, v });

/** A keyed process pipeline: the function runs with the key set to `Ev.k`. */
export const processDriver = <O>(fn: ProcessFunction<Ev, string, O>): TestDriver<Ev, O> =>
  new TestDriver<Ev, O>((s) => s.keyBy((e) => e.k).process(fn));
