/**
 * Record output that reuses one record object when it may: see `Downstream.transient` in operate.ts.
 * @module
 */
import { type Element, type Key, record, type StreamRecord } from "./element.ts";
import type { Downstream } from "./operate.ts";

/** A record whose fields RecordOutput refills. Built by record(), so it keeps the one element shape. */
interface Refillable<T> {
  value: T | undefined;
  timestamp: number;
  key: Key | undefined;
  split: string | undefined;
}

/**
 * Sends records to a downstream. When the downstream is transient (nothing after it keeps a record object
 * or passes one on), it refills one record object for every record instead of building a new one. A record
 * sent while another is still on its way (re-entrantly) gets an object of its own, and the kept object holds
 * no value between records, so an idle output keeps no data alive. Sources, map and flatMap send through one.
 *
 * @example
 * ```ts
 * import { type Element, fromIterable, operate, RecordOutput } from "gress";
 *
 * // An operator that emits each word of a line: RecordOutput reuses one record object when the chain allows it.
 * const words = operate<Element<string>, Element<string>>((downstream) => {
 *   const out = new RecordOutput(downstream);
 *   return {
 *     next(e) {
 *       if (e.kind !== "record") return downstream.next(e);
 *       for (const w of e.value.split(" ")) out.send(w, e.timestamp, e.key, e.split);
 *     },
 *     records: "consume",
 *   };
 * });
 * console.log(await fromIterable(["a b", "c"]).transform(words).collect()); // ["a", "b", "c"]
 * ```
 */
export class RecordOutput<T> {
  readonly #downstream: Downstream<Element<T>>;
  readonly #reuse: boolean;
  /** The object to refill next; taken while a record is on its way. */
  #spare: Refillable<T> | undefined;

  constructor(downstream: Downstream<Element<T>>) {
    this.#downstream = downstream;
    this.#reuse = downstream.transient === true;
  }

  /** Sends one record. */
  send(value: T, timestamp: number, key: Key | undefined, split: string | undefined): void {
    let r = this.#spare;
    if (r === undefined) r = record(value, timestamp, key, split) as Refillable<T>;
    else {
      this.#spare = undefined;
      r.value = value;
      r.timestamp = timestamp;
      r.key = key;
      r.split = split;
    }
    this.#downstream.next(r as StreamRecord<T>);
    if (this.#reuse) {
      r.value = undefined;
      this.#spare = r;
    }
  }
}
