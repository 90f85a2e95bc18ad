#!/usr/bin/env bash
# Training throughput of several ViT shapes on the GPU machine: benchmarks/throughput.py once per line of
# CONFIGS, every result appended to $OUT/throughput_sweep.jsonl. Body of a `run` call:
#   run(command="bash benchmarks/throughput_sweep.sh", carry=[".whl", ".devdata"], timeout_s=240)
# Why: vit_cifar10's attention has 12 heads of 16 (Lee et al. 2021's shape); heads of 32 or 64 may suit
# cuDNN's fused kernel better, and more passes in the 6 minutes is what the run needs (the measurements behind
# this: docs/experiments/README.md, "Register tokens and cuDNN's fused attention"). Which shape trains best is
# a separate question (docs/experiments/README.md, CPU experiments).
# SESSION_SECONDS (default 225): no line starts with less than 35 s left. INSTALL=0 DATA=DIR: as gpu_session.sh.
# BASE: the flags of every line, the 6-minute run's step (recipe cifar10_gpu, one register token, its
# ResNet-9 teacher's forward pass); CONFIGS: one shape per line, flags added after BASE (a repeated flag:
# the line's value wins; --teacher-width 0 drops the teacher).
set -uo pipefail
: "${OUT:?OUT must be set (the device tool sets it)}"
SESSION_SECONDS=${SESSION_SECONDS:-225}
DEADLINE=$(( $(date +%s) + SESSION_SECONDS ))
# Wheels, PYTHONPATH, JAX backend (the data are not needed: throughput.py times random images).
DATA=${DATA:-unused} source benchmarks/device_env.sh
eval "$(python3 benchmarks/recipe_settings.py cifar10_gpu)"
BASE=${BASE:-"--preset $PRESET --num-heads $HEADS --pooling $POOLING --augment $AUGMENT --batch-size $BATCH
  --mixed-precision bfloat16 --registers 1 --teacher-width 64 --steps ${STEPS:-20} --epochs 4"}
CONFIGS=${CONFIGS:-"--num-heads 12
--num-heads 6
--num-heads 3
--num-heads 6 --pooling gap --registers 0
--num-heads 4 --model-arg projection_dim=256 --model-arg mlp_dim=512 --model-arg depth=8"}
status=0
while IFS= read -r flags; do
  [ -z "$flags" ] && continue
  if [ $(( DEADLINE - $(date +%s) )) -lt 35 ]; then echo "deadline near: skipping '$flags'"; continue; fi
  echo "== $flags"
  # shellcheck disable=SC2086  # the flags are split on purpose
  if ! python3 benchmarks/throughput.py $BASE $flags --output "$OUT/throughput_sweep.jsonl" > /dev/null; then
    status=1
    echo "FAILED: $flags"
    continue
  fi
  python3 - "$OUT/throughput_sweep.jsonl" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f'  {r["parameters"]:,} parameters, {r["sequence_length"]} tokens, {r["num_heads"]} heads: '
      f'{r["images_per_second"]:,.0f} images/s, {r["step_ms"]} ms a step, MFU {r["mfu"]}')
PY
done <<< "$CONFIGS"
exit "$status"
