#!/usr/bin/env bash
# Data-parallel scaling on a multi-GPU machine: the same training command on 1, 2, 4, 8 GPUs (as many as there
# are), the global batch PER_DEVICE x GPUs, Keras' distribution API on JAX (`--distribute data`); every run's
# images/s of `fit` (its metrics.json) and its ratio to one GPU, in $OUT/scaling.jsonl. Not yet run: no
# multi-GPU machine has been available (docs/distributed.md).
#   DATA=DIR OUT=runs/scaling bash benchmarks/scaling_gpus.sh
# PRESET (vit_cifar10), PER_DEVICE (512), EPOCHS (3: the first compiles), LIMIT (images; default all).
set -euo pipefail
: "${DATA:?DATA must name a CIFAR-10 copy}"
OUT=${OUT:-runs/scaling}
PRESET=${PRESET:-vit_cifar10}
PER_DEVICE=${PER_DEVICE:-512}
EPOCHS=${EPOCHS:-3}
export KERAS_BACKEND=jax
GPUS=$(python3 -c "import jax; print(len(jax.devices('gpu')))" 2>/dev/null || echo 0)
if [ "$GPUS" -lt 1 ]; then echo "no GPU: this measures multi-GPU scaling" >&2; exit 2; fi
mkdir -p "$OUT"
for n in 1 2 4 8; do
  [ "$n" -gt "$GPUS" ] && break
  devices=$(seq -s, 0 $((n - 1)))
  run="$OUT/gpus_$n"
  CUDA_VISIBLE_DEVICES=$devices python3 -m keras_vit.train --preset "$PRESET" --distribute data \
    --batch-size $((PER_DEVICE * n)) --learning-rate "$(python3 -c "print(1e-3 * $n)")" --epochs "$EPOCHS" \
    --mixed-precision bfloat16 --validation-split 0 --data-dir "$DATA" ${LIMIT:+--limit "$LIMIT"} \
    --output "$run" --fresh --verbose 2
  python3 - "$run/metrics.json" "$n" "$OUT/scaling.jsonl" <<'PY'
import json, sys
metrics, gpus, out = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
rows = [json.loads(line) for line in open(out)] if gpus > 1 else []
row = {"gpus": gpus, "images_per_second": metrics["train_images_per_second"], "device": metrics["device"]}
row["ratio_to_one_gpu"] = row["images_per_second"] / rows[0]["images_per_second"] if rows else 1.0
print(row)
with open(out, "w" if gpus == 1 else "a") as file:
    file.write(json.dumps(row) + "\n")
PY
done
