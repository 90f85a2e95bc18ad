"""Tests for export/card.py: the model card written with every exported file."""

import json

from export.card import describe_card, sidecar_paths

pytest_plugins = ["export_fixtures"]


def test_model_card_documents_input_output_and_machine(export_dir):
    report = json.loads((export_dir / "report.json").read_text())
    card = json.loads((export_dir / "model_fp32.tflite.json").read_text())
    assert card["input"]["shape"] == [None, 32, 32, 3] and "0..255" in card["input"]["values"]
    assert "softmax" in card["output"]["values"]
    assert card["machine"]["cpu"] == report["machine"]["cpu"] and "ai_edge_litert" in card["machine"]
    assert (export_dir / "savedmodel" / "labels.txt").exists()
    assert card["labels_file"] == "labels.txt"  # the files of python -m export share the folder's labels
    # The card holds the proof's numbers, the same as the report's.
    fp32 = next(r for r in report["formats"] if r["file"] == "model_fp32.tflite")
    assert card["proof"] == fp32
    lines = describe_card(card).splitlines()
    assert len(lines) == 2 and "(batch, 32, 32, 3)" in lines[0] and "logits" in lines[1]


def test_int8_card_gives_the_quantization(export_dir):
    card = json.loads((export_dir / "model_int8.tflite.json").read_text())
    assert card["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
    assert "uint8 pixels go in as they are" in card["input"]["values"]
    scale, zero_point = card["output"]["quantization"]["scale"], card["output"]["quantization"]["zero_point"]
    assert (
        f"logit = {scale:g} * (q" in card["output"]["values"]
        and str(abs(zero_point)) in card["output"]["values"]
    )


def test_sidecar_paths(tmp_path):
    assert sidecar_paths(tmp_path / "m.tflite") == (
        str(tmp_path / "m.labels.txt"),  # its own: another model's labels.txt in the folder is left alone
        str(tmp_path / "m.tflite.json"),
    )
    assert sidecar_paths(tmp_path / "m.tflite", shared_labels=True)[0] == str(tmp_path / "labels.txt")
    assert sidecar_paths(tmp_path / "sm", is_dir=True) == (
        str(tmp_path / "sm" / "labels.txt"),
        str(tmp_path / "sm" / "model_card.json"),
    )


def test_cards_give_the_names_an_app_calls_the_file_by(export_dir):
    """A TFLite file's tensors are not named `images` and `logits` (those are its signature's keys): its card
    gives both, and each works; the ONNX file's names are its tensors' own."""
    import numpy as np
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    for name in ("model_fp32.tflite", "model_int8.tflite"):
        card = json.loads((export_dir / f"{name}.json").read_text())
        interpreter = Interpreter(model_path=str(export_dir / name))
        assert card["input"]["tensor"] == interpreter.get_input_details()[0]["name"] != "images"
        assert card["output"]["tensor"] == interpreter.get_output_details()[0]["name"]
        runner = interpreter.get_signature_runner(card["signature"]["name"])
        images = np.zeros((1, 32, 32, 3), card["input"]["dtype"])
        logits = runner(**{card["input"]["name"]: images})[card["output"]["name"]]
        assert logits.shape == (1, 10)
    card = json.loads((export_dir / "model.onnx.json").read_text())
    session = onnxruntime.InferenceSession(str(export_dir / "model.onnx"))
    assert "signature" not in card and "tensor" not in card["input"]
    assert [card["input"]["name"], card["output"]["name"]] == [
        session.get_inputs()[0].name,
        session.get_outputs()[0].name,
    ]
