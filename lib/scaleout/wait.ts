/**
 * Bounded waits of the scale-out worker: for a promise that may never settle (a checkpoint a fence cut off, a
 * send that the client retries for long), waited for at most so long.
 * @module
 */

/**
 * Waits for `p` at most `ms` milliseconds. Resolves with true if it settled (fulfilled or rejected: its outcome
 * is the caller's to read) and false at the time limit. Never rejects; the timer is cleared when `p` settles first.
 */
export async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
