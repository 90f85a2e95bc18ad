#!/usr/bin/env bash
# Interleaved: TF float32 default vs ONEDNN_DEFAULT_FPMATH_MODE=BF16 vs --mixed-precision bfloat16, w192 and vit_tiny.
cd /work/main
export TF_CPP_MIN_LOG_LEVEL=2
w192="--model-arg patch_size=4 --model-arg projection_dim=192 --model-arg depth=9 --model-arg num_heads=12 --model-arg mlp_dim=384"
for round in 1 2 3; do
  for shape in w192 vit_tiny; do
    args=""; steps=20; [ $shape = w192 ] && args=$w192 && steps=6
    for side in default fpmath_bf16 mixed_bfloat16; do
      env=""; mp=none
      [ $side = fpmath_bf16 ] && env="ONEDNN_DEFAULT_FPMATH_MODE=BF16"
      [ $side = mixed_bfloat16 ] && mp=mixed_bfloat16
      rate=$(env $env python benchmarks/throughput.py --preset vit_tiny $args --batch-size 128 --steps $steps --epochs 3 --augment none --mixed-precision $mp 2>/dev/null | tail -1 | python -c "import json,sys; print(round(json.loads(sys.stdin.read())['step_images_per_second']))")
      echo "round $round $shape $side $rate"
    done
  done
done
