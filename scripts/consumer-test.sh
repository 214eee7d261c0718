#!/usr/bin/env bash
# The consumer test: Gress as another project gets it. `npm pack` (which builds dist/), then, in fresh projects
# in a temporary directory, install the tarball and run the same small pipeline (a tumbling window, a CEP
# pattern, keyed state in LMDB with one checkpoint) on every runtime and project kind:
#   node    ESM project (import), CommonJS project made by `npm init -y` (require and import), `npx gress run
#           pipe.ts` in that CommonJS project, each on the minimum Node.js of package.json's engines, the latest
#           22 and this machine's; TypeScript projects, ESM and CommonJS, compiled by tsc (NodeNext, emit, no
#           skipLibCheck)
#   bun     the ESM project and the TypeScript project's sources
#   deno    the ESM project through npm (its node_modules); `deno run -A npm:gress run pipe.ts` with the tarball
#           linked as the npm package (node_modules) and served by a registry on loopback (Deno's cache only);
#           and the JSR layout: the files `deno publish` ships, as a workspace member with its own import map,
#           imported by name with no node_modules
# Each prints "digest: …"; the script fails, naming the runtime and project, unless every digest is the same.
# KEEP=1 keeps the temporary directory.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bun=$repo/node_modules/.bin/bun
deno=$repo/node_modules/.bin/deno
work=$(mktemp -d "${TMPDIR:-/tmp}/gress-consumer.XXXXXX")
[[ ${KEEP:-} == 1 ]] && echo "work directory: $work" || trap 'rm -rf "$work"' EXIT
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false npm_config_loglevel=error
export NO_COLOR=1

version() { node -p "require('$repo/package.json').$1" 2>/dev/null; }

echo "## npm pack"
tarball=$(cd "$repo" && npm pack --pack-destination "$work" 2>"$work/pack.log" | tail -1)
if [[ -z $tarball || ! -f $work/$tarball ]]; then
  cat "$work/pack.log"
  echo "FAILED: npm pack"
  exit 1
fi
tarball=$work/$tarball
listing=$(tar tzf "$tarball")
for want in package/dist/lib/index.js package/dist/lib/index.d.ts package/dist/cep/index.js package/bin/gress.mjs; do
  grep -qx "$want" <<<"$listing" || { echo "FAILED: npm pack: the tarball has no $want"; exit 1; }
done
if grep -E '^package/(tests|bench|scripts|\.ci|lib|cep|connectors|examples)/' <<<"$listing" | head -3 | grep .; then
  echo "FAILED: npm pack: the tarball ships files users do not need (above)"
  exit 1
fi
echo "$(basename "$tarball"): $(wc -l <<<"$listing") files"

# The pipeline, once, with placeholders for what differs between JavaScript and TypeScript.
template='@IMPORTS@
@TYPES@
const txs@TXS@ = [];
for (let i = 0; i < 600; i++) txs.push({ card: `c${i % 7}`, amount: (i * 37) % 101, at: i * 1_000 });
const results@STRINGS@ = [];

@EXPORT@function build(job@JOB@)@VOID@ {
  const tx = job.fromIterable(txs, { name: "txs", watermarks: monotonic({ timestamp: (t@TX@) => t.at }) }).keyBy((t) => t.card);
  tx.window(tumbling(60_000))
    .sum((t) => t.amount)
    .sinkTo(sinkFn("windows", (w) => void results.push(`window ${w.key} ${w.start} ${w.value}`)));
  const smallThenLarge = pattern@TXARG@()
    .begin("small").where((t) => t.amount < 10)
    .followedBy("large").where((t) => t.amount > 90)
    .within(120_000);
  match(tx, smallThenLarge)
    .filter(isMatch)
    .sinkTo(sinkFn("matches", (m) => void results.push(`match ${m.key} ${m.events.small.map((t) => t.at)} ${m.events.large.map((t) => t.at)}`)));
  tx.process({
    processElement(t, ctx) {
      const max = ctx.state.value@NUMBER@("max");
      if (t.amount > (max.value() ?? -1)) {
        max.update(t.amount);
        ctx.emit(`${ctx.key} ${t.amount}`);
      }
    },
  }).sinkTo(sinkFn("maxima", (s) => void results.push(`max ${s}`)));
}

@EXPORT@function digest(job@JOB@)@STRING@ {
  const hash = createHash("sha256").update([...results].sort().join("\n")).digest("hex").slice(0, 16);
  const count = (kind@STRING_ARG@) => results.filter((r) => r.startsWith(kind)).length;
  return `digest: ${count("window")} windows, ${count("match")} matches, ${count("max")} maxima, ${job.metrics.checkpointsCompleted} checkpoint(s), sha256 ${hash}`;
}

@EXPORT@function newJob(stateDir@DIR@)@JOBTYPE@ {
  return new Job({ name: "consumer", state: lmdbState({ path: stateDir }), checkpoints: { intervalMs: 3_600_000 } });
}
'
esm_imports='import { createHash } from "node:crypto";
import { Job, lmdbState, monotonic, sinkFn, tumbling } from "gress";
import { isMatch, match, pattern } from "gress/cep";'
cjs_imports='const { createHash } = require("node:crypto");
const { Job, lmdbState, monotonic, sinkFn, tumbling } = require("gress");
const { isMatch, match, pattern } = require("gress/cep");'

# render JS|TS IMPORTS [EXPORT]
render() {
  local t=$template ts=$1
  t=${t//@IMPORTS@/$2}
  t=${t//@EXPORT@/${3-export }}
  if [[ $ts == TS ]]; then
    t=${t//@TYPES@/interface Tx \{ readonly card: string; readonly amount: number; readonly at: number \}}
    t=${t//@TXS@/: Tx[]}
    t=${t//@STRINGS@/: string[]}
    t=${t//@JOB@/: Job}
    t=${t//@VOID@/: void}
    t=${t//@TX@/: Tx}
    t=${t//@TXARG@/<Tx>}
    t=${t//@NUMBER@/<number>}
    t=${t//@STRING@/: string}
    t=${t//@DIR@/: string}
    t=${t//@STRING_ARG@/: string}
    t=${t//@JOBTYPE@/: Job}
  else
    for p in @TYPES@ @TXS@ @STRINGS@ @JOB@ @VOID@ @TX@ @TXARG@ @NUMBER@ @STRING@ @DIR@ @STRING_ARG@ @JOBTYPE@; do t=${t//$p/}; done
  fi
  printf '%s' "$t"
}
esm_main='import { build, digest, newJob } from "./pipeline.mjs";
const job = newJob(process.argv[2]);
build(job);
await job.run();
console.log(digest(job));
'

# install DIR PACKAGE_JSON [more packages]: a fresh project with the tarball installed.
install() {
  local dir=$1 pkg=$2
  shift 2
  mkdir -p "$dir"
  if [[ $pkg == init ]]; then (cd "$dir" && npm init -y >/dev/null); else printf '%s\n' "$pkg" >"$dir/package.json"; fi
  (cd "$dir" && npm install --prefer-offline "$tarball" "$@" >"$work/install-$(basename "$dir").log" 2>&1) || {
    cat "$work/install-$(basename "$dir").log"
    echo "FAILED: npm install of the tarball in $(basename "$dir")"
    return 1
  }
}

declare -a names=() digests=()
failures=0
# run NAME DIR COMMAND...: runs a case and records its digest line.
run() {
  local name=$1 dir=$2
  shift 2
  local log=$work/run-${name//[^A-Za-z0-9]/_}.log
  printf '%-60s ' "$name"
  if (cd "$dir" && timeout 300 "$@") >"$log" 2>&1 && grep -q '^digest: ' "$log"; then
    local d
    d=$(grep '^digest: ' "$log" | tail -1)
    echo "${d#digest: }"
    names+=("$name")
    digests+=("$d")
  else
    echo "FAILED"
    sed 's/^/    /' "$log" | tail -30
    failures=$((failures + 1))
  fi
}

echo "## projects"
# Node, ESM project.
esm=$work/node-esm
install "$esm" '{ "name": "consumer-esm", "private": true, "type": "module" }' || exit 1
render JS "$esm_imports" >"$esm/pipeline.mjs"
printf '%s' "$esm_main" >"$esm/main.mjs"

# Node, CommonJS project as `npm init -y` makes it.
cjs=$work/node-cjs
install "$cjs" init || exit 1
render JS "$cjs_imports" "" >"$cjs/pipeline.cjs"
printf '\nmodule.exports = { build, digest, newJob };\n' >>"$cjs/pipeline.cjs"
cat >"$cjs/main.cjs" <<'EOF'
const { build, digest, newJob } = require("./pipeline.cjs");
// require() and import() must give the same module instances: one copy of Gress, not two.
import("gress").then(async (imported) => {
  if (imported.Job !== require("gress").Job) throw new Error("require('gress') and import('gress') loaded two copies");
  const job = newJob(process.argv[2]);
  build(job);
  await job.run();
  console.log(digest(job));
});
EOF
render JS "$esm_imports" >"$cjs/pipeline.mjs"
printf '%s' "$esm_main" >"$cjs/main.mjs"
# The pipeline module for `gress run`, in TypeScript, in the CommonJS project.
{
  render TS "$esm_imports"
  cat <<'EOF'

export default (job: Job): void => {
  // The Job the CLI passes in must come from the same copy of Gress as this module's import.
  if (!(job instanceof Job)) throw new Error("gress run passed a Job from another copy of Gress");
  build(job);
  process.on("exit", () => console.log(digest(job)));
};
EOF
} >"$cjs/pipe.ts"

# TypeScript project: tsc with NodeNext, emitting JavaScript, checking the package's declarations.
tsp=$work/typescript
install "$tsp" '{ "name": "consumer-ts", "private": true, "type": "module" }' \
  "typescript@$(version devDependencies.typescript)" "@types/node@$(version "devDependencies['@types/node']")" || exit 1
mkdir -p "$tsp/src"
cat >"$tsp/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "types": ["node"],
    "rootDir": "src",
    "outDir": "out",
    "declaration": true
  },
  "include": ["src"]
}
EOF
render TS "$esm_imports" >"$tsp/src/pipeline.ts"
sed 's|"./pipeline.mjs"|"./pipeline.js"|' <<<"$esm_main" >"$tsp/src/main.ts"

# The same in a CommonJS TypeScript project (npm init -y): tsc compiles the imports to require("gress").
tscjs=$work/typescript-cjs
install "$tscjs" init \
  "typescript@$(version devDependencies.typescript)" "@types/node@$(version "devDependencies['@types/node']")" || exit 1
mkdir -p "$tscjs/src"
cp "$tsp/tsconfig.json" "$tscjs/tsconfig.json"
cp "$tsp/src/pipeline.ts" "$tscjs/src/pipeline.ts"
cat >"$tscjs/src/main.ts" <<'EOF'
import { build, digest, newJob } from "./pipeline.js";
const job = newJob(process.argv[2]);
build(job);
void job.run().then(() => console.log(digest(job)));
EOF

# Deno through npm: the tarball linked as the npm package "gress" (`deno run -A npm:gress …`).
dnpm=$work/deno-npm
mkdir -p "$dnpm/gress"
tar xzf "$tarball" -C "$dnpm/gress" --strip-components=1
printf '{ "links": ["./gress"], "nodeModulesDir": "auto", "imports": { "gress": "npm:gress@%s", "gress/cep": "npm:gress@%s/cep" } }\n' \
  "$(version version)" "$(version version)" >"$dnpm/deno.json"
cp "$cjs/pipe.ts" "$dnpm/pipe.ts"

# Deno as a user without a project types it: `deno run -A npm:gress`, nothing but the Deno cache (an empty one
# here). A registry on loopback serves the tarball as "gress" and sends every other package to the npm registry.
dglobal=$work/deno-global
mkdir -p "$dglobal"
printf '{ "imports": { "gress": "npm:gress@%s", "gress/cep": "npm:gress@%s/cep" } }\n' "$(version version)" "$(version version)" >"$dglobal/deno.json"
cp "$cjs/pipe.ts" "$dglobal/pipe.ts"
cat >"$work/registry.mjs" <<'EOF'
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
const [tarball, packageJson, portFile] = process.argv.slice(2);
const bytes = readFileSync(tarball);
const pkg = JSON.parse(readFileSync(packageJson, "utf8"));
const dist = { integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`, shasum: createHash("sha1").update(bytes).digest("hex") };
const server = createServer((req, res) => {
  const here = `http://127.0.0.1:${server.address().port}`;
  if (req.url === `/${pkg.name}`) {
    res.setHeader("content-type", "application/json");
    const version = { ...pkg, dist: { ...dist, tarball: `${here}/${pkg.name}.tgz` } };
    res.end(JSON.stringify({ name: pkg.name, "dist-tags": { latest: pkg.version }, versions: { [pkg.version]: version } }));
  } else if (req.url === `/${pkg.name}.tgz`) res.end(bytes);
  else {
    res.writeHead(302, { location: `https://registry.npmjs.org${req.url}` });
    res.end();
  }
});
server.listen(0, "127.0.0.1", () => writeFileSync(portFile, String(server.address().port)));
EOF
node "$work/registry.mjs" "$tarball" "$dnpm/gress/package.json" "$work/registry.port" &
registry=$!
trap 'kill "$registry" 2>/dev/null; [[ ${KEEP:-} == 1 ]] || rm -rf "$work"' EXIT
for _ in $(seq 50); do [[ -s $work/registry.port ]] && break; sleep 0.1; done

# Deno through JSR: the files `deno publish` ships, as a workspace member named as on JSR, with its own import
# map; the app imports it by name, with no package.json and no node_modules.
jsr=$work/deno-jsr
mkdir -p "$jsr/gress" "$jsr/app"
(cd "$repo" && cp -r lib cep connectors deno.json "$jsr/gress/")
node -e '
  const fs = require("node:fs");
  const f = process.argv[1];
  const d = JSON.parse(fs.readFileSync(f, "utf8"));
  delete d.nodeModulesDir; // only a workspace root may set it
  fs.writeFileSync(f, JSON.stringify(d, null, 2));
' "$jsr/gress/deno.json"
jsr_name=$(node -p "require('$repo/deno.json').name")
printf '{ "workspace": ["./gress", "./app"] }\n' >"$jsr/deno.json"
printf '{ "name": "@consumer/app", "version": "0.0.0", "exports": "./main.ts" }\n' >"$jsr/app/deno.json"
jsr_imports="import { createHash } from \"node:crypto\";
import { Job, lmdbState, monotonic, sinkFn, tumbling } from \"jsr:$jsr_name\";
import { isMatch, match, pattern } from \"jsr:$jsr_name/cep\";"
{
  render TS "$jsr_imports"
  cat <<'EOF'

const job = newJob(Deno.args[0]!);
build(job);
await job.run();
console.log(digest(job));
EOF
} >"$jsr/app/main.ts"

# Node.js: the minimum that package.json's engines promises, the latest 22, and this machine's. The first two
# come from the npm registry's "node" package, which ships the binary.
minimum=$(node -p "require('$repo/package.json').engines.node.replace(/^>=\\s*/, '')")
[[ $minimum =~ ^[0-9]+\.[0-9]+$ ]] && minimum=$minimum.0
declare -A node_bin=(["$(node -p 'process.versions.node')"]=$(dirname "$(command -v node)"))
for v in "$minimum" 22; do
  (cd "$work" && mkdir -p "node-$v" && cd "node-$v" && npm install --prefer-offline "node@$v" >install.log 2>&1) || {
    cat "$work/node-$v/install.log"
    echo "FAILED: npm install node@$v"
    exit 1
  }
  node_bin[$("$work/node-$v/node_modules/.bin/node" -p 'process.versions.node')]=$work/node-$v/node_modules/node/bin
done

echo "## runs"
state=$work/state
for v in $(printf '%s\n' "${!node_bin[@]}" | sort -V); do
  on=(env "PATH=${node_bin[$v]}:$PATH")
  run "node $v: ESM project, import" "$esm" "${on[@]}" node main.mjs "$state/node-$v-esm"
  run "node $v: CommonJS project (npm init -y), require" "$cjs" "${on[@]}" node main.cjs "$state/node-$v-cjs-require"
  run "node $v: CommonJS project (npm init -y), import" "$cjs" "${on[@]}" node main.mjs "$state/node-$v-cjs-import"
  run "node $v: CommonJS project, npx gress run pipe.ts" "$cjs" "${on[@]}" \
    npx --no-install gress run pipe.ts --port 0 --checkpoint-interval 3600000 --state-dir "$state/node-$v-cli"
done
run "node: TypeScript project, tsc (NodeNext) then node" "$tsp" sh -c 'npx --no-install tsc -p . && node out/main.js "$0"' "$state/ts"
run "node: CommonJS TypeScript project, tsc (require) then node" "$tscjs" \
  sh -c 'npx --no-install tsc -p . && grep -q "require(\"gress\")" out/pipeline.js && node out/main.js "$0"' "$state/ts-cjs"
run "bun: ESM project" "$esm" "$bun" main.mjs "$state/bun-esm"
run "bun: TypeScript project's sources" "$tsp" "$bun" src/main.ts "$state/bun-ts"
run "deno: ESM project through npm (node_modules)" "$esm" "$deno" run -A main.mjs "$state/deno-esm"
run "deno: deno run -A npm:gress run pipe.ts, node_modules" "$dnpm" \
  "$deno" run -A npm:gress run pipe.ts --port 0 --checkpoint-interval 3600000 --state-dir "$state/deno-cli"
run "deno: deno run -A npm:gress run pipe.ts, Deno cache only" "$dglobal" \
  env "NPM_CONFIG_REGISTRY=http://127.0.0.1:$(cat "$work/registry.port")/" "DENO_DIR=$work/deno-cache" \
  "$deno" run -A "npm:gress@$(version version)" run pipe.ts --port 0 --checkpoint-interval 3600000 --state-dir "$state/deno-global"
run "deno: JSR layout, no node_modules" "$jsr/app" "$deno" run -A main.ts "$state/deno-jsr"

echo "## result"
distinct=$(printf '%s\n' "${digests[@]}" | sort -u | wc -l)
if [[ $failures -gt 0 ]]; then
  echo "FAILED: $failures of the runs above failed"
  exit 1
fi
if [[ $distinct -ne 1 ]]; then
  echo "FAILED: the runs disagree:"
  for i in "${!names[@]}"; do printf '  %-60s %s\n' "${names[$i]}" "${digests[$i]}"; done
  exit 1
fi
# The pipeline must have produced windows, matches and state, and taken exactly the final checkpoint.
if ! grep -qE '^digest: [1-9][0-9]* windows, [1-9][0-9]* matches, [1-9][0-9]* maxima, 1 checkpoint\(s\)' <<<"${digests[0]}"; then
  echo "FAILED: unexpected digest ${digests[0]}"
  exit 1
fi
echo "all ${#names[@]} runs agree: ${digests[0]#digest: }"
