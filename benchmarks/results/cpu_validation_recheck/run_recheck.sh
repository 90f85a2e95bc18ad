#!/usr/bin/env bash
# Re-checks, with a validation split and three seeds, the two CPU choices that shaped the GPU recipe:
# soft distillation from a ResNet-9 teacher, and batch 256 with the learning rate scaled linearly (2e-3, 42 epochs)
# against batch 128 (1e-3, 30 epochs). The small ViT of docs/experiments' `p4_*` rows (width 96, depth 6, 3 heads,
# MLP 192) with PATCH x PATCH patches (8 by default: 17 tokens, about a quarter of the 4x4 patches' cost, so that
# three seeds fit in an hour on 2 shared cores), on LIMIT training images of which VALIDATION are held out by the
# seed; each seed's teacher trains on exactly that seed's training images. Choices read the validation accuracy;
# the test accuracy is reported once per run.
#
#   KERAS_VIT_DATA_DIR=DIR bash benchmarks/results/cpu_validation_recheck/run_recheck.sh [OUTPUT]
#
# Rerunning continues an interrupted comparison (benchmarks/compare_seeds.py keeps finished runs).
set -euo pipefail
DATA=${KERAS_VIT_DATA_DIR:?set KERAS_VIT_DATA_DIR to a CIFAR-10 copy}
OUT=${1:-runs/cpu_validation_recheck}
LIMIT=${LIMIT:-5000}
VALIDATION=${VALIDATION:-0.2}
SEEDS=${SEEDS:-3}
PATCH=${PATCH:-8}
VIT="python -m keras_vit.train --preset vit_cifar10 --model-arg projection_dim=96 --model-arg depth=6 \
--model-arg mlp_dim=192 --model-arg patch_size=$PATCH --num-heads 3 --drop-path 0 --augment basic --data-dir $DATA --limit $LIMIT \
--validation-split $VALIDATION --seed {seed} --output {out} --verbose 2"
PLAIN="$VIT --epochs 30 --warmup-epochs 3 --validation-freq 5"
python benchmarks/compare_seeds.py --seeds "$SEEDS" --output "$OUT" \
  --setup "python -m keras_vit.teacher --data-dir $DATA --limit $LIMIT --validation-split $VALIDATION \
--seed {seed} --width 32 --epochs 16 --batch-size 256 --learning-rate 0.2 --output {out} --verbose 2" \
  --arm "plain=$PLAIN" \
  --arm "distilled=$PLAIN --teacher {setup}/model.keras --distillation soft --distillation-weight 1.0" \
  --arm "batch256=$VIT --batch-size 256 --learning-rate 2e-3 --epochs 42 --warmup-epochs 4.2 --validation-freq 6"
