"""Peak memory and speed of `python -m keras_vit.train --stream` against the in-memory loader, same run.

    python benchmarks/streaming_memory.py --images 20000 --size 96 --output runs/streaming
    python benchmarks/streaming_memory.py --cifar DIR --limit 10000 --output runs/streaming_cifar
    python benchmarks/streaming_memory.py --images 40000 --size 160 --patch-size 16 --memory-cap 1800 --output OUT

Generates an image folder of `--images` JPEG files (`--size` square, 10 classes, plus 500 test images), or takes
the CIFAR-10 image-folder copy `--cifar`, and runs one epoch of the same small training command on it twice,
interleaved `--rounds` times: with the images decoded into memory first, and with `--stream` (decoded a batch at
a time). Each run is its own process; its peak resident memory (`ru_maxrss`) is read when it ends. Writes
`streaming.json` (every run: loader, peak RSS, wall-clock, `fit` images/s from its metrics.json) and prints a
summary with the decoded size of the training images for scale. `--memory-cap MIB` runs each command in a Linux
memory cgroup of that size (no swap): a loader that needs more is killed by the kernel, and the run is recorded
as killed.
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


def memory_cgroup(limit_bytes, name):
    """A new Linux memory cgroup (v2, or v1's memory controller) of `limit_bytes` without swap; its folder.

    Raises:
        OSError: no memory controller this process may write to.
    """
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # v2
        group = root / name
        group.mkdir(exist_ok=True)
        (group / "memory.max").write_text(str(limit_bytes))
        (group / "memory.swap.max").write_text("0")
        return group
    group = root / "memory" / name
    group.mkdir(exist_ok=True)
    (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
    swap = group / "memory.memsw.limit_in_bytes"  # present where the kernel accounts swap
    if swap.exists():
        swap.write_text(str(limit_bytes))
    return group


def measure(command, cache_dir, group=None):
    """`(peak RSS bytes, seconds, exit status)` of `command` in a fresh process (inside `group`, a cgroup folder)."""
    started = time.perf_counter()
    env = {**os.environ, "KERAS_VIT_CACHE_DIR": str(cache_dir)}  # never the user's cache

    def enter_group():
        (group / "cgroup.procs").write_text(str(os.getpid()))

    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=enter_group if group else None,
    )
    seconds = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("maxrss")]
    if not lines:
        raise RuntimeError(
            f"{' '.join(command)} gave no reading:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    _, rss, status = lines[-1].split()
    if int(status) != 0 and not (group and int(status) == -9):  # SIGKILL under a cap: the kernel's OOM killer
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return int(rss) * 1024, seconds, int(status)


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
    parser.add_argument(
        "--patch-size", type=int, default=None, help="the model's patch size (default: vit_micro's)"
    )
    parser.add_argument(
        "--memory-cap",
        type=int,
        default=None,
        metavar="MIB",
        help="run each command in a memory cgroup of MIB",
    )
    parser.add_argument("--output", default="runs/streaming")
    args = parser.parse_args(argv)
    group = None
    if args.memory_cap:
        try:
            group = memory_cgroup(args.memory_cap * 2**20, f"keras_vit_streaming_{os.getpid()}")
        except OSError as error:
            print(f"error: cannot make a memory cgroup for --memory-cap: {error}", file=sys.stderr)
            return 2
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
        "--dataset", "folder", "--fresh",
    ]  # fmt: skip
    if args.limit:
        base += ["--limit", str(args.limit)]
    if args.patch_size:
        base += ["--model-arg", f"patch_size={args.patch_size}"]
    runs = []
    for round_ in range(args.rounds):
        for loader, extra in (("in memory", []), ("streamed", ["--stream"])):
            run_dir = output / f"run_{loader.replace(' ', '_')}_{round_}"
            rss, seconds, status = measure(
                [sys.executable, *base, *extra, "--output", str(run_dir)], output / "cache", group
            )
            metrics = json.loads((run_dir / "metrics.json").read_text()) if status == 0 else {}
            runs.append(
                {
                    "loader": loader,
                    "round": round_,
                    "memory_cap_bytes": args.memory_cap and args.memory_cap * 2**20,
                    "killed_at_the_cap": status != 0,
                    "peak_rss_bytes": rss,
                    "command_seconds": round(seconds, 1),
                    "train_images": metrics.get("train_images"),
                    "fit_images_per_second": metrics.get("train_images_per_second"),
                }
            )
            print(runs[-1], flush=True)
    if group:
        group.rmdir()
    images = next((r["train_images"] for r in runs if r["train_images"]), None)
    decoded = images * size * size * 3 if images else None
    result = {"machine": machine_summary(), "image_size": size, "decoded_train_bytes": decoded, "runs": runs}
    atomic_write_json(output / "streaming.json", result)
    for loader in ("in memory", "streamed"):
        mine = [r for r in runs if r["loader"] == loader]
        killed = sum(r["killed_at_the_cap"] for r in mine)
        finished = [r["fit_images_per_second"] for r in mine if not r["killed_at_the_cap"]]
        print(
            f"{loader}: peak RSS {max(r['peak_rss_bytes'] for r in mine) / 2**20:.0f} MiB, "
            + (f"fit {np.median(finished):.0f} images/s" if finished else "no run finished")
            + (
                f", {killed} of {len(mine)} killed at the {args.memory_cap} MiB cap"
                if args.memory_cap
                else ""
            )
            + (f" (training images decoded: {decoded / 2**20:.0f} MiB)" if decoded else ""),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
