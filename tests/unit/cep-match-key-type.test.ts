/**
 * A match keeps the key type of the keyed stream it came from (issue 16): `m.key` of a stream keyed by a
 * string is a string, by a number a number, and `Key | undefined` on a stream that is not keyed. The
 * `@ts-expect-error` lines are the type-level half of the test: the typecheck (tsc in CI) fails if they compile.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isMatch, isTimeout, match, pattern } from "../../cep/index.ts";
import { fromIterable, type Key } from "../../lib/index.ts";

type Tx = { card: string; account: number; amount: number; at: number };
const txs: Tx[] = [
  { card: "c1", account: 7, amount: 1, at: 0 },
  { card: "c1", account: 7, amount: 900, at: 1_000 },
  { card: "c2", account: 8, amount: 1, at: 2_000 },
];
const smallThenLarge = () =>
  pattern<Tx>().begin("small").where((t) => t.amount < 2).followedBy("large").where((t) => t.amount > 500).within(5_000);

describe("Match.key keeps the key type", () => {
  it("a stream keyed by a string gives string keys, by a number number keys", async () => {
    const byCard = match(fromIterable(txs, { timestamp: (t) => t.at }).keyBy((t) => t.card), smallThenLarge());
    const cards: string[] = await byCard.filter(isMatch).map((m) => m.key).collect();
    assert.deepEqual(cards, ["c1"]);
    const byAccount = match(fromIterable(txs, { timestamp: (t) => t.at }).keyBy((t) => t.account), smallThenLarge());
    const timedOut: number[] = await byAccount.filter(isTimeout).map((m) => m.key).collect();
    assert.deepEqual(timedOut, [8]);
    // @ts-expect-error keys of a stream keyed by a number are not strings
    const wrong: string[] = await match(fromIterable(txs, { timestamp: (t) => t.at }).keyBy((t) => t.account), smallThenLarge()).map((m) => m.key).collect();
    assert.equal(wrong.length, 2);
  });

  it("a stream that is not keyed gives Key | undefined", async () => {
    const all = match(fromIterable(txs, { timestamp: (t) => t.at }), smallThenLarge());
    const keys: (Key | undefined)[] = await all.filter(isMatch).map((m) => m.key).collect();
    assert.deepEqual(keys, [undefined]);
  });
});
