import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { broadcastState, tumbling } from "../../lib/index.ts";
import { type JobHealth, serveMetrics } from "../../lib/server.ts";
import { MultiInputTestDriver, TestDriver } from "../../lib/testing/index.ts";

type Tx = { card: string; amount: number };

/** Per card: a running total (value), amounts by merchant (map), the last amounts (list), and a TTL'd flag. */
const totals = () =>
  new TestDriver<Tx & { merchant: string }, number>((tx) =>
    tx.keyBy((t) => t.card).process(
      {
        processElement(t, ctx) {
          const total = ctx.state.value<number>("total");
          total.update((total.value() ?? 0) + t.amount);
          const byMerchant = ctx.state.map<string, number>("by-merchant");
          byMerchant.put(t.merchant, (byMerchant.get(t.merchant) ?? 0) + t.amount);
          ctx.state.list<number>("last").add(t.amount);
          ctx.state.value<boolean>("recent", { ttl: { ms: 1_000, time: "processing" } }).update(true);
          ctx.emit(total.value() ?? 0);
        },
      },
      { uid: "totals" },
    ),
  );

describe("queryable state: job.queryState(operator, name, key)", () => {
  it("reads a process function's value, map and list state of a key, live", () => {
    const d = totals();
    d.pipeInput({ card: "c1", amount: 5, merchant: "shop" }, 0).pipeInput({ card: "c1", amount: 7, merchant: "cafe" }, 1);
    d.pipeInput({ card: "c2", amount: 1, merchant: "shop" }, 2);
    assert.deepEqual(d.job.queryState("totals", "total", "c1"), { operator: "totals", name: "total", key: "c1", kind: "value", value: 12 });
    assert.deepEqual(d.job.queryState("totals", "by-merchant", "c1")?.value, { shop: 5, cafe: 7 });
    assert.deepEqual(d.job.queryState("totals", "last", "c1")?.value, [5, 7]);
    assert.equal(d.job.queryState("totals", "total", "c3")?.value, undefined, "a key without state");
    d.pipeInput({ card: "c1", amount: 1, merchant: "shop" }, 3);
    assert.equal(d.job.queryState("totals", "total", "c1")?.value, 13, "the next record's update is seen at once");
  });

  it("an entry past its TTL reads as absent, though not cleaned up yet", () => {
    const d = totals();
    d.pipeInput({ card: "c1", amount: 5, merchant: "shop" }, 0);
    assert.equal(d.job.queryState("totals", "recent", "c1")?.value, true);
    d.advanceProcessingTime(1_000);
    assert.equal(d.job.queryState("totals", "recent", "c1")?.value, undefined);
  });

  it("an unknown operator or state name is undefined, and the query opens no table", () => {
    const d = totals();
    d.pipeInput({ card: "c1", amount: 5, merchant: "shop" }, 0);
    const before = Object.keys(d.job.state.snapshot().tables).sort();
    assert.equal(d.job.queryState("nope", "total", "c1"), undefined);
    assert.equal(d.job.queryState("totals", "nope", "c1"), undefined);
    assert.deepEqual(Object.keys(d.job.state.snapshot().tables).sort(), before);
  });

  it("reads an entry of a broadcast state, and a window's accumulators in progress by window start", () => {
    const limits = broadcastState<string, number>("limits");
    const b = new MultiInputTestDriver<{ tx: Tx; rules: [string, number] }, string>(["tx", "rules"], (d) =>
      d
        .input("tx")
        .keyBy((t) => t.card)
        .connect(d.input("rules").broadcast(limits))
        .process({ processElement() {}, processBroadcastElement: ([k, v], ctx) => ctx.getBroadcastState(limits).put(k, v) }, { uid: "rules" }),
    );
    b.pipeInput("rules", ["NL", 500], 0);
    assert.deepEqual(b.job.queryState("rules", "limits", "NL"), { operator: "rules", name: "limits", key: "NL", kind: "broadcast", value: 500 });

    const w = new TestDriver<Tx, unknown>((tx) =>
      tx
        .keyBy((t) => t.card)
        .window(tumbling(10))
        .count({ uid: "counts" }),
    );
    w.pipeInput({ card: "c1", amount: 1 }, 1).pipeInput({ card: "c1", amount: 1 }, 2).pipeInput({ card: "c1", amount: 1 }, 12);
    assert.deepEqual(w.job.queryState("counts", "acc", "c1"), { operator: "counts", name: "acc", key: "c1", kind: "table", value: { 0: 2, 10: 1 } });
  });
});

describe("queryable state over HTTP: GET /state/<operator>/<name>?key=", () => {
  it("answers with the state as JSON, asks for a bearer token when tokens are set, 404 for an unknown state", async () => {
    const d = totals();
    d.pipeInput({ card: "c1", amount: 5, merchant: "shop" }, 0);
    const n = new TestDriver<{ id: number }, number>((s) =>
      s.keyBy((e) => e.id).process({ processElement: (_e, ctx) => ctx.state.value<number>("seen").update(1) }, { uid: "ids" }),
    );
    n.pipeInput({ id: 42 }, 0);
    const health: JobHealth = { status: "running" };
    const server = await serveMetrics(d.job, health, 0, { stateTokens: ["s3cret"] });
    const numbers = await serveMetrics(n.job, health, 0);
    try {
      const url = `http://127.0.0.1:${server.port}/state/totals/total?key=c1`;
      assert.equal((await fetch(url)).status, 401);
      assert.equal((await fetch(url, { headers: { authorization: "Bearer wrong" } })).status, 401);
      const ok = await fetch(url, { headers: { authorization: "Bearer s3cret" } });
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { operator: "totals", name: "total", key: "c1", kind: "value", value: 5, consistency: "uncommitted" });
      const auth = { headers: { authorization: "Bearer s3cret" } };
      assert.equal((await fetch(`http://127.0.0.1:${server.port}/state/totals/nope?key=c1`, auth)).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${server.port}/state/totals/total`, auth)).status, 400);
      // Without tokens, no auth; a numeric key finds a number key.
      const byNumber = await fetch(`http://127.0.0.1:${numbers.port}/state/ids/seen?key=42`);
      assert.deepEqual(await byNumber.json(), { operator: "ids", name: "seen", key: 42, kind: "value", value: 1, consistency: "uncommitted" });
    } finally {
      await server.close();
      await numbers.close();
    }
  });
});
