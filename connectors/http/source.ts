/**
 * HTTP ingest source: clients POST JSON (`application/json`, one object or an array) or NDJSON
 * (`application/x-ndjson`, one object per line). A batch is answered 202 only after it is in the durable
 * ingest log, so a 2xx means the batch survives a crash; the job replays the log from the checkpoint.
 *
 * - Auth: `Authorization: Bearer <token>` when `tokens` is set (401 otherwise, compared in constant time).
 * - Size: bodies over `maxBodyBytes` get 413, checked on Content-Length and while streaming.
 * - Quotas per tenant (`quotas`): the tenant is named by a header or by its bearer token; a tenant over its
 *   records/s or bytes/s gets 429 with Retry-After, and the other tenants are not affected.
 * - Pressure: while the job holds the source back (paused, replaying, backlog or log full) or the rate limit
 *   has no tokens for the batch, the answer is 429 with Retry-After (seconds).
 * - Idempotency: a repeated `Idempotency-Key` is answered with the first answer and logged only once. Keys
 *   are remembered for the entries still in the log (rebuilt from it after a restart) and, in memory, for
 *   the last `maxIdempotencyKeys` batches.
 * - Bad records in an accepted batch (bad JSON line, invalid UTF-8, `__proto__`, schema violation,
 *   oversized line, nesting deeper than `maxDepth`) are logged with the batch and go to dead letters with the reason when emitted; the
 *   answer lists them (`rejected`, `errors`).
 * - Restart: `close()` stops the server (senders get connection errors, to be retried) and closes the log;
 *   `open()` again replays the log from the restored checkpoint, then listens again on the same port.
 *
 * @example
 * ```ts
 * const clicks = httpSource({ name: "clicks", dir: "./data/clicks", port: 8080, tokens: ["s3cret"] });
 * job.source(clicks).map(...);
 * // curl -H 'authorization: Bearer s3cret' -H 'content-type: application/x-ndjson' --data-binary @clicks.ndjson :8080/ingest
 * ```
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { z } from "zod";
import {
  checkMaxDepth,
  deadLetterOf,
  type Decoded,
  depthViolation,
  jsonDecoder,
  schemaReason,
  TenantQuotas,
  type TenantQuotaOptions,
  TokenBucket,
  type TokenBucketOptions,
} from "../ingest/index.ts";
import { type LoggedEntry, type LoggedRecord, LoggedSource, loggedSourceMethods } from "../ingest-log/source.ts";
import type { Source, SourceContext } from "../../lib/source.ts";

/**
 * Options of {@link httpSource}.
 *
 * @example
 * ```ts
 * import { type HttpSourceOptions, httpSource } from "gress/http";
 * import { z } from "zod";
 *
 * const Event = z.object({ user: z.string(), action: z.string(), at: z.number() });
 * type Event = z.infer<typeof Event>;
 * // Validated by the schema (invalid records are dead letters, counted in the answer), at most 1 MiB per request.
 * const options: HttpSourceOptions<Event> = { name: "events", dir: "state/http-log", port: 8088, schema: Event, maxBodyBytes: 1 << 20, timestamp: (e) => e.at };
 * const source = httpSource(options);
 * ```
 */
export interface HttpSourceOptions<T> {
  readonly name: string;
  /** Directory of the durable ingest log of this source. */
  readonly dir: string;
  /** Interface to listen on. Default 127.0.0.1. */
  readonly host?: string;
  /** Port; 0 (default) picks a free one, see `port` after open. */
  readonly port?: number;
  /** Path that accepts POSTs. Default "/ingest". */
  readonly path?: string;
  /** Accepted bearer tokens; when unset, no auth. */
  readonly tokens?: readonly string[];
  /** Largest accepted body. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Largest NDJSON line (record). Default: maxBodyBytes. */
  readonly maxRecordBytes?: number;
  /** Deepest nesting of arrays and objects in a record; deeper records go to dead letters. Default 128. */
  readonly maxDepth?: number;
  /** Records must match this schema; others go to dead letters. */
  readonly schema?: z.ZodType<T>;
  /** Token-bucket rate limit in records per second. */
  readonly rateLimit?: TokenBucketOptions;
  /** Quotas per tenant: records/s and bytes/s each (429 with Retry-After for the tenant over it). */
  readonly quotas?: TenantQuotaOptions;
  /** Retry-After in seconds when the source is under pressure. Default 1. */
  readonly retryAfterSeconds?: number;
  /** Idempotency keys remembered in memory. Default 100 000. */
  readonly maxIdempotencyKeys?: number;
  /** Event time of a record. Default: receive time. */
  readonly timestamp?: (value: T) => number;
  /** Entries waiting to be emitted before 429. Default 1024. */
  readonly maxBacklog?: number;
  /** Log bytes not yet truncated by a checkpoint before 429. Default 1 GiB. */
  readonly maxLogBytes?: number;
  /** fsync before answering. Default true. */
  readonly fsync?: boolean;
}

/**
 * The answer to an accepted batch.
 *
 * @example
 * ```ts
 * import type { IngestAnswer } from "gress/http";
 *
 * // The JSON body of the source's answer to a POST: what was accepted, and why the rest was not.
 * const answer: IngestAnswer = { accepted: 2, rejected: 1, errors: [{ index: 1, reason: "not JSON" }] };
 * ```
 */
export interface IngestAnswer {
  readonly accepted: number;
  readonly rejected: number;
  readonly errors: readonly { readonly index: number; readonly reason: string }[];
}

interface Meta {
  readonly k: string | null;
  readonly t: "json" | "ndjson";
}

/**
 * An HTTP ingest source; `port` and `url` are known after open.
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { type HttpSource, httpSource } from "gress/http";
 *
 * const source: HttpSource<unknown> = httpSource({ name: "in", dir: "state/http-in", port: 0 });
 * const job = new Job();
 * job.source(source).sinkTo({ name: "s", write() {} });
 * const running = job.run();
 * await source.listening;
 * console.log(`POST to ${source.url}`); // the port is chosen by the system with port: 0
 * ```
 */
export interface HttpSource<T> extends Source<T> {
  readonly port: number;
  readonly url: string;
  readonly counts: LoggedSource<T>["counts"];
  /** Resolves once the server listens; after a restart closed it, once it listens again (on the same port). */
  readonly listening: Promise<void>;
  /** Admitted and refused traffic per tenant (under "*" unless `quotas.perTenantStats`); undefined without quotas. */
  readonly quotaStats: ReadonlyMap<string, Readonly<{ admittedRecords: number; admittedBytes: number; refusedRecords: number; refusedBytes: number; refusals: number }>> | undefined;
}

/**
 * Creates an HTTP ingest source.
 * @param options where to listen, the log directory, auth, limits, schema
 * @returns the source
 *
 * @example
 * ```ts
 * import { Job } from "gress";
 * import { httpSource } from "gress/http";
 *
 * // POST JSON or NDJSON to http://localhost:8088/ingest with a bearer token; 2xx only once it is durable.
 * const job = new Job({ name: "ingest" });
 * const events = job.source(
 *   httpSource<{ action: string }>({ name: "events", dir: "state/http-log", port: 8088, path: "/ingest", tokens: ["s3cret"] }),
 * );
 * ```
 */
export function httpSource<T = unknown>(options: HttpSourceOptions<T>): HttpSource<T> {
  const path = options.path ?? "/ingest";
  const maxBodyBytes = options.maxBodyBytes ?? 1 << 20;
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  const maxKeys = options.maxIdempotencyKeys ?? 100_000;
  const quotaTenant = options.quotas?.tenant;
  const tenantTokens = quotaTenant !== undefined && "tokens" in quotaTenant ? Object.values(quotaTenant.tokens) : [];
  const tokens = [...(options.tokens ?? []), ...tenantTokens].map((t) => new TextEncoder().encode(t));
  const maxDepth = checkMaxDepth(options.maxDepth, "httpSource");
  const decodeRecord = jsonDecoder<T>({
    ...(options.schema !== undefined ? { schema: options.schema } : {}),
    maxBytes: options.maxRecordBytes ?? maxBodyBytes,
    maxDepth,
  });
  // A JSON body may be an array of records: one level more than a record may have.
  const decodeBody = jsonDecoder<unknown>({ maxBytes: maxBodyBytes, maxDepth: maxDepth + 1 });
  const enc = new TextEncoder();

  /** Same function at receive time (for the answer) and at replay (for emission): deterministic. */
  const records = (entry: LoggedEntry): LoggedRecord<T>[] => {
    const meta = JSON.parse(entry.meta) as Meta;
    if (meta.t === "ndjson") {
      return splitLines(entry.body).map((line, i) => ({
        decoded: decodeRecord(line),
        raw: deadLetterOf(options.name, options.name, i, line),
      }));
    }
    const whole = decodeBody(entry.body);
    if (!whole.ok) return [{ decoded: whole, raw: deadLetterOf(options.name, options.name, 0, entry.body) }];
    // The body passed with maxDepth + 1, so the records of an array are within maxDepth; a single record is
    // not, when the body is that deep.
    const batch = Array.isArray(whole.value);
    const deep = batch ? undefined : depthViolation(entry.body, maxDepth);
    if (deep !== undefined) return [{ decoded: { ok: false, reason: deep }, raw: deadLetterOf(options.name, options.name, 0, entry.body) }];
    const values = batch ? (whole.value as unknown[]) : [whole.value];
    return values.map((v) => {
      if (options.schema === undefined) return { decoded: { ok: true, value: v as T }, raw: v };
      const checked = options.schema.safeParse(v);
      const decoded: Decoded<T> = checked.success ? { ok: true, value: checked.data } : { ok: false, reason: schemaReason(checked.error) };
      return { decoded, raw: v };
    });
  };

  const answers = new Map<string, Promise<{ status: number; body: string }>>();
  const remember = (key: string, answer: Promise<{ status: number; body: string }>): void => {
    answers.set(key, answer);
    if (answers.size > maxKeys) answers.delete(answers.keys().next().value as string);
  };

  let server: Server | undefined;
  let bucket: TokenBucket | undefined;
  let quotas: TenantQuotas | undefined;
  let ctxRef: SourceContext<T> | undefined;
  let port = 0;
  let markListening: () => void = () => {};
  let listening = new Promise<void>((r) => (markListening = r));
  /** `listening` has resolved (the current server listens). */
  let listened = false;

  const logged = new LoggedSource<T>({
    name: options.name,
    dir: options.dir,
    decode: records,
    ...(options.timestamp !== undefined ? { timestamp: (v: T) => (options.timestamp as (v: T) => number)(v) } : {}),
    ...(options.maxBacklog !== undefined ? { maxBacklog: options.maxBacklog } : {}),
    ...(options.maxLogBytes !== undefined ? { maxLogBytes: options.maxLogBytes } : {}),
    ...(options.fsync !== undefined ? { fsync: options.fsync } : {}),
    onRetained: (entry) => {
      const meta = JSON.parse(entry.meta) as Meta;
      if (meta.k !== null) remember(meta.k, Promise.resolve(answerFor(records(entry))));
    },
    beforeOpen: (ctx) => {
      ctxRef = ctx;
      if (options.rateLimit !== undefined) bucket = new TokenBucket(options.rateLimit, ctx.clock);
      if (options.quotas !== undefined && quotas === undefined) quotas = new TenantQuotas(options.quotas, ctx.clock);
    },
    onOpen: () =>
      new Promise<void>((resolve, reject) => {
        const s = createServer((req, res) => void handle(req, res));
        server = s;
        s.once("error", reject);
        // Opened again after a restart: the same port as before, so that the senders' URL stays valid.
        s.listen(port !== 0 ? port : (options.port ?? 0), options.host ?? "127.0.0.1", () => {
          port = (s.address() as AddressInfo).port;
          listened = true;
          markListening();
          resolve();
        });
      }),
    onClose: () =>
      new Promise<void>((resolve) => {
        const s = server;
        server = undefined;
        // A restart opens again: `listening` then waits for the new server.
        if (listened) {
          listened = false;
          listening = new Promise<void>((r) => (markListening = r));
        }
        if (s === undefined) return resolve();
        s.close(() => resolve());
        s.closeAllConnections?.();
      }),
  });

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    if (res.headersSent) return;
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };

  const authorized = (req: IncomingMessage): boolean => {
    if (tokens.length === 0) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    if (m === null) return false;
    const given = enc.encode(m[1] as string);
    let ok = false;
    for (const t of tokens) if (t.byteLength === given.byteLength && timingSafeEqual(t, given)) ok = true;
    return ok;
  };

  const readBody = (req: IncomingMessage): Promise<Uint8Array | "too-large"> =>
    new Promise((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      let done = false;
      req.on("data", (c: Uint8Array) => {
        if (done) return;
        size += c.byteLength;
        if (size > maxBodyBytes) {
          done = true;
          resolve("too-large");
          return;
        }
        chunks.push(c);
      });
      req.on("end", () => {
        if (done) return;
        done = true;
        const out = new Uint8Array(size);
        let at = 0;
        for (const c of chunks) {
          out.set(c, at);
          at += c.byteLength;
        }
        resolve(out);
      });
      req.on("error", reject);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== path) return send(res, 404, { error: `not found: POST ${path}` });
      if (req.method !== "POST") return send(res, 405, { error: "only POST" }, { allow: "POST" });
      if (!authorized(req)) return send(res, 401, { error: "missing or wrong bearer token" }, { "www-authenticate": 'Bearer realm="gress"' });
      let tenant: string | undefined;
      if (quotaTenant !== undefined) {
        if ("header" in quotaTenant) {
          const h = req.headers[quotaTenant.header.toLowerCase()];
          tenant = typeof h === "string" && h.length > 0 && h.length <= 256 ? h : undefined;
          if (tenant === undefined) return send(res, 400, { error: `missing tenant: give the ${quotaTenant.header} header (1 to 256 characters)` });
        } else {
          tenant = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
          tenant = tenant === undefined ? undefined : quotas?.tenantOfToken(tenant);
          if (tenant === undefined) return send(res, 403, { error: "the bearer token names no tenant" });
        }
      }
      const length = Number(req.headers["content-length"] ?? Number.NaN);
      if (length > maxBodyBytes) {
        send(res, 413, { error: `body of ${length} bytes exceeds the limit of ${maxBodyBytes}` }, { connection: "close" });
        req.destroy();
        return;
      }
      const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
      const t = type === "application/json" ? "json" : type === "application/x-ndjson" || type === "application/jsonl" ? "ndjson" : undefined;
      if (t === undefined) return send(res, 415, { error: "content-type must be application/json or application/x-ndjson" });
      const keyHeader = req.headers["idempotency-key"];
      const key = typeof keyHeader === "string" && keyHeader.length > 0 ? keyHeader : null;
      if (key !== null && key.length > 256) return send(res, 400, { error: "Idempotency-Key longer than 256 characters" });
      if (key !== null) {
        const previous = answers.get(key);
        if (previous !== undefined) {
          const a = await previous.catch(() => undefined);
          if (a !== undefined && a.status < 300) {
            req.resume();
            res.writeHead(a.status, { "content-type": "application/json", "idempotent-replayed": "true" });
            res.end(a.body);
            return;
          }
        }
      }
      if (logged.pressured) {
        req.resume();
        return send(res, 429, { error: "the source is under pressure, retry later" }, { "retry-after": retryAfter });
      }
      // A tenant without tokens is refused before its body is read and decoded.
      const early = tenant === undefined || quotas === undefined ? 0 : quotas.precheck(tenant, Number.isFinite(length) ? length : 0);
      if (early > 0) {
        req.resume();
        return send(res, 429, { error: `tenant ${JSON.stringify(tenant)} is over its quota` }, { "retry-after": String(Math.max(1, Math.ceil(early / 1000))) });
      }
      // Claim the key before reading the body, so a concurrent retry waits for this answer instead of logging twice.
      let settle: (a: { status: number; body: string }) => void = () => {};
      if (key !== null) remember(key, new Promise((r) => (settle = r)));
      const fail = (status: number, error: string, headers: Record<string, string> = {}): void => {
        if (key !== null) answers.delete(key);
        settle({ status, body: "" });
        send(res, status, { error }, headers);
      };
      const body = await readBody(req);
      if (body === "too-large") {
        fail(413, `body exceeds the limit of ${maxBodyBytes} bytes`, { connection: "close" });
        req.destroy();
        return;
      }
      const ctx = ctxRef as SourceContext<T>;
      const entry: LoggedEntry = { receivedAt: ctx.clock.now(), meta: JSON.stringify({ k: key, t } satisfies Meta), body };
      const recs = records(entry);
      const over = tenant === undefined || quotas === undefined ? 0 : quotas.admit(tenant, recs.length, body.byteLength);
      if (over > 0) return fail(429, `tenant ${JSON.stringify(tenant)} is over its quota`, { "retry-after": String(Math.max(1, Math.ceil(over / 1000))) });
      if (bucket !== undefined && !bucket.tryTake(recs.length)) {
        const wait = Math.max(1, Math.ceil(bucket.delayFor(recs.length) / 1000));
        return fail(429, "rate limit exceeded", { "retry-after": String(wait) });
      }
      let a: { status: number; body: string };
      try {
        await logged.append([entry]);
        a = answerFor(recs);
      } catch (e) {
        return fail(503, `could not make the batch durable: ${e instanceof Error ? e.message : String(e)}`, { "retry-after": retryAfter });
      }
      settle(a);
      res.writeHead(a.status, { "content-type": "application/json" });
      res.end(a.body);
    } catch (e) {
      send(res, 500, { error: e instanceof Error ? e.message : String(e) });
    }
  };

  return {
    name: options.name,
    get port() {
      return port;
    },
    get url() {
      return `http://${options.host ?? "127.0.0.1"}:${port}${path}`;
    },
    counts: logged.counts,
    get listening() {
      return listening;
    },
    get quotaStats() {
      return quotas?.stats;
    },
    tenantStats() {
      return quotas?.stats;
    },
    ...loggedSourceMethods(logged),
  };
}

function answerFor<T>(recs: readonly LoggedRecord<T>[]): { status: number; body: string } {
  const errors: { index: number; reason: string }[] = [];
  recs.forEach((r, index) => {
    if (!r.decoded.ok) errors.push({ index, reason: r.decoded.reason });
  });
  const answer: IngestAnswer = { accepted: recs.length - errors.length, rejected: errors.length, errors: errors.slice(0, 100) };
  return { status: 202, body: JSON.stringify(answer) };
}

/**
 * Splits NDJSON bytes into lines on LF (and CRLF), skipping blank lines, without decoding them.
 *
 * @example
 * ```ts
 * import { splitLines } from "gress/http";
 *
 * // The lines of an NDJSON body, as byte ranges (no copy, no decoding).
 * const lines = splitLines(new TextEncoder().encode('{"a":1}\n{"a":2}\n'));
 * console.log(lines.length); // 2
 * ```
 */
export function splitLines(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      let end = i;
      if (end > start && bytes[end - 1] === 0x0d) end--;
      if (end > start) lines.push(bytes.subarray(start, end));
      start = i + 1;
    }
  }
  return lines;
}
