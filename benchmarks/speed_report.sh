#!/usr/bin/env bash
# The speed measurement of docs/speed.md: `abtrack bench` (all configs, cost curve, block ratios,
# every backend with its tracking AUC on one synthetic validation set) at 1 and 2 threads.
# Usage: benchmarks/speed_report.sh [CHECKPOINT] ; writes benchmarks/out/speed_<stamp>_t<threads>.json
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/out
abtrack() { python -m abtrack_ros.cli "$@"; }
data=benchmarks/out/speed_val
# Small on purpose: the accuracy check runs it once per backend (4 x 5 sequences x 80 frames).
abtrack synth --out "$data" --split val --sequences 5 --frames 80 --seed 11 --difficulty medium --overwrite >&2
checkpoint_args=()
if [[ $# -ge 1 ]]; then checkpoint_args=(--checkpoint "$1"); fi
stamp="$(date +%Y%m%d-%H%M%S)"
for threads in 1 2; do
  json="benchmarks/out/speed_${stamp}_t${threads}.json"
  abtrack bench --json --threads "$threads" "${checkpoint_args[@]}" --accuracy-dataset "synthetic:$data/val" > "$json"
  echo "## ${threads} thread(s): $json"
  python - "$json" <<'PY'
import json, sys
from abtrack_ros.evaluation.bench import format_table
print(format_table(json.load(open(sys.argv[1]))))
PY
  echo
done
