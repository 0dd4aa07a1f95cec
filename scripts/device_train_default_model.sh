#!/usr/bin/env bash
# The GPU variant of scripts/train_default_model.sh, as one call of the lent device machine (which
# has PyTorch, timm and OpenCV but no registry access and no ROS). It generates the training data
# there from the packed photographs, runs the three stages of config/models/abtrack_default_gpu.yaml
# on CUDA and writes the fp16 model and the logs under OUT_DIR. Evaluate it here afterwards
# (docs/training.md, "The default model on a GPU").
#   here:        scripts/pack_device_images.sh                      # writes .device_pack/
#   device call: bash scripts/device_train_default_model.sh "$OUT"   # carry: [".device_pack"]
#   CPU check:   ABTRACK_DEVICE_SEQUENCES=2 scripts/device_train_default_model.sh /tmp/out \
#                    --device cpu --epochs 1 --pairs-per-epoch 64 --batch-size 8 --num-workers 1
# Extra arguments go to `abtrack train`. Environment: ABTRACK_DEVICE_SEQUENCES, sequences per data
# chunk (100); ABTRACK_DEVICE_PACK, the image pack (.device_pack); ABTRACK_DEVICE_WORK, the folder
# that gets data/ and runs/ (the checkout; never under OUT_DIR, which comes back whole).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: device_train_default_model.sh OUT_DIR [abtrack train options]}"
shift
TRAIN_OPTIONS=("$@")
PACK="${ABTRACK_DEVICE_PACK:-$ROOT/.device_pack}"
CONFIG="$ROOT/config/models/abtrack_default_gpu.yaml"
SEQUENCES="${ABTRACK_DEVICE_SEQUENCES:-100}"
WORK="${ABTRACK_DEVICE_WORK:-$ROOT}"
RUN="runs/device"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
abtrack() { python3 -m abtrack_ros.cli "$@"; }
say() { echo "[device-train $(date +%T)] $*"; }

if [ ! -d "$PACK/photos" ]; then
    echo "no image pack at $PACK: run scripts/pack_device_images.sh here and carry .device_pack" >&2
    exit 2
fi
PACK="$(cd "$PACK" && pwd)"
mkdir -p "$OUT/logs" "$WORK"
OUT="$(cd "$OUT" && pwd)"
cd "$WORK"  # the config's dataset paths are relative: data/device_train/...

# The config's 12 training chunks (easy : medium : hard = 3 : 6 : 3) and the validation set,
# generated in parallel, one process each; seeds 2000-2011 are used by no other set.
say "generating data: 12 chunks x $SEQUENCES sequences x 40 frames"
pids=()
seed=2000
for chunk in easy:3 medium:6 hard:3; do
    difficulty="${chunk%:*}"
    for ((i = 0; i < ${chunk#*:}; i++)); do
        abtrack synth --out "data/device_train/${difficulty}_$i" --split train --sequences "$SEQUENCES" \
            --frames 40 --seed "$seed" --difficulty "$difficulty" --image-dir "$PACK" --overwrite \
            >"$OUT/logs/synth_${difficulty}_$i.log" 2>&1 &
        pids+=($!)
        seed=$((seed + 1))
    done
done
abtrack synth --out data/device_val --split val --sequences 10 --frames 40 --seed 8001 \
    --difficulty medium --image-dir "$PACK" --overwrite >"$OUT/logs/synth_val.log" 2>&1 &
pids+=($!)
for pid in "${pids[@]}"; do
    wait "$pid" || { echo "data generation failed: see $OUT/logs/synth_*.log" >&2; exit 1; }
done

say "training (config $CONFIG)"
rm -rf "$RUN"
abtrack train --config "$CONFIG" --stage all --out "$RUN" "${TRAIN_OPTIONS[@]}" >"$OUT/logs/train.log" 2>&1 \
    || { tail -n 20 "$OUT/logs/train.log" >&2; exit 1; }

say "writing $OUT/default_model_gpu.pt (fp16) and the stage logs"
python3 "$ROOT/scripts/fp16_copy.py" "$RUN/bdm/model.pt" "$OUT/default_model_gpu.pt"
for stage in vtp prune bdm; do
    mkdir -p "$OUT/run/$stage"
    cp "$RUN/$stage"/*.csv "$RUN/$stage/config.yaml" "$OUT/run/$stage/"
done
say "done"
