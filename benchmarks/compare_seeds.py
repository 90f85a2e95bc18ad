"""Compares training commands over several seeds: mean ± standard deviation of each arm and of its difference
from the first arm.

    python benchmarks/compare_seeds.py --seeds 3 \\
        --arm "short=python -m keras_vit.train --preset vit_micro --epochs 2 --output {out} --seed {seed}" \\
        --arm "long=python -m keras_vit.train --preset vit_micro --epochs 4 --output {out} --seed {seed}" \\
        --output runs/compare

Each command is a template: `{seed}` is the seed, `{out}` the folder whose `metrics.json` it writes, and
`{setup}` the folder of `--setup`'s command, run once per seed before the arms (e.g. a teacher that one arm
distils). `--a` / `--b` are short for `--arm a=...` / `--arm b=...`. The arms run in turn for each seed
(A, B, C, A, B, C, ...) so that a drift of a shared machine's speed hits all of them. A run whose folder already
holds the `metrics.json` of the same command is not run again: an interrupted comparison picks up where it stopped.

Prints a Markdown table per metric and writes `comparison.json` to `--output`. Choose on the validation metric
(the first of `--metric`); the test metric is for the report.
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
from keras_vit.files import atomic_write_json, atomic_write_text

COMMAND_FILE = "command.txt"


def run_once(template, seed, out, setup=None):
    """Runs one command into `out` unless `out` holds the finished run of the same command; returns the
    `metrics.json` it wrote (None for a command that writes none, such as a setup step's)."""
    out = Path(out)
    command = template.format(seed=seed, out=out, setup=setup)
    metrics_path = out / "metrics.json"
    done = out / COMMAND_FILE
    if done.is_file() and done.read_text() == command:
        return json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    result = subprocess.run(shlex.split(command), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(done, command)  # last: marks the run finished
    return json.loads(metrics_path.read_text()) if metrics_path.is_file() else None


def summarize(values):
    """`{"mean", "std", "values"}` of a list (std: the sample standard deviation; 0 for one value)."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def compare(values_by_arm):
    """Each arm's summary and, for each arm after the first, that of its per-seed difference from the first."""
    names = list(values_by_arm)
    base = values_by_arm[names[0]]
    result = {name: summarize(values) for name, values in values_by_arm.items()}
    for name in names[1:]:
        result[f"{name}_minus_{names[0]}"] = summarize([b - a for a, b in zip(base, values_by_arm[name])])
    return result


def markdown(result, metric):
    rows = [f"| arm | {metric}: mean ± std | per seed |", "| --- | ---: | --- |"]
    for name, row in result.items():
        values = ", ".join(f"{v:.4f}" for v in row["values"])
        rows.append(f"| {name.replace('_minus_', ' - ')} | {row['mean']:.4f} ± {row['std']:.4f} | {values} |")
    return "\n".join(rows)


def parse_arm(text):
    name, separator, template = text.partition("=")
    if not separator or not name.isidentifier() or not template.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=COMMAND with NAME a word, got {text!r}")
    return name, template


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--arm",
        type=parse_arm,
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="an arm's name and command template ({seed}, {out}, {setup}); two or more, the first the baseline",
    )
    parser.add_argument("--a", help="short for --arm a=COMMAND")
    parser.add_argument("--b", help="short for --arm b=COMMAND")
    parser.add_argument(
        "--setup",
        help="a command template ({seed}, {out}) run once per seed before the arms; {setup} names its {out}",
    )
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        help="a metrics.json key to compare; repeat for several (default: validation_accuracy and test_accuracy)",
    )
    parser.add_argument(
        "--output", default="runs/compare_seeds", help="folder of the runs and comparison.json"
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    arms = dict(args.arm)
    for name in ("a", "b"):
        if getattr(args, name):
            arms[name] = getattr(args, name)
    if len(arms) < 2:
        parser.error("give two arms or more (--arm NAME=COMMAND, or --a and --b)")
    metrics = args.metric or ["validation_accuracy", "test_accuracy"]
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    values = {metric: {name: [] for name in arms} for metric in metrics}
    for seed in range(args.seeds):
        setup = None
        if args.setup:
            setup = output / f"setup_seed{seed}"
            run_once(args.setup, seed, setup)
        for name, template in arms.items():
            run = run_once(template, seed, output / f"{name}_seed{seed}", setup) or {}
            for metric in metrics:
                if run.get(metric) is None:
                    print(f"error: {name} seed {seed}: metrics.json has no {metric}", file=sys.stderr)
                    return 2
                values[metric][name].append(float(run[metric]))
            scores = ", ".join(f"{metric} {values[metric][name][-1]:.4f}" for metric in metrics)
            print(f"{name} seed {seed}: {scores}", flush=True)
    result = {
        "commands": arms,
        "setup": args.setup,
        "seeds": args.seeds,
        "metrics": {metric: compare(values[metric]) for metric in metrics},
    }
    atomic_write_json(output / "comparison.json", result)
    for metric in metrics:
        print(markdown(result["metrics"][metric], metric) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
