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
per call; `export.worker`: it dies with the command). A failed proof prints
the numbers and the report and exits 1; bad input and a full disk print one
line and exit 2; Ctrl-C and SIGTERM print one line and exit 130 and 143. In each
case a previous export at `OUT_DIR` is kept as it was, and the temporary
folder is removed (one left by a killed export is removed by the next
export to `OUT_DIR`, which holds a lock on it: `export.output`).
"""

from __future__ import annotations

import os
import sys

from export import cli, common, onnx, report, tflite, verify
from export.card import sidecar_paths
from export.common import ExportError
from export.formats import FORMATS
from export.step import DiskFullError, export_format, write_sidecars
from keras_vit.files import atomic_write_json, atomic_write_text

REPORT_MARKER = "report.json"


def main(argv=None):
    parser = cli.make_parser(
        "python -m export",
        "Export a .keras ViT to every format (SavedModel, TFLite float32/float16/dynamic/int8, ONNX), "
        "prove each against Keras in its own runtime, and write report.md/report.json.",
        "directory to write (replaced only if it is a previous export)",
        int8="always",
    )
    tflite.add_calib_images_arg(parser)
    tflite.add_strict_int8_arg(parser)
    onnx.add_opset_arg(parser)
    args = parser.parse_args(argv)
    onnx.check_opset_arg(parser, args)
    export_all(args)


def export_all(args):
    """Runs the all-formats export for parsed arguments; returns the report dict.

    The folder is built in a temporary folder beside `args.output` and takes
    its place only when every file passed its proof: a failed proof, an
    error, a full disk, Ctrl-C or SIGTERM leave a previous export there as it
    was (and no temporary folder, no worker process).
    """
    with cli.prepared(
        args,
        kind="dir",
        marker=REPORT_MARKER,
        calib_images=args.calib_images,
        isolate=True,
        files=len(FORMATS),
    ) as job:
        output = job.output
        previous = os.path.lexists(output)
        with cli.publishing(job, directory=True) as publication:
            folder = publication.path
            results, cards = export_every_format(job, folder)
            summary = report.build(
                args=args,
                model=job.model,
                io=job.io,
                labels=job.labels,
                label_source=job.label_source,
                data=job.data,
                reference=job.reference,
                results=results,
                cards=cards,
            )
            markdown = report.markdown(summary)
            print()
            print(markdown)
            verify.require_pass(results, output=output, previous=previous)
            for fmt in FORMATS:  # the files in the folder share one labels.txt
                path = os.path.join(folder, fmt.file_name)
                write_sidecars(path, fmt, job.labels, cards[fmt.file_name], shared_labels=True)
            atomic_write_json(os.path.join(folder, REPORT_MARKER), summary)
            atomic_write_text(os.path.join(folder, "report.md"), markdown)
            publication.start()  # only the rename into place is left
    print(f"wrote {output}")
    if not job.data.real:
        print(job.data.notes[0], file=sys.stderr)
    return summary


def export_every_format(job, folder):
    """Runs the export step for every registered format, into `folder`.

    A format whose conversion fails is recorded and the others still run:
    the report shows every format.

    Returns:
        `(results, cards)`: the proof result of each format (with its file
        name and its size relative to the float32 TFLite file), and the
        model card of each converted file by file name.
    """
    results, cards = [], {}
    for fmt in common.progress(FORMATS, desc="formats"):
        path = os.path.join(folder, fmt.file_name)
        labels_file = sidecar_paths(path, is_dir=fmt.is_dir, shared_labels=True)[0]
        try:
            result, cards[fmt.file_name] = export_format(
                fmt, job, path, file_name=fmt.file_name, labels_file=labels_file
            )
        except DiskFullError:  # the other formats would fail the same way
            raise
        except ExportError as e:
            print(f"FAIL {fmt.title}: {e}")
            results.append({"name": fmt.title, "file": fmt.file_name, "passed": False, "failures": [str(e)]})
            continue
        if fmt.name == "savedmodel":
            job.saved_model = path  # the other formats convert from it instead of writing their own
        result["file"] = fmt.file_name
        results.append(result)
    fp32_file = tflite.FORMATS["none"].file_name
    fp32 = next((r for r in results if r["file"] == fp32_file and "size_bytes" in r), None)
    for r in results:
        if fp32 and "size_bytes" in r:
            r["size_ratio_to_fp32_tflite"] = r["size_bytes"] / fp32["size_bytes"]
    return results, cards


if __name__ == "__main__":
    sys.exit(common.run_cli(main))
