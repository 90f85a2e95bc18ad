"""Compares two training commands over several seeds: mean ± standard deviation of each arm and of the difference.

    python benchmarks/compare_seeds.py --seeds 3 --metric validation_accuracy \\
        --a "python -m keras_vit.train --preset vit_micro --epochs 2 --output {out} --seed {seed}" \\
        --b "python -m keras_vit.train --preset vit_micro --epochs 4 --output {out} --seed {seed}" \\
        --output runs/compare

Each command is a template: `{seed}` is the seed, `{out}` the folder whose `metrics.json` it writes. The arms run
in turn for each seed (A, B, A, B, ...) so that a drift of a shared machine's speed hits both. Prints a Markdown
table and writes `comparison.json` to `--output`. Choose on the validation metric; the test metric is for the report.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from keras_vit.cli_utils import positive_int
from keras_vit.files import atomic_write_json


def run_arm(template, seed, out):
    """Runs one command of an arm; returns its `metrics.json`."""
    command = shlex.split(template.format(seed=seed, out=out))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return json.loads((Path(out) / "metrics.json").read_text())


def summarize(values):
    """`{"mean", "std", "values"}` of a list (std: the sample standard deviation; 0 for one value)."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def compare(a_values, b_values):
    """Each arm's summary and that of the per-seed difference B - A."""
    return {
        "a": summarize(a_values),
        "b": summarize(b_values),
        "b_minus_a": summarize([b - a for a, b in zip(a_values, b_values)]),
    }


def markdown(result, metric):
    rows = [f"| arm | {metric}: mean ± std | per seed |", "| --- | ---: | --- |"]
    for name in ("a", "b", "b_minus_a"):
        row = result[name]
        values = ", ".join(f"{v:.4f}" for v in row["values"])
        rows.append(f"| {name.replace('_minus_', ' - ')} | {row['mean']:.4f} ± {row['std']:.4f} | {values} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", required=True, help="arm A's command template ({seed}, {out})")
    parser.add_argument("--b", required=True, help="arm B's command template ({seed}, {out})")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--metric", default="validation_accuracy", help="the metrics.json key compared")
    parser.add_argument(
        "--output", default="runs/compare_seeds", help="folder of the runs and comparison.json"
    )
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    values = {"a": [], "b": []}
    for seed in range(args.seeds):
        for arm in ("a", "b"):
            metrics = run_arm(getattr(args, arm), seed, output / f"{arm}_seed{seed}")
            if metrics.get(args.metric) is None:
                print(f"error: {arm} seed {seed}: metrics.json has no {args.metric}", file=sys.stderr)
                return 2
            values[arm].append(float(metrics[args.metric]))
            print(f"{arm} seed {seed}: {args.metric} {values[arm][-1]:.4f}", flush=True)
    result = {
        "metric": args.metric,
        "a_command": args.a,
        "b_command": args.b,
        **compare(values["a"], values["b"]),
    }
    atomic_write_json(output / "comparison.json", result)
    print(markdown(result, args.metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
