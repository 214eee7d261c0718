/**
 * File connector: a replayable NDJSON source (position = byte offset) and a transactional NDJSON sink
 * (temporary file, atomic rename on commit) that together give exactly-once file-to-file pipelines.
 *
 * @example
 * ```ts
 * import { fileSink, fileSource } from "gress/file";
 * const job = new Job({ name: "etl", state: lmdbState({ path: "state" }), checkpoints: { intervalMs: 1000 } });
 * job.source(fileSource({ path: "in.ndjson" })).map(enrich).sinkTo(fileSink({ dir: "out" }));
 * await job.run();
 * ```
 * @module
 */
export { committedFiles, FileSink, type FileSinkHandle, type FileSinkOptions, fileSink, readCommitted } from "./sink.ts";
export { FileSource, type FileSourceOptions, fileSource } from "./source.ts";
