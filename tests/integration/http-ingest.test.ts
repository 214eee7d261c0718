import assert from "node:assert/strict";
import { readdir, readFile, } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { z } from "zod";
import { httpSource, webhookSink } from "../../connectors/http/index.ts";
import { Job } from "../../lib/job.ts";
import type { Positions } from "../../lib/source.ts";
import { capture } from "./http-ws-nats-capture.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-http-");

const Click = z.object({ user: z.string(), n: z.number() });
type Click = z.infer<typeof Click>;
const ndjson = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n");

async function post(url: string, body: string | Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "content-type": "application/x-ndjson", ...headers }, body: body as BodyInit });
}

describe("HTTP ingest source (real HTTP on 127.0.0.1)", () => {
  it("answers 202 only once the batch is in the durable ingest log, and emits it", { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    const job = new Job({ name: "http-durable" });
    const src = httpSource<Click>({ name: "clicks", dir, schema: Click });
    const run = capture(job, job.source(src));
    await src.listening;
    const body = ndjson([{ user: "ann", n: 1 }, { user: "bob", n: 2 }]);
    const res = await post(src.url, body);
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { accepted: 2, rejected: 0, errors: [] });
    // The bytes are on disk when the answer arrives.
    const segs = (await readdir(dir)).filter((f) => f.endsWith(".seg"));
    const onDisk = new TextDecoder().decode(await readFile(join(dir, segs[0] as string)));
    assert.ok(onDisk.includes(body), "the batch body is in the log segment");
    await run.until(() => run.values.length === 2);
    assert.deepEqual(run.values, [{ user: "ann", n: 1 }, { user: "bob", n: 2 }]);
    run.stop();
  });

  it("after a restart, the log replays from the checkpointed position: nothing lost, nothing repeated", { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    const job1 = new Job({ name: "http-replay-1" });
    const src1 = httpSource<Click>({ name: "clicks", dir, schema: Click });
    const run1 = capture(job1, job1.source(src1));
    await src1.listening;
    assert.equal((await post(src1.url, ndjson([{ user: "a", n: 1 }]))).status, 202);
    await run1.until(() => run1.values.length === 1);
    const checkpoint: Positions = src1.positions?.() ?? {};
    await src1.ack?.(checkpoint);
    // Accepted after the checkpoint: must come back after the restart.
    assert.equal((await post(src1.url, ndjson([{ user: "b", n: 2 }, { user: "c", n: 3 }]))).status, 202);
    await run1.until(() => run1.values.length === 3);
    run1.stop();
    await new Promise((r) => setTimeout(r, 50));

    const job2 = new Job({ name: "http-replay-2" });
    const src2 = httpSource<Click>({ name: "clicks", dir, schema: Click });
    const run2 = capture(job2, job2.source(src2, { from: checkpoint }));
    await src2.listening;
    await run2.until(() => run2.values.length === 2);
    assert.deepEqual(run2.values, [{ user: "b", n: 2 }, { user: "c", n: 3 }]);
    run2.stop();
  });

  it("a repeated Idempotency-Key is acknowledged with the first answer and logged once, also after a restart", { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    const job = new Job({ name: "http-idem" });
    const src = httpSource<Click>({ name: "clicks", dir, schema: Click });
    const run = capture(job, job.source(src));
    await src.listening;
    const body = ndjson([{ user: "x", n: 1 }]);
    const [r1, r2] = await Promise.all([post(src.url, body, { "idempotency-key": "k-1" }), post(src.url, body, { "idempotency-key": "k-1" })]);
    assert.equal(r1.status, 202);
    assert.equal(r2.status, 202);
    const r3 = await post(src.url, body, { "idempotency-key": "k-1" });
    assert.equal(r3.status, 202);
    assert.equal(r3.headers.get("idempotent-replayed"), "true");
    assert.equal((await post(src.url, body, { "idempotency-key": "k-2" })).status, 202);
    await run.until(() => run.values.length === 2);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(run.values.length, 2, "k-1 once, k-2 once");
    assert.equal(src.counts.appended, 2);
    run.stop();
    await new Promise((r) => setTimeout(r, 50));

    const job2 = new Job({ name: "http-idem-2" });
    const again = httpSource<Click>({ name: "clicks", dir, schema: Click });
    const run2 = capture(job2, job2.source(again, { from: src.positions?.() ?? {} }));
    await again.listening;
    const r4 = await post(again.url, body, { "idempotency-key": "k-1" });
    assert.equal(r4.status, 202);
    assert.equal(r4.headers.get("idempotent-replayed"), "true", "keys are rebuilt from the log");
    assert.equal(again.counts.appended, 0);
    run2.stop();
  });

  it("bearer auth: missing or wrong token is 401 with WWW-Authenticate, the right one is accepted", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "http-auth" });
    const src = httpSource<Click>({ name: "clicks", dir: await tempDir(), tokens: ["s3cret", "other"] });
    const run = capture(job, job.source(src));
    await src.listening;
    const body = ndjson([{ user: "a", n: 1 }]);
    const none = await post(src.url, body);
    assert.equal(none.status, 401);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.equal((await post(src.url, body, { authorization: "Bearer wrong!" })).status, 401);
    assert.equal((await post(src.url, body, { authorization: "Bearer s3cret" })).status, 202);
    await run.until(() => run.values.length === 1);
    assert.equal(src.counts.appended, 1);
    run.stop();
  });

  it("a body over the limit is refused with 413 and nothing is logged", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "http-413" });
    const src = httpSource<Click>({ name: "clicks", dir: await tempDir(), maxBodyBytes: 1000 });
    const run = capture(job, job.source(src));
    await src.listening;
    const big = ndjson(Array.from({ length: 100 }, (_, n) => ({ user: "someone", n })));
    const res = await post(src.url, big);
    assert.equal(res.status, 413);
    assert.match(((await res.json()) as { error: string }).error, /exceeds the limit of 1000/);
    assert.equal(src.counts.appended, 0);
    run.stop();
  });

  it("under pressure (job paused) it answers 429 with Retry-After, and accepts again once released", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "http-429" });
    const src = httpSource<Click>({ name: "clicks", dir: await tempDir(), retryAfterSeconds: 2 });
    const run = capture(job, job.source(src));
    await src.listening;
    const body = ndjson([{ user: "a", n: 1 }]);
    job.flow.press("test");
    const res = await post(src.url, body);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("retry-after"), "2");
    assert.equal(src.counts.appended, 0);
    job.flow.release("test");
    assert.equal((await post(src.url, body)).status, 202);
    await run.until(() => run.values.length === 1);
    run.stop();
  });

  it("the rate limit answers 429 with a Retry-After computed from the token bucket", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "http-rate" });
    const src = httpSource<Click>({ name: "clicks", dir: await tempDir(), rateLimit: { ratePerSecond: 2, burst: 3 } });
    const run = capture(job, job.source(src));
    await src.listening;
    assert.equal((await post(src.url, ndjson([{ user: "a", n: 1 }, { user: "a", n: 2 }, { user: "a", n: 3 }]))).status, 202);
    const limited = await post(src.url, ndjson([{ user: "a", n: 4 }, { user: "a", n: 5 }]));
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get("retry-after"), "1");
    run.stop();
  });

  it("bad records become dead letters with reasons and exact counts; good ones in the same batch go through", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "http-bad" });
    const src = httpSource<Click>({ name: "clicks", dir: await tempDir(), schema: Click, maxRecordBytes: 200 });
    const run = capture(job, job.source(src));
    await src.listening;
    const enc = new TextEncoder();
    const lines: Uint8Array[] = [
      enc.encode(JSON.stringify({ user: "ok1", n: 1 })),
      enc.encode("{not json"),
      enc.encode(JSON.stringify({ user: "x", n: "not a number" })),
      enc.encode(JSON.stringify({ user: "y", n: 1, pad: "z".repeat(300) })),
      enc.encode('{"user":"p","n":1,"__proto__":{"polluted":true}}'),
      new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
      enc.encode(JSON.stringify({ user: "ok2", n: 2 })),
    ];
    const body = new Uint8Array(lines.reduce((s, l) => s + l.byteLength + 1, 0));
    let at = 0;
    for (const l of lines) {
      body.set(l, at);
      body[at + l.byteLength] = 0x0a;
      at += l.byteLength + 1;
    }
    const res = await post(src.url, body);
    assert.equal(res.status, 202);
    const answer = (await res.json()) as { accepted: number; rejected: number; errors: { index: number; reason: string }[] };
    assert.equal(answer.accepted, 2);
    assert.equal(answer.rejected, 5);
    assert.deepEqual(answer.errors.map((e) => e.index), [1, 2, 3, 4, 5]);
    await run.until(() => run.values.length === 2 && run.deadLetters.length === 5);
    assert.deepEqual(run.values, [{ user: "ok1", n: 1 }, { user: "ok2", n: 2 }]);
    const reasons = run.deadLetters.map((d) => d.reason);
    assert.match(reasons[0] ?? "", /malformed JSON/);
    assert.match(reasons[1] ?? "", /schema violation: n:/);
    assert.match(reasons[2] ?? "", /oversized/);
    assert.match(reasons[3] ?? "", /__proto__/);
    assert.match(reasons[4] ?? "", /invalid UTF-8/);
    assert.equal(src.counts.deadLetters, 5);
    assert.equal(src.counts.emitted, 2);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // A JSON (not NDJSON) body that does not parse at all is one dead letter.
    const whole = await fetch(src.url, { method: "POST", headers: { "content-type": "application/json" }, body: "[{" });
    assert.equal(whole.status, 202);
    await run.until(() => run.deadLetters.length === 6);
    run.stop();
  });

  it("records nested deeper than maxDepth are dead letters naming the limit: an NDJSON line, a JSON body; the records of a JSON array batch may nest maxDepth deep", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "http-deep" });
    const src = httpSource({ name: "deep", dir: await tempDir(), maxDepth: 3 });
    const run = capture(job, job.source(src));
    await src.listening;
    const reason = "nested too deeply: arrays and objects more than 3 levels deep (maxDepth 3)";
    const lines = await post(src.url, ['{"a":[[1]]}', '{"a":[[[1]]]}', `${"[".repeat(5000)}${"]".repeat(5000)}`].join("\n"));
    assert.deepEqual(await lines.json(), { accepted: 1, rejected: 2, errors: [{ index: 1, reason }, { index: 2, reason }] });
    const json = (body: string): Promise<Response> => fetch(src.url, { method: "POST", headers: { "content-type": "application/json" }, body });
    assert.deepEqual(await (await json('[{"a":[[1]]},{"b":2}]')).json(), { accepted: 2, rejected: 0, errors: [] });
    assert.deepEqual(await (await json('{"a":[[[1]]]}')).json(), { accepted: 0, rejected: 1, errors: [{ index: 0, reason }] });
    await run.until(() => run.values.length === 3 && run.deadLetters.length === 3);
    assert.deepEqual(run.values, [{ a: [[1]] }, { a: [[1]] }, { b: 2 }]);
    assert.deepEqual(
      run.deadLetters.map((d) => d.reason),
      [reason, reason, reason],
    );
    run.stop();
  });
});

describe("webhook sink (real HTTP receiver on 127.0.0.1)", () => {
  it("retries 503 with backoff (honouring Retry-After) and keeps the same Idempotency-Key across attempts", { timeout: 120_000 }, async () => {
    const seen: { key: string; body: string }[] = [];
    let failuresLeft = 2;
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        seen.push({ key: String(req.headers["idempotency-key"]), body });
        if (failuresLeft-- > 0) {
          res.writeHead(503, { "retry-after": "0" });
          res.end();
          return;
        }
        res.writeHead(200);
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const job = new Job({ name: "webhook" });
    const sink = webhookSink<{ id: string }>({ name: "hook", url, idempotencyKey: (v) => v.id, baseDelayMs: 5 });
    job.fromIterable([{ id: "a" }, { id: "b" }]).sinkTo(sink, { maxInFlight: 1 });
    await job.run();
    server.close();
    assert.deepEqual(
      seen.map((s) => s.key),
      ["a", "a", "a", "b"],
    );
    assert.equal(seen[0]?.body, '{"id":"a"}');
    assert.deepEqual(sink.counts, { delivered: 2, retries: 2 });
  });

  it("a 4xx answer is not retried and fails the job with a SinkError naming the status", { timeout: 120_000 }, async () => {
    let calls = 0;
    const server = createServer((req, res) => {
      calls++;
      req.resume();
      res.writeHead(400);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const job = new Job({ name: "webhook-400" });
    job.fromIterable([1]).sinkTo(webhookSink<number>({ name: "hook", url }));
    await assert.rejects(job.run(), /HTTP 400 \(not retried\)/);
    server.close();
    assert.equal(calls, 1);
  });

  it("gives up after maxAttempts when the receiver is down", { timeout: 120_000 }, async () => {
    const job = new Job({ name: "webhook-down" });
    // A port that nothing listens on: take a free one and close it.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    job.fromIterable([1]).sinkTo(webhookSink<number>({ name: "hook", url: `http://127.0.0.1:${port}/`, maxAttempts: 3, baseDelayMs: 1 }));
    await assert.rejects(job.run(), /gave up after 3 attempts/);
  });
});
