// The noisy tenant of http-quotas.test.ts, in a process of its own: from 2 connections, POSTs batches of 100
// NDJSON records {"tenant","seq"} as `tenant`, 2 ms apart, ignoring Retry-After, from "started" until its stdin
// ends; then prints {"accepted":n,"refused":n,"retryAfter":"..."} and exits (1 on any status but 202 and 429).
// In its own process so that the load generator's CPU (fetch, the request bodies) is not on the event loop
// that measures the calm tenant's latency.
// Usage: node http-noisy-client.mjs <url> <tenant>
import process from "node:process";

const [url, tenant] = process.argv.slice(2);
let stop = false;
let accepted = 0;
let refused = 0;
let retryAfter = "";
process.stdin.on("data", () => {});
process.stdin.on("end", () => {
  stop = true;
});
process.stdout.write("started\n");
await Promise.all(
  Array.from({ length: 2 }, async (_, w) => {
    let seq = w * 1_000_000;
    while (!stop) {
      const rows = Array.from({ length: 100 }, () => JSON.stringify({ tenant, seq: seq++ }));
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/x-ndjson", "x-tenant": tenant }, body: rows.join("\n") });
      const body = await res.json();
      if (res.status === 202) accepted += body.accepted ?? 0;
      else if (res.status === 429) {
        refused++;
        retryAfter = res.headers.get("retry-after") ?? "";
      } else {
        process.stderr.write(`noisy client: HTTP ${res.status}: ${JSON.stringify(body)}\n`);
        process.exit(1);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }),
);
process.stdout.write(`${JSON.stringify({ accepted, refused, retryAfter })}\n`);
