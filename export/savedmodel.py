"""Export a `.keras` ViT as a TensorFlow SavedModel (also the source of the TFLite and ONNX files).

The SavedModel has one signature, `serving_default` (also `serve`):
`images` float32 `(batch, height, width, channels)` raw pixels 0..255 ->
`{"logits": float32 (batch, num_classes)}`, inference mode (no dropout).
The batch dimension is dynamic.

CLI: `python -m export.savedmodel MODEL.keras OUT_DIR`.
"""

from __future__ import annotations

import sys

from export import cli, common

SIGNATURE_INPUT = "images"
SIGNATURE_OUTPUT = "logits"


def export_savedmodel(model, io, path):
    """Writes `model` as a SavedModel directory at `path`.

    Uses `keras.export.ExportArchive` (the tracked model's variables, no
    Python code) with an explicit signature so that every converter sees
    the same named, batch-dynamic input and output.

    Args:
        model: the Keras model (TensorFlow backend).
        io: its `common.ModelIO`.
        path: a directory that does not exist yet.
    """
    import keras
    import tensorflow as tf

    def serve(images):
        return {SIGNATURE_OUTPUT: model(images, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", serve,
        input_signature=[tf.TensorSpec(io.input_shape, tf.float32, name=SIGNATURE_INPUT)],
    )
    try:
        archive.write_out(path, verbose=False)
    except Exception as e:  # TF raises many types when tracing fails.
        raise common.ExportError(f"SavedModel export failed: {common.first_line(e)}") from None


def main(argv=None):
    parser = cli.make_parser(
        "python -m export.savedmodel",
        "Export a .keras ViT as a TensorFlow SavedModel (signature serving_default: images -> logits), "
        "checked with tf.saved_model.load against Keras.",
        "SavedModel directory to write (replaced if it is a previous export)",
    )
    args = parser.parse_args(argv)

    def convert(model, io, tmp, data):
        export_savedmodel(model, io, tmp)
        return {"signature": "serving_default", "runtime": "tf.saved_model.load"}

    cli.export_one(args, fmt="savedmodel", variant="float32", convert=convert, is_dir=True,
                   marker="saved_model.pb")


if __name__ == "__main__":
    sys.exit(common.run_cli(main))
