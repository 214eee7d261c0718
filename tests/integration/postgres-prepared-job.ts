/**
 * The job the prepared-transaction test runs in a child process (and kills at a failpoint, GRESS_FAILPOINT).
 * argv[2] is JSON: `{ url, table, job, stateDir, count, ratePerSecond }`. Generated rows (id 0..count-1) go
 * into `table` through the PostgreSQL sink with `twoPhase: "prepared"`, appended (no key, so a duplicate
 * stays visible), checkpointed on LMDB every 100 ms. Prints the sink's path line on stderr, and "done" when
 * the bounded input has been written and committed.
 */
import process from "node:process";
import { postgresSink } from "../../connectors/postgres/index.ts";
import { generator, Job, lmdbState } from "../../lib/index.ts";

interface Config {
  readonly url: string;
  readonly table: string;
  readonly job: string;
  readonly stateDir: string;
  readonly count: number;
  readonly ratePerSecond: number;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const job = new Job({
  name: cfg.job,
  state: lmdbState({ path: cfg.stateDir, mapSize: 64 * 1024 * 1024, durability: "process" }),
  checkpoints: { intervalMs: 100, log: () => {} },
});
job
  .source(generator<{ id: number }>({ name: "ids", seed: 5, count: cfg.count, eventsPerSecond: 1_000, ratePerSecond: cfg.ratePerSecond, make: (id) => ({ id }) }))
  .sinkTo(
    postgresSink<{ id: number }>({
      name: "ids",
      job: cfg.job,
      url: cfg.url,
      table: cfg.table,
      createTable: true,
      batchSize: 100,
      twoPhase: "prepared",
      columns: { id: { type: "integer", value: (r) => r.id } },
    }),
  );
await job.run();
process.stdout.write("done\n");
process.exit(0);
