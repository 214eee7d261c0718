/**
 * `npm run bench -- <name>...` runs the named workloads (core, state, cep, connectors) in this process.
 * Each workload measures Gress against a hand-written baseline doing the same work in the same run and
 * prints events/s (median of several rounds) and the ratio. These are benchmarks, never timed tests.
 * @module
 */
const available = ["core", "state", "cep", "connectors", "async", "latency", "ingest", "scale"];
const names = process.argv.slice(2).filter((a) => !a.startsWith("-"));
if (names.length === 0) {
  console.error(`usage: npm run bench -- <${available.join("|")}>...`);
  process.exit(2);
}
for (const name of names) {
  if (!available.includes(name)) {
    console.error(`unknown benchmark "${name}"; choose from ${available.join(", ")}`);
    process.exit(2);
  }
  const mod = (await import(`./${name}.ts`)) as { run(): Promise<void> };
  console.log(`\n## bench ${name}`);
  await mod.run();
}
