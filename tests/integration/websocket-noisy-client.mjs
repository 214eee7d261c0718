// The noisy tenant of websocket-quotas.test.ts, in a process of its own: connects as `tenant`, prints "open",
// sends `count` JSON messages {"tenant","seq","pad"} (a pad of `padBytes`) at once, ignoring acks, and once every
// message is acked prints {"acked":count,"at":[...]} (each ack's time in ms after the first send) and exits. In its own process so that the flood's client side (the
// strings, the framing, the socket's buffered megabytes) does not run on the test's event loop, where it was
// counted in the calm tenant's ack latency.
// Usage: node websocket-noisy-client.mjs <port> <tenant> <count> <padBytes>
import process from "node:process";
import { WebSocket } from "ws";

const [portArg, tenant, countArg, padArg] = process.argv.slice(2);
const count = Number(countArg);
const pad = "x".repeat(Number(padArg));
const ws = new WebSocket(`ws://127.0.0.1:${portArg}`, { headers: { "x-tenant": tenant } });
let acked = 0;
let t0 = 0;
const at = [];
ws.on("error", (e) => {
  process.stderr.write(`noisy client: ${e.message}\n`);
  process.exit(1);
});
ws.on("close", (code) => {
  if (acked < count) {
    process.stderr.write(`noisy client: closed with ${code} after ${acked} of ${count} acks\n`);
    process.exit(1);
  }
});
ws.on("message", () => {
  at.push(Math.round(performance.now() - t0));
  if (++acked === count) {
    process.stdout.write(`${JSON.stringify({ acked, at })}\n`);
    ws.close();
  }
});
ws.once("open", () => {
  process.stdout.write("open\n");
  t0 = performance.now();
  for (let seq = 0; seq < count; seq++) ws.send(JSON.stringify({ tenant, seq, pad }));
});
