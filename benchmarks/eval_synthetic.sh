#!/usr/bin/env bash
# One-pass evaluation of ABTrack and the OpenCV peers on a generated synthetic validation set.
# Usage: benchmarks/eval_synthetic.sh [CHECKPOINT] ; writes benchmarks/out/eval_synthetic/
set -euo pipefail
cd "$(dirname "$0")/.."
data=benchmarks/out/synthetic_val
out=benchmarks/out/eval_synthetic
abtrack() { python -m abtrack_ros.cli "$@"; }
abtrack synth --out "$data" --split val --sequences 10 --frames 100 --seed 7 --difficulty medium --overwrite
checkpoint_args=()
if [[ $# -ge 1 ]]; then checkpoint_args=(--checkpoint "$1"); fi
abtrack eval --dataset "synthetic:$data/val" "${checkpoint_args[@]}" --peers csrt,kcf,mil --out "$out"
echo "report: $out/report.md"
