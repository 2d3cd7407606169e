"""Export FashionCLIP 2.0 (image + text towers, tokenizer) to an ONNX model directory.

Needs the internet (Hugging Face) and torch + transformers, so it is never run by the tests.
Writes into --out:

- ``image.onnx``       image tower: pixel_values [N,3,224,224] → image_embeds [N,512] (fp32)
- ``image.int8.onnx``  the same with dynamic int8 weights (``--quantize``)
- ``text.onnx``        text tower: input_ids, attention_mask [N,77] → text_embeds [N,512]
- ``tokenizer.json``   the CLIP BPE tokenizer (run offline by the `tokenizers` package)
- ``model.json``       the manifest `unde.models.manifest` reads

The image file the manifest points at is chosen by ``--image-variant`` (bench/embedder.py
measures which one wins on the target machine; fp32 unless int8 wins there with cosine ≥ 0.99).

Usage: ``python scripts/export_fashionclip.py --out /models/fashionclip [--quantize]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "patrickjohncyh/fashion-clip"
CONTEXT_LENGTH = 77


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export FashionCLIP 2.0 to ONNX (image + text towers).")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Hugging Face model id or local path")
    parser.add_argument("--out", type=Path, required=True, help="output model directory (MODEL_DIR)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--quantize", action="store_true", help="also write image.int8.onnx")
    parser.add_argument("--image-variant", choices=("fp32", "int8"), default="fp32",
                        help="which image file model.json points at")
    parser.add_argument("--model-version", default=None,
                        help="manifest model_version (default: fashion-clip-2.0-onnx-<variant>)")
    return parser.parse_args(argv)


def _projected(features: Any) -> Any:
    """transformers 4 returns the projected tensor; 5 returns an output whose pooler_output is it."""
    return getattr(features, "pooler_output", features)


def _export_image(model: Any, path: Path, opset: int) -> None:
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: Any) -> Any:
            return _projected(self.model.get_image_features(pixel_values=pixel_values))

    torch.onnx.export(ImageTower().eval(), (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False,
                      input_names=["pixel_values"], output_names=["image_embeds"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                      opset_version=opset)


def _export_text(model: Any, path: Path, opset: int) -> None:
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return _projected(self.model.get_text_features(input_ids=input_ids,
                                                           attention_mask=attention_mask))

    ids = torch.ones(1, CONTEXT_LENGTH, dtype=torch.long)
    torch.onnx.export(TextTower().eval(), (ids, torch.ones_like(ids)), str(path), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                      dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                                    "text_embeds": {0: "batch"}},
                      opset_version=opset)


def main(argv: list[str] | None = None) -> int:
    """Download, export, optionally quantise, write the manifest."""
    args = parse_args(argv)
    import torch
    from transformers import AutoTokenizer, CLIPModel

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = CLIPModel.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)  # the fast (Rust) tokenizer
    with torch.inference_mode():
        _export_image(model, out / "image.onnx", args.opset)
        _export_text(model, out / "text.onnx", args.opset)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    if args.quantize or args.image_variant == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(out / "image.onnx"), str(out / "image.int8.onnx"), weight_type=QuantType.QInt8)
    image_file = "image.int8.onnx" if args.image_variant == "int8" else "image.onnx"
    manifest = {
        "model_version": args.model_version or f"fashion-clip-2.0-onnx-{args.image_variant}",
        "dim": int(model.config.projection_dim),
        "image_size": 224,
        "source": args.model,
        "image": {"path": image_file, "input": "pixel_values", "output": "image_embeds"},
        "text": {"path": "text.onnx", "input_ids": "input_ids", "attention_mask": "attention_mask",
                 "output": "text_embeds", "context_length": CONTEXT_LENGTH, "pad_token": "<|endoftext|>"},
        "tokenizer": "tokenizer.json",
    }
    (out / "model.json").write_text(json.dumps(manifest, indent=2))
    print(f"wrote {out} ({manifest['model_version']}, dim {manifest['dim']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
