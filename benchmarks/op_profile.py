"""Where a traced train step's time goes: a profiler trace's op table, by kind and by part of the ViT.

    pip install xprof     # the profiler's converter (TensorBoard's profile plugin); a venv of its own will do
    python benchmarks/op_profile.py TRACE [--top 15] [--output table.json]

TRACE is a `*.xplane.pb` (or `.xplane.pb.gz`), or a folder holding them: what `jax.profiler` or
`tf.profiler` wrote, e.g. `benchmarks/throughput.py --profile DIR` on the GPU machine (which has no xprof: the
trace comes back and is read here). xprof's `framework_op_stats` tool gives every op's self-time; the device's
ops are counted when the trace has any (a GPU's kernels), else the host's (a CPU). Each op goes to the part of
the step its name or scope says (Keras names every layer's scope: attention, the MLP's dense layers, LayerNorm,
GELU, the optimizer update, the augmentation, ...); the idle time is the device (or the profiled threads)
waiting, e.g. on the host between steps, and, with `throughput.py --profile`, at the traced `fit` call's start
and end: read the busy shares first. `benchmarks/profile_cpu_step.py` traces the CPU step (TensorFlow) and
reads it here; a JAX trace taken on a CPU has no op table (XLA:CPU reports no per-op metrics to the profiler).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

# The part of the step an op belongs to, by the first of these (lower-case) pieces found in its name or scope.
PARTS = (
    ("optimizer", ("adamw", "optimizer", "assignsubvariableop", "assignaddvariableop", "assignvariableop")),
    ("augmentation", ("augment", "random_crop", "crop_flip", "mix")),
    ("layer norm", ("norm",)),
    ("gelu", ("gelu", "erf")),
    ("softmax", ("softmax",)),
    ("attention", ("attention", "attn", "fmha", "flash")),
    ("mlp", ("mlp", "dense")),
    ("patch embedding", ("patch",)),
    ("loss", ("loss", "crossentropy", "entropy")),
)


def part_of(name, kind):
    text = f"{name} {kind}".lower()
    for part, pieces in PARTS:
        if any(piece in text for piece in pieces):
            return part
    return "other"


def xplane_files(trace, folder):
    """The `.xplane.pb` files of `trace` (a file or a folder), `.gz` ones unpacked into `folder`."""
    trace = Path(trace)
    if not trace.exists():
        raise FileNotFoundError(f"{trace}: no such file or folder")
    found = sorted(trace.rglob("*.xplane.pb*")) if trace.is_dir() else [trace]
    files = []
    for path in found:
        if path.name.endswith(".gz"):
            target = Path(folder) / path.name[: -len(".gz")]
            with gzip.open(path, "rb") as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
            path = target
        files.append(str(path))
    if not files:
        raise FileNotFoundError(f"no .xplane.pb under {trace}")
    return files


def op_table(trace):
    """xprof's framework_op_stats rows (dicts) of `trace`."""
    from xprof.convert import raw_to_tool_data

    with tempfile.TemporaryDirectory() as folder:
        data, _ = raw_to_tool_data.xspace_to_tool_data(xplane_files(trace, folder), "framework_op_stats", {})
    if not data:
        raise ValueError(f"xprof could not read {trace} (framework_op_stats gave nothing)")
    table = json.loads(data)[0]  # a Google Charts DataTable: columns, then rows of cells
    labels = [column["label"] for column in table["cols"]]
    return [dict(zip(labels, (cell["v"] if cell else None for cell in row["c"]))) for row in table["rows"]]


def where_ops_ran(rows):
    """ "Device" when the trace holds device ops (a GPU's), else "Host"."""
    return "Device" if any(row.get("Host/device") == "Device" for row in rows) else "Host"


def summarise(rows, where="Host"):
    """Self-time (microseconds) by op kind and by part of the step of the ops on `where` ("Host" or "Device"),
    and their idle time."""
    by_kind, by_part, idle = collections.Counter(), collections.Counter(), 0.0
    for row in rows:
        if row.get("Host/device", "Host") != where:
            continue
        if row["Operation Type"] == "IDLE":
            idle += float(row["Total self-time (us)"])
            continue
        self_time = float(row["Total self-time (us)"])
        by_kind[row["Operation Type"]] += self_time
        by_part[part_of(row["Operation Name"], row["Operation Type"])] += self_time
    return by_kind, by_part, idle


def shares(counter, total):
    return {key: round(100 * value / total, 2) for key, value in counter.most_common()}


def report(rows, top=15):
    """The summary as a dict: where the ops ran, busy and idle seconds, shares by part and by kind (percent of
    the busy time), and the `top` ops by self-time."""
    where = where_ops_ran(rows)
    by_kind, by_part, idle = summarise(rows, where)
    total = sum(by_kind.values())
    if not total:
        raise ValueError(f"the trace holds no {where.lower()} ops with self-time")
    ops = sorted(
        (row for row in rows if row.get("Host/device", "Host") == where and row["Operation Type"] != "IDLE"),
        key=lambda row: -float(row["Total self-time (us)"]),
    )
    return {
        "ops_on": where,
        "busy_seconds": round(total / 1e6, 6),
        "idle_seconds": round(idle / 1e6, 6),
        "by_part_percent": shares(by_part, total),
        "by_kind_percent": shares(by_kind, total),
        "top_ops": [
            {
                "name": row["Operation Name"],
                "kind": row["Operation Type"],
                "percent": round(100 * float(row["Total self-time (us)"]) / total, 2),
            }
            for row in ops[:top]
        ],
    }


def print_report(result):
    print(
        f"ops on the {result['ops_on'].lower()}: busy {result['busy_seconds']:.3f} s, idle {result['idle_seconds']:.3f} s"
        " (idle includes the traced fit call's start and end)"
    )
    print("\nby part of the step:")
    for part, percent in result["by_part_percent"].items():
        print(f"  {part:<16} {percent:5.1f}%")
    print("\nby op kind:")
    for kind, percent in list(result["by_kind_percent"].items())[: len(result["top_ops"])]:
        print(f"  {kind:<32} {percent:5.1f}%")
    print("\ntop ops:")
    for op in result["top_ops"]:
        print(f"  {op['percent']:5.1f}%  {op['kind']:<24} {op['name']}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trace", help="an .xplane.pb(.gz) file or a folder holding them")
    parser.add_argument("--top", type=int, default=15, help="ops and op kinds to list")
    parser.add_argument("--output", default=None, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    try:
        rows = op_table(args.trace)
        result = report(rows, args.top)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"op_profile.py: {error}\n")
    print_report(result)
    if args.output:
        # Atomically, without keras_vit (whose import needs Keras: xprof may live in a venv of its own).
        partial = Path(f"{args.output}.partial")
        partial.write_text(json.dumps(result, indent=2) + "\n")
        partial.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
