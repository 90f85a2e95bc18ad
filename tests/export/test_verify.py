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

    def __init__(self, logits, broken_batch=None, failure="raise"):
        self.logits, self.broken_batch, self.failure = np.asarray(logits, np.float32), broken_batch, failure

    def predict(self, images, batch_size=64):
        out = self.logits[np.asarray(images)[:, 0].astype(int)]
        if len(images) == self.broken_batch:
            if self.failure == "raise":
                raise RuntimeError("cannot resize the input tensor")
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
    (tmp_path / "model.file").write_bytes(b"0" * 10)
    monkeypatch.setattr(verify, "open_export", lambda path: runner)
    return verify.prove(str(tmp_path / "model.file"), reference, name="planted", **kwargs)


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


def test_a_file_its_runtime_cannot_open_fails(monkeypatch, tmp_path):
    def refuse(path):
        raise ValueError("not a flatbuffer")

    (tmp_path / "model.file").write_bytes(b"0")
    monkeypatch.setattr(verify, "open_export", refuse)
    result = verify.prove(str(tmp_path / "model.file"), make_reference(confident_logits(8)), name="broken")
    assert not result["passed"] and result["failures"] == ["cannot run in its runtime: not a flatbuffer"]
