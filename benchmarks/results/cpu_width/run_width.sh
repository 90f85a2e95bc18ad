#!/usr/bin/env bash
# Width A/B under the GPU recipe's augmentation + soft distillation (docs/experiments/README.md, CPU table, "A wider ViT"):
# the width-32 ResNet-9 teacher of the seed's 10,000-image subset, then the small patch-4 ViT at width 96 and 128
# (depth 6, heads of 32), the two sharing the cores. Usage, from anywhere:
#   KERAS_VIT_DATA_DIR=DIR bash benchmarks/results/cpu_width/run_width.sh SEED [OUT]   (2026-12-02: seeds 0 and 1)
set -euo pipefail
SEED=${1:?usage: run_width.sh SEED [OUT]}
OUT=$(realpath -m "${2:-runs/cpu_width}")
D=${KERAS_VIT_DATA_DIR:?set KERAS_VIT_DATA_DIR to the CIFAR-10 copy}
cd "$(dirname "$0")/../../.."
mkdir -p "$OUT"
python -m keras_vit.teacher --data-dir "$D" --limit 10000 --width 32 --epochs 16 --batch-size 256 --learning-rate 0.2 \
  --seed "$SEED" --output "$OUT/teacher_s$SEED" --verbose 2 > "$OUT/teacher_s$SEED.log" 2>&1
COMMON=(--preset vit_cifar10 --model-arg depth=6 --drop-path 0 --limit 10000 --epochs 30 --warmup-epochs 3
  --augment lee2021 --validation-freq 5 --data-dir "$D" --teacher "$OUT/teacher_s$SEED/model.keras"
  --distillation soft --distillation-weight 1.0 --seed "$SEED" --verbose 2)
python -m keras_vit.train "${COMMON[@]}" --model-arg projection_dim=96 --model-arg mlp_dim=192 --num-heads 3 \
  --output "$OUT/w96_s$SEED" > "$OUT/w96_s$SEED.log" 2>&1 &
narrow=$!
python -m keras_vit.train "${COMMON[@]}" --model-arg projection_dim=128 --model-arg mlp_dim=256 --num-heads 4 \
  --output "$OUT/w128_s$SEED" > "$OUT/w128_s$SEED.log" 2>&1 &
wide=$!
wait "$narrow" && wait "$wide"  # a failed run fails the script
