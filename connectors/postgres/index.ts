/**
 * PostgreSQL and TimescaleDB for Gress (`gress/postgres`): a sink with typed column mapping, bulk inserts
 * into a staging table, and exactly-once commits through a progress table written in the same transaction
 * as the rows. Tables (and hypertables, when the timescaledb extension exists) are created on request.
 *
 * @example
 * ```ts
 * import { postgresSink } from "gress/postgres";
 * stream.sinkTo(postgresSink({ name: "readings", job: "iot", url: process.env.GRESS_PG_URL, table: "readings",
 *   createTable: true, timeColumn: "at", key: ["device", "at"],
 *   columns: { device: { type: "text", value: (r) => r.device }, at: { type: "timestamptz", value: (r) => r.at },
 *              celsius: { type: "double precision", value: (r) => r.celsius } } }));
 * ```
 * @module
 */
export {
  type ColumnSpec,
  PROGRESS_TABLE,
  type PostgresSinkHandle,
  type PostgresSinkOptions,
  postgresSink,
  type Sql,
  timescaleAvailable,
} from "./sink.ts";
