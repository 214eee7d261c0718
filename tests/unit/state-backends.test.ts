/**
 * The one state-backend suite: every test runs against the memory backend and the LMDB backend, which must
 * behave identically. For LMDB, "checkpoint" captures and commits the dirty set, so each behaviour is also
 * checked with values coming back from disk instead of from memory. LMDB loads on Node, Bun and Deno alike
 * (npm `lmdb` 3.5.6 prebuilt binaries), so both backends run on all three runtimes.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import {
  isGressError,
  type Key,
  MemoryStateBackend,
  type Namespace,
  type ProcessFunction,
  type StateBackend,
  type StateTable,
  type TableOptions,
} from "../../lib/index.ts";
import { LmdbStateBackend } from "../../lib/state/lmdb.ts";
import { TestDriver } from "../../lib/testing/index.ts";

interface Harness {
  readonly backend: StateBackend;
  /** Makes the current state durable (LMDB: capture + commit + flushed; memory: nothing). */
  checkpoint(): Promise<void>;
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A memory backend whose tables are opened with the namespace-major layout unless a call asks otherwise. */
class NamespaceLayoutMemory extends MemoryStateBackend {
  override table<V>(operatorId: string, name: string, options: TableOptions = {}): StateTable<V> {
    return super.table<V>(operatorId, name, { layout: "namespace", ...options });
  }
}

const kinds: { name: string; make(): Harness }[] = [
  {
    name: "memory",
    make: () => ({ backend: new MemoryStateBackend(), checkpoint: async () => {} }),
  },
  {
    // Tables laid out namespace-major (as window operators open their accumulators) must behave the same.
    name: "memory, namespace layout",
    make: () => ({ backend: new NamespaceLayoutMemory(), checkpoint: async () => {} }),
  },
  {
    name: "lmdb",
    make: () => {
      const dir = mkdtempSync(join(tmpdir(), "gress-state-"));
      dirs.push(dir);
      // A tiny cache, so reads really go through LMDB.
      const backend = new LmdbStateBackend({ path: dir, cacheEntries: 4, mapSize: 64 * 1024 * 1024 });
      return {
        backend,
        checkpoint: async () => {
          await backend.commit(backend.capture(), () => {});
          await backend.flushed();
        },
      };
    },
  },
];

const sorted = <T>(xs: Iterable<T>): T[] => [...xs].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

for (const kind of kinds) {
  describe(`state backend: ${kind.name}`, () => {
    // Every behaviour is checked with the values in the write path and again after a checkpoint.
    for (const phase of ["before a checkpoint", "after a checkpoint"] as const) {
      const settle = async (h: Harness): Promise<void> => {
        if (phase === "after a checkpoint") await h.checkpoint();
      };

      describe(phase, () => {
        it("get returns what put stored, per (key, namespace); delete removes it", async () => {
          const h = kind.make();
          const t = h.backend.table<string>("op", "t");
          t.put("a", "", "A");
          t.put("a", 1, "A1");
          t.put("b", "", "B");
          await settle(h);
          assert.equal(t.get("a", ""), "A");
          assert.equal(t.get("a", 1), "A1");
          assert.equal(t.get("b", ""), "B");
          assert.equal(t.get("c", ""), undefined);
          t.delete("a", "");
          await settle(h);
          assert.equal(t.get("a", ""), undefined);
          assert.equal(t.get("a", 1), "A1");
          await h.backend.close();
        });

        it("number and string keys and namespaces stay distinct (1 vs \"1\")", async () => {
          const h = kind.make();
          const t = h.backend.table<string>("op", "t");
          t.put(1, 1, "n/n");
          t.put("1", 1, "s/n");
          t.put(1, "1", "n/s");
          t.put("1", "1", "s/s");
          await settle(h);
          assert.deepEqual([t.get(1, 1), t.get("1", 1), t.get(1, "1"), t.get("1", "1")], ["n/n", "s/n", "n/s", "s/s"]);
          assert.equal(t.size, 4);
          await h.backend.close();
        });

        it("size counts (key, namespace) entries: overwrites do not count, deleting an absent entry does nothing", async () => {
          const h = kind.make();
          const t = h.backend.table<number>("op", "t");
          t.put("a", "", 1);
          t.put("a", "", 2);
          t.put("a", "x", 3);
          await settle(h);
          t.put("a", "", 4);
          t.delete("zzz", "");
          assert.equal(t.size, 2);
          t.delete("a", "x");
          t.delete("a", "x");
          await settle(h);
          assert.equal(t.size, 1);
          await h.backend.close();
        });

        it("entriesOf lists one key's namespaces only, not those of a key with the same prefix", async () => {
          const h = kind.make();
          const t = h.backend.table<number>("op", "t");
          t.put("a", 1, 1);
          t.put("a", "w", 2);
          t.put("ab", 1, 3);
          t.put(7, 1, 4);
          await settle(h);
          t.put("a", 2, 5);
          t.delete("a", "w");
          assert.deepEqual(sorted(t.entriesOf("a")), sorted([[1, 1], [2, 5]] as [Namespace, number][]));
          assert.deepEqual([...t.entriesOf(7)], [[1, 4]]);
          assert.deepEqual([...t.entriesOf("nope")], []);
          await h.backend.close();
        });

        it("entries lists the whole table, and the table may be changed while iterating", async () => {
          const h = kind.make();
          const t = h.backend.table<number>("op", "t");
          for (let i = 0; i < 20; i++) t.put(`k${i % 5}`, i, i);
          await settle(h);
          t.put("k0", 0, 100);
          const seen: [Key, Namespace, number][] = [];
          for (const [k, ns, v] of t.entries()) {
            seen.push([k, ns, v]);
            if (v % 2 === 1) t.delete(k, ns);
          }
          assert.equal(seen.length, 20);
          assert.equal(seen.find(([k, ns]) => k === "k0" && ns === 0)?.[2], 100);
          assert.equal(t.size, 10);
          assert.ok([...t.entries()].every(([, , v]) => v % 2 === 0));
          await h.backend.close();
        });

        it("deleteKey removes every namespace of a key and nothing else", async () => {
          const h = kind.make();
          const t = h.backend.table<number>("op", "t");
          t.put("a", 1, 1);
          t.put("a", 2, 2);
          t.put("b", 1, 3);
          await settle(h);
          t.put("a", 3, 4);
          t.deleteKey("a");
          assert.deepEqual([...t.entriesOf("a")], []);
          assert.equal(t.get("b", 1), 3);
          assert.equal(t.size, 1);
          await h.backend.close();
        });

        it("tables of different operators and names are separate", async () => {
          const h = kind.make();
          const a = h.backend.table<string>("op-1", "s");
          const b = h.backend.table<string>("op-2", "s");
          const c = h.backend.table<string>("op-1", "t");
          a.put("k", "", "a");
          b.put("k", "", "b");
          await settle(h);
          assert.equal(h.backend.table("op-1", "s"), a, "the same table is returned when opened twice");
          assert.deepEqual([a.get("k", ""), b.get("k", ""), c.get("k", "")], ["a", "b", undefined]);
          assert.deepEqual([a.size, b.size, c.size], [1, 1, 0]);
          await h.backend.close();
        });

        it("structured values survive: nested objects, arrays, Infinity, Map, Set, Date, bigint", async () => {
          const h = kind.make();
          const t = h.backend.table<unknown>("op", "t");
          const values: unknown[] = [
            { a: [1, { b: "x" }], c: null },
            Number.POSITIVE_INFINITY,
            Number.NEGATIVE_INFINITY,
            new Map<unknown, unknown>([["k", 1], [2, [3]]]),
            new Set([1, "2"]),
            new Date(1234),
            12345678901234567890n,
            -1.5,
            "",
            false,
          ];
          for (const [i, v] of values.entries()) t.put("k", i, v);
          await settle(h);
          for (const [i, v] of values.entries()) assert.deepEqual(t.get("k", i), v, `value ${i}`);
          await h.backend.close();
        });

        it("snapshot is a deep copy; restore replaces all state with it", async () => {
          const h = kind.make();
          const t = h.backend.table<{ n: number }>("op", "t");
          t.put("a", "", { n: 1 });
          t.put("b", "", { n: 2 });
          await settle(h);
          const snap = h.backend.snapshot();
          t.put("a", "", { n: 10 });
          t.put("c", "", { n: 3 });
          const other = h.backend.table<number>("op", "other");
          other.put("x", "", 9);
          assert.deepEqual(sorted(snap.tables["op/t"] ?? []), [["a", "", { n: 1 }], ["b", "", { n: 2 }]]);
          h.backend.restore(snap);
          await settle(h);
          assert.deepEqual(t.get("a", ""), { n: 1 });
          assert.equal(t.get("c", ""), undefined);
          assert.equal(other.get("x", ""), undefined, "tables not in the snapshot are emptied");
          assert.equal(t.size, 2);
          await h.backend.close();
        });
      });
    }

    it("an unknown layout or option is a ConfigError naming the table and the field", async () => {
      const h = kind.make();
      assert.throws(
        () => h.backend.table("op", "t", { layout: "diagonal" } as unknown as TableOptions),
        (e: unknown) => isGressError(e, "ERR_CONFIG") && /table op\/t\.layout/.test(e.message),
      );
      assert.throws(
        () => h.backend.table("op", "t", { lay: "key" } as unknown as TableOptions),
        (e: unknown) => isGressError(e, "ERR_CONFIG") && /lay/.test(e.message),
      );
      // Nothing was opened by the refused calls: the table still opens and works.
      h.backend.table<number>("op", "t").put("a", "", 1);
      assert.equal(h.backend.table<number>("op", "t").get("a", ""), 1);
      await h.backend.close();
    });

    it("a table first opened after a restore holds its restored rows, in either layout", async () => {
      const h = kind.make();
      const t = h.backend.table<number>("op", "t");
      t.put("a", 1, 1);
      t.put("b", 1, 2);
      t.put("a", 2, 3);
      const snap = h.backend.snapshot();
      await h.backend.close();
      for (const layout of ["key", "namespace"] as const) {
        const fresh = kind.make();
        fresh.backend.restore(snap);
        // Not opened yet: a snapshot still contains it.
        assert.deepEqual(sorted(fresh.backend.snapshot().tables["op/t"] ?? []), sorted(snap.tables["op/t"] ?? []), layout);
        const opened = fresh.backend.table<number>("op", "t", { layout });
        assert.deepEqual([opened.get("a", 1), opened.get("b", 1), opened.get("a", 2), opened.size], [1, 2, 3, 3], layout);
        assert.deepEqual(sorted(opened.entriesOf("a")), [[1, 1], [2, 3]], layout);
        await fresh.backend.close();
      }
    });

    it("property: any sequence of puts, deletes and checkpoints reads like a Map", async () => {
      // Law: after any operations, get/size/entriesOf/entries agree with a Map model of the table.
      const h = kind.make();
      let run = 0;
      const op = fc.oneof(
        fc.record({ t: fc.constant("put" as const), k: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constantFrom("a", "b", "0")), ns: fc.constantFrom<Namespace>("", 1, 2, "x"), v: fc.integer() }),
        fc.record({ t: fc.constant("del" as const), k: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constantFrom("a", "b", "0")), ns: fc.constantFrom<Namespace>("", 1, 2, "x") }),
        fc.record({ t: fc.constant("delKey" as const), k: fc.constantFrom<Key>(0, "a") }),
        fc.record({ t: fc.constant("checkpoint" as const) }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
          const table: StateTable<number> = h.backend.table<number>(`prop-${run++}`, "t");
          const model = new Map<string, [Key, Namespace, number]>();
          const id = (k: Key, ns: Namespace): string => JSON.stringify([typeof k, k, typeof ns, ns]);
          for (const o of ops) {
            if (o.t === "put") {
              table.put(o.k, o.ns, o.v);
              model.set(id(o.k, o.ns), [o.k, o.ns, o.v]);
            } else if (o.t === "del") {
              table.delete(o.k, o.ns);
              model.delete(id(o.k, o.ns));
            } else if (o.t === "delKey") {
              table.deleteKey(o.k);
              for (const [mk, [k]] of [...model]) if (k === o.k) model.delete(mk);
            } else await h.checkpoint();
          }
          assert.equal(table.size, model.size);
          assert.deepEqual(sorted(table.entries()), sorted(model.values()));
          for (const [k, ns, v] of model.values()) assert.equal(table.get(k, ns), v);
          for (const k of [0, "a", "0"] as Key[]) {
            assert.deepEqual(sorted(table.entriesOf(k)), sorted([...model.values()].filter(([mk]) => mk === k).map(([, ns, v]) => [ns, v])));
          }
        }),
        { numRuns: 200 },
      );
      await h.backend.close();
    });

    it("keyed ValueState, MapState and ListState with TTL behave the same in a process function", async () => {
      const h = kind.make();
      interface Ev {
        readonly k: string;
        readonly v: number;
      }
      const fn: ProcessFunction<Ev, string, unknown> = {
        processElement(e, ctx) {
          const total = ctx.state.value<number>("total");
          total.update((total.value() ?? 0) + e.v);
          const seen = ctx.state.map<number, number>("seen");
          seen.put(e.v, (seen.get(e.v) ?? 0) + 1);
          const list = ctx.state.list<number>("list", { ttl: { ms: 10, time: "event" } });
          list.add(e.v);
          ctx.emit({ k: e.k, total: total.value(), seen: seen.entries().sort(), list: list.get() });
        },
      };
      const d = new TestDriver<Ev, unknown>((s) => s.keyBy((e) => e.k).process(fn), { state: h.backend });
      d.pipeInput({ k: "a", v: 1 }, 1).pipeInput({ k: "a", v: 1 }, 2).pipeInput({ k: "b", v: 5 }, 3);
      await h.checkpoint();
      d.advanceWatermark(20);
      d.pipeInput({ k: "a", v: 2 }, 21);
      assert.deepEqual(d.readOutput(), [
        { k: "a", total: 1, seen: [[1, 1]], list: [1] },
        { k: "a", total: 2, seen: [[1, 2]], list: [1, 1] },
        { k: "b", total: 5, seen: [[5, 1]], list: [5] },
        // The list was last written before event time 10; at watermark 20 its 10 ms event-time TTL has expired.
        { k: "a", total: 4, seen: [[1, 2], [2, 1]], list: [2] },
      ]);
      await h.backend.close();
    });
  });
}
