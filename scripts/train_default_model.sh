#!/usr/bin/env bash
# Reproduce the package's default model (abtrack_ros/resources/default_model.pt) and the numbers
# of its model card, on a CPU (about 5 h 30 min on 2 cores with --amp-cpu, in as many runs as you
# like) or a GPU (--device cuda).
#   scripts/train_default_model.sh [RUN_DIR] [extra `abtrack train` options, e.g. --amp-cpu or --device cuda]
# Steps: synthetic data from real photographs (fixed seeds), stage 1 and pruning
# (config/models/abtrack_default_cpu_convstem_crowd.yaml), stage 3 (..._bdm.yaml: quality head,
# BDMs reading the search tokens), the confidence fitted for these weights, an fp16 copy into the
# package, then evaluation on held-out sets (seeds never used in training or choices) against
# OpenCV CSRT and KCF, and the speed benchmark.
# Each step is skipped when its output exists and a training stage interrupted mid-way resumes
# after its last whole epoch, so the recipe can run as several shorter runs: stop it any time
# (Ctrl-C) and start the same command again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${1:-$ROOT/runs/default}"
shift || true
TRAIN_OPTIONS=("$@")
CONFIG="$ROOT/config/models/abtrack_default_cpu_convstem_crowd.yaml"
CONFIG_BDM="$ROOT/config/models/abtrack_default_cpu_convstem_crowd_bdm.yaml"
# Tracker settings chosen on the development sets (docs/training.md), stored with the weights.
TRACKER_SETTINGS="$ROOT/config/models/abtrack_default_cpu_convstem_crowd_tracker.yaml"
DATA="$ROOT/data"
SHIPPED="$ROOT/abtrack_ros/resources/default_model.pt"

"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
say() { echo "[default-model] $*"; }

synth() {  # OUT SPLIT SEQUENCES FRAMES SEED DIFFICULTY [more `abtrack synth` options]
    if [ -f "$1/$2/meta.json" ]; then say "data: $1/$2 exists"; return; fi
    abtrack synth --out "$1" --split "$2" --sequences "$3" --frames "$4" --seed "$5" --difficulty "$6" "${@:7}"
}
# Training data (the configs' train.datasets), validation (train.val_datasets), the confidence's
# fitting set, held-out test sets.
synth "$DATA/default_train/easy"   train 300 40 1000 easy
synth "$DATA/default_train/medium" train 500 40 1001 medium
synth "$DATA/default_train/hard"   train 300 40 1002 hard
synth "$DATA/default_train/crowd"  train 300 40 1003 crowd
synth "$DATA/default_train/small"  train 300 40 1004 small --size 640x360
synth "$DATA/default_val"          val   10  40 8001 medium
synth "$DATA/default_val_crowd"    val   10  40 8004 crowd
synth "$DATA/confidence_fit"       val   40  100 8203 hard --events
synth "$DATA/release5_heldout_medium" val 20 100 9301 medium
synth "$DATA/release5_heldout_hard"   val 10 100 9302 hard
synth "$DATA/release5_heldout_events" val 20 100 9303 hard --events
# The medium and hard held-out sequences as one GOT-10k-layout set (links).
MIXED="$DATA/release5_heldout_mixed/val"
if [ ! -f "$MIXED/list.txt" ]; then
    mkdir -p "$MIXED"
    for part in medium hard; do
        for seq in "$DATA/release5_heldout_$part/val"/synth_val_*; do
            ln -sfn "$(realpath "$seq")" "$MIXED/${part:0:1}_$(basename "$seq")"
        done
    done
    (cd "$MIXED" && ls -d ?_synth_val_* > list.txt)
fi

stage() {  # CONFIG STAGE [INIT]
    if [ -f "$RUN/$2/model.pt" ]; then say "stage $2: $RUN/$2/model.pt exists"; return; fi
    local start=()
    if [ -f "$RUN/$2/checkpoint.pt" ]; then  # interrupted: continue after its last whole epoch
        say "stage $2: resuming from $RUN/$2/checkpoint.pt"
        start=(--resume "$RUN/$2/checkpoint.pt")
    elif [ -n "${3:-}" ]; then
        start=(--init "$3")
    fi
    abtrack train --config "$1" --stage "$2" "${start[@]}" --out "$RUN" "${TRAIN_OPTIONS[@]}"
}
stage "$CONFIG" vtp
stage "$CONFIG" prune "$RUN/vtp/model.pt"
stage "$CONFIG_BDM" bdm "$RUN/prune/model.pt"

# The confidence's weights belong to the weights they were fitted on (docs/tracking.md).
if [ ! -f "$RUN/confidence_fit.txt" ]; then
    say "fitting the confidence on $DATA/confidence_fit"
    python benchmarks/fit_confidence.py --dataset "synthetic:$DATA/confidence_fit" --split val \
        --cues peak_logit,sharpness,jump,appearance,quality_logit --checkpoint "$RUN/bdm/model.pt" \
        >"$RUN/confidence_fit.txt"
fi
sed -n '/^tracker:/,$p' "$RUN/confidence_fit.txt" >"$RUN/confidence.yaml"
python - "$RUN/confidence.yaml" "$TRACKER_SETTINGS" "$RUN/tracker.yaml" <<'PY'
import sys, yaml
fitted, chosen = (yaml.safe_load(open(path))["tracker"] for path in sys.argv[1:3])
yaml.safe_dump({"tracker": {**chosen, **fitted}}, open(sys.argv[3], "w"), sort_keys=False)
PY

say "shipping $RUN/bdm/model.pt as $SHIPPED (fp16 storage, with $RUN/tracker.yaml)"
python "$ROOT/scripts/fp16_copy.py" "$RUN/bdm/model.pt" "$SHIPPED" --tracker "$RUN/tracker.yaml"

say "evaluating on the held-out sets (with and without bypass; with events) and benchmarking"
HELDOUT="got10k:$DATA/release5_heldout_mixed"
EVENTS="synthetic:$DATA/release5_heldout_events"
abtrack eval --dataset "$HELDOUT" --split val --checkpoint "$SHIPPED" --threads 2 \
    --peers csrt,kcf --plot-sequence none --out "$RUN/eval_heldout"
abtrack eval --dataset "$HELDOUT" --split val --checkpoint "$SHIPPED" --threads 2 \
    --no-bdm --plot-sequence none --out "$RUN/eval_heldout_nobdm"
abtrack eval --dataset "$EVENTS" --split val --checkpoint "$SHIPPED" --threads 2 \
    --no-difficulty-pass --plot-sequence none --out "$RUN/eval_events"
abtrack eval --dataset "$EVENTS" --split val --checkpoint "$SHIPPED" --threads 2 \
    --no-difficulty-pass --plot-sequence none --tracker-set lost_score=0 --tracker-set found_score=0 \
    --out "$RUN/eval_events_plain"
abtrack bench --checkpoint "$SHIPPED" --threads 2 --json >"$RUN/bench.json"
say "done: $RUN/eval_heldout*/report.md, $RUN/eval_events*/report.md, $RUN/bench.json"
