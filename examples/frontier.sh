#!/usr/bin/env bash
# Write the accuracy-energy frontier of a scenario as CSV and as a PNG figure.
#
#   examples/frontier.sh [SCENARIO] [OUT_DIR] [SWEEP]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scenario="${1:-$here/default.yaml}"
outdir="${2:-frontier-out}"
sweep="${3:-energy=20:400:10}"
name="$(basename "$scenario" .yaml)"
mkdir -p "$outdir"
moe2 frontier "$scenario" --sweep "$sweep" --format csv --plot "$outdir/$name-frontier.png" \
    >"$outdir/$name-frontier.csv"
echo "wrote $outdir/$name-frontier.csv and $outdir/$name-frontier.png" >&2
