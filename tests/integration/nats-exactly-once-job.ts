/**
 * The job the NATS exactly-once test runs in a child process and kills with SIGKILL. argv[2] is JSON:
 * `{ url, inStream, outSubject, stateDir, intervalMs, ratePerSecond }`.
 * NATS stream → per-key sequence numbers in keyed state → NATS stream (Nats-Msg-Id dedup), checkpointed
 * on LMDB. Prints "running" when the first record flows; it never ends by itself (the input is unbounded).
 */
import process from "node:process";
import { natsJetStreamSink, natsJetStreamSource } from "../../connectors/nats/index.ts";
import { Job } from "../../lib/job.ts";
import { lmdbState } from "../../lib/state/lmdb.ts";
import { sequencePerKey } from "../support/sequence.ts";

interface Config {
  readonly url: string;
  readonly inStream: string;
  readonly outSubject: string;
  readonly stateDir: string;
  readonly intervalMs: number;
  readonly ratePerSecond: number;
}
interface In {
  readonly i: number;
  readonly key: string;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const job = new Job({
  name: "nats-eo",
  state: lmdbState({ path: cfg.stateDir, mapSize: 64 * 1024 * 1024, durability: "process" }),
  checkpoints: { intervalMs: cfg.intervalMs, log: () => {} },
});
let running = false;
job
  .source(natsJetStreamSource<In>({ name: "in", servers: cfg.url, stream: cfg.inStream, batch: 64, rateLimit: { ratePerSecond: cfg.ratePerSecond, burst: 64 } }))
  .tap(() => {
    if (running) return;
    running = true;
    process.stdout.write("running\n");
  })
  .keyBy((e) => e.key)
  .process(sequencePerKey())
  .sinkTo(natsJetStreamSink({ name: "out", servers: cfg.url, subject: cfg.outSubject }));
await job.run();
