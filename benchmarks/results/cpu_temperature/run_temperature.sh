#!/usr/bin/env bash
# Distillation temperature under the GPU recipe's augmentation + soft distillation: the width-128 ViT of
# benchmarks/results/cpu_width, distilled at each temperature given (default 2) from the width-32 ResNet-9 teacher
# of the seed's 10,000-image subset (trained first unless OUT already holds it). Results: docs/experiments/README.md,
# "Distillation temperature". Usage, from anywhere:
#   KERAS_VIT_DATA_DIR=DIR bash benchmarks/results/cpu_temperature/run_temperature.sh SEED [OUT] [T ...]
set -euo pipefail
SEED=${1:?usage: run_temperature.sh SEED [OUT] [T ...]}
OUT=$(realpath -m "${2:-runs/cpu_temperature}")
shift $(( $# < 2 ? $# : 2 ))
TEMPERATURES=("${@:-2}")
D=${KERAS_VIT_DATA_DIR:?set KERAS_VIT_DATA_DIR to the CIFAR-10 copy}
cd "$(dirname "$0")/../../.."
mkdir -p "$OUT"
TEACHER="$OUT/teacher_s$SEED/model.keras"
if [ ! -f "$TEACHER" ]; then
  python -m keras_vit.teacher --data-dir "$D" --limit 10000 --width 32 --epochs 16 --batch-size 256 --learning-rate 0.2 \
    --seed "$SEED" --output "$OUT/teacher_s$SEED" --verbose 2 > "$OUT/teacher_s$SEED.log" 2>&1
fi
for T in "${TEMPERATURES[@]}"; do
  python -m keras_vit.train --preset vit_cifar10 --model-arg depth=6 --model-arg projection_dim=128 \
    --model-arg mlp_dim=256 --num-heads 4 --drop-path 0 --limit 10000 --epochs 30 --warmup-epochs 3 \
    --augment lee2021 --validation-freq 5 --data-dir "$D" --teacher "$TEACHER" --distillation soft \
    --distillation-weight 1.0 --temperature "$T" --seed "$SEED" --verbose 2 \
    --output "$OUT/w128_t${T}_s$SEED" > "$OUT/w128_t${T}_s$SEED.log" 2>&1
done
