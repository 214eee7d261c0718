/**
 * HTTP connectors: an ingest source (POST JSON or NDJSON, durable before 2xx, idempotency keys, bearer
 * auth, quotas per tenant, 413 and 429 with Retry-After) and a webhook sink (retries with bounded backoff, idempotency keys).
 * @module
 */
export { type HttpSource, type HttpSourceOptions, httpSource, type IngestAnswer, splitLines } from "./source.ts";
export { TenantQuotas, type TenantQuota, type TenantQuotaOptions, type TenantQuotaStats } from "../ingest/quota.ts";
export { type WebhookCounts, type WebhookSinkOptions, webhookSink } from "./webhook.ts";
