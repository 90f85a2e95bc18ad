#!/usr/bin/env bash
# Width A/B under the GPU recipe's augmentation + soft distillation, small patch-4 ViT, 10k images, seed 0.
set -euo pipefail
cd /work/main
D=/work/shared/data/cifar10-jpeg
python -m keras_vit.teacher --data-dir $D --limit 10000 --width 32 --epochs 16 --batch-size 256 --learning-rate 0.2 --output /work/exp/teacher_s0 --verbose 2 > /work/exp/teacher_s0.log 2>&1
COMMON="--preset vit_cifar10 --model-arg depth=6 --drop-path 0 --limit 10000 --epochs 30 --warmup-epochs 3 --augment lee2021 --validation-freq 5 --data-dir $D --teacher /work/exp/teacher_s0/model.keras --distillation soft --distillation-weight 1.0 --seed 0 --verbose 2"
python -m keras_vit.train $COMMON --model-arg projection_dim=96 --model-arg mlp_dim=192 --num-heads 3 --output /work/exp/w96_s0 > /work/exp/w96_s0.log 2>&1 &
python -m keras_vit.train $COMMON --model-arg projection_dim=128 --model-arg mlp_dim=256 --num-heads 4 --output /work/exp/w128_s0 > /work/exp/w128_s0.log 2>&1 &
wait
echo done
