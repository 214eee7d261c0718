/**
 * `@platformatic/kafka` is an optional peer dependency: gress/kafka must load without it,
 * platformaticKafkaClient must say what to install on first use, and the default client of a source or sink
 * given only brokers is then kafkajs (connectors/kafka/default-client.ts). A child process of the runtime running the
 * tests loads a copy of the sources from a project whose node_modules has every package of this checkout but
 * `@platformatic/*` (the others are symbolic links), as a user who did not install the peer has.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { tempDirs } from "../support/temp.ts";

const tempDir = tempDirs("gress-kafka-peer-");
const repo = fileURLToPath(new URL("../../", import.meta.url));

const child = `
import { ConfigError } from "./lib/errors.ts";

const withResolvers = () => typeof (Promise as { withResolvers?: unknown }).withResolvers;
const before = withResolvers();
const kafka = await import("./connectors/kafka/index.ts");
// On Node 20 (no Promise.withResolvers) this shows that importing gress/kafka did not install the polyfill.
const afterImport = withResolvers();
const client = kafka.platformaticKafkaClient({ brokers: ["127.0.0.1:9"] });
const consumer = client.consumer({ groupId: "g", topics: ["t"], fromBeginning: true });
consumer.seek({ topic: "t", partition: 0, offset: 5 });
consumer.pause(["t"]);
consumer.resume(["t"]);
const producer = client.transactionalProducer({ transactionalId: "tx" });
const calls: [string, () => Promise<unknown>][] = [
  ["endOffsets", () => client.endOffsets("t")],
  ["endTransaction", () => client.endTransaction({ transactionalId: "tx", producerId: "1", producerEpoch: 0 }, true)],
  ["consumer.start", () => consumer.start(() => 0)],
  ["producer.connect", () => producer.connect()],
  ["producer.begin", () => producer.begin(false)],
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
await consumer.stop();
await producer.disconnect();
await client.close();
// A source given only brokers: the default client, without the package, is kafkajs (said once on stderr).
const { defaultKafkaClient } = await import("./connectors/kafka/default-client.ts");
const fallback = [defaultKafkaClient(), defaultKafkaClient()];
console.log(JSON.stringify({ before, afterImport, results, fallback }));
`;

/** A project with a copy of the sources and every package of this checkout but `@platformatic/*`. */
function projectWithoutPeer(): string {
  const dir = tempDir();
  for (const d of ["lib", "cep", "connectors"]) cpSync(join(repo, d), join(dir, d), { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "no-peer", type: "module", private: true }));
  const deno = JSON.parse(readFileSync(join(repo, "deno.json"), "utf8")) as { imports: unknown };
  writeFileSync(join(dir, "deno.json"), JSON.stringify({ imports: deno.imports, nodeModulesDir: "manual" }));
  mkdirSync(join(dir, "node_modules"));
  for (const name of readdirSync(join(repo, "node_modules"))) {
    if (name === "@platformatic" || name.startsWith(".")) continue;
    symlinkSync(join(repo, "node_modules", name), join(dir, "node_modules", name));
  }
  writeFileSync(join(dir, "child.ts"), child);
  return dir;
}

function run(dir: string): Promise<{ code: number | null; out: string; err: string }> {
  const args = "Deno" in globalThis ? ["run", "-A", "--unstable-sloppy-imports", "child.ts"] : "Bun" in globalThis ? ["child.ts"] : ["--import", "tsx", "child.ts"];
  // GRESS_KAFKA_CLIENT would choose the default client itself: left out, as in a plain environment.
  const p = spawn(process.execPath, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, GRESS_KAFKA_CLIENT: "" } });
  let out = "";
  let err = "";
  p.stdout?.on("data", (d: Buffer) => void (out += d.toString()));
  p.stderr?.on("data", (d: Buffer) => void (err += d.toString()));
  return new Promise((resolve) => p.on("close", (code) => resolve({ code, out, err })));
}

describe("@platformatic/kafka, an optional peer dependency", () => {
  it("gress/kafka loads without it; each first async use of platformaticKafkaClient rejects with a ConfigError naming what to install; the default client is then kafkajs", { timeout: 120_000 }, async () => {
    const dir = projectWithoutPeer();
    const { code, out, err } = await run(dir);
    assert.equal(code, 0, `child failed:\n${err}`);
    const line = out.trim().split("\n").at(-1) ?? "";
    const got = JSON.parse(line) as {
      before: string;
      afterImport: string;
      results: { call: string; resolved?: true; configError?: boolean; code?: string; message?: string; issues?: { path: string[]; code: string }[] }[];
      fallback: string[];
    };
    // Node and Bun: the package does not resolve, so the default is kafkajs, said once. Deno: the project's import
    // map names it (as deno.json does here), which is how a Deno project declares a dependency; Deno fetches an
    // npm: specifier on first use, so the default stays @platformatic/kafka there.
    const deno = "Deno" in globalThis;
    assert.deepEqual(got.fallback, deno ? ["platformatic", "platformatic"] : ["kafkajs", "kafkajs"], "the default client without the package");
    const said = err.split("@platformatic/kafka (the default Kafka client when installed) is not installed; using kafkajs").length - 1;
    assert.equal(said, deno ? 0 : 1, `said once on stderr (not on Deno):\n${err}`);
    assert.equal(got.afterImport, got.before, "importing gress/kafka changed Promise.withResolvers");
    const pinned = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { devDependencies: Record<string, string> }).devDependencies["@platformatic/kafka"];
    assert.deepEqual(
      got.results.map((r) => r.call),
      ["endOffsets", "endTransaction", "consumer.start", "producer.connect", "producer.begin"],
    );
    for (const r of got.results) {
      assert.equal(r.resolved, undefined, `${r.call} resolved without the library`);
      assert.equal(r.configError, true, `${r.call}: not a ConfigError: ${r.message}`);
      assert.equal(r.code, "ERR_CONFIG");
      assert.match(r.message ?? "", new RegExp(`npm install @platformatic/kafka@${pinned?.replaceAll(".", "\\.")}\\b`), r.call);
      assert.deepEqual(
        r.issues?.map((i) => [i.path, i.code]),
        [[["platformaticKafkaClient"], "missing_dependency"]],
      );
    }
  });
});
