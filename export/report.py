"""`report.json` and `report.md` of the all-formats export (`python -m export`)."""

from __future__ import annotations

import datetime
import os

from export import verify
from export.card import proof_machine


def build(*, args, model, io, labels, label_source, data, reference, results, cards):
    """The report as a JSON-ready dict."""
    # Keras and TensorFlow (loaded by now) are imported here, not at the top: the command checks its
    # arguments before loading them.
    import keras
    import tensorflow as tf

    import keras_vit

    return {
        "passed": bool(results) and all(r["passed"] for r in results),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "path": os.path.abspath(args.model),
            "name": model.name,
            "params": int(model.count_params()),
            "input_shape": list(io.input_shape),
            "num_classes": io.num_classes,
        },
        "labels": list(labels),
        "labels_source": label_source,
        "data": {
            "source": data.source,
            "real": bool(data.real),
            "eval_images": int(len(data.x_eval)),
            "calibration_images": 0 if data.x_calib is None else int(len(data.x_calib)),
            "labels_known": data.y_eval is not None,
            "notes": list(data.notes),
        },
        "keras": {
            "accuracy": reference.keras_accuracy,
            "accuracy_vs": "labels" if data.y_eval is not None else "keras_top1",
            "call": "model.predict_on_batch (inference mode)",
        },
        "tolerances": {
            "float32_max_abs_logit_diff": results[0]
            .get("tolerance", {})
            .get("max_abs_diff", verify.FLOAT_ATOL)
            if results
            else verify.FLOAT_ATOL,
            "float32_top1": "identical on every image",
            "max_accuracy_drop_points": dict(verify.MAX_ACCURACY_DROP),
            "dynamic_batch_sizes": list(verify.DYNAMIC_BATCH_SIZES),
        },
        "formats": results,
        "io": {name: {"input": card["input"], "output": card["output"]} for name, card in cards.items()},
        "tflite_ops": {name: card.get("ops") for name, card in cards.items() if card.get("ops")},
        "int8_float_ops": cards.get("model_int8.tflite", {}).get("float_ops"),
        "strict_int8": bool(getattr(args, "strict_int8", False)),
        "versions": {
            "keras_vit": keras_vit.__version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
        "machine": proof_machine(),
    }


def _mb(n):
    return f"{n / 1e6:.3f}"


def markdown(report):
    """The report as Markdown: the summary, the parity table, each file's input and output, notes, use."""
    lines = _summary(report) + _parity(report) + _inputs_and_outputs(report) + _notes(report) + _use()
    return "\n".join(lines)


def _summary(report):
    """Title, result, model, labels, images, versions, machine and the data's notes."""
    data, keras_info = report["data"], report["keras"]
    lines = [
        "# keras-vit export report",
        "",
        f"Result: **{'PASS' if report['passed'] else 'FAIL'}** ({report['created']})",
        "",
        f"- Model: `{report['model']['path']}` ({report['model']['name']}, {report['model']['params']:,} "
        f"parameters, input {tuple(report['model']['input_shape'])}, {report['model']['num_classes']} "
        "classes)",
        f"- Labels: {report['labels_source']}",
        f"- Images checked: {data['eval_images']} from {data['source']}"
        + (
            f"; int8 calibrated on {data['calibration_images']} training images"
            if data["calibration_images"]
            else ""
        ),
        f"- Keras accuracy on them: {keras_info['accuracy']:.2f}%"
        + ("" if data["labels_known"] else " (no labels: accuracy = agreement with Keras's top-1)"),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
    ]
    machine = report["machine"]
    lines.append(
        f"- Machine: {machine['cpu']}, {machine['cores_available']} cores; {machine['platform']}, Python "
        f"{machine['python']}"
        + "".join(
            f", {k.replace('_', '-')} {machine[k]}" for k in ("ai_edge_litert", "onnxruntime") if k in machine
        )
    )
    for note in data["notes"]:
        lines += ["", f"> **{note}**" if not data["real"] else f"> {note}"]
    return lines


def _parity(report):
    """The tolerances and one table row per format."""
    tol = report["tolerances"]
    lines = [
        "",
        "## Parity",
        "",
        f"float32 files: max |logit - Keras logit| <= {tol['float32_max_abs_logit_diff']:g} and the same "
        "top-1 on every image. Quantized files: accuracy within "
        + ", ".join(f"{k} {v:g}" for k, v in tol["max_accuracy_drop_points"].items())
        + " points of Keras. Every file also runs batches of "
        f"{' and '.join(map(str, tol['dynamic_batch_sizes']))}.",
        "",
        "| format | file | size (MB) | size vs fp32 | input | max abs logit diff | top-1 = Keras | "
        "accuracy | vs Keras (pt) | result |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in report["formats"]:
        if "size_bytes" not in r or "max_abs_diff" not in r:
            lines.append(
                f"| {r['name']} | {r.get('file', '')} | | | | | | | | FAIL: {'; '.join(r['failures'])} |"
            )
            continue
        ratio = r.get("size_ratio_to_fp32_tflite")
        delta = r["accuracy"] - r["keras_accuracy"]
        status = "PASS" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
        lines.append(
            f"| {r['name']} | `{r['file']}` | {_mb(r['size_bytes'])} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} | {r.get('input_dtype', 'float32')} | "
            f"{r['max_abs_diff']:.2e} | {100 * r['top1_agree'] / max(r['images'], 1):.2f}% | "
            f"{r['accuracy']:.2f}% | {delta:+.2f} | {status} |"
        )
    return lines


def _inputs_and_outputs(report):
    """What every file takes and returns; quantization parameters."""
    lines = [
        "",
        "## Input and output",
        "",
        "Every file takes raw RGB pixels 0..255, channels last, shape (batch, height, width, 3), any batch "
        "size; the model normalizes inside. It returns logits (batch, num_classes); softmax gives "
        "probabilities. `labels.txt` has one class name per line (line i = class i).",
        "",
    ]
    for name, io in report["io"].items():
        line = f"- `{name}`: input {io['input']['dtype']}, output {io['output']['dtype']}"
        if "quantization" in io["input"]:
            q = io["input"]["quantization"]
            line += f". Input quantization scale {q['scale']:g}, zero point {q['zero_point']}"
            line += (
                ": uint8 pixels go in as they are (exact)"
                if (q["scale"], q["zero_point"]) == (1.0, 0)
                else ""
            )
        if "quantization" in io["output"]:
            line += f". Output: {io['output']['values']}"
        lines.append(line + ".")
    return lines


def _notes(report):
    """The ops of the int8 file that compute in float32, and why."""
    float_ops = report.get("int8_float_ops")
    if not float_ops:
        return []
    return [
        "",
        "## Notes",
        "",
        "- `model_int8.tflite`: every matmul is int8; these ops compute in float32 between "
        "DEQUANTIZE and QUANTIZE: "
        + ", ".join(f"{op} x{n}" for op, n in float_ops.items())
        + ". "
        + (
            "NEG (in each Keras LayerNormalization, which computes `-mean * inv`; keras_vit's "
            "LayerNorm writes `beta - mean * inv` instead and models saved before it keep one, "
            "`encoder_norm`) has no int8 kernel. "
            if "NEG" in float_ops
            else ""
        )
        + (
            "The class-token assembly and the first LayerNorm are kept float32 on purpose (int8 rounds "
            "the small class token to zero; see export/tflite.py, `--strict-int8` quantizes them). "
            if not report.get("strict_int8")
            else ""
        )
        + "Fine on LiteRT CPU; an integer-only accelerator needs `--strict-int8` (and, for a model saved "
        "before keras_vit's LayerNorm, no NEG).",
    ]


def _use():
    """How to run and time the exported files."""
    return [
        "",
        "## Use",
        "",
        "```",
        "python -m export.runtime model_int8.tflite image.jpg --top-k 5"
        "   # or model_fp32.tflite / model.onnx",
        "python -m export.benchmark .",
        "```",
        "",
    ]
