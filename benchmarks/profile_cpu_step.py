"""Where the CPU time of keras_vit's train step goes (TensorFlow backend): the TensorFlow profiler's op table, by kind.

    pip install xprof     # the profiler's converter (TensorBoard's profile plugin)
    python benchmarks/profile_cpu_step.py --shape w192 [--jit-compile] [--output profile.json]

Builds the model of a `benchmarks/peers_cpu.py` shape and the trainer of `python -m keras_vit.train`
(`--augment`, default crop+flip; AdamW; label smoothing 0.1), trains `--warmup` steps, then traces `--steps`
steps with `tf.profiler` and reads the trace with xprof's `framework_op_stats` tool (`benchmarks/op_profile.py`;
TensorFlow ops, with `--jit-compile` XLA's compiled clusters). Prints each op kind's share of the traced self-time (the host's: this
is a CPU), and the kinds summed into the parts of a ViT (attention, dense layers, LayerNorm, GELU, softmax, the
optimizer update, the augmentation, ...) by the Keras layer or name scope each op sits in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from op_profile import op_table, summarise  # noqa: E402
from peers_cpu import SHAPES  # noqa: E402
from throughput import profiler_trace  # noqa: E402

from keras_vit import build_vit  # noqa: E402
from keras_vit.training.optimizers import make_optimizer  # noqa: E402
from keras_vit.training.recipes import AUGMENT_RECIPES, training_recipe  # noqa: E402
from keras_vit.training.trainer import make_trainer  # noqa: E402


def trace_steps(args, logdir):
    """Trains `--warmup` steps, then traces `--steps` steps into `logdir`; returns the traced seconds."""
    import time

    model = build_vit("vit_tiny", **SHAPES[args.shape])
    trainer = make_trainer(model, training_recipe(args.augment, None), label_smoothing=0.1, seed=0)
    trainer.compile(optimizer=make_optimizer("adamw", 1e-3), jit_compile=args.jit_compile)
    rng = np.random.default_rng(0)
    size = args.batch_size * (args.warmup + args.steps)
    images = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size).astype("int32")
    warm = slice(0, args.batch_size * args.warmup)
    trainer.fit(
        {"images": images[warm], "labels": labels[warm]}, labels[warm], batch_size=args.batch_size, verbose=0
    )
    timed = slice(args.batch_size * args.warmup, size)
    with profiler_trace(logdir):
        start = time.perf_counter()
        trainer.fit(
            {"images": images[timed], "labels": labels[timed]},
            labels[timed],
            batch_size=args.batch_size,
            verbose=0,
        )
        seconds = time.perf_counter() - start
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="w192", choices=list(SHAPES))
    parser.add_argument("--augment", default="basic", choices=sorted(AUGMENT_RECIPES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--top", type=int, default=15, help="op kinds to print")
    parser.add_argument("--output", default=None, help="write the tables as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as logdir:
        seconds = trace_steps(args, logdir)
        by_kind, by_part, idle = summarise(op_table(logdir))
    total = sum(by_kind.values())
    print(
        f"{args.shape}, batch {args.batch_size}, jit_compile={args.jit_compile}: {args.steps} steps in "
        f"{seconds:.2f} s ({args.batch_size * args.steps / seconds:.0f} images/s while traced); ops busy "
        f"{total / 1e6:.2f} s, the profiled threads idle {idle / 1e6:.2f} s"
    )
    print("\nby part of the step:")
    for part, micros in by_part.most_common():
        print(f"  {part:<16} {100 * micros / total:5.1f}%")
    print(f"\ntop {args.top} op kinds:")
    for kind, micros in by_kind.most_common(args.top):
        print(f"  {kind:<32} {100 * micros / total:5.1f}%")
    if args.output:
        result = {
            "shape": args.shape,
            "jit_compile": args.jit_compile,
            "augment": args.augment,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "seconds": seconds,
            "busy_seconds": total / 1e6,
            "idle_seconds": idle / 1e6,
            "by_part_percent": {k: round(100 * v / total, 2) for k, v in by_part.most_common()},
            "by_kind_percent": {k: round(100 * v / total, 2) for k, v in by_kind.most_common()},
        }
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
