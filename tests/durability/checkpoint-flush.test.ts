/**
 * The checkpoint coordinator's half of durability: sinks commit a checkpoint only after the state backend
 * said it is on disk (`flushed()`), not merely committed. With lmdb-js today a commit resolves only after its
 * fdatasync, so the strace test (ordering.test.ts) cannot tell the two apart; this test can. Its backend is a
 * real LMDB backend whose `flushed()` resolves a little later than the commit (as on a disk whose sync is
 * slow and overlaps the next transaction), and it records the order of commits, flushes and sink commits.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { generator, Job, type Sink } from "../../lib/index.ts";
import { lmdbState } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

describe("durability: the checkpoint coordinator", { timeout: 60_000 }, () => {
  const temp = tempDirs("gress-flush-");

  it("commits sinks only after the state backend's flushed() resolved for the checkpoint's transaction", async () => {
    const events: string[] = [];
    const state = lmdbState({ path: join(temp(), "state"), mapSize: 64 * 1024 * 1024 });
    const commit = state.commit.bind(state);
    state.commit = (...args: Parameters<typeof commit>) => commit(...args).then(() => void events.push("committed"));
    const flushed = state.flushed.bind(state);
    state.flushed = () =>
      flushed()
        .then(() => new Promise<void>((resolve) => setTimeout(resolve, 5)))
        .then(() => void events.push("flushed"));

    let buffered = 0;
    const sink: Sink<number> = {
      name: "probe",
      write: () => {
        buffered++;
      },
      preCommit: async (id) => {
        const n = buffered;
        buffered = 0;
        return { id, n };
      },
      commit: async (id) => void events.push(`sink ${id}`),
      abort: async () => {},
    };
    const job = new Job({ name: "flush-order", state, checkpoints: { intervalMs: 10, log: () => {} } });
    job
      .source(generator<number>({ name: "n", seed: 1, count: 3_000, ratePerSecond: 30_000, make: (i) => i }))
      .keyBy((i) => i % 5)
      .process<number>({
        processElement(i, ctx) {
          const sum = ctx.state.value<number>("sum");
          sum.update((sum.value() ?? 0) + i);
          ctx.emit(i);
        },
      })
      .sinkTo(sink);
    await job.run();
    await state.close();

    const sinkCommits = events.flatMap((e, i) => (e.startsWith("sink ") ? [i] : []));
    assert.ok(sinkCommits.length >= 3, `${sinkCommits.length} sink commits in ${events.join(", ")}`);
    for (const at of sinkCommits) {
      const lastCommit = events.lastIndexOf("committed", at);
      assert.ok(lastCommit >= 0, `${events[at]} came before any state commit`);
      assert.ok(
        events.slice(lastCommit, at).includes("flushed"),
        `${events[at]} came after the state commit at #${lastCommit} but before it was flushed: ${events.slice(Math.max(0, lastCommit - 3), at + 1).join(", ")}`,
      );
    }
  });
});
