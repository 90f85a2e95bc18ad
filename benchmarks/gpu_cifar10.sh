#!/usr/bin/env bash
# The full CIFAR-10 run on the GPU machine (Keras 3, JAX backend, bf16):
# 0. which token counts cuDNN's fused attention takes in training (benchmarks/attention_probe.py):
#    with REGISTERS=auto the run adds the fewest register tokens that make the length one it takes
#    (65 tokens were refused on the H200; in the brief's measurement 65 tokens trained 29% slower than 64);
# 1. training throughput of the run's exact configuration (benchmarks/throughput.py), and of the
#    same model without augmentation (BASELINE=1), which prices the augmentation;
# 1b. with TEACHER_EPOCHS > 0 (the default, 60; 0 for none): python -m keras_vit.teacher trains a
#    ResNet-9 teacher (TEACHER_ARCH=airbench: airbench94's network, 16 epochs of crop+flip by default)
#    on the same data (TEACHER_EPOCHS epochs with TEACHER_AUGMENT, or with TEACHER_BUDGET
#    as many as fit in that many seconds; about 0.5 s an epoch after 21 s of compilation on the H100);
#    its seconds of fit come off TRAIN_BUDGET (the 6 minutes are the teacher's and the ViT's fit
#    together), and the ViT distils it (--teacher, DISTILLATION hard or soft, DISTILLATION_WEIGHT);
# 2. python -m keras_vit.train with the CIFAR-10 recipe and --time-budget TRAIN_BUDGET: the
#    warmup + cosine schedule is planned over the epochs that fit in that many seconds of fit
#    (compilation included), first from the throughput above, then from the epochs' measured
#    times, so that the rate has decayed when the budget ends even if fit runs slower than the
#    benchmark (run 1: 23% slower); --time-limit (the budget + 15 s) is the backstop.
# With DEADLINE (a Unix time, set by gpu_session.sh from the call's limit) the budget shrinks to what is
# left before it, less RESERVE seconds for loading the data, scoring and saving, if steps 0 and 1 took
# longer than planned: a run cut short by the device tool brings back no model.
# Usage (from the repository root, data unpacked to $DATA):
#   DATA=/tmp/cifar10 OUT=/tmp/out bash benchmarks/gpu_cifar10.sh
# Every setting below can be overridden from the environment, e.g. AUGMENT=strong HEADS=3.
#
# Runs so far (H200, 2026-11-26; see benchmarks/README.md, "GPU runs"):
#   1. AUGMENT=strong HEADS=3 BATCH=500 LR=1.5e-3, 202 epochs planned: killed at epoch ~191 by the
#      command limit (no --time-limit then), val 83.86% at epoch 190. In fit 26.5k img/s against
#      34.3k in the benchmark: Keras' TerminateOnNaN and BackupAndRestore have batch hooks, which
#      made fit wait for the device after every step (now epoch-level: keras_vit/callbacks.py).
#   2. AUGMENT=basic, 40 epochs: 73.67% (shipped until run 4).
# (H100, 2026-11-26)
#   3. The defaults below (cifar10_gpu, registers=1 from the probe): 137 epochs in 339 s of fit, 82.88%
#      (flip 83.42%); 23.7k img/s in the benchmark, 25.2k in fit. Its model.keras was the 9th file and
#      did not come back (now 8 files); its first epoch took 53 s for 25 s of compilation (the short
#      last batch compiled again: now TrainingBatches).
#   4. The same with --time-budget 230 (by hand, what was left of the device time): 88 epochs, 77.83%.
#   5. The defaults again, with MixUp/CutMix weights drawn without jax.random.beta's rejection loops
#      (keras_vit.augment.symmetric_beta) and one batch shape (TrainingBatches): 30.0k img/s in the
#      benchmark (23.7k in run 3), first epoch 24 s (53 s), 174 epochs in 340 s of fit: 85.17%
#      (flip 85.37%), shipped until run 6.
# (H100, 2026-11-27)
#   6. BATCH=512 LR=3e-3 BASELINE=0 (run 5's recipe, batch and rate doubled): 45.8k img/s in the
#      benchmark, 47.0k median epoch in fit, 284 epochs in 340 s of fit: 87.20% (flip 87.20%), the
#      shipped model; now the recipe's values.
#   7. The same with PATCH_DROPOUT=0.5 UNMASKED_FINISH=0.15 on what was left of the device time
#      (REGISTERS=1 STEPS=20 SESSION_SECONDS=380 RESERVE=45: a 294 s budget): 267 epochs, the last 17
#      on every token: 85.36% (flip 85.40%).
# (H100, 2026-11-27, second session)
#   8. REGISTERS=1 BASELINE=0 STEPS=20 TEACHER_EPOCHS=20 TEACHER_BUDGET=70: a width-64 ResNet-9 teacher (crop+flip)
#      ran 98k img/s, so its 70 s held 97 epochs; capped at 80 (62 s of fit) it ended at 12% of its peak rate
#      (TimeBudget now plans within the cap): 91.18%. The ViT distilled it (soft targets) in the 278 s left:
#      39.4k img/s in the benchmark with the teacher's forward pass, 211 epochs, 89.41% (flip 89.78%), the shipped
#      model (+2.21 over run 6).
#   Teacher sweep on the device time left (benchmarks/teacher_sweep.sh, fixed epochs, bf16, batch 512): crop+flip
#      40 epochs 91.34% (37 s of fit); cutout 24 / 40 / 60 epochs 90.67% / 92.05% / 92.35% (29 / 38 / 48 s);
#      cutout 40 with weight decay 5e-4 instead of 5e-3: 90.70%. Hence the defaults TEACHER_EPOCHS=60
#      TEACHER_AUGMENT=cutout (the best teacher measured, in less fit time than run 8's); that whole session is
#      unmeasured. The teacher's accuracy sits below 93%, so distillation alone will not reach the target.
# (No GPU, 2026-11-27, third session) Added, unmeasured on the GPU: TEACHER_ARCH=airbench (airbench94's network, a
#   third of the ResNet-9's FLOPs; 16 epochs of crop+flip: 89.63%, flip 90.38%, on the CPU in float32) and
#   TEACHERS=N (N teachers from seeds 0..N-1, their logits averaged); teacher_sweep.sh's default lines now try it.
# (No GPU, 2026-11-28) train's metrics.json now also gives test_accuracy_flip_shift_tta (--tta flip-shift: the image
#   and its mirror, each also shifted one pixel in the 4 diagonal directions, 10 predictions): run 8's model 89.38% plain,
#   89.78% flip, 90.73% flip-shift on the CPU (float32). Test-time compute, not a better ViT.
# (No GPU, 2026-11-28, later) The augmentation now computes in float32 under every dtype policy (under bf16 the
#   TensorFlow backend refused RandAugment's mixed products; JAX promoted them): its cost here is unmeasured.
#   TEACHER_FLIP=1 came out level on the CPU (+0.45 / -0.04 points on two seeds), so it stays off.
# (H100, 2026-11-28, second session)
#   9. REGISTERS=1 BASELINE=0 STEPS=20 SESSION_SECONDS=565 (the defaults: a 60-epoch cutout ResNet-9 teacher): teacher
#      92.18% (flip 92.77%) in 48 s of fit; the ViT 231 epochs in 292 s: 90.29% (flip 90.35%, flip-shift 91.37%), the
#      shipped model (+0.88 over run 8). Throughput with the teacher and float32 augmentation 41.6k img/s (run 8: 39.4k
#      in bf16): the float32 augmentation costs nothing measurable.
#   Teacher sweep after it: airbench width 64 / 96, 16 to 40 epochs, crop+flip or cutout, 89.61% to 90.82% in 15 to 22 s
#      of fit; ResNet-9 cutout 80 epochs 92.40% (57 s). The ViT with an airbench teacher: 42.2k / 41.4k img/s (width
#      64 / 96). The ResNet-9 of 60 cutout epochs stays the default; the ViT lands 1.8-1.9 points under its teacher.
# (No GPU, 2026-11-28, third session, and 2026-11-29) HEADS=auto with HEAD_CHOICES (default "12 6 3"): the run's
#   step, teacher included, timed with each head count (the same parameters and FLOPs), the fastest trained;
#   throughput_sweep.sh times those and two other shapes alone. Unmeasured on the GPU.
# (No GPU, 2026-12-02) MODEL_ARGS: build_vit overrides of the preset for the timed steps and the run; on the CPU
#   width 128 beat width 96 by +0.88 / +0.77 points at equal epochs under this recipe and a teacher (two seeds), so
#   MODEL_ARGS="projection_dim=256 mlp_dim=512 depth=8" HEAD_CHOICES="8 4" is a next run if its step is fast. Unmeasured on the GPU.
# Defaults now: the recipe `cifar10_gpu` (keras_vit/recipes.py): Lee et al. 2021's recipe for ViTs on
# small data sets (12 heads of 16, half the batches mixed, erasing; RandAugment for their AutoAugment)
# at batch 512 (theirs: 128) with as many passes over the data as fit the budget (theirs: 300), distilling
# a 60-epoch cutout teacher trained first in the same budget.
set -euo pipefail
DATA=${DATA:-/tmp/cifar10}
OUT=${OUT:-runs/gpu}
RECIPE=${RECIPE:-cifar10_gpu}
# PRESET, MODEL_ARGS (KEY=VALUE overrides of the preset), HEADS (auto: time the run's step with each of HEAD_CHOICES heads, train the fastest), POOLING (token, gap
# or seqpool: the last two have no class token, 64 tokens, which cuDNN
# takes without a register), AUGMENT, BATCH, LR, WD, TRAIN_BUDGET (seconds of fit; the target is 360),
# MAX_EPOCHS (a cap; --time-budget decides), SHIFTED_PATCHES and LOCALITY_ATTENTION (1/0), PATCH_DROPOUT (a rate),
# UNMASKED_FINISH (a share of the run; its epochs are slower, and the switch compiles the train step again:
# the first epoch, compilation included, took 16 to 25 s on the H100): the recipe's
# values unless set in the environment.
recipe_settings=$(python3 -m keras_vit.recipes "$RECIPE" --shell)
eval "$recipe_settings"
SHIFTED_PATCHES=${SHIFTED_PATCHES:-0}
LOCALITY_ATTENTION=${LOCALITY_ATTENTION:-0}
PATCH_DROPOUT=${PATCH_DROPOUT:-0}   # e.g. 0.5: train on half of each image's patch tokens (PatchDropout)
UNMASKED_FINISH=${UNMASKED_FINISH:-0}  # e.g. 0.15: with PATCH_DROPOUT, the last share of the run on every token
EMA=${EMA:-}                        # e.g. 0.9995; empty: no weight averaging
MIX_PROB=${MIX_PROB:-}              # e.g. 1: MixUp/CutMix on every batch; empty: the AUGMENT recipe's share (lee2021: 0.5)
                                    # (every batch with a teacher, CPU: -2.56 / -1.51 points at 30 / 50 epochs; unmeasured on the GPU)
STEPS_PER_EXECUTION=${STEPS_PER_EXECUTION:-1}  # train steps per compiled call (fewer host round trips at small batches)
REGISTERS=${REGISTERS:-auto}        # register tokens; auto: the fewest that cuDNN's attention takes
HEAD_CHOICES=${HEAD_CHOICES:-12 6 3}  # with HEADS=auto: the head counts timed in the run's step; the fastest trains
TEACHER_ARCH=${TEACHER_ARCH:-resnet9}  # the teacher's network: resnet9 (Page) or airbench (Jordan; unmeasured on the GPU)
if [ "$TEACHER_ARCH" = airbench ]; then
  # 16 epochs of crop+flip: what the CPU measured (benchmarks/README.md); an epoch of it costs a fraction of a second on a GPU.
  : "${TEACHER_EPOCHS:=16}" "${TEACHER_AUGMENT:=basic}"
fi
TEACHER_EPOCHS=${TEACHER_EPOCHS:-60}  # > 0: train the teacher for this many epochs first, and distil it; 0: no teacher
TEACHER_WIDTH=${TEACHER_WIDTH:-64}   # its first stage's channels (64: the published networks)
TEACHER_AUGMENT=${TEACHER_AUGMENT:-cutout}  # its augmentation (keras_vit.augment.AUGMENT_RECIPES; run 8: basic)
TEACHER_BUDGET=${TEACHER_BUDGET:-}   # e.g. 60: the teacher's seconds of fit, TEACHER_EPOCHS its first estimate
DISTILLATION=${DISTILLATION:-soft}   # soft (the teacher's probabilities) or hard (its top class, DeiT)
DISTILLATION_WEIGHT=${DISTILLATION_WEIGHT:-1.0}  # the teacher's share of the loss (1: the labels' is none)
TEMPERATURE=${TEMPERATURE:-1.0}      # soft distillation's softmax temperature (1: the teacher's probabilities as they are)
TEACHER_FLIP=${TEACHER_FLIP:-0}      # 1: the teacher's targets averaged over each image and its mirror (unmeasured on the GPU)
TEACHERS=${TEACHERS:-1}              # > 1: that many teachers (seeds 0, 1, ...), all their fit counted, their logits averaged
BASELINE=${BASELINE:-1}             # 1: also time the model without augmentation
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
# MODEL_ARGS: build_vit arguments over the preset's, KEY=VALUE words, e.g. "projection_dim=256 mlp_dim=512 depth=8"
# (the brief's 68.8k-images/s shape): the same flags for the timed steps and the run, so the timed model trains.
for arg in ${MODEL_ARGS:-}; do SHAPE_FLAGS+=(--model-arg "$arg"); done
# Every throughput measurement goes into one file: the device tool brings back at most 8 files, and
# run 3 lost its model.keras to a ninth.
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
  python3 benchmarks/throughput.py "${THROUGHPUT_FLAGS[@]}" --num-heads "$heads" "${RUN_THROUGHPUT[@]}" \
    || echo "WARNING: no throughput with $heads heads" >&2
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
    python3 -m keras_vit.teacher --data-dir "$DATA" --arch "$TEACHER_ARCH" --width "$TEACHER_WIDTH" \
      --epochs "$TEACHER_EPOCHS" --augment "$TEACHER_AUGMENT" --batch-size "$BATCH" --mixed-precision bfloat16 \
      --seed "$seed" --output "$dir" --verbose 2 ${LIMIT:+--limit $LIMIT} ${TEACHER_BUDGET:+--time-budget $TEACHER_BUDGET}
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
  --output "$OUT/$PRESET" --verbose 2 ${LIMIT:+--limit $LIMIT} || status=$?
phase "done (exit $status)"
exit "$status"
