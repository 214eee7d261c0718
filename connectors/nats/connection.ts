/**
 * How a NATS connector gets its connection: either the caller's (shared, not closed by the connector) or
 * one it opens from `servers` and closes with itself.
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";

/**
 * Either an existing connection or the servers to connect to.
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 * import { natsJetStreamSink } from "gress/nats";
 *
 * // Share one connection of your own (you close it), or give servers and let the connector connect.
 * const nc = await connect({ servers: "localhost:4222" });
 * const sink = natsJetStreamSink<string>({ name: "out", connection: nc, subject: "out" });
 * ```
 */
export type NatsConnectOptions =
  | { readonly connection: NatsConnection; readonly servers?: undefined }
  | { readonly servers: string | readonly string[]; readonly connection?: undefined };

/**
 * A connection and how to release it.
 *
 * @example
 * ```ts
 * import type { HeldConnection } from "gress/nats";
 *
 * // A connection and how to release it (closed only if the connector opened it).
 * async function withConnection(held: HeldConnection): Promise<void> {
 *   try {
 *     await held.nc.flush();
 *   } finally {
 *     await held.release();
 *   }
 * }
 * ```
 */
export interface HeldConnection {
  readonly nc: NatsConnection;
  release(): Promise<void>;
}

/** Opens (or borrows) a connection. */
export async function holdConnection(options: NatsConnectOptions, name: string): Promise<HeldConnection> {
  if (options.connection !== undefined) return { nc: options.connection, release: async () => {} };
  const servers = typeof options.servers === "string" ? options.servers : [...options.servers];
  const nc = await connect({ servers, name: `gress:${name}`, maxReconnectAttempts: -1 });
  return {
    nc,
    release: async () => {
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}
