/**
 * File connector: replayable NDJSON and CSV sources (position = byte offset, read in large chunks) and a
 * transactional NDJSON sink (temporary file, atomic rename on commit) that together give exactly-once
 * file-to-file pipelines.
 *
 * @example
 * ```ts
 * import { Job, lmdbState } from "gress";
 * import { fileSink, fileSource } from "gress/file";
 *
 * type Reading = { device: string; celsius: number };
 * const job = new Job({ name: "etl", state: lmdbState({ path: "state/etl" }), checkpoints: { intervalMs: 1000 } });
 * job
 *   .source(fileSource<Reading>({ path: "in.ndjson" }))
 *   .map((r) => ({ ...r, fahrenheit: r.celsius * 1.8 + 32 }))
 *   .sinkTo(fileSink({ dir: "out" }));
 * await job.run();
 * ```
 * @module
 */
export { committedFiles, FileSink, type FileSinkHandle, type FileSinkOptions, fileSink, readCommitted } from "./sink.ts";
export { type CsvColumnType, type CsvSourceOptions, csvSource } from "./csv.ts";
export { FileSource, type FileSourceOptions, fileSource } from "./source.ts";
