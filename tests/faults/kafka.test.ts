/**
 * Fault injection between Gress and Kafka: a private broker (tests/faults/services.ts) whose client listener
 * is advertised at a TCP proxy, so every connection of the job goes through the proxy. Kafka topic → per-key
 * sequence numbers in keyed state → transactional Kafka topic, checkpointed on LMDB, in a child process that
 * a supervisor loop starts again when it fails (and that restarts itself, with its restart strategy).
 * Each scenario ends with the exactly-once check against the failure-free reference and asserts how many
 * faults were injected.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import type { Sequenced } from "../support/sequence.ts";
import { freePort, startProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { keyOf } from "./config.ts";
import { assertExactlyOnce, type Drive, type Runs, report, runUntilDone } from "./harness.ts";
import { API, kafkaRequests } from "./kafka-frames.ts";
import { type PrivateKafka, startPrivateKafka } from "./services.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// The Kafka test helpers read GRESS_KAFKA_BROKERS; it is set to the private broker below.
const support = (): Promise<typeof import("../integration/kafka-support.ts")> => import("../integration/kafka-support.ts");

let broker: PrivateKafka;
let proxy: TcpProxy;

before(async () => {
  const port = await freePort();
  broker = await startPrivateKafka(port);
  proxy = await startProxy({ targetPort: broker.externalPort, port });
  process.env.GRESS_KAFKA_BROKERS = broker.internal;
});
after(async () => {
  await proxy?.stop();
  await broker?.destroy();
});

interface Scenario {
  readonly name: string;
  readonly count: number;
  readonly keys: number;
  readonly ratePerSecond: number;
  readonly transactionTimeoutMs?: number;
  readonly drive: Drive;
  /** The proxy faults this scenario must have injected (checked against the proxy's counts). */
  readonly faults: () => number;
  readonly minFaults: number;
  /** Checks on what the runs printed. */
  readonly check?: (runs: Runs) => void;
  /**
   * Who restarts the failed job: its restart strategy inside the process ("job", the default), or only the
   * supervisor, by starting the process again ("supervisor").
   */
  readonly restarts?: "job" | "supervisor";
  /** Checkpoint interval (ms). Default 300. */
  readonly intervalMs?: number;
  readonly signal: AbortSignal;
}

/** Runs a scenario on fresh topics and checks exactly-once; returns the faults the proxy injected. */
async function run(s: Scenario): Promise<void> {
  const { createTopic, produce, readCommitted, uniqueName } = await support();
  const started = performance.now();
  const input = uniqueName("faults-in");
  const output = uniqueName("faults-out");
  await createTopic(input, 3);
  await createTopic(output, 3);
  await produce(
    input,
    // A key's records all go to one partition, in input order, so its sequence numbers are deterministic.
    Array.from({ length: s.count }, (_, i) => ({ value: JSON.stringify({ i, key: keyOf(i, s.keys) }), partition: ((i * 7919) % s.keys) % 3 })),
  );
  const faultsBefore = s.faults();
  const job = uniqueName("faults-job");
  const runs = await runUntilDone(
    {
      kind: "kafka",
      job,
      intervalMs: s.intervalMs ?? 300,
      count: s.count,
      keys: s.keys,
      ratePerSecond: s.ratePerSecond,
      brokers: [proxy.address],
      input,
      output,
      groupId: `${job}-group`,
      ...(s.transactionTimeoutMs === undefined ? {} : { transactionTimeoutMs: s.transactionTimeoutMs }),
      ...(s.restarts === "supervisor" ? {} : { restart: { strategy: "fixed-delay" as const, attempts: 30, delayMs: 1000 } }),
    },
    { restartPauseMs: 2000, maxRuns: 25, runTimeoutMs: 150_000, signal: s.signal, ...s.drive },
  );
  proxy.setLatency(0);
  proxy.blackhole(false);
  proxy.onClientData(undefined);
  assert.equal(runs.hung, 0, `no run hung (${runs.hung} hung and were killed):\n${runs.failures.join("\n---\n").slice(-3000)}`);
  const faults = s.faults() - faultsBefore;
  const out = (await readCommitted(output, 60_000)).map((m) => JSON.parse(m.value) as Sequenced);
  const compared = assertExactlyOnce(out, s.count, s.keys);
  assert.ok(faults >= s.minFaults, `at least ${s.minFaults} faults were injected (got ${faults})`);
  s.check?.(runs);
  report({
    scenario: `Kafka: ${s.name}${s.restarts === "supervisor" ? " (process restarts)" : ""}`,
    faults: faults + runs.kills,
    kills: runs.kills,
    runs: runs.runs,
    restarts: runs.restartsInJob + runs.failed,
    ...compared,
    seconds: (performance.now() - started) / 1000,
  });
  if (runs.failures.length > 0) console.log(`  what the failed runs printed last:\n  ${runs.failures.slice(0, 3).join("\n  ").slice(0, 2000)}`);
}

/** Arms `action` on the first run, `afterMs` after records flow. */
function onceAfter(afterMs: number, action: () => void | Promise<void>): NonNullable<Drive["onRunning"]> {
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    await sleep(afterMs);
    await action();
  };
}

/** Faults the n-th requests (1-based, in `nth`) of api `key`: `how` decides what happens to it. */
function onRequests(key: number, nth: readonly number[], how: "reset" | "cut-response"): void {
  const requests = kafkaRequests();
  let seen = 0;
  proxy.onClientData((conn, chunk) => {
    for (const k of requests(conn, chunk)) {
      if (k !== key) continue;
      seen++;
      if (!nth.includes(seen)) continue;
      // "reset": the request never reaches the broker; "cut-response": it does, but its answer is lost.
      if (how === "reset") conn.reset();
      else conn.cutAfter(0);
      return;
    }
  });
}

const resetsAndCuts = (): number => proxy.faults.resets + proxy.faults.cuts;

describe("fault injection: Kafka (private broker behind a proxy)", () => {
  it("the broker unreachable for 20 s mid-run (connections reset, new ones refused)", { timeout: 240_000 }, async (t) => {
    await run({
      name: "broker unreachable 20 s",
      count: 6000,
      keys: 7,
      ratePerSecond: 1500,
      drive: { onRunning: onceAfter(1500, () => proxy.refuse(20_000)) },
      faults: () => proxy.faults.refusals,
      minFaults: 1,
      signal: t.signal,
    });
  });

  it("the broker silent for 15 s, longer than the transaction timeout (6 s): the broker aborts the open transaction", { timeout: 240_000 }, async (t) => {
    await run({
      name: "broker silent 15 s > transaction timeout 6 s",
      count: 6000,
      keys: 7,
      ratePerSecond: 1500,
      transactionTimeoutMs: 6000,
      drive: {
        onRunning: onceAfter(1500, async () => {
          proxy.blackhole(true);
          await sleep(15_000);
          proxy.blackhole(false);
          proxy.resetAll();
        }),
      },
      faults: () => proxy.faults.blackholes,
      minFaults: 1,
      signal: t.signal,
    });
  });

  it("killed after a checkpoint was flushed, before its transaction committed, and down past the transaction timeout", { timeout: 240_000 }, async (t) => {
    await run({
      name: "SIGKILL after flushed, down 16 s > transaction timeout 6 s",
      count: 6000,
      keys: 7,
      ratePerSecond: 1500,
      transactionTimeoutMs: 6000,
      drive: {
        failpoints: ["after-flush:3"],
        // The broker aborts the pre-committed transaction while the job is down.
        between: async (run) => {
          if (run === 0) await sleep(16_000);
        },
      },
      faults: () => 0,
      minFaults: 0,
      signal: t.signal,
      // The scenario is about a transaction the broker aborted: the recovery must have seen that.
      check: (runs) => {
        assert.equal(runs.kills, 1, "the failpoint killed the job once");
        assert.match(runs.stderr[1] ?? "", /checkpoint 3: the transaction of sink "out" was aborted .*aborted by the broker.*processing the records after checkpoint 2 again/);
      },
    });
  });

  it("connection resets during produce requests", { timeout: 180_000 }, async (t) => {
    onRequests(API.produce, [2, 6, 12], "reset");
    await run({ name: "resets during produce", count: 6000, keys: 7, ratePerSecond: 1500, drive: {}, faults: resetsAndCuts, minFaults: 3, signal: t.signal });
  });

  it("connection resets during commitTransaction (EndTxn lost on the way, and its answer lost on the way back)", { timeout: 180_000 }, async (t) => {
    const requests = kafkaRequests();
    let seen = 0;
    proxy.onClientData((conn, chunk) => {
      for (const k of requests(conn, chunk)) {
        if (k !== API.endTxn) continue;
        seen++;
        if (seen === 2) conn.reset();
        else if (seen === 5) conn.cutAfter(0);
      }
    });
    await run({
      name: "resets during commitTransaction",
      count: 6000,
      keys: 7,
      ratePerSecond: 1500,
      drive: { runTimeoutMs: 40_000 },
      faults: resetsAndCuts,
      minFaults: 2,
      signal: t.signal,
    });
  });

  it("500 ms latency each way on every connection of the job: checkpoints take longer than their interval, none fails", { timeout: 180_000 }, async (t) => {
    // From the job's start: its group join, InitProducerId and every transaction pay the round trips. Each
    // checkpoint needs several (marker, EndTxn, InitProducerId, AddPartitionsToTxn, produce: about 15 s here),
    // far above the 300 ms interval, so the next one starts when the previous completes.
    proxy.setLatency(500);
    try {
      await run({
        name: "500 ms latency each way",
        count: 1000,
        keys: 7,
        ratePerSecond: 1500,
        // One run, given well over the ~35 s it needs once started: a job that stalls fails here, not at the test timeout.
        drive: { maxRuns: 1, runTimeoutMs: 100_000 },
        // Every chunk the proxy held back, both ways.
        faults: () => proxy.faults.delayed,
        minFaults: 50,
        signal: t.signal,
        // Latency alone is no failure: no restart, no checkpoint given up.
        check: (runs) => {
          assert.equal(runs.restartsInJob, 0, `no restart in the job:\n${runs.stdout.join("\n").slice(-2000)}`);
          assert.doesNotMatch(runs.stderr.join("\n"), /did not complete within|checkpoint \d+ failed/);
        },
      });
    } finally {
      // run() takes the latency away when it returns, not when it throws: the next scenarios need it gone.
      proxy.setLatency(0);
    }
  });

  it("connection resets during fetch requests", { timeout: 180_000 }, async (t) => {
    onRequests(API.fetch, [2, 4, 6], "reset");
    await run({ name: "resets during fetch", count: 6000, keys: 7, ratePerSecond: 1500, drive: {}, faults: resetsAndCuts, minFaults: 3, signal: t.signal });
  });
});
