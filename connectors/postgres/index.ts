/**
 * PostgreSQL and TimescaleDB for Gress (`gress/postgres`): a sink with typed column mapping, COPY of
 * batches (straight into the table in a prepared transaction per checkpoint where the server allows it, else into
 * a staging table), and exactly-once commits through a progress table written in the same transaction as the rows. Tables (and hypertables, when the timescaledb extension exists) are created on request.
 *
 * @example
 * ```ts
 * import { fromIterable } from "gress";
 * import { postgresSink } from "gress/postgres";
 *
 * type Reading = { device: string; at: number; celsius: number };
 * const readings = fromIterable<Reading>([{ device: "d1", at: Date.now(), celsius: 21.5 }]);
 * readings.sinkTo(postgresSink<Reading>({ name: "readings", job: "iot", url: "postgres://localhost/iot", table: "readings",
 *   createTable: true, timeColumn: "at", key: ["device", "at"],
 *   columns: { device: { type: "text", value: (r) => r.device }, at: { type: "timestamptz", value: (r) => r.at },
 *              celsius: { type: "double precision", value: (r) => r.celsius } } }));
 * await readings.job.run();
 * ```
 * @module
 */
export {
  type ColumnSpec,
  PROGRESS_TABLE,
  type PostgresSinkHandle,
  type PostgresSinkOptions,
  postgresConnection,
  postgresSink,
  postgresStagingTable,
  type Sql,
  timescaleAvailable,
} from "./sink.ts";
