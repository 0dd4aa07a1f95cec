#!/usr/bin/env bash
# Full speed benchmark: writes benchmarks/out/bench_<device>.json and prints the markdown tables.
# Usage: benchmarks/run_bench.sh [extra `abtrack bench` arguments, e.g. --device cuda --half --threads 4]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/out
stamp="$(date +%Y%m%d-%H%M%S)"
json="benchmarks/out/bench_${stamp}.json"
abtrack() { python -m abtrack_ros.cli "$@"; }
abtrack bench --json "$@" > "$json"
python - "$json" <<'PY'
import json, sys
from abtrack_ros.evaluation.bench import format_table
print(format_table(json.load(open(sys.argv[1]))))
PY
echo "JSON: $json"
