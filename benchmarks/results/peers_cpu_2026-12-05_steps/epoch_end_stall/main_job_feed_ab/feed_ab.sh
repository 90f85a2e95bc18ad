#!/usr/bin/env bash
# Main job with and without keras_vit.training.tf_feed.fit_input, interleaved rounds (issue 38).
# Arms: /work/ab/feed and /work/ab/nofeed hold copies of keras_vit; nofeed's pipeline passes the
# TrainingBatches to fit directly (the code before fit_input).
set -euo pipefail
export KERAS_VIT_CACHE_DIR=/work/runs/cache
for round in 1 2; do
  for arm in feed nofeed; do
    out=/work/runs/ab_out/${arm}_${round}
    (cd /work/ab/$arm && python -m keras_vit.train --preset vit_tiny --epochs 3 --validation-split 0 \
      --data-dir /work/shared/data/cifar10-jpeg --output $out --fresh --verbose 2 > $out.log 2>&1)
    python - "$arm" "$round" "$out/metrics.json" <<'PY'
import json, sys
arm, rnd, path = sys.argv[1:]
m = json.load(open(path))
keys = {k: v for k, v in m.items() if isinstance(v, (int, float)) and any(s in k for s in ("second", "accuracy", "images"))}
print(f"round {rnd} {arm}: {json.dumps(keys)}", flush=True)
PY
  done
done
