"""timm conversion parity without timm in the keras_vit environment: tiny random timm ViTs, their state dicts
and logits written by one Python (with timm), converted and compared by another (with keras_vit).

    PEERS_VENV/bin/python benchmarks/pretrained_timm_parity.py make tests/convert/data/timm
    python benchmarks/pretrained_timm_parity.py compare tests/convert/data/timm \
        --output benchmarks/results/pretrained_timm_parity.json

`make` (needs torch, timm, numpy and safetensors; never imports Keras) builds one tiny timm model per family in
FAMILIES with seeded random weights (every parameter moved off timm's initial value, so that no zero bias or
unit scale hides a mapping error), and writes, per family, a folder with `model.safetensors` (the state dict,
float32), `config.json` (the timm `VisionTransformer` arguments, written as `from_timm(...,
architecture=...)` takes them, the mean and std, the timm and torch versions) and `reference.npz` (`pixels`:
uint8 images, batch 4; `logits`: timm's float32 logits for them, in eval mode). The folders are small enough
to be committed: tests/convert/test_timm_state_dict.py checks them without timm.

`compare` (the keras_vit environment) converts each state dict with `keras_vit.convert.from_timm(state_dict,
architecture=..., mean=..., std=...)` and prints, and writes as JSON, each family's max |logit difference|
against timm's logits and the top-1 agreement; with `--save`, each converted model goes to `model.keras` (with a
`labels.txt`) in its folder, ready for `python -m export`.

`make --full-size` writes timm's `vit_small_patch16_224` instead (too large to commit), with timm's own
`torch.onnx` export of it (`timm.onnx`, normalized NCHW input): the peer of our exported files in
`benchmarks/compare_latency.py` (docs/pretrained.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

# Tiny models: 16x16 (or 16x24) images in 4x4 patches, width 32, 2 blocks, 5 classes; about 100 KB each.
TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)
# family -> the timm VisionTransformer arguments beyond TINY (`distilled`: timm's VisionTransformerDistilled).
FAMILIES = {
    "vit_token": {},  # class token, token head, qkv bias: vit_*_patch16_224 / 384, vit_*_patch32_*, deit_*
    "vit_no_qkv_bias": dict(qkv_bias=False),
    "vit_layerscale": dict(init_values=0.1),  # LayerScale: deit3_*, and others with init_values
    "vit_avg_fc_norm": dict(
        global_pool="avg"
    ),  # class token, mean of the patch tokens, fc_norm (MAE, BEiT-style)
    "vit_avg_no_class": dict(global_pool="avg", class_token=False, fc_norm=False),  # norm, then the mean
    "deit_distilled": dict(distilled=True),  # deit_*_distilled_*
    "vit_non_square": dict(img_size=(16, 24)),
}
# `make --full-size`: timm's vit_small_patch16_224 (22M parameters, 1,000 classes), for the export and latency
# figures; its folder also holds timm's own ONNX export (too large to commit: 88 MB of weights).
FULL_SIZE = {
    "vit_small_patch16_224": dict(
        img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6, num_classes=1000
    )
}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as timm's pretrained_cfg gives them
BATCH, SEED = 4, 0


def make(folder, full_size=False):
    """Writes every family's state dict, config and reference logits under `folder` (needs timm); with
    `full_size`, ViT-S/16 at 224 and its `torch.onnx` export (`timm.onnx`) instead."""
    import safetensors.numpy
    import timm
    import torch
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    folder = Path(folder)
    families = FULL_SIZE if full_size else FAMILIES
    for index, (family, extra) in enumerate(families.items()):
        architecture = extra if full_size else {**TINY, **extra}
        arguments = {k: v for k, v in architecture.items() if k != "distilled"}
        torch.manual_seed(SEED + index)
        model = (VisionTransformerDistilled if architecture.get("distilled") else VisionTransformer)(
            **arguments
        )
        with torch.no_grad():  # timm starts biases, tokens and norms at 0 or 1: move every parameter
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        model.eval()
        height, width = model.patch_embed.img_size
        rng = np.random.default_rng(SEED + index)
        pixels = rng.integers(0, 256, (BATCH, height, width, 3), dtype=np.uint8)
        x = (pixels.astype("float32") / 255.0 - np.float32(MEAN)) / np.float32(STD)
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
        out = folder / family
        out.mkdir(parents=True, exist_ok=True)
        state = {
            name: value.detach().float().contiguous().numpy() for name, value in model.state_dict().items()
        }
        safetensors.numpy.save_file(state, str(out / "model.safetensors"))
        config = {
            "architecture": {k: list(v) if isinstance(v, tuple) else v for k, v in architecture.items()},
            "mean": MEAN,
            "std": STD,
            "timm_class": type(model).__name__,
            "timm": timm.__version__,
            "torch": torch.__version__,
            "seed": SEED + index,
        }
        (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        np.savez(out / "reference.npz", pixels=pixels, logits=logits.astype("float32"))
        if full_size:  # the peer of our ONNX file: timm's model exported by PyTorch (normalized NCHW input)
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, height, width),),
                str(out / "timm.onnx"),
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        print(
            f"{family:18s} {type(model).__name__:28s} logits {logits.shape}, max |logit| {np.abs(logits).max():.3f}"
        )


def compare(folder, output=None, save=False):
    """Converts every family under `folder` with keras_vit and compares its logits with timm's; `save` writes
    each converted model to `model.keras` (and `labels.txt`) in its folder, for `python -m export`."""
    import safetensors.numpy

    from keras_vit.convert import from_timm

    results = {}
    for out in sorted(p for p in Path(folder).iterdir() if (p / "config.json").exists()):
        config = json.loads((out / "config.json").read_text())
        reference = np.load(out / "reference.npz")
        model = from_timm(
            safetensors.numpy.load_file(str(out / "model.safetensors")),
            architecture=config["architecture"],
            mean=config["mean"],
            std=config["std"],
        )
        logits = model.predict(reference["pixels"].astype("float32"), verbose=0)
        if save:
            model.save(out / "model.keras")
            classes = model.output_shape[-1]
            (out / "labels.txt").write_text("".join(f"class_{i}\n" for i in range(classes)))
        expected = reference["logits"]
        results[out.name] = {
            "max_abs_diff": float(np.max(np.abs(logits - expected))),
            "max_abs_logit": float(np.max(np.abs(expected))),
            "top1_agree": int(np.sum(logits.argmax(-1) == expected.argmax(-1))),
            "images": int(len(expected)),
            "timm": config["timm"],
            "torch": config["torch"],
        }
        r = results[out.name]
        print(
            f"{out.name:18s} max |logit diff| {r['max_abs_diff']:.2e} (max |logit| {r['max_abs_logit']:.2f}), "
            f"top-1 {r['top1_agree']}/{r['images']}"
        )
    if not results:
        raise SystemExit(f"no family folders (config.json) under {folder}")
    if output:
        import keras

        from keras_vit.files import atomic_write_json

        record = {"families": results, "keras": keras.__version__, "backend": keras.backend.backend()}
        atomic_write_json(output, record)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("make", help="write the tiny timm models' state dicts and logits (needs timm)")
    made.add_argument("folder")
    made.add_argument(
        "--full-size", action="store_true", help="ViT-S/16 at 224 and timm's ONNX export of it instead"
    )
    compared = sub.add_parser("compare", help="convert them with keras_vit and compare the logits")
    compared.add_argument("folder")
    compared.add_argument("--output", help="write the per-family figures to this JSON file")
    compared.add_argument(
        "--save", action="store_true", help="write each converted model to FOLDER/*/model.keras"
    )
    args = parser.parse_args(argv)
    if args.command == "make":
        make(args.folder, args.full_size)
    else:
        compare(args.folder, args.output, args.save)


if __name__ == "__main__":
    main()
