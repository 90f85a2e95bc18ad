"""Peak memory and speed of `python -m keras_vit.train --stream` against the in-memory loader, same run.

    python benchmarks/streaming_memory.py --images 20000 --size 96 --output runs/streaming
    python benchmarks/streaming_memory.py --cifar DIR --limit 10000 --output runs/streaming_cifar

Generates an image folder of `--images` JPEG files (`--size` square, 10 classes, plus 500 test images), or takes
the CIFAR-10 image-folder copy `--cifar`, and runs one epoch of the same small training command on it twice,
interleaved `--rounds` times: with the images decoded into memory first, and with `--stream` (decoded a batch at
a time). Each run is its own process; its peak resident memory (`ru_maxrss`) is read when it ends. Writes
`streaming.json` (every run: loader, peak RSS, wall-clock, `fit` images/s from its metrics.json) and prints a
summary with the decoded size of the training images for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from keras_vit.device import machine_summary  # noqa: E402
from keras_vit.files import atomic_write_json  # noqa: E402

# Runs one command and prints its peak RSS (KiB on Linux): each measurement in a fresh process.
MEASURE = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)"
)


def generate(root, images, size, test_images=500, seed=0):
    """`root/{train,test}/class_<k>/<n>.jpg`: each class a colour plus noise, JPEG quality 90."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 255, (10, 3))
    for split, count in (("train", images), ("test", test_images)):
        for n in range(count):
            label = n % 10
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(colours[label] + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{n:06d}.jpg", quality=90)


def measure(command, cache_dir):
    started = time.perf_counter()
    env = {**os.environ, "KERAS_VIT_CACHE_DIR": str(cache_dir)}  # never the user's cache
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    line = [line for line in done.stdout.splitlines() if line.startswith("maxrss")][-1].split()
    if int(line[2]) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}")
    return int(line[1]) * 1024, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20000, help="training images to generate")
    parser.add_argument("--size", type=int, default=96, help="their side in pixels (and the model's input)")
    parser.add_argument("--cifar", default=None, help="use this CIFAR-10 image-folder copy instead")
    parser.add_argument("--limit", type=int, default=None, help="with --cifar: images of each split")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the two loaders")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--output", default="runs/streaming")
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.cifar:
        data, size = Path(args.cifar), 32
    else:
        data, size = output / "data", args.size
        if not (data / "test").is_dir():
            print(f"generating {args.images} + 500 images of {size}x{size} in {data}", flush=True)
            generate(data, args.images, size)
    base = [
        "-m", "keras_vit.train", "--preset", "vit_micro", "--image-size", str(size), "--epochs", "1",
        "--batch-size", str(args.batch_size), "--validation-split", "0", "--verbose", "0", "--data-dir", str(data),
        "--dataset", "folder",
    ]  # fmt: skip
    if args.limit:
        base += ["--limit", str(args.limit)]
    runs = []
    for round_ in range(args.rounds):
        for loader, extra in (("in memory", []), ("streamed", ["--stream"])):
            run_dir = output / f"run_{loader.replace(' ', '_')}_{round_}"
            rss, seconds = measure(
                [sys.executable, *base, *extra, "--output", str(run_dir)], output / "cache"
            )
            metrics = json.loads((run_dir / "metrics.json").read_text())
            runs.append(
                {
                    "loader": loader,
                    "round": round_,
                    "peak_rss_bytes": rss,
                    "command_seconds": round(seconds, 1),
                    "train_images": metrics["train_images"],
                    "fit_images_per_second": metrics.get("train_images_per_second"),
                }
            )
            print(runs[-1], flush=True)
    decoded = runs[0]["train_images"] * size * size * 3
    result = {"machine": machine_summary(), "image_size": size, "decoded_train_bytes": decoded, "runs": runs}
    atomic_write_json(output / "streaming.json", result)
    for loader in ("in memory", "streamed"):
        mine = [r for r in runs if r["loader"] == loader]
        print(
            f"{loader}: peak RSS {max(r['peak_rss_bytes'] for r in mine) / 2**20:.0f} MiB, "
            f"fit {np.median([r['fit_images_per_second'] or 0 for r in mine]):.0f} images/s "
            f"(training images decoded: {decoded / 2**20:.0f} MiB)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
