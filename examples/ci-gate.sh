#!/usr/bin/env bash
# Fail a pipeline when a deployment cannot meet its accuracy target within its budgets.
#
#   examples/ci-gate.sh [SCENARIO] [ENERGY_J] [LATENCY_S] [MIN_ACCURACY]
#
# LATENCY_S is the default latency cap: categories with their own cap in the scenario keep it.
# MIN_ACCURACY is a fraction (0.75) or a percentage (75%).
#
# Uses only moe2's exit codes (0 ok, 1 target or budgets not met, 2 bad input) and its JSON.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scenario="${1:-$here/default.yaml}"
energy="${2:-150}"
latency="${3:-6}"
target="${4:-0.5}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

moe2 select "$scenario" --budget "energy=$energy" --budget "latency=$latency" \
    --min-accuracy "$target" --format json --no-timing >"$out"
status=$?
case "$status" in
  0) ;;
  1) echo "ci-gate: FAIL: the deployment misses its accuracy target or budgets" >&2; exit 1 ;;
  *) echo "ci-gate: ERROR: moe2 could not read the inputs (exit $status)" >&2; exit "$status" ;;
esac
# The JSON is stable: pick the fields a pipeline log needs with python's json module.
python3 - "$out" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
print(f"ci-gate: PASS: F={result['objective']:.4f} with {len(result['selection'])} experts: "
      + ", ".join(result["selection"]))
PY
