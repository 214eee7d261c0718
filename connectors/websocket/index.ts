/**
 * WebSocket connectors: a source (server or client) that makes every message durable in the ingest log
 * before acknowledging it and pauses its sockets under backpressure (and per tenant over its quota), and a sink that broadcasts results to
 * subscribed clients.
 * @module
 */
export { TenantQuotas, type TenantQuota, type TenantQuotaOptions, type TenantQuotaStats } from "../ingest/quota.ts";
export { type WebSocketSink, type WebSocketSinkCounts, type WebSocketSinkOptions, websocketSink } from "./sink.ts";
export { type WebSocketEndpoint, type WebSocketSource, type WebSocketSourceOptions, websocketSource } from "./source.ts";
