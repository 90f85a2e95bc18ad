#!/usr/bin/env bash
# ONNX graph A/B: export/onnx.py at HEAD (old) against the working tree (new), beside timm's torch.onnx file.
set -euo pipefail
cd /work/main
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow
for shape in ${SHAPES_TO_RUN:-w64 w192}; do
  python - "$shape" <<'PY'
import sys, json
sys.path.insert(0, "benchmarks")
from peers_cpu import SHAPES
from keras_vit.models import build_vit
shape = sys.argv[1]
import numpy as np
m = build_vit("vit_tiny", **SHAPES[shape]); rng = np.random.default_rng(0)
m.set_weights([w + rng.normal(0, 0.02, w.shape).astype(w.dtype) for w in m.get_weights()])
m.save(f"/work/onnx/{shape}.keras")
json.dump(SHAPES[shape], open(f"/work/onnx/{shape}.json", "w"))
PY
  python -m export.onnx /work/onnx/$shape.keras /work/onnx/${shape}_new.onnx --eval-images 64 > /work/onnx/${shape}_new.log 2>&1 || { tail -5 /work/onnx/${shape}_new.log; exit 1; }
  (cd /work/onnx/oldtree && python -m export.onnx /work/onnx/$shape.keras /work/onnx/${shape}_old.onnx --eval-images 64 > /work/onnx/${shape}_old.log 2>&1)
  /work/peers-venv/bin/python - "$shape" <<'PY'
import sys, json, re
src = open("/work/main/benchmarks/peers_cpu.py").read()
worker = re.search(r'TIMM_WORKER = r"""(.*?)"""', src, re.S).group(1)
shape = sys.argv[1]
job = dict(task="export", shape=json.load(open(f"/work/onnx/{shape}.json")), path=f"/work/onnx/{shape}_timm.onnx", threads=2)
sys.argv = ["x", json.dumps(job)]
try:
    exec(worker)
except SystemExit:
    pass
PY
  python /work/onnx/graph_ops.py /work/onnx/${shape}_old.onnx /work/onnx/${shape}_new.onnx /work/onnx/${shape}_timm.onnx
  python benchmarks/compare_latency.py /work/onnx/${shape}_old.onnx /work/onnx/${shape}_new.onnx /work/onnx/${shape}_timm.onnx --rounds ${ROUNDS:-5} --threads 2 2>&1 | tail -12
done
