/**
 * The consumer a scale-out task's source reads through (RoutedConsumer, lib/scaleout/task.ts): its pauses and
 * resumes go to the worker's group consumer for the task's partitions only, and a rebalance that keeps the task
 * resumes its partitions (the worker pauses every partition a rebalance adds until its task is ready; a
 * partition revoked and given back before the worker applied the revocation is "added" while its task kept
 * running) unless the source itself paused them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KafkaConsumer } from "../../connectors/kafka/client.ts";
import { RoutedConsumer } from "../../lib/scaleout/task.ts";

type Tp = { topic: string; partition: number };

/** The worker's consumer: records which partitions are paused now. */
function workerConsumer(): { consumer: KafkaConsumer; paused: Set<string> } {
  const paused = new Set<string>();
  const k = (tp: Tp): string => `${tp.topic}-${tp.partition}`;
  const consumer = {
    pausePartitions: (tps: readonly Tp[]) => {
      for (const tp of tps) paused.add(k(tp));
    },
    resumePartitions: (tps: readonly Tp[]) => {
      for (const tp of tps) paused.delete(k(tp));
    },
    seek: () => {},
  } as unknown as KafkaConsumer;
  return { consumer, paused };
}

describe("RoutedConsumer", () => {
  const partitions = [
    { topic: "in", partition: 3 },
    { topic: "gress-j-1-repartition", partition: 3 },
  ];

  it("a rebalance that keeps the task resumes the partitions the worker paused as added", async () => {
    const w = workerConsumer();
    const routed = new RoutedConsumer(w.consumer, partitions);
    await routed.start(() => 0);
    assert.deepEqual([...w.paused], []);
    // The worker pauses what a rebalance added (here: revoked, then given back before the revocation was applied).
    w.consumer.pausePartitions(partitions);
    routed.reassigned();
    assert.deepEqual([...w.paused], [], "read again after the rebalance");
  });

  it("what the source paused stays paused across a rebalance, and its resume resumes it", async () => {
    const w = workerConsumer();
    const routed = new RoutedConsumer(w.consumer, partitions);
    await routed.start(() => 0);
    routed.pause(["in"]);
    w.consumer.pausePartitions(partitions);
    routed.reassigned();
    assert.deepEqual([...w.paused], ["in-3"], "the source's pause holds; the other topic reads again");
    routed.resume(["in"]);
    assert.deepEqual([...w.paused], []);
  });

  it("before its source started, or after it stopped, a rebalance resumes nothing", async () => {
    const w = workerConsumer();
    const routed = new RoutedConsumer(w.consumer, partitions);
    w.consumer.pausePartitions(partitions);
    routed.reassigned();
    assert.equal(w.paused.size, 2, "not started: still paused");
    await routed.start(() => 0);
    await routed.stop();
    routed.reassigned();
    assert.equal(w.paused.size, 2, "stopped: still paused");
  });
});
