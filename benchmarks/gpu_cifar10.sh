#!/usr/bin/env bash
# The 6-minute CIFAR-10 run on the GPU machine (Keras 3, JAX backend, bf16), started by gpu_session.sh:
# 0. with REGISTERS=auto, benchmarks/attention_probe.py picks the fewest register tokens that give a sequence
#    length cuDNN's fused attention takes in training;
# 1. benchmarks/throughput.py times the run's exact step (with HEADS=auto, once per HEAD_CHOICES entry: the
#    fastest trains) and, with BASELINE=1, the same model without augmentation, which prices the augmentation;
# 2. with TEACHER_EPOCHS > 0, python -m keras_vit.teacher trains the teacher(s) first; their seconds of fit come
#    off TRAIN_BUDGET (the budget is the teacher's and the ViT's fit together), and the ViT distils them;
# 3. python -m keras_vit.train --recipe RECIPE --time-budget TRAIN_BUDGET: warmup + cosine planned over the
#    epochs that fit, re-planned from the measured epochs; --time-limit (the budget + 15 s) is the backstop.
#    With DEADLINE (a Unix time, set by gpu_session.sh) the budget shrinks to what is left before it, less
#    RESERVE seconds for loading, scoring and saving, so that a run ends with its model saved.
# Usage (from the repository root, data unpacked to $DATA):
#   DATA=/tmp/cifar10 OUT=/tmp/out bash benchmarks/gpu_cifar10.sh
# Settings: the recipe's values (python -m keras_vit.recipes cifar10_gpu) unless set in the environment,
# e.g. AUGMENT=strong HEADS=3; each is described where it is read below.
# The runs and what they measured: docs/experiments/gpu_run_log.md and docs/experiments/README.md.
set -euo pipefail
DATA=${DATA:-/tmp/cifar10}
OUT=${OUT:-runs/gpu}
RECIPE=${RECIPE:-cifar10_gpu}
# PRESET, MODEL_ARGS (KEY=VALUE overrides of the preset), HEADS (auto: time the run's step with each of HEAD_CHOICES heads, train the fastest), POOLING (token, gap
# or seqpool: the last two have no class token, 64 tokens, which cuDNN
# takes without a register), AUGMENT, BATCH, LR, WD, TRAIN_BUDGET (seconds of fit; the target is 360),
# MAX_EPOCHS (a cap; --time-budget decides), SHIFTED_PATCHES and LOCALITY_ATTENTION (1/0), PATCH_DROPOUT (a rate),
# UNMASKED_FINISH (a share of the run; its epochs are slower, and the switch compiles the train step again):
# the recipe's values unless set in the environment.
recipe_settings=$(python3 benchmarks/recipe_settings.py "$RECIPE")
eval "$recipe_settings"
SHIFTED_PATCHES=${SHIFTED_PATCHES:-0}
LOCALITY_ATTENTION=${LOCALITY_ATTENTION:-0}
PATCH_DROPOUT=${PATCH_DROPOUT:-0}   # e.g. 0.5: train on half of each image's patch tokens (PatchDropout)
UNMASKED_FINISH=${UNMASKED_FINISH:-0}  # e.g. 0.15: with PATCH_DROPOUT, the last share of the run on every token
EMA=${EMA:-}                        # e.g. 0.9995; empty: no weight averaging
MIX_PROB=${MIX_PROB:-}              # e.g. 1: MixUp/CutMix on every batch; empty: the AUGMENT recipe's share (lee2021: 0.5)
STEPS_PER_EXECUTION=${STEPS_PER_EXECUTION:-1}  # train steps per compiled call (fewer host round trips at small batches)
REGISTERS=${REGISTERS:-auto}        # register tokens; auto: the fewest that cuDNN's attention takes
HEAD_CHOICES=${HEAD_CHOICES:-12 6 3}  # with HEADS=auto: the head counts timed in the run's step; the fastest trains
TEACHER_ARCH=${TEACHER_ARCH:-resnet9}  # the teacher's network: resnet9 (Page 2018) or airbench (Jordan 2024)
if [ "$TEACHER_ARCH" = airbench ]; then
  # airbench's own defaults: 16 epochs of crop+flip.
  : "${TEACHER_EPOCHS:=16}" "${TEACHER_AUGMENT:=basic}"
fi
TEACHER_EPOCHS=${TEACHER_EPOCHS:-60}  # > 0: train the teacher for this many epochs first, and distil it; 0: no teacher
TEACHER_WIDTH=${TEACHER_WIDTH:-64}   # its first stage's channels (64: the published networks)
TEACHER_AUGMENT=${TEACHER_AUGMENT:-cutout}  # its augmentation (a name of AUGMENT_RECIPES, keras_vit/training/recipes.py)
TEACHER_BUDGET=${TEACHER_BUDGET:-}   # e.g. 60: the teacher's seconds of fit, TEACHER_EPOCHS its first estimate
DISTILLATION=${DISTILLATION:-soft}   # soft (the teacher's probabilities) or hard (its top class, DeiT)
DISTILLATION_WEIGHT=${DISTILLATION_WEIGHT:-1.0}  # the teacher's share of the loss (1: the labels' is none)
TEMPERATURE=${TEMPERATURE:-1.0}      # soft distillation's softmax temperature (1: the teacher's probabilities as they are)
TEACHER_FLIP=${TEACHER_FLIP:-0}      # 1: the teacher's targets averaged over each image and its mirror
TEACHERS=${TEACHERS:-1}              # > 1: that many teachers (seeds 0, 1, ...), all their fit counted, their logits averaged
BASELINE=${BASELINE:-1}             # 1: also time the model without augmentation
PROFILE=${PROFILE:-0}               # 1: trace 10 steps of the run's step (jax.profiler) into step.xplane.pb.gz
                                    # (read it with benchmarks/op_profile.py where xprof is installed)
STEPS=${STEPS:-60}
MIN_EPOCHS=${MIN_EPOCHS:-2}
SPARE=${SPARE:-0.9}                 # plan with this share of the budget after compilation
RESERVE=${RESERVE:-60}              # seconds kept before DEADLINE for everything but fit
mkdir -p "$OUT"
START=$(date +%s)
phase() { echo "== $(( $(date +%s) - START )) s: $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

phase "attention probe"
if [ "$REGISTERS" = auto ] && [ "$LOCALITY_ATTENTION" = 1 ]; then
  # Locality Self-Attention computes its scores itself (never cuDNN's fused kernel): registers would buy nothing.
  REGISTERS=0
fi
PROBE_HEADS=$HEADS
if [ "$HEADS" = auto ]; then PROBE_HEADS=${HEAD_CHOICES%% *}; fi  # the token counts cuDNN takes do not depend on the heads
if [ "$REGISTERS" = auto ]; then
  # A crash of the probe is reported, and the run goes on without registers.
  REGISTERS=$(python3 benchmarks/attention_probe.py --preset "$PRESET" --num-heads "$PROBE_HEADS" --pooling "$POOLING" \
    --batch-size "$BATCH" --patch-dropout "$PATCH_DROPOUT" --max-registers 3 --pick-registers \
    --output "$OUT/attention_probe.jsonl" | tail -n 1) \
    || { echo "WARNING: attention_probe.py failed; training without registers" >&2; REGISTERS=0; }
fi
echo "registers=$REGISTERS"
SHAPE_FLAGS=(--pooling "$POOLING" --registers "$REGISTERS")
if [ "$SHIFTED_PATCHES" = 1 ]; then SHAPE_FLAGS+=(--shifted-patches); else SHAPE_FLAGS+=(--no-shifted-patches); fi
if [ "$LOCALITY_ATTENTION" = 1 ]; then SHAPE_FLAGS+=(--locality-attention); else SHAPE_FLAGS+=(--no-locality-attention); fi
SHAPE_FLAGS+=(--patch-dropout "$PATCH_DROPOUT")
# MODEL_ARGS: build_vit arguments over the preset's, KEY=VALUE words, e.g. "projection_dim=256 mlp_dim=512 depth=8":
# the same flags for the timed steps and the run, so the timed model trains.
for arg in ${MODEL_ARGS:-}; do SHAPE_FLAGS+=(--model-arg "$arg"); done
# Every throughput measurement goes into one file: the device tool brings back at most 8 files.
THROUGHPUT_FLAGS=(--preset "$PRESET" "${SHAPE_FLAGS[@]}" --batch-size "$BATCH" --steps "$STEPS" --epochs 4
  --mixed-precision bfloat16 --steps-per-execution "$STEPS_PER_EXECUTION" --output "$OUT/throughput.jsonl")
# The run's step: its augmentation and, with a teacher, the teacher's forward pass.
RUN_THROUGHPUT=(--augment "$AUGMENT" ${EMA:+--ema-momentum "$EMA"})
if [ "$TEACHER_EPOCHS" != 0 ]; then
  RUN_THROUGHPUT+=(--teacher-arch "$TEACHER_ARCH" --teacher-width "$TEACHER_WIDTH" --teachers "$TEACHERS")
  if [ "$TEACHER_FLIP" = 1 ]; then RUN_THROUGHPUT+=(--teacher-flip); fi
fi
# The run's step with each head count (same parameters and FLOPs; a fixed HEADS is a list of one); the fastest trains.
if [ "$HEADS" != auto ]; then HEAD_CHOICES=$HEADS; fi
phase "throughput of the run with $HEAD_CHOICES heads"
for heads in $HEAD_CHOICES; do
  profile=()
  if [ "$PROFILE" = 1 ]; then profile=(--profile "$OUT/profile/heads_$heads" --profile-steps $(( STEPS < 10 ? STEPS : 10 ))); fi
  python3 benchmarks/throughput.py "${THROUGHPUT_FLAGS[@]}" --num-heads "$heads" "${RUN_THROUGHPUT[@]}" \
    ${profile[@]+"${profile[@]}"} || echo "WARNING: no throughput with $heads heads" >&2
done
# The fastest line is the run's step: its heads train, and its speed and compilation time plan the epochs below.
HEADS=
read -r HEADS RUN_IMAGES_PER_SECOND RUN_COMPILE_SECONDS < <(python3 - "$OUT/throughput.jsonl" "$AUGMENT" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
rows = [r for r in rows if r["augment"] == sys.argv[2]]
if rows:
    r = max(rows, key=lambda r: r["images_per_second"])
    print(r["num_heads"], r["images_per_second"], r["compile_seconds_estimate"])
PY
) || true
if [ -z "$HEADS" ]; then echo "ERROR: no head count of '$HEAD_CHOICES' could be timed" >&2; exit 1; fi
echo "heads=$HEADS (the fastest of $HEAD_CHOICES)"
if [ "$PROFILE" = 1 ]; then
  # The trained head count's trace, one compressed file (the device tool brings back at most 8 files).
  trace=$(find "$OUT/profile/heads_$HEADS" -name '*.xplane.pb' 2>/dev/null | head -n 1 || true)
  if [ -n "$trace" ]; then gzip -c "$trace" > "$OUT/step.xplane.pb.gz"; else echo "WARNING: no profile trace" >&2; fi
  rm -rf "$OUT/profile"
fi
MODEL_FLAGS=(--num-heads "$HEADS" "${SHAPE_FLAGS[@]}")
if [ "$BASELINE" = 1 ]; then
  phase "throughput without augmentation"
  python3 benchmarks/throughput.py "${THROUGHPUT_FLAGS[@]}" --num-heads "$HEADS" --augment none
fi

TRAIN_FLAGS=()
if [ "$TEACHER_EPOCHS" != 0 ]; then
  TEACHER_FIT=0
  TEACHER_PATHS=()
  for (( seed = 0; seed < TEACHERS; seed++ )); do
    dir="$OUT/teacher"
    if [ "$seed" -gt 0 ]; then dir="$OUT/teacher_$seed"; fi
    phase "teacher (seed $seed)"
    # --validation-split 0: every training image, as the recipe's final run of the ViT.
    python3 -m keras_vit.teacher --data-dir "$DATA" --arch "$TEACHER_ARCH" --width "$TEACHER_WIDTH" --validation-split 0 \
      --epochs "$TEACHER_EPOCHS" --augment "$TEACHER_AUGMENT" --batch-size "$BATCH" --mixed-precision bfloat16 \
      --seed "$seed" --output "$dir" --fresh --verbose 2 ${LIMIT:+--limit $LIMIT} ${TEACHER_BUDGET:+--time-budget $TEACHER_BUDGET}
    # Every teacher's training counts: what is left of the budget is the ViT's.
    fit=$(python3 -c 'import json, math, sys; print(math.ceil(json.load(open(sys.argv[1]))["wall_clock_seconds"]))' \
      "$dir/metrics.json")
    TEACHER_FIT=$(( TEACHER_FIT + fit ))
    TEACHER_PATHS+=("$dir/model.keras")
  done
  TRAIN_BUDGET=$(( ${TRAIN_BUDGET%.*} - TEACHER_FIT ))
  echo "teacher_fit=$TEACHER_FIT s; the ViT's budget: $TRAIN_BUDGET s"
  if [ "$TRAIN_BUDGET" -lt 30 ]; then
    echo "ERROR: the teacher took the budget ($TEACHER_FIT s); fewer TEACHER_EPOCHS or a larger TRAIN_BUDGET" >&2
    exit 1
  fi
  TRAIN_FLAGS+=(--teacher "${TEACHER_PATHS[@]}" --distillation "$DISTILLATION"
    --distillation-weight "$DISTILLATION_WEIGHT" --temperature "$TEMPERATURE")
  if [ "$TEACHER_FLIP" = 1 ]; then TRAIN_FLAGS+=(--teacher-flip); fi
fi

if [ -n "${DEADLINE:-}" ]; then
  LEFT=$(( DEADLINE - $(date +%s) - RESERVE ))
  if [ "$LEFT" -lt 30 ]; then
    echo "ERROR: only $LEFT s left before the deadline for training; not starting it" >&2
    exit 1
  fi
  if [ "$LEFT" -lt "${TRAIN_BUDGET%.*}" ]; then
    echo "WARNING: the steps before training ran long; training budget cut from $TRAIN_BUDGET s to $LEFT s" >&2
    TRAIN_BUDGET=$LEFT
  fi
fi
TIME_LIMIT=$(( ${TRAIN_BUDGET%.*} + 15 ))

# The first estimate of the epochs that fit the budget: (budget - compile) / seconds per epoch,
# with a margin for validation; --time-budget re-plans from the measured epochs.
EPOCHS=$(python3 - "$RUN_IMAGES_PER_SECOND" "$RUN_COMPILE_SECONDS" "$TRAIN_BUDGET" "$MIN_EPOCHS" "$MAX_EPOCHS" "$SPARE" <<'PY'
import sys
images_per_second, compile_s, budget, spare = (float(sys.argv[i]) for i in (1, 2, 3, 6))
low, high = int(sys.argv[4]), int(sys.argv[5])
epoch_s = 50000 / images_per_second
print(max(low, min(high, int(spare * (budget - compile_s) / epoch_s))))
PY
)
WARMUP=$(( EPOCHS / 10 > 1 ? EPOCHS / 10 : 1 ))
echo "epochs=$EPOCHS warmup=$WARMUP budget=$TRAIN_BUDGET time_limit=$TIME_LIMIT"
if [ "$UNMASKED_FINISH" != 0 ]; then TRAIN_FLAGS+=(--unmasked-finish "$UNMASKED_FINISH"); fi
phase "training"
status=0
# The recipe's flags, with this run's values of the settings above (the same unless overridden).
python3 -m keras_vit.train --recipe "$RECIPE" --preset "$PRESET" "${MODEL_FLAGS[@]}" --data-dir "$DATA" \
  --epochs "$EPOCHS" --warmup-epochs "$WARMUP" --time-budget "$TRAIN_BUDGET" --time-limit "$TIME_LIMIT" \
  --max-epochs "$MAX_EPOCHS" --batch-size "$BATCH" --learning-rate "$LR" --weight-decay "$WD" \
  --augment "$AUGMENT" ${MIX_PROB:+--mix-prob "$MIX_PROB"} --mixed-precision bfloat16 ${EMA:+--ema-momentum $EMA} \
  --steps-per-execution "$STEPS_PER_EXECUTION" ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"} \
  --output "$OUT/$PRESET" --fresh --verbose 2 ${LIMIT:+--limit $LIMIT} || status=$?
phase "done (exit $status)"
exit "$status"
