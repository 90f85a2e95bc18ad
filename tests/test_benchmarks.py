"""The GPU scripts, run end to end on the CPU with JAX on a tiny setting.

GPU time is scarce: a script that breaks there wastes a whole session, so
the exact script the GPU run uses is exercised here with small numbers.
"""

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_scripts_parse():
    for script in (
        "gpu_cifar10.sh",
        "gpu_session.sh",
        "teacher_sweep.sh",
        "throughput_sweep.sh",
        "device_env.sh",
        "scaling_gpus.sh",
        "peers_gpu.sh",
    ):
        result = subprocess.run(
            ["bash", "-n", str(ROOT / "benchmarks" / script)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_recipe_settings_give_the_scripts_the_recipes_values_where_unset():
    """benchmarks/recipe_settings.py: the GPU scripts' defaults come from the recipe, a setting in the
    environment wins, and printing them imports no Keras (the scripts call it before every run)."""
    script = (
        'eval "$(python3 benchmarks/recipe_settings.py cifar10_gpu)"\n'
        'echo "$PRESET $HEADS $BATCH $LR $TRAIN_BUDGET $MAX_EPOCHS"'
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "BATCH": "64"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["vit_cifar10", "12", "64", "0.003", "340", "1000"]
    check_imports = (
        "import runpy, sys\n"
        "sys.argv = ['recipe_settings.py', 'cifar10_gpu']\n"
        "try:\n    runpy.run_path('benchmarks/recipe_settings.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('heavy:', [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", check_imports], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.splitlines()[-1] == "heavy: []", result.stdout + result.stderr
    unknown = subprocess.run(
        [sys.executable, "benchmarks/recipe_settings.py", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


# The GPU machine has JAX but no TensorFlow (nor the converters): a sitecustomize
# on PYTHONPATH makes their imports fail here too, so that a TensorFlow need that
# crept into the training path fails this test instead of the GPU session.
MISSING_ON_THE_GPU_MACHINE = ("tensorflow", "tensorflow_datasets", "tf2onnx", "ai_edge_litert", "tf_keras")
BLOCKER = f"""
import importlib.abc
import sys

class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {MISSING_ON_THE_GPU_MACHINE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine)", name=name)
        return None

sys.meta_path.insert(0, _Missing())
"""


@pytest.fixture
def without_tensorflow(tmp_path):
    """A PYTHONPATH entry under which importing TensorFlow fails, as on the GPU machine."""
    folder = tmp_path / "gpu_machine_site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCKER)
    check = subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        env={**os.environ, "PYTHONPATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode != 0 and "not on the GPU machine" in check.stderr
    return folder


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_gpu_session_on_cpu_without_tensorflow(tiny_tree, tmp_path, without_tensorflow):
    """The whole GPU session (gpu_session.sh -> gpu_cifar10.sh) on a tiny setting."""
    out = tmp_path / "out"
    out.mkdir()
    # SESSION_SECONDS leaves less than TRAIN_BUDGET + RESERVE after the probe and the
    # throughputs: the training budget must shrink to what is left (and MAX_EPOCHS ends the run long before it;
    # a deadline near the steps' own time would fail the run on a slow machine instead).
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(without_tensorflow),
        "INSTALL": "0",
        "DATA": str(tiny_tree),
        "OUT": str(out),
        "SESSION_SECONDS": "2400",
        "KERAS_VIT_CACHE_DIR": str(tmp_path / "cache"),
        "PRESET": "vit_micro",
        "HEADS": "4",
        "BATCH": "32",
        "STEPS": "2",
        "TRAIN_BUDGET": "6000",
        "MAX_EPOCHS": "2",
        # The recipe's options that are off by default, so that their paths run too.
        "SHIFTED_PATCHES": "1",
        "PATCH_DROPOUT": "0.5",
        "UNMASKED_FINISH": "0.5",
        "STEPS_PER_EXECUTION": "2",
        "TEACHER_EPOCHS": "0",  # the plain path: no teacher (the default has one)
        "MODEL_ARGS": "mlp_dim=48 depth=1",
    }  # build_vit overrides of the preset, for the timed steps and the run
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_session.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = (out / "log.txt").read_text() if (out / "log.txt").exists() else ""
    assert result.returncode == 0, log[-4000:] + result.stderr[-2000:]
    run = out / "run"
    # No cuDNN on the CPU: the probe says so for every length and the run takes no registers.
    # It probes the training steps' token count: the class token and 8 of the 16 patches.
    probe = [json.loads(line) for line in (run / "attention_probe.jsonl").read_text().splitlines()]
    assert [row["sequence_length"] for row in probe] == [9, 10, 11, 12]
    assert all(not row["cudnn"]["accepted"] and row["xla"]["accepted"] for row in probe)
    assert "registers=0" in log
    # One file for both throughputs: the run's configuration first (the heads are picked from it), the baseline last.
    throughput, baseline = (json.loads(line) for line in (run / "throughput.jsonl").read_text().splitlines())
    assert baseline["augment"] == "none" and baseline["num_heads"] == 4 and baseline["images_per_second"] > 0
    assert throughput["num_heads"] == 4 and throughput["repeats"] == 1 and throughput["images_per_second"] > 0
    assert throughput["num_registers"] == 0 and throughput["sequence_length"] == 17
    assert throughput["profile"] is None and not (run / "step.xplane.pb.gz").exists()  # PROFILE=0
    assert throughput["precision"] == "mixed_bfloat16" and throughput["backend"] == "jax"
    assert throughput["shifted_patches"] and baseline["shifted_patches"]
    assert throughput["patch_dropout"] == 0.5 and throughput["train_sequence_length"] == 9
    for result in (baseline, throughput):  # the median of 3 timed epochs, inside their range
        low, high = result["images_per_second_range"]
        assert result["timed_epochs"] == 3 and low <= result["images_per_second"] <= high
    metrics = json.loads((run / "vit_micro" / "metrics.json").read_text())
    # MODEL_ARGS: the timed model is the trained one, not the preset's.
    assert metrics["args"]["model_args"] == [["mlp_dim", 48], ["depth", 1]]
    assert throughput["parameters"] == baseline["parameters"] == metrics["parameters"]
    assert (
        metrics["epochs"] == 2
        and metrics["args"]["augment"] == "lee2021"
        and metrics["args"]["max_epochs"] == 2
    )
    # What the environment did not set comes from the recipe cifar10_gpu.
    args = metrics["args"]
    assert args["recipe"] == "cifar10_gpu" and args["learning_rate"] == 3e-3 and args["weight_decay"] == 0.05
    assert (
        args["label_smoothing"] == 0.1
        and args["validation_freq"] == 10
        and args["mixed_precision"] == "bfloat16"
    )
    assert args["shifted_patches"] is True and args["patch_dropout"] == 0.5
    assert args["steps_per_execution"] == 2 and throughput["steps_per_execution"] == 2
    assert args["unmasked_finish"] == 0.5 and metrics["unmasked_from_epoch"] == 2  # the last of MAX_EPOCHS=2
    # The budget was cut to the time left before the deadline, less the reserve, and the
    # backstop follows it.
    assert "training budget cut from 6000 s" in log
    assert 30 <= metrics["time_budget_seconds"] < 2400 - 60
    assert metrics["args"]["time_limit"] == metrics["time_budget_seconds"] + 15
    assert (
        0.0 <= metrics["test_accuracy_flip_tta"] <= 1.0
        and 0.0 <= metrics["test_accuracy_flip_shift_tta"] <= 1.0
    )
    assert (run / "vit_micro" / "model.keras").stat().st_size > 0
    assert not (run / "vit_micro" / "checkpoint").exists()
    # The device tool brings back at most 8 files: all of them fit, so nothing was packed.
    assert len([f for f in out.rglob("*") if f.is_file()]) <= 8 and not (out / "extras.tar.gz").exists()
    assert [line.split(": ", 1)[1] for line in log.splitlines() if line.startswith("== ")][:3] == [
        "attention probe",
        "throughput of the run with 4 heads",
        "throughput without augmentation",
    ]
    assert "heads=4 (the fastest of 4)" in log


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
@pytest.mark.timeout(1200)  # the session's own limit below, and its fixtures and checks
def test_gpu_session_with_a_teacher(tiny_tree, tmp_path, without_tensorflow):
    """TEACHER_EPOCHS (and TEACHER_BUDGET): the teacher trains first, its fit time comes off the ViT's budget,
    the ViT distils it. HEADS=auto: the run's step timed with each head count, the fastest trained."""
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(without_tensorflow),
        "INSTALL": "0",
        "DATA": str(tiny_tree),
        "OUT": str(out),
        "KERAS_VIT_CACHE_DIR": str(tmp_path / "cache"),
        "PRESET": "vit_micro",
        "HEADS": "auto",
        "HEAD_CHOICES": "4 3 2",
        "BATCH": "32",
        "STEPS": "2",
        "TRAIN_BUDGET": "300",
        "MAX_EPOCHS": "1",
        "REGISTERS": "0",
        "BASELINE": "0",
        "TEACHER_ARCH": "airbench",
        "TEACHERS": "2",
        "TEACHER_EPOCHS": "3",
        "TEACHER_BUDGET": "0.5",
        "TEACHER_WIDTH": "4",
        "DISTILLATION": "soft",
        "DISTILLATION_WEIGHT": "0.7",
        "TEMPERATURE": "2",
        "TEACHER_FLIP": "1",
        "MAX_FILES": "20",  # nothing packed: the test reads every file
        "PROFILE": "1",
        # No deadline cut: on a busy CPU the three timings and two teachers can outlast the default 575 s,
        # and the budget assertion below is about the teachers' share alone.
        "SESSION_SECONDS": "3600",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_session.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1080,
    )
    log = (out / "log.txt").read_text() if (out / "log.txt").exists() else ""
    assert result.returncode == 0, log[-4000:] + result.stderr[-2000:]
    run = out / "run"
    # HEADS=auto: one line per head count that divides the width (32: not 3), the teacher's forward pass in each.
    rows = [json.loads(line) for line in (run / "throughput.jsonl").read_text().splitlines()]
    assert [row["num_heads"] for row in rows] == [4, 2] and "no throughput with 3 heads" in log
    fastest = max(rows, key=lambda row: row["images_per_second"])["num_heads"]
    assert f"heads={fastest} (the fastest of 4 3 2)" in log
    # PROFILE=1: each head count's step traced (as many steps as STEPS allows); the trained one's trace kept.
    assert [row["profile"]["steps"] for row in rows] == [2, 2]
    assert (run / "step.xplane.pb.gz").stat().st_size > 0 and not (run / "profile").exists()
    for throughput in rows:
        assert throughput["teacher_arch"] == "airbench" and throughput["teacher_width"] == 4
        assert throughput["teachers"] == 2 and throughput["teacher_gflops_per_image"] > 0
        assert (
            throughput["teacher_flip"] is True
        )  # TEACHER_FLIP=1: the teacher's forward pass twice, both counted
    teacher = json.loads((run / "teacher" / "metrics.json").read_text())
    assert teacher["backend"] == "jax" and teacher["args"]["mixed_precision"] == "bfloat16"
    assert teacher["arch"] == "airbench"
    assert (
        teacher["args"]["augment"] == "basic"
    )  # TEACHER_AUGMENT's default for airbench (cutout for resnet9)
    # TEACHER_BUDGET: of the 3 epochs planned, the 0.5 s budget left room for the first (compilation included).
    assert (
        teacher["epochs"] == 1 and teacher["stopped_by_time_budget"] and teacher["args"]["time_budget"] == 0.5
    )
    # TEACHERS=2: a second teacher from seed 1; both fit times come off the ViT's budget.
    second = json.loads((run / "teacher_1" / "metrics.json").read_text())
    assert second["args"]["seed"] == 1 and second["arch"] == "airbench"
    # Removed: 8 to 26 MB each, not worth bringing back.
    assert not (run / "teacher" / "model.keras").exists() and not (run / "teacher_1" / "model.keras").exists()
    metrics = json.loads((run / "vit_micro" / "metrics.json").read_text())
    teacher_fit = -(-teacher["wall_clock_seconds"] // 1) - (-second["wall_clock_seconds"] // 1)
    assert (
        metrics["time_budget_seconds"] == 300 - teacher_fit
        and f"the ViT's budget: {300 - int(teacher_fit)} s" in log
    )
    args = metrics["args"]
    assert [path.split("/")[-2:] for path in args["teacher"]] == [
        ["teacher", "model.keras"],
        ["teacher_1", "model.keras"],
    ]
    assert args["distillation"] == "soft"
    assert args["distillation_weight"] == 0.7 and args["temperature"] == 2.0 and args["teacher_flip"] is True
    assert metrics["epochs"] == 1
    assert args["num_heads"] == fastest
    assert [line.split(": ", 1)[1] for line in log.splitlines() if line.startswith("== ")][:4] == [
        "attention probe",
        "throughput of the run with 4 3 2 heads",
        "teacher (seed 0)",
        "teacher (seed 1)",
    ]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_teacher_sweep(tiny_tree, tmp_path, without_tensorflow):
    """benchmarks/teacher_sweep.sh: one teacher per line of CONFIGS, one metrics line each, no model kept;
    a failing line fails the script but not the lines after it."""
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(without_tensorflow),
        "INSTALL": "0",
        "DATA": str(tiny_tree),
        "OUT": str(out),
        "KERAS_VIT_CACHE_DIR": str(tmp_path / "cache"),
        "CONFIGS": "--width 4 --epochs 1 --augment cutout\n--width 4 --epochs 1 --augment nope\n"
        "--width 4 --epochs 2 --augment basic",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "teacher_sweep.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1 and "FAILED: --width 4 --epochs 1 --augment nope" in result.stdout, (
        result.stderr
    )
    rows = [json.loads(line) for line in (out / "teacher_sweep.jsonl").read_text().splitlines()]
    assert [row["flags"] for row in rows] == [
        "--width 4 --epochs 1 --augment cutout",
        "--width 4 --epochs 2 --augment basic",
    ]
    assert [row["epochs"] for row in rows] == [1, 2] and [row["args"]["augment"] for row in rows] == [
        "cutout",
        "basic",
    ]
    assert all(
        0.0 <= row["test_accuracy"] <= 1.0 and row["args"]["mixed_precision"] == "bfloat16" for row in rows
    )
    assert [f.name for f in out.iterdir()] == ["teacher_sweep.jsonl"]


def test_throughput_sweep(tmp_path, without_tensorflow):
    """benchmarks/throughput_sweep.sh: one throughput line per shape in CONFIGS, the line's flags over BASE's
    (--model-arg included); a failing line fails the script but not the lines after it."""
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(without_tensorflow),
        "INSTALL": "0",
        "OUT": str(out),
        "BASE": "--preset vit_tiny --num-heads 4 --augment basic --batch-size 8 --steps 2 --epochs 2 "
        "--teacher-width 4 --teacher-arch airbench",
        "CONFIGS": "--num-heads 2\n--num-heads 5\n--model-arg projection_dim=32 --model-arg depth=1 --teacher-width 0",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "throughput_sweep.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1 and "FAILED: --num-heads 5" in result.stdout, result.stdout + result.stderr
    rows = [json.loads(line) for line in (out / "throughput_sweep.jsonl").read_text().splitlines()]
    assert [row["num_heads"] for row in rows] == [2, 4]
    assert [row["projection_dim"] for row in rows] == [128, 32] and [row["depth"] for row in rows] == [6, 1]
    assert rows[1]["model_overrides"] == {"projection_dim": 32, "depth": 1, "num_heads": 4}
    assert rows[0]["teacher_arch"] == "airbench" and rows[1]["teacher_arch"] is None
    assert rows[0]["parameters"] > rows[1]["parameters"] and all(row["images_per_second"] > 0 for row in rows)
    assert "images/s" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (the dev extra)")
def test_throughput_profiles_the_torch_step_as_an_operator_table(tmp_path):
    """`--profile` on the Keras torch backend writes torch's profiler table of the traced steps, operators by self
    time, and the row records the trace without an error."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--preset", "vit_tiny"]
        + ["--model-arg", "projection_dim=32", "--model-arg", "depth=1", "--augment", "none"]
        + ["--batch-size", "8", "--steps", "2", "--epochs", "2", "--profile", str(tmp_path / "trace")]
        + ["--profile-steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.splitlines()[-1])
    assert row["profile"] == {"folder": str(tmp_path / "trace"), "steps": 2, "error": None}
    table = (tmp_path / "trace" / "torch_ops.txt").read_text()
    assert "Self CPU" in table and "aten::" in table


def test_throughput_help():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0 and "--steps-per-execution" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_attention_probe_picks_registers():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import attention_probe

    rows = [
        {"sequence_length": 65, "cudnn": {"accepted": False}},
        {"sequence_length": 67, "cudnn": {"accepted": True}},
        {"sequence_length": 66, "cudnn": {"accepted": True}},
    ]
    assert attention_probe.pick_registers(rows, 65) == 1
    assert attention_probe.pick_registers(rows[:1], 65) == 0
    assert attention_probe.pick_registers([{"sequence_length": 64, "cudnn": {"accepted": True}}], 64) == 0
    # On the CPU: XLA compiles and is timed, cuDNN is reported missing, the pick is 0.
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "attention_probe.py"),
            "--preset",
            "vit_micro",
            "--batch-size",
            "4",
            "--max-registers",
            "1",
            "--calls",
            "1",
            "--pick-registers",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "0"
    rows = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [row["sequence_length"] for row in rows] == [17, 18]
    assert rows[0]["xla"]["ms_per_call"] > 0 and "error" in rows[0]["cudnn"]
    # The seqpool head has no class token: the 16 patch tokens alone.
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "attention_probe.py"),
            "--preset",
            "vit_micro",
            "--pooling",
            "seqpool",
            "--batch-size",
            "4",
            "--max-registers",
            "0",
            "--calls",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (result.stdout + result.stderr).splitlines() if line.startswith("{")]
    assert [row["sequence_length"] for row in rows] == [16]


FAKE_RUN = """
import json, pathlib, sys
out, score, seed, calls = pathlib.Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4])
calls.write_text((calls.read_text() if calls.exists() else "") + "x")
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps(dict(validation_accuracy=score + seed / 100, test_accuracy=score)))
"""


def _score_writer(tmp_path):
    """A stand-in run: writes metrics.json whose scores depend on the arm and the seed, and counts its calls."""
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    return f"{sys.executable} {script}"


def _compare_seeds(tmp_path, *arms, setup=None):
    command = [sys.executable, str(ROOT / "benchmarks" / "compare_seeds.py"), "--seeds", "3"]
    for arm in arms:
        command += ["--arm", arm]
    if setup:
        command += ["--setup", setup]
    return subprocess.run(
        command + ["--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )


def test_compare_seeds_reports_each_arm_and_the_difference_over_seeds(tmp_path):
    writer, calls = _score_writer(tmp_path), tmp_path / "calls"
    result = _compare_seeds(
        tmp_path,
        f"a={writer} {{out}} 0.5 {{seed}} {calls}",
        f"b={writer} {{out}} 0.6 {{seed}} {calls}",
        f"c={writer} {{out}} 0.4 {{seed}} {calls}",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "comparison.json").read_text())["metrics"]
    validation = report["validation_accuracy"]
    assert validation["a"]["values"] == pytest.approx([0.5, 0.51, 0.52])
    assert validation["b"]["mean"] == pytest.approx(0.61) and validation["b"]["std"] == pytest.approx(0.01)
    assert validation["b_minus_a"]["mean"] == pytest.approx(0.1)
    assert validation["b_minus_a"]["std"] == pytest.approx(0.0)
    assert validation["c_minus_a"]["mean"] == pytest.approx(-0.1)
    assert report["test_accuracy"]["b_minus_a"]["values"] == pytest.approx([0.1] * 3)
    assert "| b - a | 0.1000 ± 0.0000 |" in result.stdout
    assert calls.read_text() == "x" * 9

    # Run again: every finished run is kept, nothing is trained twice.
    again = _compare_seeds(
        tmp_path,
        f"a={writer} {{out}} 0.5 {{seed}} {calls}",
        f"b={writer} {{out}} 0.6 {{seed}} {calls}",
        f"c={writer} {{out}} 0.4 {{seed}} {calls}",
    )
    assert again.returncode == 0, again.stderr
    assert calls.read_text() == "x" * 9


def test_compare_seeds_runs_the_setup_once_per_seed_and_hands_its_folder_to_the_arms(tmp_path):
    writer, calls = _score_writer(tmp_path), tmp_path / "calls"
    (tmp_path / "setup.py").write_text(
        "import pathlib, sys; pathlib.Path(sys.argv[1]).mkdir(parents=True); "
        "(pathlib.Path(sys.argv[1]) / 'teacher').write_text(sys.argv[2])"
    )
    (tmp_path / "reader.py").write_text(
        "import pathlib, sys; assert pathlib.Path(sys.argv[1], 'teacher').read_text() == sys.argv[2]"
    )
    setup = f"{sys.executable} {tmp_path / 'setup.py'} {{out}} {{seed}}"
    reader = f"{sys.executable} {tmp_path / 'reader.py'} {{setup}} {{seed}}"
    result = _compare_seeds(tmp_path, f"a={writer} {{out}} 0.5 {{seed}} {calls}", f"b={reader}", setup=setup)
    # The reader writes no metrics.json: the comparison names the arm and seed, and fails.
    assert result.returncode == 2
    assert "b seed 0: metrics.json has no validation_accuracy" in result.stderr
    assert (tmp_path / "out" / "setup_seed0" / "teacher").read_text() == "0"


def test_compare_seeds_refuses_a_single_arm(tmp_path):
    result = _compare_seeds(tmp_path, "a=true")
    assert result.returncode == 2 and "two arms or more" in result.stderr


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mutation_report_judges_survivors_and_counts_kill_rates(tmp_path, monkeypatch):
    """`--report-only` re-reads a group's saved mutants, marks the survivors EQUIVALENT lists, and the kill rate
    leaves them out: killed / (mutants - equivalent)."""
    mutation = _load_script("mutation_testing")
    diff = "--- a\n+++ b\n@@\n-    x = a // 4\n+    x = a / 4\n"
    other = "--- a\n+++ b\n@@\n-    return y\n+    return None\n"
    module = "keras_vit/layers/patches.py"
    mutant = dict(module=module, function="Patches.call")
    group = {
        "group": "patches",
        "modules": [module],
        "tests": [],
        "seconds": 1.0,
        "mutants": [
            {**mutant, "name": "m1", "status": "killed"},
            {**mutant, "name": "m2", "status": "killed"},
            {**mutant, "name": "m3", "status": "survived", "diff": diff},
            {**mutant, "name": "m4", "status": "equivalent", "why": "old reason", "diff": other},
        ],
    }
    (tmp_path / "group_patches.json").write_text(json.dumps(group))
    key = (module, "Patches.call", mutation.changed_lines(diff))
    assert key[2] == "-x = a // 4\n+x = a / 4"
    monkeypatch.setattr(mutation, "EQUIVALENT", {key: "an int either way"})
    assert mutation.main(["patches", "--report-only", "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "mutation_report.json").read_text())
    (row,) = report["modules"]
    assert (row["killed"], row["survived"], row["equivalent"]) == (2, 1, 1)
    assert row["kill_rate"] == pytest.approx(2 / 3)
    statuses = {m["name"]: (m["status"], m.get("why")) for m in report["groups"][0]["mutants"]}
    assert statuses["m3"] == ("equivalent", "an int either way")
    assert statuses["m4"] == ("survived", None)  # no longer listed: a survivor again
    markdown = (tmp_path / "mutation_report.md").read_text()
    assert "| `keras_vit/layers/patches.py` | 4 | 2 | 1 | 1 | 0 | 0 | 66.7% |" in markdown


def test_peers_cpu_ratios_are_per_round_medians(tmp_path, monkeypatch):
    """Each keras_vit side's ratio to timm is the median of its per-round ratios (a slow round slows both)."""
    peers = _load_script("peers_cpu")
    rates = {"timm": iter([100.0, 50.0, 100.0]), "tensorflow": iter([80.0, 45.0, 60.0])}
    epoch_rates = {"timm": iter([90.0, 45.0, 90.0]), "tensorflow": iter([45.0, 45.0, 60.0])}

    def row(side):
        return {
            "images_per_second": next(rates[side]),
            "epoch_images_per_second": next(epoch_rates[side]),
            "parameters": 7,
        }

    monkeypatch.setattr(peers, "timm_train", lambda shape, args: row("timm"))
    monkeypatch.setattr(peers, "keras_train", lambda side, shape, args: row(side))
    monkeypatch.setattr(peers, "peer_versions", lambda python: {"timm": "1.0.31", "torch": "2.14.1"})
    argv = ["--torch-python", sys.executable, "--output", str(tmp_path), "--shapes", "w64", "--rounds", "3"]
    assert peers.main([*argv, "--skip", "inference"]) == 0
    report = json.loads((tmp_path / "peers_cpu.json").read_text())
    assert report["peer"] == {"timm": "1.0.31", "torch": "2.14.1"}  # the peer interpreter's, recorded
    ours = next(row for row in report["training"] if row["side"] == "tensorflow")
    assert ours["ratio_to_timm"] == pytest.approx([0.8, 0.9, 0.6])
    assert ours["median_ratio_to_timm"] == pytest.approx(0.8) and ours["median_images_per_second"] == 60.0
    # Whole epochs: the median of 45 / 45 / 60 and of the per-round ratios 0.5 / 1.0 / 0.67.
    assert "| w64 | 7 / 7 | tensorflow | 60 | 0.80x | 45 | 0.67x |" in (tmp_path / "peers_cpu.md").read_text()
    assert (tmp_path / "peers_cpu.png").stat().st_size > 0


def test_peers_cpu_inference_ratios_are_to_timms_file_round_by_round(tmp_path, monkeypatch):
    """Every file's inference ratio is to timm's file of the same round (batch 1: timm's latency over the file's;
    batch 64: images/s over timm's), the median of the rounds; the table and the chart are written."""
    import types

    peers = _load_script("peers_cpu")
    names = ["w64.onnx", "w64_timm.onnx", "w64_ort_attention.onnx", "w64_fp32.tflite"]
    latency = {
        "w64.onnx": [1.0, 2.0, 1.0],
        "w64_timm.onnx": [1.0, 3.0, 1.2],
        "w64_ort_attention.onnx": [0.5, 1.0, 1.0],
    }
    latency["w64_fp32.tflite"] = [2.0, 2.0, 2.0]
    rate = {name: [100.0, 50.0, 100.0] for name in names}
    rate["w64_ort_attention.onnx"] = [150.0, 50.0, 110.0]

    def compare(paths, rounds, threads):
        assert rounds == 5  # --rounds plus two
        return {
            "results": [
                {
                    "path": str(path),
                    "latency_ms_by_round": latency[Path(path).name],
                    "latency_ms_median_of_rounds": sorted(latency[Path(path).name])[1],
                    "throughput_images_per_s_by_round": rate[Path(path).name],
                    "throughput_images_per_s_median_of_rounds": sorted(rate[Path(path).name])[1],
                }
                for path in paths
            ]
        }

    monkeypatch.setitem(sys.modules, "compare_latency", types.SimpleNamespace(compare=compare))
    monkeypatch.setattr(
        peers, "export_files", lambda shape, folder, args: [tmp_path / name for name in names]
    )
    monkeypatch.setattr(peers, "peer_versions", lambda python: {"timm": "1.0.31", "torch": "2.14.1"})
    argv = ["--torch-python", sys.executable, "--output", str(tmp_path), "--shapes", "w64", "--rounds", "3"]
    assert peers.main([*argv, "--skip", "training"]) == 0
    rows = json.loads((tmp_path / "peers_cpu.json").read_text())["inference"]["w64"]["results"]
    fused = rows[2]
    # Per round 2.0 / 3.0 / 1.2 and 1.5 / 1.0 / 1.1: medians 2.0 and 1.1.
    assert fused["latency_speedup_over_timm"] == pytest.approx(2.0)
    assert fused["throughput_ratio_to_timm"] == pytest.approx(1.1)
    assert rows[0]["latency_speedup_over_timm"] == pytest.approx(1.2)  # 1.0, 1.5, 1.2
    assert (
        "| w64 | `w64_ort_attention.onnx` | 1.000 | 2.00x | 110 | 1.10x |"
        in (tmp_path / "peers_cpu.md").read_text()
    )
    assert (tmp_path / "peers_cpu_inference.png").stat().st_size > 0 and not (
        tmp_path / "peers_cpu.png"
    ).exists()


def test_peers_cpu_refuses_an_unknown_keras_side(tmp_path):
    peers = _load_script("peers_cpu")
    assert peers.keras_config("tensorflow+xla+bf16") == "tensorflow+xla+bf16"
    assert peers.keras_config(f"tensorflow@{ROOT}") == f"tensorflow@{ROOT}"
    for bad in ("tensorflow+fast", "numpy", "jax+xla+int8"):
        with pytest.raises(Exception, match="BACKEND"):
            peers.keras_config(bad)
    with pytest.raises(Exception, match="not a keras_vit checkout"):
        peers.keras_config(f"tensorflow@{tmp_path}")


def test_profile_sorts_ops_into_the_parts_of_the_step():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    profile = _load_script("profile_cpu_step")

    def row(kind, name, micros):
        return {
            "Host/device": "Host",
            "Operation Type": kind,
            "Operation Name": name,
            "Total self-time (us)": micros,
        }

    rows = [
        row("IDLE", "IDLE", 500.0),
        row("_MklBatchMatMulV2", "vit/transformer_block/attention/MatMul", 40.0),
        row("_MklEinsum", "vit/transformer_block/mlp_dense_1/einsum", 30.0),
        row("Erfc", "vit/transformer_block/gelu/Erfc", 10.0),
        row("Mean", "vit/transformer_block/attention_norm/Mean", 5.0),
        row("AssignSubVariableOp", "adamw/AssignSubVariableOp", 15.0),
        {"Host/device": "Device", "Operation Type": "X", "Operation Name": "x", "Total self-time (us)": 99.0},
    ]
    by_kind, by_part, idle = profile.summarise(rows)
    assert idle == 500.0 and sum(by_kind.values()) == 100.0 and "X" not in by_kind
    assert by_part == {"attention": 40.0, "mlp": 30.0, "gelu": 10.0, "layer norm": 5.0, "optimizer": 15.0}


def test_throughput_compiles_with_xla_when_asked(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--preset", "vit_micro"]
    command += ["--augment", "none", "--batch-size", "8", "--steps", "2", "--epochs", "2", "--jit-compile"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["jit_compile"] is True and row["images_per_second"] > 0
    assert row["step_images_per_second"] == pytest.approx(8 / (row["median_step_ms"] / 1000), rel=0.01)


def test_step_timer_times_each_step_after_the_first_epoch(monkeypatch):
    """The step clock leaves out the first epoch (compilation) and the time between steps (epoch ends)."""
    throughput = _load_script("throughput")
    clock = iter([0.0, 100.0, 100.5, 200.0, 200.25, 300.0, 301.0])  # the first epoch's end reads no clock
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    timer = throughput.StepTimer()
    for epoch, steps in ((0, 1), (1, 2), (2, 1)):
        timer.on_epoch_begin(epoch)
        for step in range(steps):
            timer.on_train_batch_begin(step)
            timer.on_train_batch_end(step)
    assert timer.seconds == [0.5, 0.25, 1.0]


def test_keras_augment_measures_every_arm_and_summarises_ratios(tmp_path):
    """The ours-beside-Keras benchmark (docs/results.md, "Augmentation"): arms run in the trainer's step on a
    tiny setting (two comparisons: one per-image layer, one batch-mixing layer; the speed stage is the same code
    for every arm, and each compiled step costs this test seconds), and the randomness stage sees what separates
    the layers of every comparison."""
    bench = _load_script("keras_augment")
    tiny = "--preset vit_micro --batch-size 16 --steps 2 --rounds 1 --augment-calls 1".split()
    timed = ["crop_flip", "mixup"]
    bench.main(["--output", str(tmp_path), "--stages", "speed", "--comparisons", *timed, *tiny])
    bench.main(["--output", str(tmp_path), "--stages", "randomness", *tiny])
    speed = [json.loads(line) for line in (tmp_path / "speed.jsonl").read_text().splitlines()]
    arms = {(row["comparison"], row["side"]) for row in speed}
    assert arms == {("none", "none"), *bench.arm_names(timed)}
    assert all(row["step_images_per_second"] > 0 for row in speed)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for comparison in timed:
        ratio = summary[comparison]["speed"]["step_ratio_keras_over_ours"]
        rates = summary[comparison]["speed"]["step_images_per_second"]
        assert ratio == pytest.approx(rates["keras"] / rates["ours"], abs=1e-3)
    randomness = {name: entry["randomness"] for name, entry in summary.items() if isinstance(entry, dict)}
    assert randomness["cutmix"]["ours"]["label_weight_minus_kept_pixels_mean_abs"] == 0.0
    assert randomness["mixup"]["ours"]["distinct_label_weights_in_a_batch_of_64"] == 1  # one weight per batch
    assert randomness["mixup"]["keras"]["distinct_label_weights_in_a_batch_of_64"] > 32  # one per image
    assert randomness["randaugment"]["keras"]["operation_indices_drawn_for_32_images"] == [2]  # per round
    for comparison in ("crop_flip", "randaugment"):
        assert randomness[comparison]["ours"]["distinct_outputs_of_32_identical_images"] > 16


def _memory_cgroups_writable():
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")):
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            return True
    return False


def test_streaming_memory_measures_both_loaders_and_records_a_run_killed_at_the_cap(tmp_path):
    script = [
        sys.executable,
        str(ROOT / "benchmarks" / "streaming_memory.py"),
        "--images",
        "40",
        "--size",
        "32",
    ]
    done = subprocess.run(
        [*script, "--output", str(tmp_path / "free")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "free" / "streaming.json").read_text())
    assert [run["loader"] for run in result["runs"]] == ["in memory", "streamed"]
    assert all(run["train_images"] == 40 and run["peak_rss_bytes"] > 2**20 for run in result["runs"])
    assert result["decoded_train_bytes"] == 40 * 32 * 32 * 3
    if not _memory_cgroups_writable():
        pytest.skip("no writable cgroup memory controller here")
    # 200 MiB: less than TensorFlow's own start-up: every run is killed, and recorded as killed.
    capped = subprocess.run(
        [*script, "--output", str(tmp_path / "free"), "--memory-cap", "200"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert capped.returncode == 0, capped.stdout[-2000:] + capped.stderr[-3000:]
    result = json.loads((tmp_path / "free" / "streaming.json").read_text())
    assert all(run["killed_at_the_cap"] and run["memory_cap_bytes"] == 200 * 2**20 for run in result["runs"])
    assert "1 of 1 killed at the 200 MiB cap" in capped.stdout


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_peers_gpu_on_cpu_without_tensorflow(tiny_tree, tmp_path, without_tensorflow):
    """benchmarks/peers_gpu.py's CPU path (--tiny), as on the GPU machine without TensorFlow: keras_vit trains
    and is scored; timm trains the same shape where it is importable, else says why in a `skipped` line;
    airbench writes its data files and says it needs CUDA (or that it is missing)."""
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(without_tensorflow),
        "KERAS_VIT_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [sys.executable, str(ROOT / "benchmarks" / "peers_gpu.py"), "--tiny", "--data", str(tiny_tree)]
    command += ["--output", str(out), "--budget", "15"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "peers_gpu.jsonl").read_text().splitlines()]
    rows = {row["framework"]: row for row in lines if row.get("measurement") != "profile"}
    profiles = {row["framework"]: row for row in lines if row.get("measurement") == "profile"}
    ours = rows["keras_vit"]
    assert ours["versions"]["jax"] and ours["images_per_epoch"] == 64  # 120 images: one full batch of 64
    assert 1 <= ours["epochs"] and ours["steady_epochs"] == ours["epochs"] - 1
    # The budget is checked at an epoch's end, and the first (compiling) epoch runs whole, however slow the machine.
    assert 0 < ours["seconds"] <= max(15, ours["first_epoch_seconds"]) + 15
    # A rate only from epochs after the compiling one (on a loaded machine that one may take the whole budget).
    assert ours["images_per_second"] > 0 if ours["steady_epochs"] else ours["images_per_second"] is None
    assert ours["first_epoch_seconds"] > 0
    assert 0.0 <= ours["accuracy"] <= 1.0 and ours["train_gflops_per_image"] > 0
    if importlib.util.find_spec("timm") is None:
        assert "timm is not importable" in rows["timm"]["skipped"] and "timm" not in profiles
    else:
        assert rows["timm"]["parameters"] == ours["parameters"] and rows["timm"]["images_per_second"] > 0
        timm_profile = profiles["timm"]
        assert timm_profile["profiled_steps"] == 2 and sum(timm_profile["ms_per_step_by_kind"].values()) > 0
        assert "aten::" in (out / "timm_step_profile.txt").read_text()
    assert "CUDA" in rows["airbench"]["skipped"] or "not importable" in rows["airbench"]["skipped"]
    # keras_vit's step traced (--profile-steps, 2 in --tiny) into one compressed xplane file.
    profile = profiles["keras_vit"]
    assert profile["error"] is None and profile["profiled_steps"] == 2 and profile["images_per_second"] > 0
    with gzip.open(out / "keras_vit_step.xplane.pb.gz") as trace:
        assert len(trace.read()) > 1000
    table = (out / "peers_gpu.md").read_text()
    assert "| keras_vit | keras " in table and "| airbench | skipped: " in table
    assert "- keras_vit: " in table and "2 steps traced in `keras_vit_step.xplane.pb.gz`" in table
    assert (out / "peers_gpu.png").stat().st_size > 0


def test_peers_gpu_counts_cuda_kernels_once_and_leaves_out_user_annotations():
    """On CUDA a step's time is its kernels' self device time: the operators that launched them (CPU events, whose
    device time is the same kernels') and the GPU user annotations spanning them (`ProfilerStep#1`) are left out."""
    from types import SimpleNamespace

    worker = _load_script("peers_gpu_torch")

    def event(key, device_type, micros, annotation=False):
        return SimpleNamespace(
            key=key,
            device_type=f"DeviceType.{device_type}",
            self_device_time_total=micros,
            self_cpu_time_total=micros,
            is_user_annotation=annotation,
        )

    averages = [
        event("aten::mm", "CPU", 900.0),
        event("nvjet_tst_128x256", "CUDA", 800.0),
        event("ProfilerStep#1", "CUDA", 2000.0, annotation=True),
        event("Optimizer.step#AdamW.step", "CUDA", 300.0, annotation=True),
        event("multi_tensor_apply_kernel<FusedAdamMathFunctor>", "CUDA", 250.0),
    ]
    key, events = worker.counted_events(averages, cuda=True)
    assert key == "self_device_time_total"
    assert events == [
        ("nvjet_tst_128x256", 800.0),
        ("multi_tensor_apply_kernel<FusedAdamMathFunctor>", 250.0),
    ]
    assert worker.counted_events(averages, cuda=False) == ("self_cpu_time_total", [("aten::mm", 900.0)])


def test_peers_gpu_sorts_profiled_kernels_by_kind():
    """peers_gpu_torch.py's profile: CUDA kernel names (as torch.profiler gives them on an H100) go to the kind
    of work they do, and each kind's milliseconds a step add up over the counted steps."""
    worker = _load_script("peers_gpu_torch")
    kinds = {
        "pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel<Flash_bwd_kernel_traits<...>>": "attention",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x128": "attention",
        "fmha_cutlassF_bf16_aligned_64x64_rf_sm80": "attention",
        "triton_per_fused__to_copy_add_native_layer_norm_3": "fused elementwise (triton)",
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64": "convolution",
        "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4>>": (
            "optimizer"
        ),
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1": "matmul",
        "nvjet_tst_128x256_64x4_2x1_v_bz_coopB_TNN": "matmul",
        "Memcpy DtoD (Device -> Device)": "copy and fill",
        "void at::native::(anonymous namespace)::CatArrayBatchedCopy<float, unsigned int, 3, 128, 1>": "copy and fill",
        "void at::native::lpnorm_cleanup<float, (at::native::NormType)1, float, float>": "optimizer",
        "void at::native::index_elementwise_kernel<128, 4, scatter_gather>": "other",
        "aten::topk": "other",
        "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>": "copy and fill",
        "void at::native::reduce_kernel<512, 1, ReduceOp<float, ArgMaxOps<float>>>": "other",
    }
    assert {name: worker.kernel_kind(name) for name in kinds} == kinds
    events = [("nvjet_a", 3000.0), ("triton_b", 1000.0), ("nvjet_c", 1000.0), ("argmax", 500.0)]
    assert worker.step_time_by_kind(events, steps=2) == {
        "matmul": 2.0,
        "fused elementwise (triton)": 0.5,
        "other": 0.25,
    }
    assert list(worker.step_time_by_kind(events, steps=2)) == [
        "matmul",
        "fused elementwise (triton)",
        "other",
    ]


def test_peers_gpu_crop_flip_takes_each_image_from_its_padded_copy():
    """timm's augmentation in peers_gpu_torch.py: every output is a window of its own reflect-padded image at
    an offset in [0, 8], flipped or not; both flips and several offsets occur."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    worker = _load_script("peers_gpu_torch")
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = worker.crop_flip(images, 4, torch.Generator().manual_seed(0))
    padded = F.pad(images.float(), (4,) * 4, mode="reflect")
    found = []
    for image, crop in zip(padded, out):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(
                crop,
                image[:, dy : dy + 8, dx : dx + 8].flip(-1) if flip else image[:, dy : dy + 8, dx : dx + 8],
            )
        ]
        assert matches, "an output is no window of its padded image"
        found.append(matches[0])
    assert {flip for _, _, flip in found} == {False, True} and len({(dy, dx) for dy, dx, _ in found}) > 10


def test_peers_gpu_schedule_warms_up_then_decays_to_zero_and_replans_by_the_median_epoch():
    worker = _load_script("peers_gpu_torch")
    rates = [worker.learning_rate(step, 100, 3e-3, 0.1) for step in range(101)]
    assert rates[0] == pytest.approx(3e-4) and rates[9] == pytest.approx(3e-3)  # 10 warmup steps
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[100] == pytest.approx(0.0, abs=1e-12)
    # 3 epochs done in 30 s of a 100 s budget, a median epoch of 10 s (a slow first one left out): 7 more.
    assert worker.planned_epochs([9.0, 10.0, 30.0], 30.0, 100.0, 3) == 10
    assert worker.planned_epochs([10.0], 99.0, 100.0, 5) == 5  # no room for another


def test_op_profile_counts_the_device_when_the_trace_has_one():
    """A GPU trace has host and device ops: the device's are counted, by part and kind, the top ones listed."""
    profile = _load_script("op_profile")

    def row(where, kind, name, micros):
        return {
            "Host/device": where,
            "Operation Type": kind,
            "Operation Name": name,
            "Total self-time (us)": micros,
        }

    rows = [
        row("Host", "python", "fit", 9000.0),
        row("Device", "IDLE", "IDLE", 250.0),
        row("Device", "custom-call", "jit(train_step)/vit/transformer_block_3/attention/cudnn_fmha", 50.0),
        row("Device", "fusion", "jit(train_step)/vit/transformer_block_3/mlp_dense_1/dot_general", 30.0),
        row("Device", "fusion", "jit(train_step)/adamw/add", 15.0),
        row("Device", "fusion", "jit(train_step)/random_crop_flip/gather", 5.0),
    ]
    result = profile.report(rows, top=2)
    assert result["ops_on"] == "Device" and result["busy_seconds"] == pytest.approx(100e-6)
    assert result["idle_seconds"] == pytest.approx(250e-6)
    assert result["by_part_percent"] == {
        "attention": 50.0,
        "mlp": 30.0,
        "optimizer": 15.0,
        "augmentation": 5.0,
    }
    assert result["by_kind_percent"] == {"custom-call": 50.0, "fusion": 50.0}
    assert [op["percent"] for op in result["top_ops"]] == [50.0, 30.0]
    # A CPU trace: the host's ops; none at all is an error, not an empty table.
    assert profile.report([row("Host", "MatMul", "vit/attention/MatMul", 10.0)])["ops_on"] == "Host"
    with pytest.raises(ValueError, match="no host ops"):
        profile.report([row("Host", "IDLE", "IDLE", 10.0)])


def test_op_profile_reads_a_compressed_trace(tmp_path):
    """gpu_cifar10.sh brings the trace back gzipped (step.xplane.pb.gz): it is unpacked before xprof reads it."""
    import gzip

    profile = _load_script("op_profile")
    trace = tmp_path / "run" / "step.xplane.pb.gz"
    trace.parent.mkdir()
    trace.write_bytes(gzip.compress(b"xspace bytes"))
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    for given in (trace, trace.parent):
        (path,) = profile.xplane_files(given, unpacked)
        assert Path(path).read_bytes() == b"xspace bytes" and path.endswith("step.xplane.pb")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no .xplane.pb under"):
        profile.xplane_files(empty, unpacked)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        profile.xplane_files(tmp_path / "missing", unpacked)


def test_peers_gpu_reports_a_failed_side_and_keeps_the_others(tiny_tree, tmp_path, monkeypatch):
    """A side that fails leaves a `failed` line; the sides after it still run, the table and chart are written
    from what was measured, and the exit status is 1."""
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the script sets its own JAX variables on import
    peers = _load_script("peers_gpu")

    def keras_fails(args, shape, work):
        raise RuntimeError("keras_vit.train failed (exit 1):\nout of memory")

    timm_row = {"framework": "timm", "measurement": "train", "images_per_second": 50.0, "accuracy": 0.5}
    first_run = {"framework": "airbench", "measurement": "train94", "run": 0, "seconds": 3.0}
    first_run.update(accuracy=0.9, accuracy_tta=0.91)

    def torch_side(args, job):
        if job["task"] == "airbench":  # its first run printed, then the process died
            raise peers.SideFailed("peers_gpu_torch.py airbench failed (exit -9)", [first_run])
        return [dict(timm_row, seconds=3.0, epochs=2)]

    monkeypatch.setattr(peers, "run_keras", keras_fails)
    monkeypatch.setattr(peers, "run_torch", torch_side)
    argv = ["--tiny", "--data", str(tiny_tree), "--output", str(tmp_path)]
    assert peers.main([*argv, "--sides", "keras_vit", "timm", "airbench"]) == 1
    rows = [json.loads(line) for line in (tmp_path / "peers_gpu.jsonl").read_text().splitlines()]
    assert [row["framework"] for row in rows] == ["keras_vit", "timm", "airbench", "airbench"]
    assert "out of memory" in rows[0]["failed"] and rows[1]["images_per_second"] == 50.0
    assert rows[2]["run"] == 0 and "exit -9" in rows[3]["failed"]
    table = (tmp_path / "peers_gpu.md").read_text()
    assert "| keras_vit | failed (see peers_gpu.jsonl) |" in table and "| timm |" in table
    assert "| airbench run 0 |" in table and "airbench94 on this copy, 1 runs: 91.00%" in table
    assert "keras_vit over timm" not in table and (tmp_path / "peers_gpu.png").stat().st_size > 0


def test_peers_gpu_kills_a_side_at_the_deadline_and_keeps_what_it_printed(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the script sets its own JAX variables on import
    peers = _load_script("peers_gpu")
    monkeypatch.setattr(peers, "MIN_CHILD_SECONDS", 1.0)
    import argparse
    import time

    args = argparse.Namespace(deadline=0.0, start=time.monotonic() - 29.0)  # 1 s left, the margin included
    code = "import json, time; print(json.dumps({'framework': 'airbench', 'run': 0}), flush=True); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(peers.SideFailed, match="still running after 1 s") as caught:
        peers.run_child(args, [sys.executable, "-c", code], "a slow side")
    assert time.monotonic() - started < 30 and caught.value.rows == [{"framework": "airbench", "run": 0}]


def test_ort_op_profile_sums_kernel_time_by_op_type(tmp_path):
    """benchmarks/ort_op_profile.py on a two-op ONNX file: each op type's nodes and share, written as JSON."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    weight = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "tiny.onnx")
    profile = _load_script("ort_op_profile")
    argv = [str(tmp_path / "tiny.onnx"), "--batch", "3", "1", "--runs", "4", "--warmup", "1"]
    assert profile.main([*argv, "--output", str(tmp_path / "ops.json")]) == 0
    report = json.loads((tmp_path / "ops.json").read_text())
    assert report["machine"]["cpu"] and [r["batch"] for r in report["results"]] == [3, 1]
    for result in report["results"]:
        ops = {row["op"]: row for row in result["ops"]}
        assert set(ops) == {"MatMul", "Relu"} and all(row["nodes"] == 1 for row in ops.values())
        assert sum(row["percent"] for row in ops.values()) == pytest.approx(100.0, abs=0.05)
    with pytest.raises(SystemExit):
        profile.main([str(tmp_path / "missing.onnx")])
