"""`python -m export MODEL.keras OUT_DIR`: every format, each proven, plus a report.

Writes, into `OUT_DIR` (built in a temp directory beside it and renamed into
place only when every file passed its proof):

    savedmodel/            TensorFlow SavedModel (serving_default: images -> logits)
    model_fp32.tflite      TFLite float32
    model_fp16.tflite      TFLite float16 weights
    model_dynamic.tflite   TFLite dynamic-range (int8 weights)
    model_int8.tflite      TFLite full integer: uint8 pixels in, int8 logits out
    model.onnx             ONNX (exact GELU)
    labels.txt             class names, one per line
    *.json                 a model card per file (input/output, quantization, proof)
    report.md, report.json sizes, parity numbers, accuracy of each format vs Keras

Each TFLite conversion runs in its own process (the converter leaks memory
per call). A failed proof prints the numbers and the report, exits 1 and
leaves nothing at `OUT_DIR`.
"""

from __future__ import annotations

import os
import sys

from export import cli, common
from keras_vit.evaluate import positive_int  # after export.common: it pins the TF backend
from export.common import ExportError

# (format, variant, file name, tflite quantize mode)
FORMATS = (
    ("savedmodel", "float32", "savedmodel", None),
    ("tflite", "float32", "model_fp32.tflite", "none"),
    ("tflite", "float16", "model_fp16.tflite", "float16"),
    ("tflite", "dynamic", "model_dynamic.tflite", "dynamic"),
    ("tflite", "int8", "model_int8.tflite", "int8"),
    ("onnx", "float32", "model.onnx", None),
)
REPORT_MARKER = "report.json"


def main(argv=None):
    from export import onnx as onnx_export
    from export import tflite

    parser = cli.make_parser(
        "python -m export",
        "Export a .keras ViT to every format (SavedModel, TFLite float32/float16/dynamic/int8, ONNX), prove each "
        "against Keras in its own runtime, and write report.md/report.json.",
        "directory to write (replaced only if it is a previous export)",
    )
    parser.add_argument("--calib-images", type=positive_int, default=tflite.DEFAULT_CALIB_IMAGES,
                        help=f"training images for int8 calibration (default {tflite.DEFAULT_CALIB_IMAGES})")
    tflite.add_strict_int8_arg(parser)
    parser.add_argument("--opset", type=int, default=onnx_export.DEFAULT_OPSET,
                        help=f"ONNX opset ({onnx_export.MIN_OPSET}..{onnx_export.MAX_OPSET}, default "
                        f"{onnx_export.DEFAULT_OPSET})")
    args = parser.parse_args(argv)
    if not onnx_export.MIN_OPSET <= args.opset <= onnx_export.MAX_OPSET:
        parser.error(f"--opset must be between {onnx_export.MIN_OPSET} and {onnx_export.MAX_OPSET}")
    export_all(args)


def export_all(args):
    """Runs the all-formats export for parsed arguments; returns the report dict."""
    from export import onnx as onnx_export
    from export import report as report_module
    from export import tflite, verify
    from export.savedmodel import export_savedmodel

    output, model, io, labels, label_source, data, reference = cli.prepare(
        args, kind="dir", marker=REPORT_MARKER, calib_images=args.calib_images)
    atol = verify.FLOAT_ATOL if args.atol is None else args.atol

    tmp = common.temp_path(output)
    os.makedirs(tmp)
    results, cards = [], {}
    try:
        saved_model = os.path.join(tmp, "savedmodel")
        for fmt, variant, filename, quantize in common.progress(FORMATS, desc="formats"):
            path = os.path.join(tmp, filename)
            name = f"{fmt} {variant}"
            print(f"converting to {name} ...", flush=True)
            extra, runtime_info = {}, {}
            try:
                if fmt == "savedmodel":
                    export_savedmodel(model, io, path)
                    extra = {"signature": "serving_default", "runtime": "tf.saved_model.load"}
                elif fmt == "tflite":
                    tflite.convert_isolated(saved_model, path, quantize, data.x_calib if quantize == "int8" else None,
                                            args.strict_int8)
                    runtime_info, ops = tflite.runtime_info(path)
                    extra = {"runtime": "ai_edge_litert.interpreter.Interpreter", "quantize": quantize, **ops}
                    if quantize == "int8":
                        extra["calibration"] = {"images": int(len(data.x_calib)), "source": data.source}
                        extra["strict_int8"] = args.strict_int8
                else:
                    import onnx

                    proto = onnx_export.convert(saved_model, args.opset)
                    onnx.save(proto, path)
                    extra = onnx_export.card_fields(proto, args.opset)
            except ExportError as e:  # record it and go on: the report shows every format
                print(f"FAIL {name}: {e}")
                results.append({"name": name, "file": filename, "passed": False, "failures": [str(e)]})
                continue
            result = verify.prove(path, reference, name=name, quantize=None if variant == "float32" else variant,
                                  atol=atol)
            result["file"] = filename
            results.append(result)
            cards[filename] = common.model_card(
                fmt=fmt, variant=variant, file=filename, io=io, labels=labels, source_model=args.model,
                extra={**extra, "proof": result}, **runtime_info,
            )

        fp32 = next((r for r in results if r["file"] == "model_fp32.tflite" and "size_bytes" in r), None)
        for r in results:
            if fp32 and "size_bytes" in r:
                r["size_ratio_to_fp32_tflite"] = r["size_bytes"] / fp32["size_bytes"]
        report = report_module.build(args=args, model=model, io=io, labels=labels, label_source=label_source,
                                     data=data, reference=reference, results=results, cards=cards)
        markdown = report_module.markdown(report)
        passed = report["passed"]
        if passed:
            common.write_labels(os.path.join(tmp, common.LABELS_FILENAME), labels)
            common.write_labels(os.path.join(saved_model, common.LABELS_FILENAME), labels)
            for filename, card in cards.items():
                card_path = os.path.join(saved_model, "model_card.json") if filename == "savedmodel" \
                    else os.path.join(tmp, filename + ".json")
                common.write_json(card_path, card)
            common.write_json(os.path.join(tmp, REPORT_MARKER), report)
            common.write_text(os.path.join(tmp, "report.md"), markdown)
            common.publish(tmp, output)
    finally:
        common.discard(tmp)

    print()
    print(markdown)
    if not passed:
        if os.path.isdir(output) and os.path.exists(os.path.join(output, REPORT_MARKER)):
            common.discard(output)
            print(f"removed the previous export at {output} so that it cannot be mistaken for this one",
                  file=sys.stderr)
        verify.require_pass(results)
    print(f"wrote {output}")
    if not data.real:
        print(data.notes[0], file=sys.stderr)
    return report


if __name__ == "__main__":
    sys.exit(common.run_cli(main))
