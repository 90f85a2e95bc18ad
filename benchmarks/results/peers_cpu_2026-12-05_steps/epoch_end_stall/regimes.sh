#!/bin/bash
# Interleaved: default vs steps_per_execution 8 vs one inter-op thread, vit_tiny, per-epoch range.
cd /work/main
run() { # label, env..., -- extra args
  label=$1; shift
  env KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 "$@" 2>/dev/null | tail -1 | python -c "
import json,sys; r=json.loads(sys.stdin.read()); print('$label', round(r['images_per_second']), r['images_per_second_range'], flush=True)"
}
T="python benchmarks/throughput.py --preset vit_tiny --augment none --batch-size 128 --steps 16 --epochs 6"
for round in 1 2 3; do
  run default $T
  run spe8 $T --steps-per-execution 8
  run interop1 TF_NUM_INTEROP_THREADS=1 $T
done
