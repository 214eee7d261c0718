/**
 * confluentSchemaRegistry without a registry: `@confluentinc/schemaregistry` loads on the runtime running the
 * tests, a registry that cannot be reached is a SchemaRegistryError with status 0 (not cached, so each lookup
 * asks again), and the package is an optional peer dependency: gress/registry loads without it and the first
 * use of the client says what to install. For the latter a child process of the same runtime loads a copy of
 * the sources from a project whose node_modules has every package of this checkout but `@confluentinc/*`.
 * The client against a real registry is tests/integration/registry-serdes.test.ts.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { confluentSchemaRegistry, SchemaRegistryError } from "../../connectors/registry/index.ts";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-registry-peer-");
const repo = fileURLToPath(new URL("../../", import.meta.url));

describe("confluentSchemaRegistry", () => {
  it("rejects a URL that is not http(s)", () => {
    assert.throws(() => confluentSchemaRegistry({ url: "127.0.0.1:8081" }), /confluentSchemaRegistry: url must be http\(s\):\/\/\.\.\., got "127\.0\.0\.1:8081"/);
  });

  it("a registry that cannot be reached: SchemaRegistryError with status 0, and a failed lookup is not cached", { timeout: 60_000 }, async () => {
    // Nothing listens on port 9 of the loopback: every request is refused at once.
    const registry = confluentSchemaRegistry({ url: "http://127.0.0.1:9/", retries: 0 });
    assert.equal(registry.url, "http://127.0.0.1:9");
    for (const attempt of [1, 2]) {
      await assert.rejects(registry.schemaById(7), (err: unknown) => {
        assert.ok(err instanceof SchemaRegistryError, String(err));
        assert.equal(err.status, 0);
        assert.equal(err.errorCode, undefined);
        assert.match(err.message, /^schema registry http:\/\/127\.0\.0\.1:9: GET schema id 7: failed: /);
        return true;
      });
      assert.equal(registry.lookups, attempt);
    }
    await assert.rejects(registry.register("s-value", { schemaType: "AVRO", schema: '"string"' }), (err: unknown) => err instanceof SchemaRegistryError && err.status === 0);
    await assert.rejects(registry.checkCompatibility("s-value", { schemaType: "AVRO", schema: '"string"' }), (err: unknown) => err instanceof SchemaRegistryError && err.status === 0);
  });
});

const child = `
import { ConfigError } from "./lib/errors.ts";
import { confluentSchemaRegistry } from "./connectors/registry/index.ts";

const registry = confluentSchemaRegistry({ url: "http://127.0.0.1:9", retries: 0 });
const calls: [string, () => Promise<unknown>][] = [
  ["schemaById", () => registry.schemaById(1)],
  ["schemaById again", () => registry.schemaById(1)],
  ["register", () => registry.register("s", { schemaType: "AVRO", schema: '"string"' })],
  ["latest", () => registry.latest("s")],
];
const results = [];
for (const [call, f] of calls) {
  try {
    await f();
    results.push({ call, resolved: true });
  } catch (e) {
    const err = e as Error & { code?: string; issues?: unknown };
    results.push({ call, configError: e instanceof ConfigError, code: err.code, message: err.message, issues: err.issues });
  }
}
console.log(JSON.stringify(results));
`;

/** A project with a copy of the sources and every package of this checkout but `@confluentinc/*`. */
function projectWithoutPeer(): string {
  const dir = tempDir();
  for (const d of ["lib", "cep", "connectors"]) cpSync(join(repo, d), join(dir, d), { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "no-peer", type: "module", private: true }));
  const deno = JSON.parse(readFileSync(join(repo, "deno.json"), "utf8")) as { imports: unknown };
  writeFileSync(join(dir, "deno.json"), JSON.stringify({ imports: deno.imports, nodeModulesDir: "manual" }));
  mkdirSync(join(dir, "node_modules"));
  for (const name of readdirSync(join(repo, "node_modules"))) {
    if (name === "@confluentinc" || name.startsWith(".")) continue;
    symlinkSync(join(repo, "node_modules", name), join(dir, "node_modules", name));
  }
  writeFileSync(join(dir, "child.ts"), child);
  return dir;
}

function run(dir: string): Promise<{ code: number | null; out: string; err: string }> {
  const args = "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports", "child.ts"] : "Bun" in globalThis ? ["child.ts"] : ["--import", "tsx", "child.ts"];
  const p = spawn(process.execPath, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  p.stdout?.on("data", (d: Buffer) => void (out += d.toString()));
  p.stderr?.on("data", (d: Buffer) => void (err += d.toString()));
  return new Promise((resolve) => p.on("close", (code) => resolve({ code, out, err })));
}

describe("@confluentinc/schemaregistry, an optional peer dependency", () => {
  it("gress/registry loads without it; each use of confluentSchemaRegistry rejects with a ConfigError naming what to install", { timeout: 120_000 }, async () => {
    const { code, out, err } = await run(projectWithoutPeer());
    assert.equal(code, 0, `child failed:\n${err}`);
    const results = JSON.parse(out.trim().split("\n").at(-1) ?? "") as { call: string; resolved?: true; configError?: boolean; code?: string; message?: string; issues?: { path: string[]; code: string }[] }[];
    const pinned = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { devDependencies: Record<string, string> }).devDependencies["@confluentinc/schemaregistry"];
    assert.deepEqual(
      results.map((r) => r.call),
      ["schemaById", "schemaById again", "register", "latest"],
    );
    for (const r of results) {
      assert.equal(r.resolved, undefined, `${r.call} resolved without the library`);
      assert.equal(r.configError, true, `${r.call}: not a ConfigError: ${r.message}`);
      assert.equal(r.code, "ERR_CONFIG");
      assert.match(r.message ?? "", new RegExp(`npm install @confluentinc/schemaregistry@${pinned?.replaceAll(".", "\\.")}\\b`), r.call);
      assert.deepEqual(
        r.issues?.map((i) => [i.path, i.code]),
        [[["confluentSchemaRegistry"], "missing_dependency"]],
      );
    }
  });
});
