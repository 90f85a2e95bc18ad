"""Tests for keras_vit.training.distribute: data and model parallel on JAX's virtual CPU devices."""

import json

import numpy as np
import pytest
from conftest import run_python

from keras_vit.training import distribute


def run_on_devices(code, *args, devices=4, timeout=600):
    """`python -c code args` under JAX with `devices` virtual CPU devices."""
    flags = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return run_python(code, *args, backend="jax", timeout=timeout, env=flags)


def test_parse_mesh_and_its_errors():
    assert distribute.parse_mesh("2x4") == (2, 4) and distribute.parse_mesh("1X2") == (1, 2)
    for bad in ("4", "2x2x2", "0x4", "ax2", ""):
        with pytest.raises(ValueError, match="DATAxMODEL"):
            distribute.parse_mesh(bad)


def test_distribution_needs_jax_and_a_mesh_that_fits():
    assert distribute.distribution("none") is None
    with pytest.raises(ValueError, match="JAX backend only"):
        distribute.distribution("data")  # this process runs TensorFlow
    with pytest.raises(ValueError, match="unknown distribution"):
        distribute.distribution("pipeline")
    distribute.check_model_fits_mesh({"num_heads": 4, "mlp_dim": 64}, (1, 2))
    with pytest.raises(ValueError, match=r"must divide num_heads \(3\)"):
        distribute.check_model_fits_mesh({"num_heads": 3, "mlp_dim": 64}, (1, 2))


def test_check_model_fits_mesh_reads_presets_dicts_and_built_models():
    from keras_vit.models import build_vit

    with pytest.raises(ValueError, match=r"model axis \(2 devices\) must divide num_heads \(3\)"):
        distribute.check_model_fits_mesh("vit_cifar10", (4, 2))
    distribute.check_model_fits_mesh({"preset": "vit_cifar10", "num_heads": 12}, (4, 2))  # 12 heads, MLP 384
    with pytest.raises(ValueError, match=r"must divide mlp_dim \(64\)"):
        distribute.check_model_fits_mesh(
            {"preset": "vit_micro", "num_heads": 6}, (1, 3)
        )  # MLP from the preset
    distribute.check_model_fits_mesh(build_vit("vit_micro"), (2, 2))  # 2 heads, MLP 64
    with pytest.raises(ValueError, match=r"must divide num_heads \(2\)"):
        distribute.check_model_fits_mesh(build_vit("vit_micro"), (1, 4))
    with pytest.raises(ValueError, match="Unknown preset"):
        distribute.check_model_fits_mesh("vit_huge", (1, 2))


# distribution(..., model=...) on a 2x2 mesh: vit_cifar10's 3 heads are refused before any variable exists, its
# 12-head variant builds with its query kernels split; data parallel takes any model.
MODEL_CHECKED = """
import json
import keras
from keras_vit.models import build_vit
from keras_vit.training.distribute import distribution

try:
    distribution("model", (2, 2), model="vit_cifar10")
    refused = ""
except ValueError as error:
    refused = str(error)
vit = {"preset": "vit_cifar10", "num_heads": 12}
keras.distribution.set_distribution(distribution("model", (2, 2), model=vit))
query = {v.path: v for v in build_vit(**vit).weights}["block_0/attention/query/kernel"]
data = distribution("data", model="vit_cifar10")
print(json.dumps({"refused": refused, "query": list(query.value.sharding.spec), "data": type(data).__name__}))
"""


def test_distribution_refuses_a_model_the_mesh_does_not_divide():
    done = run_on_devices(MODEL_CHECKED, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "refused": "the model axis (2 devices) must divide num_heads (3)",
        "query": [None, "model", None],
        "data": "DataParallel",
    }, result


# Trains vit_micro for one epoch of 4 steps (batch 32, crop+flip in the step) on one device, on 4 devices data
# parallel and on a 2x2 mesh; prints the largest weight difference of each against one device, the sharding of
# a query kernel and an MLP kernel on the mesh, and saves the mesh-trained model with its logits on fixed images.
SAME_STEPS = """
import json, sys
import keras
import numpy as np
from keras_vit.models import build_vit
from keras_vit.training import distribute
from keras_vit.training.batches import TrainingBatches
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.recipes import training_recipe
from keras_vit.training.trainer import make_trainer

out = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (128, 32, 32, 3)).astype("uint8")
y = rng.integers(0, 10, 128)


def trained(kind, mesh=None):
    keras.distribution.set_distribution(distribute.distribution(kind, mesh))
    keras.utils.set_random_seed(0)
    model = build_vit("vit_micro")
    trainer = make_trainer(model, training_recipe("basic"), label_smoothing=0.1, seed=0)
    trainer.compile(optimizer=make_optimizer("adamw", 1e-3))
    trainer.fit(TrainingBatches(x, y, 32, seed=0), epochs=1, verbose=0)
    keras.distribution.set_distribution(None)
    return model


single = trained("none")
result = {"devices": len(keras.distribution.list_devices())}
for kind, mesh in (("data", None), ("model", (2, 2))):
    model = trained(kind, mesh)
    result[kind] = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), model.get_weights()))
    result[kind + "_moved"] = max(
        float(np.max(np.abs(a - b))) for a, b in zip(build_vit("vit_micro").get_weights(), model.get_weights())
    )
variables = {v.path: v for v in model.trainable_variables}
result["query_sharding"] = str(variables["block_0/attention/query/kernel"].value.sharding.spec)
result["mlp_sharding"] = str(variables["block_0/mlp_hidden/kernel"].value.sharding.spec)
model.save(out + "/mesh.keras")
images = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
np.savez(out + "/mesh_logits.npz", images=images, logits=model.predict(images, verbose=0))
print(json.dumps(result))
"""


def test_data_and_model_parallel_train_as_one_device_and_save_an_ordinary_file(tmp_path):
    done = run_on_devices(SAME_STEPS, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["data"] < 1e-5 and result["model"] < 1e-5, result  # float tolerance of 4 steps
    assert result["data_moved"] > 1e-3 and result["model_moved"] > 1e-3, result  # they trained
    assert "model" in result["query_sharding"] and "model" in result["mlp_sharding"], result
    from keras_vit import load_model  # under TensorFlow, this process's backend

    saved = np.load(tmp_path / "mesh_logits.npz")
    logits = load_model(tmp_path / "mesh.keras").predict(saved["images"], verbose=0)
    np.testing.assert_allclose(logits, saved["logits"], atol=1e-5)


# The training command split over 4 devices: an interrupted run resumed ends with the uninterrupted run's
# weights; a validation split of 18 images validates on 16.
RESUMED = """
import sys
import numpy as np
from keras_vit import load_model, train
from tests.conftest import run_interrupted

data, out = sys.argv[1], sys.argv[2]


def args(name):
    return ["--preset", "vit_micro", "--epochs", "2", "--batch-size", "32", "--verbose", "0", "--data-dir", data,
            "--validation-split", "0.15", "--distribute", "data", "--output", f"{out}/{name}"]


assert train.main(args("whole")) == 0
run_interrupted(train.main, args("pieces"))
assert train.main(args("pieces")) == 0
whole = load_model(f"{out}/whole/model.keras").get_weights()
pieces = load_model(f"{out}/pieces/model.keras").get_weights()
print("gap", max(float(np.max(np.abs(a - b))) for a, b in zip(whole, pieces)))
"""


def test_a_data_parallel_run_resumes_to_the_uninterrupted_weights(tiny_tree, tmp_path):
    done = run_on_devices(RESUMED, tiny_tree, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Distributing: data parallel on a 4 (batch) device mesh" in done.stdout
    assert "Validating on 16 of the 18 validation images (a multiple of 4 devices)" in done.stdout
    assert float(done.stdout.split("gap")[-1]) == 0.0
    metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["args"]["distribute"] == "data" and metrics["epochs"] == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--distribute", "model", "--mesh", "3x1"], "a 3x1 mesh needs 3 devices; there are 4"),
        (["--distribute", "data", "--batch-size", "30"], "--batch-size 30 does not split over 4 devices"),
        (["--distribute", "model", "--mesh", "1x4"], "must divide num_heads (2)"),
        (["--mesh", "2x2"], "--mesh is for --distribute model"),
        # A batch above the training set was one smaller batch, which did not split: a JAX traceback.
        (
            ["--distribute", "data", "--batch-size", "200"],
            "--batch-size 200 is more than the 108 training images",
        ),
    ],
)
def test_bad_distribution_flags_say_why(tiny_tree, tmp_path, flags, message):
    code = "import sys; from keras_vit import train; sys.exit(train.main(sys.argv[1:]))"
    args = ["--preset", "vit_micro", "--epochs", "1", "--data-dir", tiny_tree, "--output", tmp_path / "run"]
    done = run_on_devices(code, *args, *flags)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_batch_of_the_whole_training_set_is_not_refused(tiny_tree, tmp_path):
    """The refusal is for a batch above the training set: --batch-size 108, all of the training images (a
    multiple of 4 devices), trains one step an epoch."""
    code = "import sys; from keras_vit import train; sys.exit(train.main(sys.argv[1:]))"
    args = ["--preset", "vit_micro", "--epochs", "1", "--data-dir", tiny_tree, "--output", tmp_path / "run"]
    done = run_on_devices(code, *args, "--distribute", "data", "--batch-size", "108", "--verbose", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "model.keras").exists()


def test_distribute_on_tensorflow_needs_devices_and_model_parallel_needs_jax(tiny_tree, tmp_path, capsys):
    from keras_vit import train

    args = ["--preset", "vit_micro", "--data-dir", str(tiny_tree), "--output", str(tmp_path / "run")]
    assert train.main([*args, "--distribute", "data"]) == 2  # this process: one CPU device
    assert "mirrors the model over several devices; this process sees 1" in capsys.readouterr().err
    assert train.main([*args, "--distribute", "model"]) == 2
    assert "JAX backend only" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.keras").exists()


# TensorFlow's MirroredStrategy over two logical CPU devices against one device: the same weights without the
# gradient clip (Keras clips each device's share by its own norm), and a run with crop+flip and the clip trains
# (its weights move from the ones it started from).
MIRRORED = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from keras_vit import build_vit, load_model, train

data, out = sys.argv[1], sys.argv[2]
common = ["--preset", "vit_micro", "--epochs", "1", "--batch-size", "16", "--verbose", "0", "--data-dir", data,
          "--validation-split", "0.15"]
runs = {"one": ["--augment", "none", "--clipnorm", "0"],
        "mirrored": ["--augment", "none", "--clipnorm", "0", "--distribute", "data"],
        "augmented": ["--distribute", "data"]}
for name, flags in runs.items():
    assert train.main([*common, *flags, "--output", f"{out}/{name}"]) == 0, name
one, mirrored, augmented = (load_model(f"{out}/{name}/model.keras").get_weights() for name in runs)
keras.utils.set_random_seed(0)  # train's --seed: the weights the runs started from
start = build_vit("vit_micro").get_weights()
print(json.dumps({"gap": max(float(np.max(np.abs(a - b))) for a, b in zip(one, mirrored)),
                  "augmented_moved": max(float(np.max(np.abs(a - b))) for a, b in zip(augmented, start)),
                  "augmented_finite": all(bool(np.all(np.isfinite(w))) for w in augmented)}))
"""


def test_tensorflow_mirrored_strategy_trains_as_one_device(tiny_tree, tmp_path):
    done = run_python(MIRRORED, tiny_tree, tmp_path, backend="tensorflow", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Distributing: data parallel over 2 devices (tf.distribute.MirroredStrategy)" in done.stdout
    assert "note: under tf.distribute, Keras clips each device's share" in done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["gap"] < 1e-5, result
    assert result["augmented_finite"] and result["augmented_moved"] > 1e-3, result


# Several processes (run_processes): each trains on its share of every batch; process 1 leaves after its second
# step.
PROCESS = """
import os, sys, time
import keras
import numpy as np
from keras_vit import build_vit
from keras_vit.training.recipes import AUGMENT_RECIPES
from keras_vit.training.batches import TrainingBatches
from keras_vit.training.distribute import distribution
from keras_vit.training.processes import join_processes, process_share, stop_when_a_process_fails
from keras_vit.training.optimizers import make_optimizer
from keras_vit.training.trainer import make_trainer

port, process_id, processes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if processes > 1:
    join_processes(f"127.0.0.1:{port}", processes, process_id)
keras.distribution.set_distribution(distribution("data"))
keras.utils.set_random_seed(0)
model = build_vit("vit_micro")
trainer = make_trainer(model, AUGMENT_RECIPES["basic"], label_smoothing=0.1, seed=0)  # augmentation in the step
trainer.compile(optimizer=make_optimizer("adamw", 1e-3))
index, count = process_share()
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
labels = rng.integers(0, 10, 64).astype("int32")
batches = TrainingBatches(images, labels, 16, process_index=index, process_count=count)
def die(batch, logs):
    if batch == 1:
        print("died at", time.time(), file=sys.stderr, flush=True)
        os._exit(3)


leave = keras.callbacks.LambdaCallback(on_train_batch_end=die)
with stop_when_a_process_fails():
    trainer.fit(batches, epochs=50, callbacks=[leave] if index == 1 else [], verbose=0)
print("process", index, "of", count, "done")
"""


def run_processes(count, timeout=300):
    """Starts `count` processes of PROCESS (JAX on one CPU device each, the coordinator on 127.0.0.1)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from conftest import REPO_ROOT

    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, str(port), str(i), str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    results = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        results.append((proc.returncode, stdout, stderr, time.time()))
    return results


def test_a_dead_process_stops_the_other():
    """Two processes on this machine (gloo over 127.0.0.1), each with its share of every batch: when one dies, the
    other says so and exits instead of waiting. (That two processes train as one is checked end to end, through
    the command, by tests/test_train_processes.py.)"""
    died = run_processes(2)
    (survivor_code, _, survivor_err, survivor_ended), (dead_code, _, dead_err, _) = died
    assert dead_code == 3
    seconds = survivor_ended - float(dead_err.split("died at ")[-1].split()[0])
    assert survivor_code == 1, survivor_err[-3000:]
    assert "error: process 0 of 2 stopped:" in survivor_err, survivor_err[-3000:]
    # The survivor is well: its line says that another process stopped first.
    assert "(another process of the job stopped first: its own output says why)" in survivor_err
    assert seconds < 60  # after the death: not JAX's heartbeat timeout (100 s) and shutdown abort


# The training command on 4 devices with the rest of its machinery: a teacher (with its flip), EMA, the time
# budget and a streamed image folder; each against the same command on one device.
COMBINED = """
import json, sys
import numpy as np
import keras
from keras_vit import load_model, train
from keras_vit.models.teachers import build_teacher

data, out = sys.argv[1], sys.argv[2]
build_teacher("resnet9", width=4).save(f"{out}/teacher.keras")
common = ["--preset", "vit_micro", "--epochs", "1", "--batch-size", "16", "--verbose", "0", "--data-dir", data,
          "--validation-split", "0", "--teacher", f"{out}/teacher.keras", "--teacher-flip", "--ema-momentum", "0.9",
          "--time-budget", "600", "--max-epochs", "1", "--stream", "--image-size", "32"]
runs = {"one": [], "data": ["--distribute", "data"], "model": ["--distribute", "model", "--mesh", "2x2"]}
for name, flags in runs.items():
    assert train.main([*common, *flags, "--output", f"{out}/{name}"]) == 0, name
weights = {name: load_model(f"{out}/{name}/model.keras").get_weights() for name in runs}
gaps = {name: max(float(np.max(np.abs(a - b))) for a, b in zip(weights["one"], weights[name])) for name in runs}
metrics = {name: json.loads(open(f"{out}/{name}/metrics.json").read()) for name in runs}
print(json.dumps({"gaps": gaps, "metrics": {k: {"epochs": m["epochs"], "args": m["args"]} for k, m in metrics.items()}}))
"""


def test_distributed_runs_keep_the_teacher_ema_time_budget_and_streaming(tiny_tree, tmp_path):
    done = run_on_devices(COMBINED, tiny_tree, tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["gaps"]["data"] < 1e-5 and result["gaps"]["model"] < 1e-5, result["gaps"]
    for name, kind in (("one", "none"), ("data", "data"), ("model", "model")):
        metrics = result["metrics"][name]
        assert metrics["epochs"] == 1
        args = metrics["args"]
        assert args["distribute"] == kind and args["stream"] and args["ema_momentum"] == 0.9, args
        assert args["teacher"] and args["teacher_flip"] and args["time_budget"] == 600, args


# Each augmentation layer in a MirroredStrategy over two logical CPU devices, on a batch of 8 identical images
# (4 a device): prints, per layer, whether the devices' shares came out alike, and whether the images within a
# share differ.
SHARES = """
import json
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from keras_vit.training.augment import RandAugment, RandomCropFlip, RandomErasing

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
image = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
batch = tf.data.Dataset.from_tensors(np.repeat(image, 8, axis=0))
result = {}
layers = {"crop_flip": RandomCropFlip, "randaugment": RandAugment, "erasing": lambda seed: RandomErasing(1.0, seed=seed)}
for name, make in layers.items():
    with strategy.scope():
        layer = make(seed=0)
    step = tf.function(lambda images: layer(images, training=True))
    shares = strategy.experimental_local_results(strategy.run(step, args=(next(iter(strategy.experimental_distribute_dataset(batch))),)))
    first, second = (np.asarray(share) for share in shares)
    result[name] = {"alike": bool(np.array_equal(first, second)), "varied": len({x.tobytes() for x in first}) > 1}
print(json.dumps(result))
"""


def test_each_device_of_a_tensorflow_strategy_draws_its_own_augmentation():
    done = run_python(SHARES, backend="tensorflow", timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, seen in result.items():
        assert seen == {"alike": False, "varied": True}, (name, seen)


def test_fewer_validation_images_than_devices_is_said_not_skipped_silently(monkeypatch, capsys):
    """Two validation images over four devices: Keras warned that its input ran out of data and validated nothing."""
    from types import SimpleNamespace

    import numpy as np

    from keras_vit.training import train_command

    monkeypatch.setattr(train_command, "_batch_shards", lambda: 4)
    splits = SimpleNamespace(x_val=np.zeros((2, 8, 8, 3), "uint8"), y_val=np.zeros(2, "int32"))
    assert train_command._validation(splits, SimpleNamespace(batch_size=8)) == {}
    assert (
        "warning: no validation: the 2 validation images are fewer than the 4 devices"
        in capsys.readouterr().out
    )
