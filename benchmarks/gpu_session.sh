#!/usr/bin/env bash
# One GPU-machine session, start to finish: the body of a `run` call that
# carries .whl and .devdata (made here first by ../shared/tools/device_prep.sh).
# It installs Keras from the wheels, unpacks CIFAR-10, runs
# benchmarks/gpu_cifar10.sh and copies what is worth keeping (all small: the
# float32 vit_cifar10 .keras file is 11 MB) to $OUT, which the tool brings back.
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".devdata"], timeout_s=590)
# Settings of gpu_cifar10.sh (AUGMENT, HEADS, BATCH, LR, EMA, ...) pass through the environment.
set -uo pipefail
: "${OUT:?OUT must be set (the device tool sets it)}"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 KERAS_VIT_CACHE_DIR=/tmp/kvcache
python3 .devdata/unpack_cifar10.py .devdata/cifar10_jpeg.npz /tmp/cifar10 || exit 1
RUN=/tmp/gpu_run
PRESET=${PRESET:-vit_cifar10}
DATA=/tmp/cifar10 OUT=$RUN PRESET=$PRESET bash benchmarks/gpu_cifar10.sh > "$OUT/log.txt" 2>&1
status=$?
for f in attention_probe.jsonl throughput_no_augment.jsonl throughput.jsonl $PRESET/metrics.json $PRESET/history.csv $PRESET/curves.png \
         $PRESET/labels.txt $PRESET/model.keras; do
  [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"
done
tail -n 5 "$OUT/log.txt"
exit "$status"
