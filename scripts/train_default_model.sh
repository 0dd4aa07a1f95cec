#!/usr/bin/env bash
# Reproduce the package's default model (abtrack_ros/resources/default_model.pt) and the numbers
# of its model card, on a CPU (about 4 h 35 min on 2 cores, in as many runs as you like) or a
# GPU (--device cuda).
#   scripts/train_default_model.sh [RUN_DIR] [extra `abtrack train` options, e.g. --device cuda]
# Steps: synthetic data from real photographs (fixed seeds), the three training stages
# (config/models/abtrack_default_cpu.yaml), an fp16 copy into the package, then evaluation on a
# held-out set (seeds never used in training) against OpenCV CSRT, and the speed benchmark.
# Each step is skipped when its output exists and a training stage interrupted mid-way resumes
# after its last whole epoch, so the recipe can run as several shorter runs: stop it any time
# (Ctrl-C) and start the same command again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${1:-$ROOT/runs/default}"
shift || true
TRAIN_OPTIONS=("$@")
CONFIG="$ROOT/config/models/abtrack_default_cpu.yaml"
DATA="$ROOT/data"
SHIPPED="$ROOT/abtrack_ros/resources/default_model.pt"

"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
say() { echo "[default-model] $*"; }

synth() {  # OUT SPLIT SEQUENCES FRAMES SEED DIFFICULTY
    if [ -f "$1/$2/meta.json" ]; then say "data: $1/$2 exists"; return; fi
    abtrack synth --out "$1" --split "$2" --sequences "$3" --frames "$4" --seed "$5" --difficulty "$6"
}
# Training data (the config's train.datasets), validation (train.val_datasets), held-out test set.
synth "$DATA/default_train/easy"   train 300 40 1000 easy
synth "$DATA/default_train/medium" train 500 40 1001 medium
synth "$DATA/default_train/hard"   train 300 40 1002 hard
synth "$DATA/default_val"          val   10  40 8001 medium
synth "$DATA/default_heldout"      val   30  100 9001 medium

stage() {  # STAGE [INIT]
    if [ -f "$RUN/$1/model.pt" ]; then say "stage $1: $RUN/$1/model.pt exists"; return; fi
    local start=()
    if [ -f "$RUN/$1/checkpoint.pt" ]; then  # interrupted: continue after its last whole epoch
        say "stage $1: resuming from $RUN/$1/checkpoint.pt"
        start=(--resume "$RUN/$1/checkpoint.pt")
    elif [ -n "${2:-}" ]; then
        start=(--init "$2")
    fi
    abtrack train --config "$CONFIG" --stage "$1" "${start[@]}" --out "$RUN" "${TRAIN_OPTIONS[@]}"
}
stage vtp
stage prune "$RUN/vtp/model.pt"
stage bdm "$RUN/prune/model.pt"

say "shipping $RUN/bdm/model.pt as $SHIPPED (fp16 storage)"
python "$ROOT/scripts/fp16_copy.py" "$RUN/bdm/model.pt" "$SHIPPED"

say "evaluating on the held-out set (with and without bypass) and benchmarking"
abtrack eval --dataset synthetic:data/default_heldout --split val --checkpoint "$SHIPPED" \
    --peers csrt,kcf --plot-sequence none --out "$RUN/eval_heldout"
abtrack eval --dataset synthetic:data/default_heldout --split val --checkpoint "$SHIPPED" \
    --no-bdm --plot-sequence none --out "$RUN/eval_heldout_nobdm"
abtrack bench --checkpoint "$SHIPPED" --json >"$RUN/bench.json"
say "done: $RUN/eval_heldout/report.md, $RUN/eval_heldout_nobdm/report.md, $RUN/bench.json"
