#!/usr/bin/env bash
# keras_vit against timm and airbench94 on the GPU machine: the body of one `run` call (benchmarks/peers_gpu.py).
# First, here (the GPU machine has no network; timm, torch and JAX are there, airbench is not, and it is
# published only as a source archive):
#   bash ../shared/tools/device_prep.sh && pip wheel -q --no-deps -w .whl airbench==0.1.8
#   run(command="bash benchmarks/peers_gpu.sh", carry=[".whl", ".devdata"], timeout_s=540)
# SESSION_SECONDS (default 480) is the call's limit less a margin: peers_gpu.py starts no side that would end
# past it. Its outputs (peers_gpu.jsonl, .md, .png, the two step profiles and log.txt: six files) go straight
# under $OUT, so that what exists when the call ends comes back. More settings pass through PEERS_FLAGS, e.g. "--budget 90".
set -uo pipefail
: "${OUT:?OUT must be set (the device tool sets it)}"
SESSION_SECONDS=${SESSION_SECONDS:-480}
START=$(date +%s)
# Wheels, PYTHONPATH, JAX backend, CIFAR-10 unpacked to $DATA.
source benchmarks/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
DEADLINE=$(( SESSION_SECONDS - ($(date +%s) - START) ))
# shellcheck disable=SC2086
python3 benchmarks/peers_gpu.py --data "$DATA" --output "$OUT" --deadline "$DEADLINE" ${PEERS_FLAGS:-} \
  > "$OUT/log.txt" 2>&1
status=$?
tail -n 25 "$OUT/log.txt"
exit "$status"
