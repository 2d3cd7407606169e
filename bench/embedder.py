"""Embedder speed (issue 3): full request path vs the bare model vs PyTorch eager, one run.

The model is a ViT-B/32-shaped CLIP image tower with random weights (transformers'
``CLIPVisionModelWithProjection(CLIPVisionConfig(projection_dim=512))`` — FashionCLIP 2.0's
compute), exported once to ONNX (fp32 + dynamic int8) under bench/.cache/vit_b32/.
Measured, interleaved round by round so machine noise hits every variant alike:

- bare: ``InferenceSession.run`` on ready ``pixel_values`` (latency session for single images,
  throughput session for batches of 16);
- full path: JPEG bytes (~600 px synthetic photos) → decode → crop → CLIP preprocess → infer →
  L2-normalise, through `FashionClipImageEmbedder` exactly as the embedder function runs it;
- torch eager: the same tower in PyTorch (``inference_mode``, same thread count);
- int8: the dynamic-quantised export, with its cosine drift against fp32 on rendered images.

The best config is the fastest full single path whose drift keeps cosine ≥ 0.99.
torch/transformers are bench-only dependencies. Run: ``python -m bench.embedder [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unde.models.base import l2_normalise
from unde.models.clip_preprocess import preprocess
from unde.models.fashionclip import FashionClipImageEmbedder
from unde.models.onnx_sessions import open_session, session_options
from unde.vision.images import crop, decode_image

CACHE = Path(__file__).resolve().parent / ".cache" / "vit_b32"
THREADS = 2
BATCH = 16
MIN_COSINE = 0.99


def _tower() -> Any:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(projection_dim=512)).eval()

    class ImageEmbeds(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: Any) -> Any:
            return self.model(pixel_values=pixel_values).image_embeds

    return ImageEmbeds().eval()


def build_models() -> Any:
    """The torch tower; exports fp32 and int8 ONNX (with model.json) into CACHE once."""
    import torch

    tower = _tower()
    fp32, int8 = CACHE / "fp32" / "image.onnx", CACHE / "int8" / "image.onnx"
    if not fp32.exists():
        fp32.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(tower, (torch.zeros(1, 3, 224, 224),), str(fp32), dynamo=False,
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                          opset_version=17)
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8.parent.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    for name, path in (("fp32", fp32), ("int8", int8)):
        manifest = {"model_version": f"vit-b32-random-{name}", "dim": 512,
                    "image": {"path": path.name, "input": "pixel_values", "output": "image_embeds"}}
        (path.parent / "model.json").write_text(json.dumps(manifest))
    return tower


def sample_jpegs(count: int) -> list[tuple[bytes, list[float]]]:
    """~600 px JPEGs of rendered catalog products (or noise if the generator is absent) + a bbox."""
    try:
        from unde.synthetic.catalog import generate_catalog
        from unde.synthetic.render import render_product_image

        skus = generate_catalog(7, "small").skus
        images = [render_product_image(skus[i * 7 % len(skus)], i % 5) for i in range(count)]
    except ImportError:
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 255, (600, 480, 3), dtype=np.uint8)) for _ in range(count)]
    out = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=88)
        w, h = image.size
        out.append((buffer.getvalue(), [w * 0.05, h * 0.05, w * 0.95, h * 0.95]))
    return out


def full_path(embedder: FashionClipImageEmbedder, items: list[tuple[bytes, list[float]]]) -> np.ndarray:
    """What the embedder function does per request: decode, crop, embed (preprocess + normalise)."""
    images = [crop(decode_image(data, max_pixels=40_000_000), bbox) for data, bbox in items]
    return embedder.embed(images)


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure every variant in one run; print the table; return the named figures."""
    import torch

    torch.set_num_threads(THREADS)
    tower = build_models()
    jpegs = sample_jpegs(BATCH)
    pixels = preprocess([crop(decode_image(d, max_pixels=40_000_000), b) for d, b in jpegs])
    one = pixels[:1]
    variants = {name: {"single": FashionClipImageEmbedder(CACHE / name, "latency", intra_op_threads=THREADS),
                       "batch": FashionClipImageEmbedder(CACHE / name, "throughput", intra_op_threads=THREADS,
                                                         inter_op_threads=1, max_batch=BATCH)}
                for name in ("fp32", "int8")}
    bare_single = open_session(CACHE / "fp32" / "image.onnx", session_options("latency", THREADS))
    bare_batch = open_session(CACHE / "fp32" / "image.onnx", session_options("throughput", THREADS, 1))
    torch_one, torch_batch = torch.from_numpy(one), torch.from_numpy(pixels)

    def torch_run(x: Any) -> None:
        with torch.inference_mode():
            tower(x)

    singles: dict[str, Callable[[], Any]] = {
        "bare": lambda: bare_single.run(None, {"pixel_values": one}),
        "torch": lambda: torch_run(torch_one),
        **{f"full_{n}": partial(full_path, v["single"], jpegs[:1]) for n, v in variants.items()},
    }
    batches: dict[str, Callable[[], Any]] = {
        "bare": lambda: bare_batch.run(None, {"pixel_values": pixels}),
        "torch": lambda: torch_run(torch_batch),
        **{f"full_{n}": partial(full_path, v["batch"], jpegs) for n, v in variants.items()},
    }
    for fn in (*singles.values(), *batches.values()):
        fn()  # warm-up
    single_ms: dict[str, list[float]] = {name: [] for name in singles}
    for _ in range(12 if quick else 40):
        for name, fn in singles.items():
            single_ms[name].append(_timed(fn))
    batch_ms: dict[str, list[float]] = {name: [] for name in batches}
    for _ in range(3 if quick else 8):
        for name, fn in batches.items():
            batch_ms[name].append(_timed(fn))
    single = {name: statistics.median(v) for name, v in single_ms.items()}
    throughput = {name: BATCH * 1000 / statistics.median(v) for name, v in batch_ms.items()}

    drift_images = [crop(decode_image(d, max_pixels=40_000_000), b) for d, b in jpegs]
    reference = variants["fp32"]["batch"].embed(drift_images)
    drift = {name: float(np.min(np.sum(l2_normalise(v["batch"].embed(drift_images)) * reference, axis=1)))
             for name, v in variants.items()}
    eligible = [n for n in variants if drift[n] >= MIN_COSINE]
    best = min(eligible, key=lambda n: single[f"full_{n}"])
    return _report(best, single, throughput, drift)


def _report(best: str, single: dict[str, float], throughput: dict[str, float],
            drift: dict[str, float]) -> dict[str, dict[str, Any]]:
    print(f"ViT-B/32-shaped tower (random weights), {THREADS} threads, batch {BATCH}")
    print(f"  {'variant':<14}{'single ms':>12}{'batch img/s':>14}{'cos vs fp32':>14}")
    for name in single:
        cos = drift.get(name.removeprefix("full_"), float("nan"))
        print(f"  {name:<14}{single[name]:>12.1f}{throughput[name]:>14.2f}{cos:>14.4f}")
    best_single, best_batch = single[f"full_{best}"], throughput[f"full_{best}"]
    print(f"  best: {best}  full/bare single {best_single / single['bare']:.3f} (target ≤ 1.10), "
          f"torch/full {single['torch'] / best_single:.2f}× (target ≥ 1.6), "
          f"full/bare batch {best_batch / throughput['bare']:.3f} (target ≥ 0.95)")

    def fig(value: float, unit: str, baseline: str | None = None, base: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"value": round(value, 3), "unit": unit}
        if baseline is not None:
            out |= {"baseline": baseline, "baseline_value": round(base or 0.0, 3)}
        return out

    return {
        "embedder_best_config": {"value": f"onnxruntime-{best}-intra{THREADS}", "unit": "config"},
        "embedder_best_single_ms": fig(best_single, "ms", "embedder_bare_single_ms", single["bare"]),
        "embedder_bare_single_ms": fig(single["bare"], "ms"),
        "embedder_torch_single_ms": fig(single["torch"], "ms", "embedder_best_single_ms", best_single),
        "embedder_best_batch_img_s": fig(best_batch, "img/s", "embedder_bare_batch_img_s", throughput["bare"]),
        "embedder_bare_batch_img_s": fig(throughput["bare"], "img/s"),
        "embedder_torch_batch_img_s": fig(throughput["torch"], "img/s", "embedder_bare_batch_img_s",
                                          throughput["bare"]),
        "embedder_best_drift_cos": fig(1.0 if best == "fp32" else drift[best], "cosine"),
        "embedder_int8_drift_cos": fig(drift["int8"], "cosine"),
        "embedder_full_fp32_single_ms": fig(single["full_fp32"], "ms", "embedder_bare_single_ms",
                                            single["bare"]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
