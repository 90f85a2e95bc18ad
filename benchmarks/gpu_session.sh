#!/usr/bin/env bash
# One GPU-machine session, start to finish: the body of a `run` call that
# carries .whl and .devdata (made here first by ../shared/tools/device_prep.sh).
# It installs Keras from the wheels, unpacks CIFAR-10 and runs
# benchmarks/gpu_cifar10.sh with its outputs written straight under $OUT/run,
# so that whatever exists when the call ends comes back, even if the call is
# killed at its limit (all small: the float32 vit_cifar10 .keras file is 11 MB).
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".devdata"], timeout_s=590)
# SESSION_SECONDS (default 575) is the call's limit less a margin: the training
# budget shrinks if the steps before it took longer than planned, so the run
# ends with a saved, scored model instead of being killed.
# Settings of gpu_cifar10.sh (RECIPE, PRESET, AUGMENT, HEADS, BATCH, LR, EMA, ...) pass through the environment.
# MAX_FILES (default 8, the device tool's limit): see the end. INSTALL=0 and DATA=DIR skip the wheels and the unpacking (the CPU test in tests/test_benchmarks.py).
set -uo pipefail
: "${OUT:?OUT must be set (the device tool sets it)}"
SESSION_SECONDS=${SESSION_SECONDS:-575}
export DEADLINE=$(( $(date +%s) + SESSION_SECONDS ))
# Wheels, PYTHONPATH, JAX backend, CIFAR-10 unpacked to $DATA.
source benchmarks/device_env.sh
DATA=$DATA OUT=$OUT/run bash benchmarks/gpu_cifar10.sh > "$OUT/log.txt" 2>&1
status=$?
rm -rf "$OUT"/run/*/checkpoint  # the resume checkpoint of an interrupted run: not worth bringing back
rm -f "$OUT"/run/teacher*/model.keras  # a distilled run's teachers (8 to 26 MB each): their metrics.json tell their story
# The device tool brings back at most MAX_FILES files (a ninth file once cost a run its model.keras):
# past that, everything but the model, its metrics and the log goes into one archive.
MAX_FILES=${MAX_FILES:-8}
# The runs' empty lock files (keras_vit.training.pipeline.locked_output) are not worth a file.
find "$OUT" -name ".keras_vit.lock" -type f -empty -delete
if [ "$(find "$OUT" -type f | wc -l)" -gt "$MAX_FILES" ]; then
  archive=$(mktemp /tmp/extras.XXXXXX)
  (cd "$OUT" && find . -type f ! -name model.keras ! -name metrics.json ! -name log.txt -print0 \
    | tar --null -czf "$archive" --files-from - --remove-files) && mv "$archive" "$OUT/extras.tar.gz" \
    && echo "more than $MAX_FILES files: packed all but model.keras, metrics.json and log.txt into extras.tar.gz" \
      | tee -a "$OUT/log.txt"
fi
tail -n 5 "$OUT/log.txt"
exit "$status"
