/**
 * Laws of the scale-out changelog: for any sequence of puts, deletes, snapshot restores and checkpoints on an
 * LMDB backend, the changelog it produced restores the same state into a fresh environment; so does a local
 * copy that held a prefix of it and restores the rest from its offset; and so does the changelog after
 * compaction (the latest record per key, tombstones included).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { beginRestore, type ChangelogEntry, encodeChanges, encodeCheckpoint, writeLocalChangelog } from "../../lib/scaleout/changelog.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-changelog-prop-");
const open = (): LmdbStateBackend => new LmdbStateBackend({ path: tempDir(), mapSize: 32 * 1024 * 1024, durability: "process" });

const safeKey = fc.string({ maxLength: 4 }).filter((k) => k !== "__proto__");
const leaf: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 6 }),
  fc.boolean(),
  fc.constant(null),
  fc.bigInt(),
  fc.date({ noInvalidDate: true }),
  fc.uint8Array({ maxLength: 4 }),
);
const { value: valueArb } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(safeKey, tie("value"), { maxKeys: 3, noNullPrototype: true }),
    fc.array(tie("value"), { maxLength: 3 }).map((a) => new Set(a)),
    fc.array(fc.tuple(leaf, tie("value")), { maxLength: 3 }).map((e) => new Map(e)),
  ),
}));

const tableArb = fc.constantFrom("op-1/a", "op-2/b");
const keyArb = fc.constantFrom<string | number>("x", "y", "z", 1, 2);
const nsArb = fc.constantFrom<string | number>("", 0, 60_000);
type Op =
  | { readonly kind: "put"; readonly table: string; readonly key: string | number; readonly ns: string | number; readonly value: unknown }
  | { readonly kind: "delete"; readonly table: string; readonly key: string | number; readonly ns: string | number }
  | { readonly kind: "checkpoint" }
  | { readonly kind: "reset"; readonly keep: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("put" as const), table: tableArb, key: keyArb, ns: nsArb, value: valueArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("delete" as const), table: tableArb, key: keyArb, ns: nsArb }) },
  { weight: 2, arbitrary: fc.constant({ kind: "checkpoint" as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reset" as const), keep: fc.nat(4) }) },
);

const tableOf = (b: LmdbStateBackend, id: string) => b.table<unknown>(...(id.split("/") as [string, string]));

/**
 * A value as text, its classes and the insertion order of maps and sets included. Compared as text because
 * Bun's deepStrictEqual reports equal maps whose keys are equal-looking objects (two empty Uint8Arrays) unequal.
 */
function canon(v: unknown): string {
  if (v === null) return "null";
  switch (typeof v) {
    case "undefined":
      return "undefined";
    case "number":
      return Object.is(v, -0) ? "-0" : String(v);
    case "bigint":
      return `${v}n`;
    case "string":
      return JSON.stringify(v);
    case "boolean":
      return String(v);
    case "object":
      break;
    default:
      throw new TypeError(`unexpected ${typeof v}`);
  }
  const cls = (v as object).constructor?.name ?? "null-prototype";
  if (v instanceof Date) return `Date(${v.getTime()})`;
  if (ArrayBuffer.isView(v)) return `${cls}[${[...(v as Uint8Array)].join(",")}]`;
  if (v instanceof Map) return `Map{${[...v].map(([k, x]) => `${canon(k)}=>${canon(x)}`).join(",")}}`;
  if (v instanceof Set) return `Set{${[...v].map(canon).join(",")}}`;
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  return `${cls}{${Object.entries(v as object)
    .map(([k, x]) => `${JSON.stringify(k)}:${canon(x)}`)
    .join(",")}}`;
}

/** Every non-empty table's size and entries in a stable order. */
function stateOf(b: LmdbStateBackend): [string, number, [string, string, string][]][] {
  return b
    .tableIds()
    .map((id) => [id, tableOf(b, id)] as const)
    .filter(([, t]) => t.size > 0)
    .map(([id, t]): [string, number, [string, string, string][]] => [
      id,
      t.size,
      [...t.entries()].map(([k, ns, v]): [string, string, string] => [`${typeof k}:${k}`, `${typeof ns}:${ns}`, canon(v)]).sort((x, y) => (x[0] + x[1] < y[0] + y[1] ? -1 : 1)),
    ])
    .sort((x, y) => (x[0] < y[0] ? -1 : 1));
}

/** Runs the ops with a checkpoint at the end; returns the changelog and the offsets at which checkpoints ended. */
async function run(b: LmdbStateBackend, ops: readonly Op[]): Promise<{ log: ChangelogEntry[]; ends: number[] }> {
  const log: ChangelogEntry[] = [];
  const ends: number[] = [];
  let id = 0;
  const checkpoint = async (): Promise<void> => {
    const capture = b.capture();
    for (const r of encodeChanges(b, capture)) log.push({ ...r, offset: log.length });
    log.push({ ...encodeCheckpoint({ id: ++id, at: id, positions: {}, sinks: {}, fingerprint: "fp", final: false }), offset: log.length });
    const offset = log.length;
    await b.commit(capture, () => writeLocalChangelog(b, { offset, fingerprint: "fp", at: id }));
    ends.push(offset);
  };
  for (const op of ops) {
    if (op.kind === "put") tableOf(b, op.table).put(op.key, op.ns, op.value);
    else if (op.kind === "delete") tableOf(b, op.table).delete(op.key, op.ns);
    else if (op.kind === "checkpoint") await checkpoint();
    else {
      // A savepoint restore: the first `keep` entries of the current state, everything else dropped.
      const snap = b.snapshot();
      const tables = Object.fromEntries(Object.entries(snap.tables).map(([tid, rows]) => [tid, rows.slice(0, op.keep)]));
      b.restore({ tables });
    }
  }
  await checkpoint();
  return { log, ends };
}

const restored = (log: readonly ChangelogEntry[], batch: number): LmdbStateBackend => {
  const b = open();
  const r = beginRestore(b, { fingerprint: "fp" });
  for (let i = 0; i < log.length; i += batch) r.apply(log.slice(i, i + batch));
  r.finish(log.length);
  return b;
};

describe("changelog laws", () => {
  it("law: capture → encode → decode → restore into a fresh environment gives identical state", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), fc.integer({ min: 1, max: 8 }), async (ops, batch) => {
        const src = open();
        const { log } = await run(src, ops);
        const dst = restored(log, batch);
        try {
          assert.deepStrictEqual(stateOf(dst), stateOf(src));
        } finally {
          await src.close();
          await dst.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it("law: a local copy holding a prefix (cut anywhere) restores the rest from its offset to the same state", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), fc.double({ min: 0, max: 1, noNaN: true }), async (ops, where) => {
        const src = open();
        const { log } = await run(src, ops);
        const cut = Math.floor(where * log.length);
        const copy = open();
        const first = beginRestore(copy, { fingerprint: "fp" });
        first.apply(log.slice(0, cut));
        const second = beginRestore(copy, { fingerprint: "fp" });
        try {
          assert.equal(second.from, cut);
          second.apply(log); // the whole partition: what it already holds is skipped
          const result = second.finish(log.length);
          assert.equal(result.skipped, cut);
          assert.deepStrictEqual(stateOf(copy), stateOf(src));
        } finally {
          await src.close();
          await copy.close();
        }
      }),
      { numRuns: 40 },
    );
  });

  it("law: the compacted changelog (latest record per key, tombstones kept) restores the same state", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
        const src = open();
        const { log, ends } = await run(src, ops);
        const latest = new Map<string, ChangelogEntry>();
        for (const e of log) {
          const k = [...e.key].join(",");
          latest.delete(k);
          latest.set(k, e);
        }
        const compacted = [...latest.values()]; // in offset order, gaps where records were compacted away
        const dst = open();
        const r = beginRestore(dst, { fingerprint: "fp" });
        r.apply(compacted);
        const result = r.finish(log.length);
        try {
          assert.equal(result.checkpoint?.id, ends.length, "the latest checkpoint record survives compaction");
          assert.deepStrictEqual(stateOf(dst), stateOf(src));
        } finally {
          await src.close();
          await dst.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
