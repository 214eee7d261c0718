/**
 * Stops kafkajs 2.2.4's idle request-queue timer (connectors/kafka/kafkajs.ts installs it).
 *
 * Each kafkajs connection has a request queue that, after every response, schedules a check of its queue of
 * requests waiting for a slot or for the end of a broker's throttle. With nothing waiting and no throttle, the
 * delay it computes is `-1 - Date.now()`: the timer fires after 1 ms, checks an empty queue and schedules the
 * next one. So every connection that has had one response wakes its process a thousand times a second for as
 * long as it lives (kafkajs issue #1704), and Bun, Deno and Node.js 24 print a TimeoutNegativeWarning for the
 * negative delay (kafkajs issue #1751). kafkajs is unmaintained; the fix is not released.
 *
 * {@link stopIdleQueueChecks} wraps `RequestQueue.prototype.scheduleCheckPendingRequests` so that it schedules
 * nothing while no request waits. Nothing is lost by that: a request that has to wait is queued by `push`,
 * which schedules the check itself, now with a request waiting (after the throttle, or after kafkajs' 10 ms
 * interval), and each response checks the queue again.
 * @module
 */

/** What the wrapper reads of a kafkajs RequestQueue. */
interface RequestQueueLike {
  readonly pending: readonly unknown[];
}

const INSTALLED: unique symbol = Symbol.for("gress.kafkajs.idleQueueChecks");

/** Wraps kafkajs' `RequestQueue.prototype.scheduleCheckPendingRequests` (once per process); see the module comment. */
export function stopIdleQueueChecks(requestQueue: { prototype: object }): void {
  const proto = requestQueue.prototype as { scheduleCheckPendingRequests?: (this: RequestQueueLike) => void; [INSTALLED]?: true };
  if (proto[INSTALLED] === true) return;
  const original = proto.scheduleCheckPendingRequests;
  if (typeof original !== "function") throw new Error("kafkajs: RequestQueue.prototype.scheduleCheckPendingRequests not found (Gress needs kafkajs 2.2.4)");
  Object.defineProperty(proto, INSTALLED, { value: true });
  proto.scheduleCheckPendingRequests = function (this: RequestQueueLike): void {
    if (this.pending.length === 0) return;
    original.call(this);
  };
}
