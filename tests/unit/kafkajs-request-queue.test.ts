/**
 * kafkajs' request queue without its idle 1-ms timer (connectors/kafka/kafkajs-request-queue.ts), on kafkajs'
 * own RequestQueue class: after a response with nothing waiting no check is scheduled (kafkajs schedules one
 * with a negative delay, and then one every millisecond), while a request that has to wait (no free in-flight
 * slot, or a broker's throttle) is still sent once it may be.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import requestQueueModule from "kafkajs/src/network/requestQueue/index.js";
import { stopIdleQueueChecks } from "../../connectors/kafka/kafkajs-request-queue.ts";

interface Queue {
  throttleCheckTimeoutId: unknown;
  readonly pending: readonly unknown[];
  push(r: { entry: { correlationId: number; resolve: (x: unknown) => void; apiName: string }; expectResponse: boolean; sendRequest: () => void }): void;
  fulfillRequest(r: { correlationId: number; payload: unknown; size: number }): void;
  maybeThrottle(ms: number): void;
  destroy(): void;
}
const RequestQueue = requestQueueModule as new (o: Record<string, unknown>) => Queue;
const logger = { debug() {}, info() {}, warn() {}, error() {} };
const queue = (maxInFlightRequests: number | null): Queue => new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: "t", broker: "b:9092", logger });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("kafkajs request queue: no idle timer", () => {
  stopIdleQueueChecks(requestQueueModule as { prototype: object });

  it("schedules no check after a response when nothing waits", () => {
    const q = queue(null);
    try {
      const sent: number[] = [];
      q.push({ entry: { correlationId: 1, resolve: () => {}, apiName: "Metadata" }, expectResponse: true, sendRequest: () => void sent.push(1) });
      assert.deepEqual(sent, [1]);
      q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
      assert.equal(q.throttleCheckTimeoutId, null, "an idle queue keeps no timer");
    } finally {
      q.destroy(); // kafkajs' own loop would otherwise keep the process alive
    }
  });

  it("still sends a request that waited for an in-flight slot, and one that waited out a throttle", async () => {
    const q = queue(1);
    try {
      const sent: number[] = [];
      const push = (id: number) => q.push({ entry: { correlationId: id, resolve: () => {}, apiName: "Fetch" }, expectResponse: true, sendRequest: () => void sent.push(id) });
      push(1);
      push(2);
      assert.deepEqual(sent, [1], "one slot: the second waits");
      q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
      assert.deepEqual(sent, [1, 2], "the response frees the slot");
      q.fulfillRequest({ correlationId: 2, payload: null, size: 0 });
      q.maybeThrottle(30);
      push(3);
      assert.deepEqual(sent, [1, 2], "throttled: the third waits");
      for (let i = 0; i < 100 && sent.length < 3; i++) await sleep(10);
      assert.deepEqual(sent, [1, 2, 3], "sent once the throttle ended");
      q.fulfillRequest({ correlationId: 3, payload: null, size: 0 });
      assert.equal(q.throttleCheckTimeoutId, null);
    } finally {
      q.destroy();
    }
  });
});
