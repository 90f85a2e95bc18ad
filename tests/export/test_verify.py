"""Tests for export/verify.py: every exported file runs in its own runtime, at any batch size."""

from types import SimpleNamespace

import numpy as np
import pytest
from export_helpers import FILES

from export import verify
from export.verify import open_export

pytest_plugins = ["export_fixtures"]


@pytest.mark.parametrize("name", FILES)
def test_dynamic_batch(export_dir, trained, name):
    model = open_export(str(export_dir / name))
    x, logits = trained["x_test"], trained["logits"]
    for n in (1, 7, 3):  # one runtime call per size; back down to check re-allocation
        out = model.predict(x[:n], batch_size=n)
        assert out.shape == (n, 10)
        if name in ("savedmodel", "model_fp32.tflite", "model.onnx"):
            np.testing.assert_allclose(out, logits[:n], atol=1e-4, rtol=0)
        else:
            np.testing.assert_array_equal(out.argmax(1), logits[:n].argmax(1))


# The proof itself, called directly: a fake runtime gives chosen logits, so each refusal is exercised.


class FakeRunner:
    """A "runtime" answering `logits[i]` for image `i` (images are their own indices).

    Args:
        logits: `(n, classes)` answers for the whole test set.
        broken_batch: optional size of the one runtime call that goes wrong.
        failure: how it goes wrong: `"raise"`, `"shape"` or `"nan"`.
    """

    def __init__(self, logits, broken_batch=None, failure="raise", message="cannot resize the input tensor"):
        self.logits, self.broken_batch, self.failure = np.asarray(logits, np.float32), broken_batch, failure
        self.message = message

    def predict(self, images, batch_size=64):
        out = self.logits[np.asarray(images)[:, 0].astype(int)]
        if len(images) == self.broken_batch:
            if self.failure == "raise":
                raise RuntimeError(self.message)
            if self.failure == "shape":
                return out[:-1]
            out = out.copy()
            out[0, 0] = np.nan
        return out


def make_reference(keras_logits, labels=None):
    """A `verify.Reference` without a Keras model: images are indices, `keras_logits` Keras's answers."""
    keras_logits = np.asarray(keras_logits, np.float64)
    x = np.arange(len(keras_logits), dtype=np.float32)[:, None]
    data = SimpleNamespace(x_eval=x, y_eval=labels, real=labels is not None, source="planted logits")
    reference = verify.Reference.__new__(verify.Reference)
    reference.data, reference.x, reference.logits = data, x, keras_logits
    reference.top1 = keras_logits.argmax(axis=1)
    reference.labels = labels if labels is not None else reference.top1
    reference.keras_accuracy = verify.accuracy_percent(keras_logits, reference.labels)
    return reference


def prove_with(monkeypatch, tmp_path, reference, runner, **kwargs):
    path = str(tmp_path / "model.file")
    (tmp_path / "model.file").write_bytes(b"0" * 10)
    opened = []
    monkeypatch.setattr(verify, "open_export", lambda path: opened.append(path) or runner)
    result = verify.prove(path, reference, name="planted", **kwargs)
    assert opened == [path]  # the file given, loaded once
    return result


def confident_logits(n, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), rng.integers(0, classes, n)] += 10.0  # one clear winner per image
    return logits


def test_limits_are_the_documented_ones():
    assert verify.FLOAT_ATOL == 1e-4
    assert verify.MAX_ACCURACY_DROP == {"float16": 0.1, "dynamic": 1.0, "int8": 1.0}
    assert verify.DYNAMIC_BATCH_SIZES == (1, 7)


def test_float_file_equal_to_keras_passes(monkeypatch, tmp_path):
    logits = confident_logits(20)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(logits + 5e-5))
    assert result["passed"] and result["failures"] == []
    assert set(result["dynamic_batch"]) == {"1", "7"}
    verify.require_pass([result])  # no error


def test_float_file_with_one_top1_flip_fails_within_the_logit_tolerance(monkeypatch, tmp_path):
    """Two classes 2e-5 apart on image 11: the file swaps them, every logit within FLOAT_ATOL."""
    logits = confident_logits(20)
    winner = logits[11].argmax()
    runner_up = (winner + 1) % 10
    logits[11, runner_up] = logits[11, winner] - 2e-5
    exported = logits.copy()
    exported[11, [winner, runner_up]] = exported[11, [runner_up, winner]]
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(exported))
    assert result["max_abs_diff"] <= verify.FLOAT_ATOL and result["top1_agree"] == 19
    assert not result["passed"]
    assert result["failures"] == ["top-1 differs on 1/20 images (first: [11])"]
    with pytest.raises(verify.ProofError, match=r"planted: top-1 differs on 1/20") as raised:
        verify.require_pass([result], output="out", previous=True)
    assert "previous export at out is untouched" in str(raised.value)
    assert raised.value.results == [result]


def test_float_file_beyond_the_logit_tolerance_fails(monkeypatch, tmp_path):
    logits = confident_logits(20)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(logits + 2e-4))
    assert not result["passed"]
    assert any(f.startswith("max |logit diff|") for f in result["failures"])


def quantized_case(wrong_more, n=2000, keras_right=1800):
    """Keras right on `keras_right` of `n` labelled images; the file wrong on `wrong_more` more of them
    (a negative `wrong_more`: right on that many more)."""
    labels = np.arange(n) % 10
    keras = np.zeros((n, 10))
    answers = labels.copy()
    answers[keras_right:] = (labels[keras_right:] + 1) % 10
    keras[np.arange(n), answers] = 5.0
    exported = keras.copy()
    changed = slice(0, wrong_more) if wrong_more >= 0 else slice(keras_right, keras_right - wrong_more)
    rows = np.arange(n)[changed]
    exported[rows] = 0.0
    exported[rows, (answers[rows] + 2) % 10 if wrong_more >= 0 else labels[rows]] = 5.0
    return make_reference(keras, labels), FakeRunner(exported)


@pytest.mark.parametrize("quantize", sorted(verify.MAX_ACCURACY_DROP))
@pytest.mark.parametrize(
    ("points_below_limit", "passes"), [(-0.05, False), (0.0, True), (0.05, True)], ids=["over", "at", "under"]
)
def test_quantized_accuracy_drop_at_its_limit(monkeypatch, tmp_path, quantize, points_below_limit, passes):
    """On 2000 labelled images one image is 0.05 points: a drop just over the format's limit fails,
    one at or just under it passes."""
    limit = verify.MAX_ACCURACY_DROP[quantize]
    wrong_more = round((limit - points_below_limit) / 0.05)
    reference, runner = quantized_case(wrong_more)
    result = prove_with(monkeypatch, tmp_path, reference, runner, quantize=quantize)
    assert result["keras_accuracy"] == pytest.approx(90.0)
    assert result["accuracy_drop"] == pytest.approx(limit - points_below_limit)
    assert result["tolerance"] == {"accuracy_drop_points": limit}
    assert result["passed"] is passes, result["failures"]
    if not passes:
        assert "points below Keras" in result["failures"][0]
        with pytest.raises(verify.ProofError, match="points below Keras"):
            verify.require_pass([result])


@pytest.mark.parametrize(("wrong_more", "passes"), [(1, True), (2, False)])
def test_a_proof_on_few_images_allows_one_image(monkeypatch, tmp_path, wrong_more, passes):
    """On 500 images one image is 0.2 points, over float16's 0.1: the limit is then one image (a float16 file
    that flipped one image of 500 failed), and two images fail."""
    reference, runner = quantized_case(wrong_more, n=500, keras_right=450)
    result = prove_with(monkeypatch, tmp_path, reference, runner, quantize="float16")
    assert result["tolerance"] == {"accuracy_drop_points": pytest.approx(0.2)}
    assert result["passed"] is passes, result["failures"]
    if not passes:
        assert result["failures"][0].endswith("0.40 points below Keras 90.00% (allowed one image of 500)")


@pytest.mark.parametrize("quantize", sorted(verify.MAX_ACCURACY_DROP))
def test_quantized_file_far_below_keras_fails_and_above_keras_passes(monkeypatch, tmp_path, quantize):
    reference, runner = quantized_case(1000)  # 50 points below Keras
    assert not prove_with(monkeypatch, tmp_path, reference, runner, quantize=quantize)["passed"]
    reference, runner = quantized_case(-100)  # 5 points above Keras: not a drop
    result = prove_with(monkeypatch, tmp_path, reference, runner, quantize=quantize)
    assert result["accuracy_drop"] == pytest.approx(-5.0) and result["passed"], result["failures"]


def test_explicit_max_drop_replaces_the_format_limit(monkeypatch, tmp_path):
    reference, runner = quantized_case(40)  # 2 points
    assert not prove_with(monkeypatch, tmp_path, reference, runner, quantize="int8")["passed"]
    assert prove_with(monkeypatch, tmp_path, reference, runner, quantize="int8", max_drop=2.0)["passed"]


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("failure", ["raise", "shape", "nan"])
def test_a_runtime_failing_at_batch_7_fails_the_dynamic_batch_check(monkeypatch, tmp_path, quantize, failure):
    logits = confident_logits(20)
    result = prove_with(
        monkeypatch, tmp_path, make_reference(logits), FakeRunner(logits, 7, failure), quantize=quantize
    )
    assert not result["passed"]
    assert len(result["failures"]) == 1 and result["failures"][0].startswith("batch of 7 "), result[
        "failures"
    ]
    assert list(result["dynamic_batch"]) == ["1"]
    with pytest.raises(verify.ProofError, match="batch of 7"):
        verify.require_pass([result], output="out")


def test_a_float_file_off_only_at_batch_7_fails(monkeypatch, tmp_path):
    """Right in batches of 64 but off by more than FLOAT_ATOL in the single call of 7 images."""
    logits = confident_logits(20)

    class OffAtSeven(FakeRunner):
        def predict(self, images, batch_size=64):
            return super().predict(images, batch_size) + (1e-3 if len(images) == 7 else 0.0)

    result = prove_with(monkeypatch, tmp_path, make_reference(logits), OffAtSeven(logits))
    assert result["failures"] == ["batch of 7: max |logit diff| 0.001 > 0.0001"]
    # Only the batch that passed is listed, and printed as ok.
    assert list(result["dynamic_batch"]) == ["1"]
    first, failed = verify.format_result(result).splitlines()
    assert ", batch 1 ok, " in first and "1/7" not in first
    assert failed == "     FAILED: batch of 7: max |logit diff| 0.001 > 0.0001"


def test_a_file_its_runtime_cannot_open_fails(monkeypatch, tmp_path, capsys):
    def refuse(path):
        raise ValueError("not a flatbuffer")

    (tmp_path / "model.file").write_bytes(b"0")
    monkeypatch.setattr(verify, "open_export", refuse)
    result = verify.prove(str(tmp_path / "model.file"), make_reference(confident_logits(8)), name="broken")
    assert not result["passed"] and result["failures"] == ["cannot run in its runtime: not a flatbuffer"]
    assert result["quantize"] == "none"
    assert capsys.readouterr().out == "FAIL broken: cannot run in its runtime: not a flatbuffer\n"


# Every number a proof reports, against values computed here.


def test_a_float_proof_reports_every_number(monkeypatch, tmp_path, capsys):
    logits = confident_logits(20)
    labels = logits.argmax(1)
    labels[:4] = (labels[:4] + 1) % 10  # Keras is right on 16 of 20
    exported = logits + np.linspace(0, 4e-5, 10)  # 4e-5 at most
    runner = FakeRunner(exported)
    runner.input_dtype = np.dtype("uint8")
    result = prove_with(monkeypatch, tmp_path, make_reference(logits, labels), runner)
    diff = np.abs(exported.astype(np.float32).astype(np.float64) - logits)
    batch_1 = float(diff[:1].max())
    assert result == {
        "name": "planted",
        "quantize": "none",
        "size_bytes": 10,
        "images": 20,
        "real_images": True,
        "data_source": "planted logits",
        "max_abs_diff": pytest.approx(diff.max()),
        "mean_abs_diff": pytest.approx(diff.mean()),
        "top1_agree": 20,
        "top1_agreement": 100.0,
        "accuracy": 80.0,
        "keras_accuracy": 80.0,
        "accuracy_vs": "labels",
        "input_dtype": "uint8",
        "tolerance": {"max_abs_diff": 1e-4, "top1": "identical on every image"},
        "dynamic_batch": {
            "1": {"max_abs_diff_vs_keras": pytest.approx(batch_1), "max_abs_diff_vs_batched": 0.0},
            "7": {
                "max_abs_diff_vs_keras": pytest.approx(float(diff[:7].max())),
                "max_abs_diff_vs_batched": 0.0,
            },
        },
        "passed": True,
        "failures": [],
    }
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == verify.format_result(result)
    assert printed == (
        f"PASS planted          max|dlogit| {diff.max():.2e}, top-1 same as Keras 20/20, accuracy 80.00% "
        "(Keras 80.00%), batch 1/7 ok, 0.000 MB"
    )


def test_a_quantized_proof_without_labels_measures_against_keras_top1(monkeypatch, tmp_path):
    logits = confident_logits(40)
    exported = logits.copy()
    exported[:2] = np.roll(exported[:2], 1, axis=1)  # two images answered differently
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(exported), quantize="int8")
    assert result["real_images"] is False and result["accuracy_vs"] == "keras_top1"
    assert result["top1_agree"] == 38 and result["top1_agreement"] == pytest.approx(95.0)
    assert result["keras_accuracy"] == 100.0 and result["accuracy"] == pytest.approx(95.0)
    assert result["accuracy_drop"] == pytest.approx(5.0)
    # One image of 40 is 2.5 points, over int8's 1: one image is allowed, not two.
    assert result["failures"] == [
        "accuracy 95.00% is 5.00 points below Keras 100.00% (allowed one image of 40)"
    ]
    assert verify.format_result(result).splitlines() == [
        f"FAIL planted          max|dlogit| {result['max_abs_diff']:.2e}, top-1 same as Keras 38/40, accuracy "
        "95.00% (Keras top-1 100.00%), batch 1/7 ok, 0.000 MB, drop +5.00 pt (max 2.5)",
        "     FAILED: accuracy 95.00% is 5.00 points below Keras 100.00% (allowed one image of 40)",
    ]
    # A quantized file's batches are compared for shape and finiteness, not against the float tolerance.
    assert result["dynamic_batch"]["7"]["max_abs_diff_vs_batched"] == 0.0


def test_a_float_file_beyond_the_tolerance_names_the_difference_and_the_limit(monkeypatch, tmp_path):
    logits = confident_logits(20)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(logits + 0.5), atol=0.25)
    assert result["failures"][0] == "max |logit diff| 0.5 > 0.25"
    assert result["failures"][1:] == [
        "batch of 1: max |logit diff| 0.5 > 0.25",
        "batch of 7: max |logit diff| 0.5 > 0.25",
    ]
    assert result["tolerance"]["max_abs_diff"] == 0.25
    assert result["dynamic_batch"] == {} and ", no batch ok, " in verify.format_result(result)


def test_a_file_its_runtime_cannot_open_reports_what_it_knows(monkeypatch, tmp_path):
    def refuse(path):
        raise ValueError("not a\n   flatbuffer " + "x" * 400)

    (tmp_path / "model.file").write_bytes(b"012")
    monkeypatch.setattr(verify, "open_export", refuse)
    result = verify.prove(
        str(tmp_path / "model.file"), make_reference(confident_logits(8)), name="broken", quantize="int8"
    )
    message = "cannot run in its runtime: " + ("not a flatbuffer " + "x" * 400)[:300]
    assert result == {
        "name": "broken",
        "quantize": "int8",
        "size_bytes": 3,
        "images": 8,
        "passed": False,
        "failures": [message],
    }


def test_require_pass_says_what_was_kept_and_every_failure():
    ok = {"name": "a", "passed": True, "failures": []}
    bad = {"name": "b", "passed": False, "failures": ["one", "two"]}
    worse = {"name": "c", "passed": False, "failures": ["three"]}
    verify.require_pass([ok])
    for output, previous, kept in [
        (None, False, "nothing written"),
        ("out", False, "nothing written at out"),
        ("out", True, "nothing written, the previous export at out is untouched"),
    ]:
        with pytest.raises(verify.ProofError) as raised:
            verify.require_pass([ok, bad, worse], output=output, previous=previous)
        assert str(raised.value) == f"proof failed ({kept}): b: one, two; c: three"
        assert raised.value.results == [ok, bad, worse]
    with pytest.raises(verify.ProofError, match=r"^proof failed \(nothing written at out\): b: one, two$"):
        verify.require_pass([bad], output="out")  # no previous export unless told


def test_accuracy_percent():
    assert verify.accuracy_percent(np.eye(4), np.array([0, 1, 2, 0])) == 75.0
    assert verify.accuracy_percent(np.eye(2)[:1], np.array([0])) == 100.0  # one image is a number
    assert verify.accuracy_percent(np.eye(2)[:1], np.array([1])) == 0.0
    assert np.isnan(verify.accuracy_percent(np.zeros((0, 4)), np.zeros(0, int)))


def test_a_savedmodel_runs_in_tensorflow_at_any_batch_size(tmp_path):
    """`open_export` of a folder is the SavedModel runner: its answers are the Keras model's, in any batching."""
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    model.export(str(tmp_path / "saved"), verbose=False)
    runner = open_export(str(tmp_path / "saved"))
    assert isinstance(runner, verify.SavedModelRunner) and runner.kind == "savedmodel"
    assert runner.input_dtype == np.float32
    x = np.random.default_rng(0).normal(size=(70, 3))  # float64: the runner casts
    expected = model.predict(x.astype("float32"), verbose=0)
    for batch_size in (1, 7, 64, 100):
        out = runner.predict(x, batch_size=batch_size)
        assert out.dtype == np.float32 and out.shape == (70, 4)
        np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(runner.predict_raw(x[:2].astype("float32"))), expected[:2], atol=1e-6
    )
    calls, signature = [], runner._fn
    runner._fn = lambda **feed: calls.append(len(next(iter(feed.values())))) or signature(**feed)
    np.testing.assert_allclose(runner.predict(x), expected, atol=1e-6)
    assert calls == [64, 6]  # 64 images per call unless told
    files = [p for p in (tmp_path / "saved").rglob("*") if p.is_file()]
    assert verify.path_size(str(tmp_path / "saved")) == sum(p.stat().st_size for p in files)


def test_reference_holds_the_keras_answers_and_says_where_the_images_came_from(monkeypatch):
    import keras

    import export.common

    inputs = keras.Input((2,))
    kernel = keras.initializers.Constant([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer=kernel)(inputs))
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], np.float32)
    data = SimpleNamespace(x_eval=x, y_eval=np.array([0, 1, 2]), real=True, source="DIR")
    bars = []
    monkeypatch.setattr(export.common, "progress", lambda items, desc: bars.append(desc) or items)
    reference = verify.Reference(model, data)
    assert bars == ["Keras reference"]  # the name of its progress bar on a terminal
    np.testing.assert_allclose(reference.logits, model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_array_equal(reference.top1, [2, 1, 2])
    assert reference.keras_accuracy == pytest.approx(200.0 / 3)  # right on images 1 and 2
    assert reference.description == "3 test images from DIR"
    unlabelled = verify.Reference(model, SimpleNamespace(x_eval=x, y_eval=None, real=False, source="noise"))
    np.testing.assert_array_equal(unlabelled.labels, unlabelled.top1)
    assert unlabelled.keras_accuracy == 100.0
    assert unlabelled.description == "3 RANDOM images (no real data found) from noise"


class RecordingRunner(FakeRunner):
    """A `FakeRunner` that records each call: `(images, batch_size)`, `"default"` when none is given."""

    def __init__(self, logits, **kwargs):
        super().__init__(logits, **kwargs)
        self.calls = []

    def predict(self, images, batch_size="default"):
        self.calls.append((len(images), batch_size))
        return super().predict(images)


def test_the_proof_runs_64_images_a_call_then_each_batch_size_in_one_call(monkeypatch, tmp_path):
    logits = confident_logits(70)
    runner = RecordingRunner(logits)
    bars = []

    def progress(items, desc):
        bars.append((desc, [len(item) for item in items]))
        return items

    monkeypatch.setattr(verify, "progress", progress)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), runner)
    assert result["passed"] and result["images"] == 70
    assert runner.calls == [(64, 64), (6, 64), (1, 1), (7, 7)]
    assert bars == [("checking planted", [64, 6])]  # the progress bar on a terminal


def test_predict_of_no_images_is_an_empty_float32_array_without_a_call():
    runner = RecordingRunner(confident_logits(3))
    out = verify._predict(runner, np.zeros((0, 1), np.float32), desc="nothing")
    assert out.shape == (0, 0) and out.dtype == np.float32 and runner.calls == []


def test_a_one_image_proof(monkeypatch, tmp_path):
    """One image: agreement and accuracy are out of 1 (not NaN, not halved), both batch sizes run it."""
    logits = confident_logits(1)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits, logits.argmax(1)), FakeRunner(logits))
    assert result["passed"], result["failures"]
    assert result["top1_agree"] == 1 and result["top1_agreement"] == 100.0
    assert result["accuracy"] == 100.0 and result["keras_accuracy"] == 100.0
    assert set(result["dynamic_batch"]) == {"1", "7"}


def test_a_float_file_exactly_at_the_logit_tolerance_passes(monkeypatch, tmp_path):
    """The limit is inclusive: every logit off by exactly `atol` (all values exact in float32) passes."""
    logits = np.round(confident_logits(20) * 4) / 4
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(logits + 0.5), atol=0.5)
    assert result["max_abs_diff"] == 0.5 and result["dynamic_batch"]["7"]["max_abs_diff_vs_keras"] == 0.5
    assert result["passed"] and result["failures"] == []
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(logits + 0.5), atol=0.4999)
    assert len(result["failures"]) == 3


def test_an_accuracy_drop_exactly_at_the_limit_and_its_float_slack_passes(monkeypatch, tmp_path):
    reference, runner = quantized_case(20)  # 1 point
    drop = reference.keras_accuracy - verify.accuracy_percent(runner.logits, reference.labels)
    max_drop = drop - 1e-9
    while max_drop + 1e-9 < drop:
        max_drop = np.nextafter(max_drop, np.inf)
    while max_drop + 1e-9 > drop:
        max_drop = np.nextafter(max_drop, -np.inf)
    assert max_drop + 1e-9 == drop
    assert prove_with(monkeypatch, tmp_path, reference, runner, quantize="int8", max_drop=max_drop)["passed"]
    below = np.nextafter(max_drop, -np.inf)
    while below + 1e-9 == drop:
        below = np.nextafter(below, -np.inf)
    assert not prove_with(monkeypatch, tmp_path, reference, runner, quantize="int8", max_drop=below)["passed"]


def test_top1_flips_name_the_first_five_images(monkeypatch, tmp_path):
    logits = confident_logits(20)
    exported = logits.copy()
    exported[[2, 3, 5, 8, 9, 12, 17]] = np.roll(exported[[2, 3, 5, 8, 9, 12, 17]], 1, axis=1)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), FakeRunner(exported), atol=100.0)
    assert result["failures"] == ["top-1 differs on 7/20 images (first: [2, 3, 5, 8, 9])"]


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("raise", "batch of 1 fails: " + ("cannot resize " + "y" * 300)[:200]),
        ("shape", "batch of 1 gives shape (0, 10) or non-finite values"),
        ("nan", "batch of 1 gives shape (1, 10) or non-finite values"),
    ],
)
def test_a_failing_batch_size_is_reported_on_one_line_and_the_next_size_still_runs(
    monkeypatch, tmp_path, failure, message
):
    logits = confident_logits(20)
    runner = FakeRunner(logits, 1, failure, message="cannot\n   resize " + "y" * 300)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), runner)
    assert result["failures"] == [message]
    assert list(result["dynamic_batch"]) == ["7"]


def test_format_result_without_a_passed_batch_and_of_a_large_file():
    result = {
        "passed": False,
        "name": "tflite int8",
        "accuracy_vs": "labels",
        "max_abs_diff": 0.5,
        "top1_agree": 3,
        "images": 4,
        "accuracy": 75.0,
        "keras_accuracy": 100.0,
        "dynamic_batch": {},
        "size_bytes": 3_000_000_000,
        "failures": ["batch of 1 fails: no", "batch of 7 fails: no"],
    }
    assert verify.format_result(result).splitlines() == [
        "FAIL tflite int8      max|dlogit| 5.00e-01, top-1 same as Keras 3/4, accuracy 75.00% (Keras 100.00%), "
        "no batch ok, 3000.000 MB",
        "     FAILED: batch of 1 fails: no",
        "     FAILED: batch of 7 fails: no",
    ]


def test_open_export_hands_a_file_and_its_threads_to_the_runtime(monkeypatch, tmp_path):
    opened = []
    monkeypatch.setattr(verify, "load_runtime_model", lambda *args: opened.append(args) or "model")
    path = str(tmp_path / "model.tflite")
    assert open_export(path, num_threads=3) == "model" and opened == [(path, 3)]
    assert open_export(path) == "model" and opened[1:] == [(path, None)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the accuracy of no answers is NaN
def test_a_runtime_answering_no_logits_for_one_image_fails_on_its_shape_not_on_the_empty_difference(
    monkeypatch, tmp_path
):
    """Nothing to compare is a difference of 0 (not a crash, not a made-up number); the batch check fails it."""

    class Silent(FakeRunner):
        def predict(self, images, batch_size=64):
            return np.zeros((0, 10), np.float32)

    logits = confident_logits(1)
    result = prove_with(monkeypatch, tmp_path, make_reference(logits), Silent(logits))
    assert result["max_abs_diff"] == 0.0 and result["mean_abs_diff"] == 0.0 and result["top1_agree"] == 0
    assert not result["passed"]
    assert result["failures"] == [
        f"batch of {size} gives shape (0, 10) or non-finite values" for size in (1, 7)
    ]
