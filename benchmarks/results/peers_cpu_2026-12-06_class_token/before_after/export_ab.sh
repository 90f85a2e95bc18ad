#!/bin/bash
# Exports each shape's model with the base tree (HEAD) and the working tree, plus timm's file.
set -e
OUT=${OUT:-/work/scratch/ab/files}
mkdir -p $OUT
export KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2
for shape in ${SHAPES:-w64 w192}; do
  case $shape in
    w64) ov="patch_size=4, projection_dim=64, depth=4, num_heads=4, mlp_dim=128"; js='{"patch_size":4,"projection_dim":64,"depth":4,"num_heads":4,"mlp_dim":128}';;
    w192) ov="patch_size=4, projection_dim=192, depth=9, num_heads=12, mlp_dim=384"; js='{"patch_size":4,"projection_dim":192,"depth":9,"num_heads":12,"mlp_dim":384}';;
  esac
  (cd /work/main && python -c "import numpy as np; from keras_vit.models import build_vit; model = build_vit('vit_tiny', $ov); rng = np.random.default_rng(0); model.set_weights([w + rng.normal(0, 0.02, w.shape).astype(w.dtype) for w in model.get_weights()]); model.save('$OUT/$shape.keras')")
  for tree in base main; do
    dir=/work/scratch/base; [ $tree = main ] && dir=/work/main
    (cd $dir && python -m export.onnx $OUT/$shape.keras $OUT/${shape}_${tree}.onnx --eval-images 64 > $OUT/${shape}_${tree}_onnx.log 2>&1)
    (cd $dir && python -m export.onnx $OUT/$shape.keras $OUT/${shape}_${tree}_ort.onnx --ort-attention --eval-images 64 > $OUT/${shape}_${tree}_ort.log 2>&1)
    (cd $dir && python -m export.tflite $OUT/$shape.keras $OUT/${shape}_${tree}_fp32.tflite --eval-images 64 > $OUT/${shape}_${tree}_tflite.log 2>&1)
  done
  (cd /work/main && python - <<PY
import json, subprocess, sys
sys.path.insert(0, "benchmarks")
from peers_cpu import TIMM_WORKER
job = dict(task="export", shape=json.loads('$js'), path="$OUT/${shape}_timm.onnx", threads=2)
r = subprocess.run(["/work/peers-venv/bin/python", "-c", TIMM_WORKER, json.dumps(job)], capture_output=True, text=True)
print(r.stdout[-300:], r.stderr[-500:] if r.returncode else "")
PY
)
  echo "$shape exported"
done
