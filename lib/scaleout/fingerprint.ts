/**
 * The topology fingerprint of a scale-out job: a short stable hash of what decides where state lives and
 * which task reads what (the operator ids, kinds and uids in construction order, the source topics, the
 * shuffle points and the partition counts), with a human-readable description of the same, so that a mismatch
 * can show both sides (docs/SCALE-OUT.md, section 7).
 *
 * Contract (for the worker runtime): describe the topology as it is built (the stream graph is closures, not a
 * data structure, so the runtime records each `job.operator(kind, uid)` it allocates, its sources and its
 * shuffles) and call {@link topologyFingerprint}. The fingerprint goes into each member's subscription
 * (assignor.ts) and each changelog checkpoint record (changelog.ts, with the description as `topology`);
 * {@link checkSameTopology} throws the ConfigError for a mismatch. Equal descriptions give equal
 * fingerprints on every runtime and machine; the order of sources, of a source's topics, of shuffles and of
 * partition counts does not matter, the order of operators does (it is the order they were built in, which
 * their default ids already follow, and reordering two of them changes the pipeline).
 * @module
 */
import { createHash } from "node:crypto";
import { ConfigError } from "../errors.ts";

/** An operator of the topology: its id (`kind-N` or the uid), kind, uid if the user gave one, and optionally the ids it reads from. */
export interface TopologyOperator {
  readonly id: string;
  readonly kind: string;
  readonly uid?: string;
  readonly inputs?: readonly string[];
}

/** A source and the topics it reads. */
export interface TopologySource {
  readonly name: string;
  readonly topics: readonly string[];
}

/** A shuffle point: the keyBy operator that starts a sub-topology, its repartition topic and its partition count. */
export interface TopologyShuffle {
  readonly operator: string;
  readonly topic: string;
  readonly partitions: number;
}

/** What the fingerprint covers. */
export interface TopologyDescription {
  /** In construction order. */
  readonly operators: readonly TopologyOperator[];
  readonly sources: readonly TopologySource[];
  readonly shuffles: readonly TopologyShuffle[];
  /** Input topic → its partition count. */
  readonly partitions: ReadonlyMap<string, number> | Readonly<Record<string, number>>;
}

/** A fingerprint and the description it was computed from. */
export interface TopologyFingerprint {
  /** 16 hex digits (the first 64 bits of a SHA-256). */
  readonly fingerprint: string;
  /** One line per part: sources, operators, shuffles, partitions. */
  readonly description: string;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The fingerprint and description of a topology. */
export function topologyFingerprint(t: TopologyDescription): TopologyFingerprint {
  const partitions = (t.partitions instanceof Map ? [...t.partitions] : Object.entries(t.partitions)).sort(([a], [b]) => byText(a, b));
  const sources = [...t.sources].map((s) => ({ name: s.name, topics: [...s.topics].sort(byText) })).sort((a, b) => byText(a.name, b.name));
  const shuffles = [...t.shuffles].sort((a, b) => byText(a.operator, b.operator));
  const operators = t.operators.map((o) => ({ id: o.id, kind: o.kind, uid: o.uid ?? null, inputs: o.inputs === undefined ? null : [...o.inputs] }));
  const canonical = JSON.stringify({ v: 1, sources, operators, shuffles: shuffles.map((s) => [s.operator, s.topic, s.partitions]), partitions });
  const fingerprint = createHash("sha256").update(canonical).digest("hex").slice(0, 16);
  // "map-1"; a uid shows its kind: "clicks-per-minute (window)"; inputs, when known: "map-1+map-2→union-1".
  const op = (o: (typeof operators)[number]): string => {
    const name = o.uid === null && o.id.startsWith(`${o.kind}-`) ? o.id : `${o.id} (${o.kind})`;
    return `${o.inputs !== null && o.inputs.length > 0 ? `${o.inputs.join("+")}→` : ""}${name}`;
  };
  const description = [
    `sources: ${sources.map((s) => `${s.name}[${s.topics.join(", ")}]`).join("; ") || "none"}`,
    `operators: ${operators.map(op).join(", ") || "none"}`,
    `shuffles: ${shuffles.map((s) => `${s.operator}→${s.topic}×${s.partitions}`).join(", ") || "none"}`,
    `partitions: ${partitions.map(([topic, n]) => `${topic}=${n}`).join(", ") || "none"}`,
  ].join("\n");
  return { fingerprint, description };
}

/**
 * Throws a ConfigError when `theirs` (another member's fingerprint, or a restored checkpoint record's) is not
 * this job's topology: a job name reused with another pipeline. `where` says whose it is ("group member m-2",
 * "the checkpoint record in changelog gress-j-0-changelog partition 3"). Shows both descriptions when known.
 */
export function checkSameTopology(ours: TopologyFingerprint, theirs: { readonly fingerprint: string; readonly description?: string | undefined }, where: string): void {
  if (theirs.fingerprint === ours.fingerprint) return;
  const indent = (s: string): string => s.replace(/^/gm, "    ");
  const theirText = theirs.description === undefined ? "" : `:\n${indent(theirs.description)}`;
  throw new ConfigError(
    `${where} has topology ${theirs.fingerprint}, but this job's topology is ${ours.fingerprint}: the job name (or group) was reused for a different pipeline, or the pipeline changed; give the new pipeline another job name, or stop every worker of the old one and delete its internal topics.\nthis job (${ours.fingerprint}):\n${indent(ours.description)}\n${where} (${theirs.fingerprint})${theirText}`,
    [{ path: ["topology"], code: "topology_mismatch", message: `${theirs.fingerprint} ≠ ${ours.fingerprint}` }],
  );
}
