/**
 * Webhook sink: POSTs each result as JSON to a URL, with an `Idempotency-Key` header so the receiver can
 * drop the duplicates that retries and replays after a recovery produce. Failed deliveries are retried with
 * bounded exponential backoff (network errors, 408, 425, 429 and 5xx; a Retry-After is honoured up to
 * `maxDelayMs`). Other 4xx answers, or running out of attempts, fail the write with a SinkError.
 *
 * A value without a body (the body function or JSON.stringify throws, or there is no JSON of it) is refused
 * by `write` with a BadRecordError and goes to dead letters.
 *
 * The default key is `<sink name>-<n>` with `n` the write's ordinal. With checkpoints, `n` is in the
 * checkpoint and recovery (also a restart inside the job) continues from the restored checkpoint's `n`, so a
 * deterministic pipeline's replay repeats the keys the receiver has seen; without, `n` counts from 1 at every
 * start. Give `idempotencyKey` (a function of the record, for example its id and window end) for keys that do
 * not depend on the order of the writes. Delivery is at least once: the receiver drops the duplicates.
 *
 * `close()` (the job ended or a restart tears it down) abandons the deliveries still retrying, so that no
 * request or timer of a closed run is left; the restarted run's replay sends them again.
 *
 * @example
 * ```ts
 * stream.sinkTo(webhookSink({ name: "alerts", url: "https://example.com/hook", idempotencyKey: (a) => a.id }));
 * ```
 * @module
 */
import type { StreamRecord } from "../../lib/element.ts";
import { BadRecordError, SinkError } from "../../lib/errors.ts";
import { encodeRecord, type Sink } from "../../lib/sink.ts";

/**
 * Options of {@link webhookSink}.
 *
 * @example
 * ```ts
 * import { type WebhookSinkOptions, webhookSink } from "gress/http";
 *
 * type Alert = { id: string; text: string };
 * const options: WebhookSinkOptions<Alert> = {
 *   name: "slack",
 *   url: "https://hooks.example.com/T000/B000",
 *   headers: { authorization: "Bearer s3cret" },
 *   body: (a) => JSON.stringify({ text: a.text }),
 *   idempotencyKey: (a) => a.id,
 *   maxAttempts: 8,
 *   timeoutMs: 5_000,
 * };
 * const sink = webhookSink(options);
 * ```
 */
export interface WebhookSinkOptions<T> {
  readonly name: string;
  readonly url: string;
  /** Extra request headers (e.g. authorization). */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * The idempotency key of a record. Default: `<name>-<ordinal>`. `record` is valid during the call only (the
   * job refills the object for the next record): keep its fields, not it.
   */
  readonly idempotencyKey?: (value: T, record: StreamRecord<T>) => string;
  /** The request body. Default: JSON of the value. */
  readonly body?: (value: T) => string;
  /** Attempts per record, the first included. Default 5. */
  readonly maxAttempts?: number;
  /** First retry delay; doubled per attempt. Default 100 ms. */
  readonly baseDelayMs?: number;
  /** Largest delay between attempts. Default 5000 ms. */
  readonly maxDelayMs?: number;
  /** Timeout of one request. Default 10 000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Counts of a webhook sink.
 *
 * @example
 * ```ts
 * import { webhookSink } from "gress/http";
 *
 * const sink = webhookSink<{ id: string }>({ name: "hook", url: "https://example.com/hook" });
 * // After the run: requests delivered, and retries it took.
 * console.log(sink.counts.delivered, sink.counts.retries);
 * ```
 */
export interface WebhookCounts {
  delivered: number;
  retries: number;
}

const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * Creates a webhook sink.
 * @param options target URL, retries, idempotency key
 * @returns the sink; `counts` says how many were delivered and retried
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { webhookSink } from "gress/http";
 *
 * type Alert = { id: string; text: string };
 * // POSTs each alert, retrying with backoff; the idempotency key lets the receiver drop duplicates.
 * fromIterable<Alert>([{ id: "a1", text: "disk full" }]).sinkTo(
 *   webhookSink<Alert>({ name: "pager", url: "https://example.com/hooks/alerts", idempotencyKey: (a) => a.id, maxAttempts: 5 }),
 * );
 * ```
 */
export function webhookSink<T>(options: WebhookSinkOptions<T>): Sink<T> & { readonly counts: WebhookCounts } {
  const maxAttempts = options.maxAttempts ?? 5;
  const base = options.baseDelayMs ?? 100;
  const maxDelay = options.maxDelayMs ?? 5000;
  const timeout = options.timeoutMs ?? 10_000;
  const counts: WebhookCounts = { delivered: 0, retries: 0 };
  let ordinal = 0;
  /** Recovery restored `ordinal` from a checkpoint in this run (later commits leave it alone). */
  let restored = false;
  /** Aborted by close(): the requests and retry waits of that run end. open() starts a new one. */
  let run = new AbortController();
  const fail = (message: string, cause?: unknown): SinkError =>
    new SinkError(`webhook sink "${options.name}" (${options.url}): ${message}`, { cause, details: { sink: options.name } });

  /** Posts one body, retrying as the module header says. */
  const deliver = async (key: string, body: string): Promise<void> => {
    const closed = run.signal;
    let lastProblem = "";
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      let retryAfterMs: number | undefined;
      try {
        if (closed.aborted) throw fail("closed before the delivery succeeded");
        const res = await fetch(options.url, {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": key, ...options.headers },
          body,
          signal: AbortSignal.any([closed, AbortSignal.timeout(timeout)]),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          counts.delivered++;
          return;
        }
        if (!RETRYABLE.has(res.status)) throw fail(`rejected with HTTP ${res.status} (not retried)`);
        lastProblem = `HTTP ${res.status}`;
        const ra = Number(res.headers.get("retry-after"));
        if (Number.isFinite(ra) && ra >= 0) retryAfterMs = ra * 1000;
      } catch (e) {
        if (e instanceof SinkError) throw e;
        if (closed.aborted) throw fail("closed before the delivery succeeded", e);
        lastProblem = e instanceof Error ? e.message : String(e);
      }
      if (attempt === maxAttempts) break;
      counts.retries++;
      const backoff = Math.min(maxDelay, base * 2 ** (attempt - 1));
      await new Promise<void>((r) => {
        const timer = setTimeout(done, Math.min(maxDelay, retryAfterMs ?? backoff));
        function done(): void {
          clearTimeout(timer);
          closed.removeEventListener("abort", done);
          r();
        }
        closed.addEventListener("abort", done);
      });
    }
    throw fail(`gave up after ${maxAttempts} attempts, last: ${lastProblem}`);
  };

  const keyOf = options.idempotencyKey;
  return {
    name: options.name,
    counts,
    open() {
      if (run.signal.aborted) run = new AbortController();
    },
    // write reads the record's fields before it returns and keeps no record object.
    keepsRecords: false,
    write(value, record) {
      // Synchronously: a value without a body or key throws its BadRecordError from write (dead letters).
      const body = encodeRecord("body", options.body ?? JSON.stringify, value) as string | undefined;
      if (body === undefined) throw new BadRecordError(`body failed: a ${typeof value} has no JSON form`);
      const key = keyOf === undefined ? `${options.name}-${++ordinal}` : encodeRecord("idempotencyKey", (v: T) => keyOf(v, record), value);
      return deliver(key, body);
    },
    async preCommit(): Promise<{ written: number }> {
      // The writes before the barrier have been delivered (the sink operator waits for them).
      return { written: ordinal };
    },
    async commit(_checkpointId, handle) {
      // Called by recovery with the restored checkpoint's handle before this run's first write: continue that
      // run's ordinals, so that replayed records get the keys they had. Later (normal) commits change nothing.
      const h = handle as Partial<{ written: number }> | undefined;
      if (restored || ordinal > 0 || typeof h?.written !== "number") return;
      restored = true;
      ordinal = h.written;
    },
    async abort() {},
    close() {
      run.abort();
      // The next open (a restart) counts again from the restored checkpoint, or from 1 without one.
      ordinal = 0;
      restored = false;
    },
  };
}
