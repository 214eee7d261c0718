/**
 * Reads a system-call trace (`strace -f -y -o FILE`) to check that acknowledgements come after the syncs
 * they depend on: a write an acknowledgement depends on (found by its content, or as the last write to a
 * file) must have completed, and an `fsync`/`fdatasync` of its file must have completed after it, before the
 * acknowledgement (a sink commit's rename, an HTTP 2xx written on a socket) started. A write through a
 * descriptor opened with O_DSYNC or O_SYNC is durable when it returns. (LMDB here does not map its file
 * writable, so `msync` is not looked for: a change to that shows up as a missing sync, not a silent pass.)
 *
 * The order of the lines is the order of the calls: a thread stopped at a system call's exit is not resumed
 * before strace has printed it, so a call that completed before another started (as the sync before the
 * acknowledgement it unblocks) is printed first.
 * @module
 */

/** One system call, possibly split over an `<unfinished ...>` and a `<... resumed>` line. */
export interface Call {
  readonly pid: number;
  readonly name: string;
  /** The argument text (both halves of a split call). */
  readonly args: string;
  readonly ret: string;
  /** Line index of its entry and of its completion. */
  readonly start: number;
  readonly end: number;
  /** The descriptor's path, for calls whose first argument is a descriptor (`-y`). */
  readonly path: string | undefined;
  /** The descriptor number, for calls whose first argument is a descriptor. */
  readonly fd: number | undefined;
}

/** Parses `strace -f -y` output into calls, in order of entry. */
export function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<number, { name: string; args: string; start: number }>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\d+) +(.*)$/.exec(lines[i]!);
    if (m === null) continue;
    const pid = Number(m[1]);
    const rest = m[2]!;
    if (rest.startsWith("+++") || rest.startsWith("---")) continue;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest);
    if (resumed !== null) {
      const p = pending.get(pid);
      if (p === undefined || p.name !== resumed[1]) throw new Error(`trace line ${i + 1}: "${resumed[1]}" resumed but not started: ${rest}`);
      pending.delete(pid);
      calls.push(complete(pid, p.name, p.args + resumed[2]!, p.start, i));
      continue;
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished !== null) {
      pending.set(pid, { name: unfinished[1]!, args: unfinished[2]!, start: i });
      continue;
    }
    const whole = /^(\w+)\((.*)$/.exec(rest);
    if (whole !== null) calls.push(complete(pid, whole[1]!, whole[2]!, i, i));
  }
  return calls.sort((a, b) => a.start - b.start);
}

function complete(pid: number, name: string, argsAndRet: string, start: number, end: number): Call {
  const r = /^(.*)\)\s+=\s+(.*)$/s.exec(argsAndRet);
  const args = r === null ? argsAndRet : r[1]!;
  const ret = r === null ? "?" : r[2]!;
  const d = /^(\d+)<([^>]*)>/.exec(args);
  return { pid, name, args, ret, start, end, path: d?.[2], fd: d === null ? undefined : Number(d[1]) };
}

const WRITES = new Set(["write", "pwrite64", "writev", "pwritev", "pwritev2"]);
const SYNCS = new Set(["fsync", "fdatasync"]);

/** Whether a call succeeded. */
const ok = (c: Call): boolean => !c.ret.startsWith("-1") && c.ret !== "?";

/** A successful write to a file, and whether its descriptor was opened with O_DSYNC / O_SYNC. */
export interface FileWrite {
  readonly call: Call;
  readonly path: string;
  readonly syncOnWrite: boolean;
}

/** The successful writes to files (not sockets or pipes), in order. */
export function fileWrites(calls: readonly Call[]): FileWrite[] {
  // Descriptor flags by number (threads share the table); a reused number is updated by its new open.
  const syncOnWrite = new Map<number, boolean>();
  const out: FileWrite[] = [];
  for (const c of calls) {
    if (c.name === "openat" && ok(c)) {
      const fd = /^(\d+)/.exec(c.ret);
      if (fd !== null) syncOnWrite.set(Number(fd[1]), /O_DSYNC|O_SYNC/.test(c.args));
    }
    if (WRITES.has(c.name) && c.path?.startsWith("/") && c.fd !== undefined && ok(c)) {
      out.push({ call: c, path: c.path, syncOnWrite: syncOnWrite.get(c.fd) === true });
    }
  }
  return out;
}

/**
 * Why `write` was not durable when `ack` started, or undefined if it was: it must have completed before, and
 * either have gone through an O_DSYNC descriptor or be followed by an fsync/fdatasync of its file that
 * completed before `ack` started.
 */
export function notDurableBefore(calls: readonly Call[], write: FileWrite | undefined, ack: Call, what: string): string | undefined {
  if (write === undefined) return `${what}: no such write before the acknowledgement at line ${ack.start + 1}`;
  const w = write.call;
  if (w.end >= ack.start) return `${what}: written at line ${w.start + 1}, not complete before the acknowledgement at line ${ack.start + 1}`;
  if (write.syncOnWrite) return undefined;
  const synced = calls.some((s) => SYNCS.has(s.name) && s.path === write.path && ok(s) && s.start > w.end && s.end < ack.start);
  return synced ? undefined : `${what}: written at line ${w.start + 1}, not synced before the acknowledgement at line ${ack.start + 1}`;
}

/** The last write to a file matching `file` that completed before `ack` started. */
export function lastWriteBefore(writes: readonly FileWrite[], file: (path: string) => boolean, ack: Call): FileWrite | undefined {
  let last: FileWrite | undefined;
  for (const w of writes) if (file(w.path) && w.call.end < ack.start && (last === undefined || w.call.end > last.call.end)) last = w;
  return last;
}

/** The first write to a file matching `file` whose data (as strace printed it) contains `marker`. */
export function firstWriteContaining(writes: readonly FileWrite[], file: (path: string) => boolean, marker: string): FileWrite | undefined {
  return writes.find((w) => file(w.path) && w.call.args.includes(marker));
}

/** The paths a rename moves from and to (rename, renameat, renameat2). */
export function renamePaths(c: Call): { from: string; to: string } | undefined {
  if (!/^rename(at2?)?$/.test(c.name)) return undefined;
  const q = [...c.args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
  return q.length >= 2 ? { from: q[0]!, to: q[1]! } : undefined;
}

/** Whether a call writes an HTTP 2xx status line (the start of a response) to a socket. */
export function isHttp2xx(c: Call): boolean {
  return WRITES.has(c.name) && (c.path ?? "").startsWith("socket:") && /"HTTP\/1\.1 2\d\d /.test(c.args);
}
