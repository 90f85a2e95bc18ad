#!/usr/bin/env bash
# Teacher settings on the GPU machine: trains a teacher (python -m keras_vit.teacher) once per
# line of CONFIGS and appends each run's metrics to $OUT/teacher_sweep.jsonl (models are deleted: 8 to 26 MB each).
# The distilled ViT learns toward its teacher, so the teacher's accuracy in its share of the 6 minutes is
# what this measures. Body of a `run` call:
#   run(command="bash benchmarks/teacher_sweep.sh", carry=[".whl", ".devdata"], timeout_s=300)
# SESSION_SECONDS (default 285): no run starts with less than 45 s left. INSTALL=0 DATA=DIR: as gpu_session.sh.
# CONFIGS: one run per line, the teacher's flags (the data, batch 512, bf16 and the output are added).
set -uo pipefail
: "${OUT:?OUT must be set (the device tool sets it)}"
SESSION_SECONDS=${SESSION_SECONDS:-285}
DEADLINE=$(( $(date +%s) + SESSION_SECONDS ))
# Wheels, PYTHONPATH, JAX backend, CIFAR-10 unpacked to $DATA.
source benchmarks/device_env.sh
# The configurations swept so far and their results: docs/experiments/README.md, "Distillation (runs 8 and 9)
# and the teacher sweeps". The default CONFIGS: a wider ResNet-9 and a second seed of the default teacher.
CONFIGS=${CONFIGS:-"--augment cutout --epochs 40 --width 96
--augment cutout --epochs 60 --width 96
--augment cutout --epochs 60 --seed 1"}
status=0
while IFS= read -r flags; do
  [ -z "$flags" ] && continue
  if [ $(( DEADLINE - $(date +%s) )) -lt 45 ]; then echo "deadline near: skipping '$flags'"; continue; fi
  echo "== $flags"
  dir=$(mktemp -d /tmp/teacher.XXXXXX)
  # shellcheck disable=SC2086  # the flags are split on purpose
  if python3 -m keras_vit.teacher --data-dir "$DATA" --batch-size 512 --mixed-precision "${PRECISION:-bfloat16}" \
      --validation-split 0 --verbose 0 --output "$dir" ${LIMIT:+--limit $LIMIT} $flags; then
    python3 - "$dir/metrics.json" "$flags" >> "$OUT/teacher_sweep.jsonl" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
metrics["flags"] = sys.argv[2]
print(json.dumps(metrics))
PY
    tail -n 1 "$OUT/teacher_sweep.jsonl" | cut -c1-200
  else
    status=1
    echo "FAILED: $flags"
  fi
  rm -rf "$dir"
done <<< "$CONFIGS"
exit "$status"
