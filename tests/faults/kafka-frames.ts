/**
 * Finds Kafka requests in a client's byte stream, for the proxy's client-data hook: a request is an int32
 * size followed by its header (int16 api key, …). Chunks may hold several requests or a part of one, so the
 * parser keeps, per connection, how many bytes of the current request are still to come.
 * @module
 */
import type { ProxyConnection } from "../support/tcp-proxy.ts";

/** Kafka api keys the scenarios fault on. */
export const API = { produce: 0, fetch: 1, endTxn: 26, addPartitionsToTxn: 24, initProducerId: 22 } as const;

/** Returns a function that gives the api keys of the requests starting in a chunk of connection `conn`. */
export function kafkaRequests(): (conn: ProxyConnection, chunk: Uint8Array) => number[] {
  const state = new Map<number, { remaining: number; head: number[] }>();
  return (conn, chunk) => {
    let s = state.get(conn.id);
    if (s === undefined) state.set(conn.id, (s = { remaining: 0, head: [] }));
    const keys: number[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (s.remaining > 0) {
        const n = Math.min(s.remaining, chunk.length - i);
        s.remaining -= n;
        i += n;
        continue;
      }
      // Collect the 6 bytes of size + api key, which may straddle chunks.
      s.head.push(chunk[i]!);
      i++;
      if (s.head.length === 6) {
        const [a, b, c, d, k1, k2] = s.head as [number, number, number, number, number, number];
        const size = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
        keys.push((k1 << 8) | k2);
        s.remaining = size - 2;
        s.head = [];
      }
    }
    return keys;
  };
}
