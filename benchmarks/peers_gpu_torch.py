"""The PyTorch side of benchmarks/peers_gpu.py: timm's ViT and airbench94 on the arrays peers_gpu.py wrote.

    python benchmarks/peers_gpu_torch.py '{"task": "timm", ...}'

Needs torch, numpy and, per task, timm or airbench; no keras_vit, no TensorFlow (peers_gpu.py may run it with
another Python, `--torch-python`). Prints one JSON line per measurement, and for a task it cannot run here one
line with `"skipped"` and the reason (no timm, no airbench, no CUDA GPU), so that the caller reports it.

- **timm**: a `VisionTransformer` of the job's shape (timm's own initialisation) trained on the data already on
  the device: crop with reflect padding and flip done on the device per image (keras_vit's `RandomCropFlip`),
  AdamW (fused on CUDA; Keras' epsilon) with timm's weight-decay groups (no decay for biases, norms, tokens and
  position embeddings, as keras_vit's `make_optimizer`), the global gradient norm clipped as keras_vit's
  `--clipnorm`, label smoothing, warmup + cosine planned over the epochs that fit in `budget` seconds and
  re-planned after every epoch from the measured epochs (as `python -m keras_vit.train --time-budget`),
  `torch.compile` and bfloat16 autocast on CUDA. The clock runs from the first step (compilation included) to
  the end of the last epoch; then single-view test accuracy of the float32 model (as keras_vit scores).
  images/s is the median epoch after the first: none when only the first (compiling) epoch ran. With
  `profile_steps`, that many more steps of the same compiled step then run under `torch.profiler`: the table of
  its kernels by self time goes to `profile_table`, a `profile` line gives the step's time by kind of kernel.
- **airbench**: airbench94's `train94` as published, reading `train.pt` / `test.pt` written from the arrays,
  `runs` times after its warmup, on one training loader; each run's seconds (train94 timed around the call: its
  training, without the evaluation, which `verbose=False` leaves to the caller) and its test accuracy with
  airbench's TTA (mirror + translate, its published figure) and single view.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# CIFAR-10's per-channel mean and standard deviation (0..1 units), as keras_vit's CIFAR10_MEAN / CIFAR10_STD.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def emit(row):
    print(json.dumps(row), flush=True)


def load_arrays(folder):
    """The uint8 NHWC images and int labels peers_gpu.py saved (`{train,test}_{x,y}.npy`)."""
    folder = Path(folder)
    return {name: np.load(folder / f"{name}.npy") for name in ("train_x", "train_y", "test_x", "test_y")}


def crop_flip(images, padding, generator):
    """Each image of a uint8 NCHW batch cropped from its reflect-padded copy at a uniform offset in
    [0, 2 * padding] and flipped left-right with probability 1/2, all on the batch's device."""
    import torch
    import torch.nn.functional as F

    n, _, height, width = images.shape
    padded = F.pad(images.float(), (padding,) * 4, mode="reflect")
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), device=images.device, generator=generator)
    rows = offsets[:, 0, None] + torch.arange(height, device=images.device)
    columns = offsets[:, 1, None] + torch.arange(width, device=images.device)
    flip = torch.rand(n, device=images.device, generator=generator) < 0.5
    columns = torch.where(flip[:, None], columns.flip(1), columns)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], columns[:, None, None, :]]


def learning_rate(step, total_steps, peak, warmup_share):
    """Linear warmup over `warmup_share` of `total_steps`, then a cosine to zero (keras_vit's schedule shape)."""
    warmup = max(1, int(warmup_share * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


def planned_epochs(epoch_seconds, elapsed, budget, done):
    """The epochs that fit in `budget` seconds: those done and as many more as the median epoch allows."""
    return done + max(0, int((budget - elapsed) / float(np.median(epoch_seconds))))


# The kind of work a profiled kernel (CUDA) or operator (CPU) does, by the first of these (lower-case) pieces
# found in its name: fused attention (flash, memory-efficient or cuDNN), torch.compile's fused Triton kernels
# (normalisation, GELU, softmax, the residual adds), the patch embedding's convolution, the optimizer's update
# (the gradient clip's norms too), matrix products (cuBLAS), copies and fills.
KERNEL_KINDS = (
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("fused elementwise (triton)", ("triton",)),
    ("convolution", ("convolution", "convolve", "fprop", "dgrad", "wgrad")),
    ("optimizer", ("adam", "multi_tensor", "foreach", "clip_grad", "lpnorm", "_amp_")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "aten::mm", "aten::addmm", "aten::bmm")),
    ("copy and fill", ("memcpy", "memset", "copy", "fill", "aten::cat", "catarray")),
)


def kernel_kind(name):
    text = name.lower()
    for kind, pieces in KERNEL_KINDS:
        if any(piece in text for piece in pieces):
            return kind
    return "other"


def step_time_by_kind(events, steps):
    """Milliseconds per step of each kind of kernel, from (name, self microseconds) pairs of `steps` steps;
    the largest first."""
    totals = {}
    for name, micros in events:
        kind = kernel_kind(name)
        totals[kind] = totals.get(kind, 0.0) + micros / 1000.0 / steps
    return dict(sorted(((kind, round(ms, 3)) for kind, ms in totals.items()), key=lambda item: -item[1]))


def profile_steps(step, batches, steps, table_path, cuda):
    """Runs `step(x, y)` on `steps` + 1 of `batches` under `torch.profiler`, the first not counted; writes the op
    table (by self device time on CUDA, else self CPU time) to `table_path`; returns the `profile` line's
    measurements."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    def synchronize():
        if cuda:
            torch.cuda.synchronize()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # One step first, traced but not counted: the profiler's own start-up lands there. The counted steps' table
    # is taken by on_trace_ready, which the last profiler.step() calls (after the clock has stopped).
    tables = []
    with profile(
        activities=activities,
        schedule=schedule(wait=0, warmup=1, active=steps, repeat=1),
        on_trace_ready=lambda done: tables.append(done.key_averages()),
    ) as profiler:
        for index, (x, y) in enumerate(batches[: steps + 1]):
            if index == 1:
                synchronize()
                start = time.perf_counter()
            step(x, y)
            if index == steps:
                synchronize()
                wall = time.perf_counter() - start
            profiler.step()
    if not tables:
        raise RuntimeError("torch.profiler gave no table for the counted steps")
    averages = tables[0]
    key, events = counted_events(averages, cuda)
    if not events:
        raise RuntimeError(
            f"torch.profiler recorded no {'CUDA kernel' if cuda else 'aten operator'} (CUPTI?)"
        )
    Path(table_path).write_text(averages.table(sort_by=key, row_limit=40) + "\n")
    busy = sum(micros for _, micros in events) / 1000.0 / steps
    return {
        "profiled_steps": steps,
        "step_ms_profiled": round(1000 * wall / steps, 3),
        "busy_ms_per_step": round(busy, 3),
        "ms_per_step_by_kind": step_time_by_kind(events, steps),
        "top_kernels": [
            {"name": name[:120], "ms_per_step": round(micros / 1000.0 / steps, 3)}
            for name, micros in sorted(events, key=lambda item: -item[1])[:12]
        ],
        "table": Path(table_path).name,
        "counted": "CUDA kernels' self time" if cuda else "aten operators' self CPU time",
    }


def counted_events(averages, cuda):
    """The table's sort key and the `(name, self microseconds)` of what a step's time is counted in: on CUDA the
    kernels (device events; an operator's device time is its kernels' again, and the GPU user annotations, e.g.
    `ProfilerStep#3` or `Optimizer.step#AdamW.step`, span kernels counted already), else the aten operators by
    their self time."""
    if cuda:
        key = (
            "self_device_time_total"
            if hasattr(averages[0], "self_device_time_total")
            else "self_cuda_time_total"
        )
        events = [
            (e.key, getattr(e, key))
            for e in averages
            if str(getattr(e, "device_type", "")).endswith("CUDA")
            and not getattr(e, "is_user_annotation", False)
        ]
        return key, events
    return "self_cpu_time_total", [
        (e.key, e.self_cpu_time_total) for e in averages if e.key.startswith("aten::")
    ]


def train_timm(job):
    try:
        import timm
        import torch
        from timm.models.vision_transformer import VisionTransformer
        from timm.optim import param_groups_weight_decay
    except ImportError as error:
        return emit({"framework": "timm", "skipped": f"timm is not importable here ({error})"})

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(job["seed"])
    generator = torch.Generator(device=device).manual_seed(job["seed"])
    shape = job["shape"]
    model = VisionTransformer(
        img_size=32,
        patch_size=shape["patch_size"],
        embed_dim=shape["projection_dim"],
        depth=shape["depth"],
        num_heads=shape["num_heads"],
        mlp_ratio=shape["mlp_dim"] / shape["projection_dim"],
        num_classes=10,
        class_token=True,
        reg_tokens=shape["num_registers"],
        global_pool="token",
        drop_path_rate=shape["drop_path"],
    ).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    # The register token too, whatever this timm version's no_weight_decay() says (keras_vit decays no token).
    no_decay = set(model.no_weight_decay()) | {"reg_token"}
    groups = param_groups_weight_decay(model, job["weight_decay"], no_weight_decay_list=no_decay)
    fused = {"fused": True} if cuda else {}
    optimizer = torch.optim.AdamW(groups, lr=job["learning_rate"], eps=job["epsilon"], **fused)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=job["label_smoothing"])
    # bfloat16 autocast and torch.compile where the job asks for them (on CUDA by default; the CPU test runs eager).
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=job["bfloat16"])
    step_model = torch.compile(model) if job["compile"] else model

    arrays = load_arrays(job["arrays"])
    images = torch.from_numpy(arrays["train_x"]).permute(0, 3, 1, 2).contiguous().to(device)
    labels = torch.from_numpy(arrays["train_y"].astype("int64")).to(device)
    mean = torch.tensor(CIFAR10_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(CIFAR10_STD, device=device).view(1, 3, 1, 1) * 255
    batch_size = job["batch_size"]
    steps_per_epoch = len(images) // batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"batch {batch_size} is larger than the {len(images)} training images")

    def train_step(x, y, rate):
        for group in optimizer.param_groups:
            group["lr"] = rate
        x = (crop_flip(x, 4, generator) - mean) / std
        with autocast:
            loss = loss_fn(step_model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if job["clipnorm"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), job["clipnorm"])
        optimizer.step()
        return loss

    model.train()
    budget, epoch_seconds, step = job["budget"], [], 0
    total_epochs = job["first_epoch_estimate"]
    start = time.perf_counter()
    epoch = 0
    while epoch < total_epochs:
        epoch_start = time.perf_counter()
        order = torch.randperm(len(images), device=device, generator=generator)
        for index in range(steps_per_epoch):
            chosen = order[index * batch_size : (index + 1) * batch_size]
            rate = learning_rate(
                step, total_epochs * steps_per_epoch, job["learning_rate"], job["warmup_share"]
            )
            loss = train_step(images[chosen], labels[chosen], rate)
            step += 1
        last_loss = float(loss.detach())  # waits for the device: the epoch is done
        now = time.perf_counter()
        if epoch > 0:
            epoch_seconds.append(now - epoch_start)
        else:
            first_epoch = now - epoch_start
        epoch += 1
        # Re-planned from the measured epochs (the first holds compilation: the estimate stands until the second).
        if epoch_seconds:
            total_epochs = planned_epochs(epoch_seconds, now - start, budget, epoch)
        if not math.isfinite(last_loss) or now - start >= budget:
            break
    seconds = time.perf_counter() - start

    model.eval()
    correct = 0
    test_x = torch.from_numpy(arrays["test_x"]).permute(0, 3, 1, 2).to(device)
    test_y = torch.from_numpy(arrays["test_y"].astype("int64")).to(device)
    with torch.no_grad():  # float32, as keras_vit scores its saved model
        for begin in range(0, len(test_x), 1000):
            x = (test_x[begin : begin + 1000].float() - mean) / std
            correct += int((model(x).argmax(1) == test_y[begin : begin + 1000]).sum())
    # Only the first (compiling) epoch ran: no steady rate to report.
    steady = float(np.median(epoch_seconds)) if epoch_seconds else None
    emit(
        {
            "framework": "timm",
            "measurement": "train",
            "versions": {"torch": torch.__version__, "timm": timm.__version__},
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "parameters": parameters,
            "batch_size": batch_size,
            "epochs": epoch,
            "seconds": round(seconds, 2),
            "first_epoch_seconds": round(first_epoch, 2),
            "steady_epochs": len(epoch_seconds),
            "images_per_second": round(steps_per_epoch * batch_size / steady, 1) if steady else None,
            "step_ms": round(1000 * steady / steps_per_epoch, 3) if steady else None,
            "final_loss": last_loss,
            "accuracy": correct / len(test_x),
        }
    )
    if job.get("profile_steps"):
        # The trained model's step again (compiled already), now under the profiler; a failure is reported.
        model.train()
        steps = job["profile_steps"]
        starts = [(i % steps_per_epoch) * batch_size for i in range(steps + 1)]
        batches = [(images[i : i + batch_size], labels[i : i + batch_size]) for i in starts]
        try:
            measured = profile_steps(
                lambda x, y: train_step(x, y, rate), batches, steps, job["profile_table"], cuda
            )
            emit({"framework": "timm", "measurement": "profile", **measured})
        except Exception as error:  # noqa: BLE001 - the training line above stands
            emit({"framework": "timm", "measurement": "profile", "error": f"{type(error).__name__}: {error}"})


def train_airbench(job):
    try:
        import airbench
        import torch
        from airbench import CifarLoader, evaluate, train94, warmup94
        from airbench.lib_airbench94 import hyp
    except ImportError as error:
        return emit({"framework": "airbench", "skipped": f"airbench is not importable here ({error})"})

    arrays = load_arrays(job["arrays"])
    folder = Path(tempfile.mkdtemp(prefix="airbench_"))
    # airbench's loader reads `cifar10/{train,test}.pt` under the working directory (its download's format).
    (folder / "cifar10").mkdir()
    for split in ("train", "test"):
        torch.save(
            {
                "images": torch.from_numpy(arrays[f"{split}_x"]),
                "labels": torch.from_numpy(arrays[f"{split}_y"].astype("int64")),
                "classes": list(job["class_names"]),
            },
            folder / "cifar10" / f"{split}.pt",
        )
    if not torch.cuda.is_available():
        # make_net94 puts the network on CUDA in half precision: no CPU path to run.
        return emit(
            {
                "framework": "airbench",
                "skipped": "airbench94 needs a CUDA GPU (make_net94 calls .cuda())",
                "wrote": sorted(p.name for p in (folder / "cifar10").iterdir()),
            }
        )
    os.chdir(folder)
    version = getattr(airbench, "__version__", None) or _distribution_version("airbench")
    # Its warmup as published: one step (with verbose=False it would train a whole run).
    warmup94()
    # The training loader train94 would make itself, made once: a run's seconds leave out reading train.pt.
    train_loader = CifarLoader(
        "cifar10", train=True, batch_size=hyp["opt"]["batch_size"], aug=hyp["aug"], altflip=True
    )
    test_loader = CifarLoader("cifar10", train=False, batch_size=2000)
    for run in range(job["runs"]):
        torch.cuda.synchronize()
        start = time.perf_counter()
        model = train94(train_loader=train_loader, run=run, verbose=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        emit(
            {
                "framework": "airbench",
                "measurement": "train94",
                "run": run,
                "versions": {"torch": torch.__version__, "airbench": version},
                "device": torch.cuda.get_device_name(),
                "seconds": round(seconds, 3),
                "accuracy_tta": evaluate(model, test_loader, tta_level=2),
                "accuracy": evaluate(model, test_loader, tta_level=0),
            }
        )


def _distribution_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


TASKS = {"timm": train_timm, "airbench": train_airbench}

if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    TASKS[job["task"]](job)
