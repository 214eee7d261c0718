/**
 * The status of `gress run` while a job runs. On a terminal: one line, redrawn in place every second, with
 * records in and out per second, the event-time lag, the watermark, the last checkpoint and the restarts; when
 * every source knows its end (a file, a bounded Kafka source, a bounded generator), a progress bar with the rate and an ETA in front.
 * Elsewhere (a log file, a pipe): the same text as a plain line every 10 seconds. `--quiet` shows neither.
 * @module
 */
import type { Job } from "./job.ts";

/** Where the status goes: a terminal stream (isTTY, columns) or any writable text sink. */
export interface StatusStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

const count = (n: number): string => {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
};
const duration = (s: number): string => {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
};

/**
 * Reports a job's progress on a stream until stopped.
 * Created by `gress run` on stderr; `tick()` and `status()` are public for tests.
 */
export class ProgressReporter {
  readonly #job: Job;
  readonly #out: StatusStream;
  readonly #tty: boolean;
  readonly #intervalMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #prev: { at: number; in: number; out: number } | undefined;
  #startedAt = 0;
  #lastCheckpoints = 0;
  #lastCheckpointAt: number | undefined;
  #drawn = false;

  /** @param intervalMs how often to report (default: 1 s on a terminal, 10 s otherwise) */
  constructor(job: Job, out: StatusStream, intervalMs?: number) {
    this.#job = job;
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#intervalMs = intervalMs ?? (this.#tty ? 1_000 : 10_000);
    this.#startedAt = performance.now();
  }

  start(): void {
    this.#startedAt = performance.now();
    this.#prev = this.#totals();
    this.#timer = setInterval(() => this.tick(), this.#intervalMs);
    // The status must never keep a finished process alive.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Stops reporting; on a terminal, clears the status line (the summary follows). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#tty && this.#drawn) this.#out.write("\r\x1b[2K");
  }

  /** Writes one report now. */
  tick(): void {
    const text = this.status();
    if (this.#tty) {
      const width = Math.max(20, (this.#out.columns ?? 100) - 1);
      this.#out.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
      this.#drawn = true;
    } else this.#out.write(`gress: ${text}\n`);
  }

  #totals(): { at: number; in: number; out: number } {
    const m = this.#job.metrics;
    return {
      at: performance.now(),
      in: m.sources().reduce((n, s) => n + s.emitted, 0),
      out: m.sinks().reduce((n, s) => n + s.written, 0),
    };
  }

  /** The status text: progress (when the end is known), rates, lag, watermark, last checkpoint, restarts. */
  status(): string {
    const m = this.#job.metrics;
    const now = this.#totals();
    const prev = this.#prev ?? now;
    this.#prev = now;
    const secs = (now.at - prev.at) / 1000;
    const rateIn = secs > 0 ? (now.in - prev.in) / secs : 0;
    const rateOut = secs > 0 ? (now.out - prev.out) / secs : 0;
    const parts: string[] = [];
    const bar = this.#progressBar(now.at);
    if (bar !== undefined) parts.push(bar);
    parts.push(`in ${count(rateIn)}/s`, `out ${count(rateOut)}/s`);
    // Event time: the lowest watermark of the job's operators, and how far it trails processing time.
    const watermarks = m
      .operators()
      .map((o) => o.watermark)
      .filter((w) => Number.isFinite(w));
    if (watermarks.length > 0) {
      const wm = Math.min(...watermarks);
      parts.push(`lag ${duration(Math.max(0, this.#job.clock.now() - wm) / 1000)}`, `watermark ${new Date(wm).toISOString().slice(0, 19)}Z`);
    }
    if (m.checkpointsCompleted !== this.#lastCheckpoints) {
      this.#lastCheckpoints = m.checkpointsCompleted;
      this.#lastCheckpointAt = now.at;
    }
    if (this.#lastCheckpointAt !== undefined) {
      parts.push(`checkpoint #${m.checkpointsCompleted} ${duration((now.at - this.#lastCheckpointAt) / 1000)} ago`);
    }
    parts.push(`restarts ${m.restarts}`);
    return parts.join(" · ");
  }

  /** `[#####-----] 45% 1.2M/2.7M records 250k/s ETA 6s` when every source knows its end. */
  #progressBar(now: number): string | undefined {
    const progress = this.#job.sources.map((s) => s.progress?.());
    if (progress.length === 0 || progress.some((p) => p === undefined || p.total <= 0)) return undefined;
    const ps = progress as { done: number; total: number; unit: string }[];
    const done = ps.reduce((n, p) => n + p.done, 0);
    const total = ps.reduce((n, p) => n + p.total, 0);
    const unit = ps.every((p) => p.unit === ps[0]!.unit) ? ps[0]!.unit : "";
    const fraction = Math.min(1, ps.reduce((f, p) => f + Math.min(1, p.done / p.total), 0) / ps.length);
    const width = 20;
    const filled = Math.round(fraction * width);
    const elapsed = (now - this.#startedAt) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = fraction > 0 && fraction < 1 ? (elapsed * (1 - fraction)) / fraction : fraction >= 1 ? 0 : Number.POSITIVE_INFINITY;
    const amounts = unit === "" ? "" : ` ${count(done)}/${count(total)} ${unit} ${count(rate)} ${unit === "bytes" ? "B" : "rec"}/s`;
    return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%${amounts} ETA ${duration(eta)}`;
  }
}
