"""Which token counts get cuDNN's fused attention in training, and what it saves (JAX).

    KERAS_BACKEND=jax python benchmarks/attention_probe.py --preset vit_cifar10 --num-heads 12 \
        --batch-size 256 --max-registers 3 --output probe.jsonl

Keras' JAX backend first tries `jax.nn.dot_product_attention(implementation="cudnn")`
and, when cuDNN refuses the shapes, logs the error and uses XLA's attention instead,
which is slower; some sequence lengths (in training) are refused (what was measured:
docs/experiments/README.md, "Register tokens and cuDNN's fused attention").

For the model's token count T (patches + class token) and T+1 ... T+max_registers
(register tokens, `--registers` of `python -m keras_vit.train`), this script
compiles attention's forward and backward pass with the model's heads, head
width and batch, in bfloat16, once per implementation; it reports which ones
compile, their time per call and how far apart their outputs are. With
`--pick-registers` it prints, as its last line, the fewest registers that give a
length cuDNN takes (0 when T itself is taken, when none is, or with no cuDNN at
all: CPU, another backend), which `benchmarks/gpu_cifar10.sh` uses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMPLEMENTATIONS = ("cudnn", "xla")


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def probe_length(length, batch_size, num_heads, head_dim, calls=20, dtype="bfloat16"):
    """Forward + backward attention at one sequence length under each implementation.

    Returns:
        dict with `sequence_length` and, per implementation, `accepted` and
        either `ms_per_call` or `error`; `max_abs_difference` between the
        two outputs when both compile.
    """
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), 3)
    shape = (batch_size, length, num_heads, head_dim)
    q, k, v = (jax.random.normal(key, shape, dtype=dtype) for key in keys)
    row = {"sequence_length": length}
    outputs = {}
    for implementation in IMPLEMENTATIONS:

        def loss(q, k, v, implementation=implementation):
            out = jax.nn.dot_product_attention(q, k, v, implementation=implementation)
            return jnp.sum(out.astype(jnp.float32) ** 2), out

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
        try:
            (_, out), grads = jax.block_until_ready(step(q, k, v))
        except Exception as error:  # cuDNN refuses at trace or compile time; report, don't hide
            row[implementation] = {"accepted": False, "error": _first_line(error)}
            continue
        outputs[implementation] = out
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(calls):  # queued back to back; one wait at the end
                result = step(q, k, v)
            jax.block_until_ready(result)
            times.append((time.perf_counter() - start) / calls)
        row[implementation] = {"accepted": True, "ms_per_call": round(1000 * statistics.median(times), 4)}
    if len(outputs) == 2:
        difference = jnp.max(
            jnp.abs(outputs["cudnn"].astype(jnp.float32) - outputs["xla"].astype(jnp.float32))
        )
        row["max_abs_difference"] = float(difference)
    return row


def pick_registers(rows, base_length):
    """The fewest registers r such that cuDNN took length `base_length + r` (0 if none did)."""
    for row in sorted(rows, key=lambda r: r["sequence_length"]):
        if row.get("cudnn", {}).get("accepted"):
            return row["sequence_length"] - base_length
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="vit_cifar10")
    parser.add_argument("--num-heads", type=int, default=None, help="override the preset's heads")
    # SequencePooling.MODES, spelled out: importing keras_vit here would load Keras before KERAS_BACKEND is set.
    parser.add_argument(
        "--pooling",
        default=None,
        choices=["token", "gap", "seqpool"],
        help="override the preset's head (gap and seqpool: no class token)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-registers", type=int, default=3, help="also try this many extra tokens")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per repetition")
    parser.add_argument("--output", default=None, help="append one JSON line per length to this file")
    parser.add_argument(
        "--patch-dropout",
        type=float,
        default=0.0,
        help="the model's PatchDropout rate: training then sees fewer tokens, and those are probed",
    )
    parser.add_argument(
        "--pick-registers",
        action="store_true",
        help="print the fewest registers cuDNN takes as the last line",
    )
    args = parser.parse_args(argv)
    if args.max_registers < 0 or args.batch_size < 1 or args.calls < 1:
        parser.error("--max-registers must be >= 0, --batch-size and --calls >= 1")

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from keras_vit import build_vit
    from keras_vit.model_flags import model_overrides
    from keras_vit.models.flops import training_sequence_length

    model = build_vit(
        args.preset,
        **model_overrides(
            num_heads=args.num_heads, pooling=args.pooling, num_registers=0, patch_dropout=args.patch_dropout
        ),
    )
    block = model.get_layer("block_0")
    # The token count of a training step (PatchDropout shortens it), which is what cuDNN must take.
    base_length, num_heads = training_sequence_length(model), block.num_heads
    head_dim = block.projection_dim // num_heads
    if keras.backend.backend() != "jax":
        print(
            f"attention_probe: the Keras backend is {keras.backend.backend()!r}, not jax; "
            "cuDNN's fused attention is a JAX path: nothing to probe.",
            file=sys.stderr,
        )
        if args.pick_registers:
            print(0)
        return 0

    import jax

    device = str(jax.devices()[0].device_kind)
    rows = []
    for extra in range(args.max_registers + 1):
        row = probe_length(base_length + extra, args.batch_size, num_heads, head_dim, args.calls)
        row.update(
            registers=extra,
            batch_size=args.batch_size,
            num_heads=num_heads,
            head_dim=head_dim,
            device=device,
            jax=jax.__version__,
        )
        rows.append(row)
        print(json.dumps(row), file=sys.stderr if args.pick_registers else sys.stdout, flush=True)
        if args.output:
            with open(args.output, "a") as f:
                f.write(json.dumps(row) + "\n")
    if args.pick_registers:
        print(pick_registers(rows, base_length))
    return 0


if __name__ == "__main__":
    sys.exit(main())
