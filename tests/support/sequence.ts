/**
 * The keyed job body the exactly-once tests share: per key, a counter in keyed state numbers the records
 * 1, 2, 3, … — so a lost record shows as a gap and a duplicate as a repeated number.
 * @module
 */
import type { ProcessFunction } from "../../lib/index.ts";

/** An input event: its index in the input and its key. */
export interface SequencedInput {
  readonly i: number;
  readonly key: string;
}

/** An output record: the key, its per-key sequence number, and the input index. */
export interface Sequenced {
  readonly key: string;
  readonly seq: number;
  readonly i: number;
}

/** Numbers each key's records 1, 2, 3, … using a ValueState counter. */
export function sequencePerKey(): ProcessFunction<SequencedInput, string, Sequenced> {
  return {
    processElement(e, ctx) {
      const n = ctx.state.value<number>("n");
      const seq = (n.value() ?? 0) + 1;
      n.update(seq);
      ctx.emit({ key: e.key, seq, i: e.i });
    },
  };
}
