/**
 * NATS connectors: a replayable JetStream source (durable pull consumer, stream sequence as the checkpoint
 * position, acknowledged after the checkpoint), an at-most-once core NATS source, and a JetStream sink that
 * deduplicates with Nats-Msg-Id.
 * @module
 */
export type { HeldConnection, NatsConnectOptions } from "./connection.ts";
export { type NatsJetStreamSinkOptions, type NatsSinkCounts, natsJetStreamSink } from "./sink.ts";
export {
  type NatsCoreSource,
  type NatsCoreSourceCounts,
  type NatsCoreSourceOptions,
  type NatsJetStreamSource,
  type NatsJetStreamSourceOptions,
  type NatsSourceCommon,
  type NatsSourceCounts,
  natsCoreSource,
  natsJetStreamSource,
} from "./source.ts";
