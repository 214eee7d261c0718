#!/usr/bin/env node
// The differential CEP oracle (tests/integration/cep-oracle.test.ts) with more cases than CI runs:
//   node scripts/cep-oracle.mjs [runs=3000] [seed=random]
// Prints the agreement rate, the exclusions and the first disagreements; exits non-zero on a disagreement.
import { spawnSync } from "node:child_process";

const runs = process.argv[2] ?? "3000";
const seed = process.argv[3] ?? String(Math.floor(Math.random() * 2 ** 31));
console.log(`cep-oracle: ${runs} cases, seed ${seed} (rerun: node scripts/cep-oracle.mjs ${runs} ${seed})`);
const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", "--test-timeout=3600000", "tests/integration/cep-oracle.test.ts"], {
  stdio: "inherit",
  env: { ...process.env, CEP_ORACLE_RUNS: runs, CEP_ORACLE_SEED: seed, CEP_ORACLE_TIMEOUT_MS: "3600000" },
});
process.exit(r.status ?? 1);
