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
