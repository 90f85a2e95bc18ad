"""A pretrained-size ViT through the converter and `export/`: ViT-S/16 or ViT-B/16 at 224, random weights.

    python benchmarks/pretrained_export.py --output runs/vit_s16               # conversion + model.keras + peer ONNX
    python -m export runs/vit_s16/model.keras runs/vit_s16/export --eval-images 64
    python benchmarks/compare_latency.py runs/vit_s16/export/model.onnx runs/vit_s16/transformers.onnx \
        runs/vit_s16/export/model_fp32.tflite runs/vit_s16/export/model_dynamic.tflite --rounds 5 --batch 8

Builds a Hugging Face `transformers` ViTForImageClassification of the chosen size with seeded random weights
(no model hub is needed), converts it with `keras_vit.convert.from_transformers`, and writes:
`labels.txt` (class_0 ... class_999), `conversion.json` (max |logit difference| of the conversion against the PyTorch model on random 0..255
images, and the top-1 agreement), `model.keras` (the converted model) and `transformers.onnx`, the same model
exported by PyTorch's own `torch.onnx.export` (the peer in ONNX Runtime; it takes normalized NCHW input).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from keras_vit.files import atomic_write_json  # noqa: E402

SIZES = {
    "vit_s16": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "vit_b16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
MEAN = STD = (0.5, 0.5, 0.5)  # Google's ViTs' image processor


def source_model(size, seed):
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=224, patch_size=16, num_labels=1000, **SIZES[size])
    return transformers.ViTForImageClassification(config).eval()


def torch_logits(model, pixels):
    import torch

    normalized = (pixels / 255.0 - np.asarray(MEAN, "float32")) / np.asarray(STD, "float32")
    with torch.no_grad():
        return model(pixel_values=torch.from_numpy(normalized.transpose(0, 3, 1, 2).copy())).logits.numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="vit_s16", choices=sorted(SIZES))
    parser.add_argument("--output", default="runs/vit_s16")
    parser.add_argument("--images", type=int, default=8, help="random images of the conversion check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    from keras_vit.convert import from_transformers
    from keras_vit.device import machine_summary

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    model = source_model(args.size, args.seed)
    converted = from_transformers(model, mean=MEAN, std=STD)
    pixels = np.random.default_rng(args.seed).uniform(0, 255, (args.images, 224, 224, 3)).astype("float32")
    expected, actual = torch_logits(model, pixels), converted.predict(pixels, verbose=0)
    result = {
        "size": args.size,
        "parameters": int(converted.count_params()),
        "max_abs_logit_difference": float(np.max(np.abs(expected - actual))),
        "max_abs_logit": float(np.max(np.abs(expected))),  # the scale the difference is read against
        "top1_agreement": float(np.mean(expected.argmax(-1) == actual.argmax(-1))),
        "images": args.images,
        "machine": machine_summary(),
        "torch": torch.__version__,
    }
    converted.save(output / "model.keras")
    # Random weights have no class names; export/ wants a label a class.
    (output / "labels.txt").write_text("".join(f"class_{i}\n" for i in range(converted.num_classes)))
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 224, 224),),
        str(output / "transformers.onnx"),
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    atomic_write_json(output / "conversion.json", result)
    print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
