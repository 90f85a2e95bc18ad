"""Tests for export/formats.py: one registry of formats, used by every export command."""

from export_helpers import FILES

from export import onnx, savedmodel, tflite
from export.formats import FORMATS


def test_registry_lists_every_format_once_in_report_order():
    assert [fmt.file_name for fmt in FORMATS] == FILES
    assert len({fmt.title for fmt in FORMATS}) == len(FORMATS)
    assert [fmt.title for fmt in FORMATS if fmt.quantize is None] == [
        "savedmodel float32",
        "tflite float32",
        "onnx float32",
    ]
    assert [fmt.name for fmt in FORMATS if fmt.is_dir] == ["savedmodel"]
    assert [fmt.variant for fmt in FORMATS if fmt.needs_calibration] == ["int8"]


def test_one_format_commands_export_the_registered_formats():
    """`python -m export.X` exports the very `Format` that `python -m export` lists, through the same step."""
    assert savedmodel.FORMAT in FORMATS and onnx.FORMAT in FORMATS
    assert all(tflite.FORMATS[mode] in FORMATS for mode in tflite.QUANTIZE_MODES)
    assert [tflite.FORMATS[mode].variant for mode in tflite.QUANTIZE_MODES] == [
        "float32",
        "float16",
        "dynamic",
        "int8",
    ]
