/**
 * The pipeline module the live-page test runs with `gress run`: generated clicks (unbounded, 2 000/s over
 * 3 splits, event time from the start time on, per-split watermarks in the source) → 1-s tumbling counts per page → an async sink, and a CEP
 * pattern (a view followed by a purchase of the same user within 2 s of event time) → a sink. The counts sink
 * fails once after 40 writes, so the job restarts once (the test passes --restart fixed-delay).
 */
import { isMatch, match, named, pattern } from "../../cep/index.ts";
import { boundedOutOfOrderness, generator, type Job, sinkFn, tumbling } from "../../lib/index.ts";

interface Click {
  readonly user: string;
  readonly page: string;
  readonly action: "view" | "buy";
  readonly at: number;
}

let failed = false;

export default function build(job: Job): void {
  const clicks = job.source(
    generator<Click>({
      name: "clicks",
      seed: 5,
      splits: 3,
      // Event time runs with processing time from now on, so that watermark delays look as in production.
      startTime: Date.now(),
      eventsPerSecond: 2_000,
      maxDelayMs: 200,
      ratePerSecond: 2_000,
      make: (_i, at, random) => ({ user: `u${random.int(50)}`, page: `p${random.int(8)}`, action: random.int(10) === 0 ? "buy" : "view", at }),
    }),
    { watermarks: boundedOutOfOrderness<Click>(300, { timestamp: (c) => c.at }) },
  );
  let written = 0;
  clicks
    .keyBy((c) => c.page)
    .window(tumbling(1_000))
    .count({ uid: "page-counts" })
    .sinkTo(
      sinkFn("counts", async () => {
        if (++written === 40 && !failed) {
          failed = true;
          throw new Error("injected failure: the live page shows the restart");
        }
        await new Promise((r) => setTimeout(r, 2));
      }),
    );
  const viewThenBuy = pattern<Click>()
    .begin("view")
    .where(named("view", (c: Click) => c.action === "view"))
    .followedBy("buy")
    .where(named("buy", (c: Click) => c.action === "buy"))
    .within(2_000);
  match(
    clicks.keyBy((c) => c.user),
    viewThenBuy,
    { uid: "view-then-buy" },
  )
    .filter(isMatch)
    .sinkTo(sinkFn("purchases", () => {}));
}
