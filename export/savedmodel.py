"""Export a `.keras` ViT as a TensorFlow SavedModel (also the source of the TFLite and ONNX files).

The SavedModel has one signature, `serving_default` (also `serve`):
`images` float32 `(batch, height, width, channels)` raw pixels 0..255 ->
`{"logits": float32 (batch, num_classes)}`, inference mode (no dropout).
The batch dimension is dynamic. With a class-token head the last block
computes only the class token (`keras_vit.models.class_token_forward`): the
same logits, less work in every file converted from it.

CLI: `python -m export.savedmodel MODEL.keras OUT_DIR`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from export import cli, common
from export.step import Format
from keras_vit.cli_utils import first_line

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
        path: a directory that does not exist yet, or an empty one.

    Raises:
        ExportError: Keras runs on another backend, or tracing fails.
    """
    common.use_tensorflow_backend()
    # Keras and TensorFlow are imported here, not at the top: the commands check their arguments first.
    import keras
    import tensorflow as tf

    from keras_vit.models import class_token_forward

    forward = class_token_forward(model) or (lambda images: model(images, training=False))

    def serve(images):
        return {SIGNATURE_OUTPUT: forward(images)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        serve,
        input_signature=[tf.TensorSpec(io.input_shape, tf.float32, name=SIGNATURE_INPUT)],
    )
    try:
        archive.write_out(os.fspath(path), verbose=False)
    except Exception as e:  # TF raises many types when tracing fails.
        raise common.ExportFailure(f"SavedModel export failed: {first_line(e, with_type=True)}") from None


@contextlib.contextmanager
def saved_model_of(job):
    """The SavedModel a conversion starts from (TFLite and ONNX convert a SavedModel).

    Args:
        job: the command's `step.Job`.

    Yields:
        `job.saved_model` when the command wrote one (the all-formats
        export), else a temporary one, deleted after the block. It is written
        beside the output as `.<stem>.tmp-*.savedmodel`, on the disk whose
        free space the command checked, where the next export of that output
        removes it if this one is killed (`export.output.remove_leftovers`).
    """
    if job.saved_model is not None:
        yield job.saved_model
        return
    output = Path(job.output)
    with tempfile.TemporaryDirectory(
        dir=output.parent, prefix=f".{output.stem}.tmp-", suffix=".savedmodel"
    ) as tmp:
        path = os.path.join(tmp, "savedmodel")
        export_savedmodel(job.model, job.io, path)
        yield path


def write_savedmodel(job, path):
    """`Format.convert` of the SavedModel: writes the directory, returns the model card's fields."""
    export_savedmodel(job.model, job.io, path)
    return {"signature": "serving_default", "runtime": "tf.saved_model.load", **last_block_field(job.model)}


def last_block_field(model):
    """The model card's word on the last block: all tokens, or only those the head reads."""
    from keras_vit.models import class_token_forward

    pruned = class_token_forward(model) is not None
    return {"last_block": "the tokens the head reads" if pruned else "every token"}


FORMAT = Format("savedmodel", "float32", "savedmodel", write_savedmodel, dir_marker="saved_model.pb")


def main(argv=None):
    parser = cli.make_parser(
        "python -m export.savedmodel",
        "Export a .keras ViT as a TensorFlow SavedModel (signature serving_default: images -> logits), "
        "checked with tf.saved_model.load against Keras.",
        "SavedModel directory to write (replaced if it is a previous export)",
    )
    args = parser.parse_args(argv)
    cli.export_one(args, FORMAT)


if __name__ == "__main__":
    sys.exit(common.run_cli(main))
