#!/usr/bin/env bash
# Executes examples/*.ipynb on Deno's real Jupyter kernel (deno jupyter) with nbconvert, and fails if a cell
# errors or the property cell does not report its runs. Installs nbconvert from PyPI when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import nbconvert, jupyter_client" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check nbconvert jupyter_client ipykernel
fi
npx deno jupyter --install --force >/dev/null 2>&1
out=$(mktemp -d)
for nb in examples/*.ipynb; do
  (cd examples && python3 -m jupyter nbconvert --to notebook --execute "$(basename "$nb")" --output "$out/$(basename "$nb")" \
    --ExecutePreprocessor.timeout=300 --log-level=WARN)
  python3 - "$out/$(basename "$nb")" <<'PY'
import json, sys
nb = json.load(open(sys.argv[1]))
text = json.dumps([o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])])
if '"output_type": "error"' in text:
    sys.exit(f"{sys.argv[1]}: a cell raised an error")
if "200 runs passed" not in text:
    sys.exit(f"{sys.argv[1]}: the property cell did not report its runs")
print(f"{sys.argv[1]}: every cell ran on the Deno kernel")
PY
done
rm -rf "$out"
