"""`model.json`: what an ONNX image-model directory (FashionCLIP, EfficientNet-Lite0) holds and how to call it.

Example (written by ``scripts/export_fashionclip.py``)::

    {"model_version": "fashion-clip-2.0-onnx-fp32", "dim": 512, "image_size": 224,
     "image": {"path": "image.onnx", "input": "pixel_values", "output": "image_embeds"},
     "text": {"path": "text.onnx", "input_ids": "input_ids", "attention_mask": "attention_mask",
              "output": "text_embeds", "context_length": 77, "pad_token": "<|endoftext|>"},
     "tokenizer": "tokenizer.json"}

``text`` and ``tokenizer`` are optional (only zero-shot tagging needs them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unde.errors import ConfigError

MANIFEST_NAME = "model.json"


class ImageTower(BaseModel):
    """The image tower's file and tensor names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "image.onnx"
    input: str = "pixel_values"
    output: str | None = Field(None, description="output name; None = the first output")


class TextTower(BaseModel):
    """The text tower's file, tensor names and context length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "text.onnx"
    input_ids: str = "input_ids"
    attention_mask: str | None = "attention_mask"
    output: str | None = None
    context_length: int = Field(77, ge=2, le=1024)
    pad_token: str = "<|endoftext|>"  # noqa: S105 - a token, not a secret


class ModelManifest(BaseModel):
    """The parsed `model.json` of a model directory."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_version: str = Field(min_length=1, max_length=200)
    dim: int = Field(512, ge=1, le=8192)
    image_size: int = Field(224, ge=16, le=1024)
    #: ``clip``: shorter side to size, centre crop (FashionCLIP); ``pad_square``: the whole image
    #: scaled into a white square (garment crops keep their length; EfficientNet-Lite0).
    preprocess: Literal["clip", "pad_square"] = "clip"
    mean: tuple[float, float, float] | None = Field(None, description="per-channel mean; None = CLIP's")
    std: tuple[float, float, float] | None = Field(None, description="per-channel std; None = CLIP's")
    image: ImageTower = Field(default_factory=lambda: ImageTower(output=None))
    text: TextTower | None = None
    tokenizer: str | None = None


def has_model(model_dir: Path | None) -> bool:
    """True when `model_dir` holds a manifest (the `auto` provider then picks FashionCLIP)."""
    return model_dir is not None and (model_dir / MANIFEST_NAME).is_file()


def read_manifest(model_dir: Path) -> ModelManifest:
    """Parse and check `model_dir/model.json` and the files it names, or raise ConfigError."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError(f"MODEL_DIR: {path} does not exist (expected a FashionCLIP export)")
    try:
        manifest = ModelManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"MODEL_DIR: {path} is not readable JSON: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"MODEL_DIR: {path} is not a valid manifest: {problems}") from exc
    named = [manifest.image.path]
    if manifest.text is not None:
        named.append(manifest.text.path)
    if manifest.tokenizer is not None:
        named.append(manifest.tokenizer)
    missing = [name for name in named if not (model_dir / name).is_file()]
    if missing:
        raise ConfigError(f"MODEL_DIR: {model_dir} lacks {', '.join(missing)} named in {MANIFEST_NAME}")
    return manifest
