/**
 * How a NATS connector gets its connection: either the caller's (shared, not closed by the connector) or
 * one it opens from `servers` and closes with itself.
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";

/** Either an existing connection or the servers to connect to. */
export type NatsConnectOptions =
  | { readonly connection: NatsConnection; readonly servers?: undefined }
  | { readonly servers: string | readonly string[]; readonly connection?: undefined };

/** A connection and how to release it. */
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
