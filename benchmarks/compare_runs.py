"""Validation accuracy of several training runs on one chart (an A/B at a glance).

    python benchmarks/compare_runs.py "plain seed 0=runs/a/history.csv" \
        "distilled seed 0=runs/b/history.csv" --output ab.png

Each argument is `LABEL=HISTORY.csv` (the `history.csv` that `python -m
keras_vit.train` writes); runs whose labels share the text before " seed" share
a colour. The legend gives each run's last validation accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_vit.plots import plot_validation_comparison, read_history_csv  # noqa: E402


def labelled_history(text):
    """argparse type: `LABEL=PATH` -> `(label, path)`."""
    label, sep, path = text.rpartition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=HISTORY.csv, got {text!r}")
    return label, path


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=labelled_history, metavar="LABEL=HISTORY.csv")
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        histories = {label: read_history_csv(path) for label, path in args.runs}
        path = plot_validation_comparison(histories, args.output, title=args.title)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
