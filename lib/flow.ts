/**
 * Flow control. Anything that holds records without a fixed bound of its own — a sink's in-flight writes, an
 * async operator's queue — reports pressure here when it reaches its limit, and the job pauses every
 * source until all pressure is released. That keeps every buffer bounded: nothing queues when downstream
 * is slow, the sources simply stop producing (Kafka pause, NATS pull size, socket pause, HTTP 429).
 * @module
 */

/** Listener for pause/resume transitions. */
export type FlowListener = (paused: boolean) => void;

/**
 * Counts who is under pressure and tells the sources.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 *
 * const job = new Job();
 * // Anything that buffers without a bound of its own presses while full; every source pauses until released.
 * job.flow.listen((paused) => console.log(paused ? "sources paused" : "sources resumed"));
 * job.flow.press("my-cache");
 * job.flow.release("my-cache");
 * ```
 */
export class FlowControl {
  readonly #pressured = new Set<string>();
  readonly #listeners = new Set<FlowListener>();

  /** True while any participant is under pressure. */
  get paused(): boolean {
    return this.#pressured.size > 0;
  }
  /** Marks `who` as under pressure (idempotent). */
  press(who: string): void {
    const was = this.paused;
    this.#pressured.add(who);
    if (!was) for (const l of this.#listeners) l(true);
  }
  /** Releases `who`'s pressure (idempotent). */
  release(who: string): void {
    if (!this.#pressured.delete(who) || this.paused) return;
    for (const l of this.#listeners) l(false);
  }
  /** Subscribes to transitions; returns the unsubscribe function. */
  listen(listener: FlowListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
