// Publishes `count` JSON messages {"i":k,"p":...} on a core NATS subject at `rate` messages/s, paced by the
// wall clock, then prints {"published":count,"seconds":s} and exits. A process of its own, so that the
// publisher's buffers and CPU do not count in the job's RSS. Used by nats-spill.test.ts.
// Usage: node nats-spill-publisher.mjs <url> <subject> <count> <rate>
import process from "node:process";
import { connect } from "@nats-io/transport-node";

const [url, subject, countArg, rateArg] = process.argv.slice(2);
const count = Number(countArg);
const rate = Number(rateArg);
const nc = await connect({ servers: url });
const enc = new TextEncoder();
const pad = "p".repeat(32);
const start = performance.now();
let sent = 0;
while (sent < count) {
  // Catch up to where the rate says we should be, in slices of at most 2 000 so the socket drains between them.
  const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
  const until = Math.min(due, sent + 2000);
  while (sent < until) nc.publish(subject, enc.encode(`{"i":${sent++},"p":"${pad}"}`));
  if (sent >= due) await new Promise((r) => setTimeout(r, 5));
  // Behind: yield so the socket drains, and wait for the server now and then (bounds the client's buffer).
  else if (sent % 50_000 < 2000) await nc.flush();
  else await new Promise((r) => setImmediate(r));
}
await nc.flush();
const seconds = (performance.now() - start) / 1000;
await nc.drain();
process.stdout.write(`${JSON.stringify({ published: count, seconds })}\n`);
