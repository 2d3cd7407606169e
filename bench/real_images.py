"""Real-image quality of the offline providers, old (classical) and new (real networks), one run.

- Fashion-MNIST category retrieval (Debian ``dataset-fashion-mnist``; 2,000 train images as the
  gallery, 1,000 test images as queries, drawn with a fixed seed): each 28×28 image, upscaled
  to RGB, goes through the embedder's shipped path (``embed`` → the stored 512-d unit vector);
  top-1 = the nearest gallery image has the query's class, P@10 = share of the 10 nearest that
  do. `fmnist_*` = EfficientNet-Lite0 (`efficientnet-lite0-imagenet-p512-v1`),
  `fmnist_*_descriptor` = the classical `unde-descriptor-v1`.
- Real photos with hand-labelled boxes (`bench/data/real_photos.json`: matplotlib's
  grace_hopper.jpg, scikit-image's astronaut.png): the offline detector's best IoU per labelled
  upper-body garment (`real_photo_upper_iou` = their mean) and the tagger's colour on the
  detector's masked crop; the classical detector alone as the old provider's figure; the
  categories it claims (no shoes or bottoms may appear in these portraits).
- Synthetic street crop → catalog SKU top-1 for both embedders (bench.descriptor_quality's set).
- Latency: the embedder's full path (JPEG decode → crop → preprocess → ONNX → normalise) vs the
  bare ONNX session on ready tensors, interleaved, single images.

Needs the ``models`` extra (torch, the weights package; the ONNX file is built once into
``OFFLINE_MODEL_DIR``) and the ``bench`` extra (scikit-image for astronaut.png).
Run: ``python -m bench.real_images [--quick]``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import figure, print_table
from unde.models.base import ImageEmbedder
from unde.models.descriptor import DescriptorEmbedder
from unde.models.registry import load_embedder
from unde.settings import EmbeddingModelSettings
from unde.vision.evaluation import iou

FMNIST = Path("/usr/share/datasets/fashion-mnist")
LABELS = Path(__file__).resolve().parent / "data" / "real_photos.json"
SEED = 0


def _idx(name: str, header: int) -> np.ndarray:
    with gzip.open(FMNIST / name) as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header)


def fashion_mnist(n_gallery: int, n_query: int) -> tuple[list[Image.Image], np.ndarray, list[Image.Image], np.ndarray]:
    """Gallery (train) and query (test) images with labels, a fixed random draw."""
    x_train = _idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_train = _idx("train-labels-idx1-ubyte.gz", 8)
    x_test = _idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_test = _idx("t10k-labels-idx1-ubyte.gz", 8)
    rng = np.random.default_rng(SEED)
    g = rng.choice(len(x_train), n_gallery, replace=False)
    q = rng.choice(len(x_test), n_query, replace=False)

    def images(x: np.ndarray) -> list[Image.Image]:
        return [Image.fromarray(a).convert("RGB") for a in x]

    return images(x_train[g]), y_train[g], images(x_test[q]), y_test[q]


def retrieval(embedder: ImageEmbedder, data: tuple[list[Image.Image], np.ndarray, list[Image.Image], np.ndarray],
              batch: int = 32) -> tuple[float, float]:
    """(top-1, P@10) of the queries against the gallery by cosine."""
    gallery_images, gallery_y, query_images, query_y = data

    def embed(images: list[Image.Image]) -> np.ndarray:
        return np.concatenate([embedder.embed(images[i : i + batch]) for i in range(0, len(images), batch)])

    gallery, queries = embed(gallery_images), embed(query_images)
    nearest = np.argsort(-(queries @ gallery.T), axis=1)[:, :10]
    labels = gallery_y[nearest]
    return float((labels[:, 0] == query_y).mean()), float((labels == query_y[:, None]).mean())


def real_photos() -> list[tuple[dict[str, Any], Image.Image]]:
    """The labelled photos, loaded from the packages that ship them."""
    import matplotlib.cbook
    import skimage.data

    loaders = {"grace_hopper": lambda: Image.open(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg",
                                                                                         asfileobj=False))),
               "astronaut": lambda: Image.fromarray(skimage.data.astronaut())}
    return [(photo, loaders[photo["name"]]().convert("RGB")) for photo in json.loads(LABELS.read_text())["photos"]]


def _detections(photos: list[tuple[dict[str, Any], Image.Image]]) -> dict[str, dict[str, Any]]:
    from unde.providers.garments import local_garments, masked_crop
    from unde.vision.detector import detect_classical
    from unde.vision.tagger import tag_garment

    ious, old_ious, colours, claimed, ms = [], [], [], [], []
    for photo, image in photos:
        t0 = time.perf_counter()
        found = local_garments(image)
        ms.append((time.perf_counter() - t0) * 1000)
        old = detect_classical(image)
        claimed += [g.category for g in found]
        for truth in photo["garments"]:
            if not truth["upper"]:
                continue
            box = tuple(truth["bbox"])
            scored = [(iou(box, g.bbox), g) for g in found]
            best, garment = max(scored, key=lambda s: s[0], default=(0.0, None))
            ious.append(best)
            old_ious.append(max((iou(box, d.bbox) for d in old), default=0.0))
            colour = None
            if garment is not None and best >= 0.5:
                colour = tag_garment(masked_crop(image, garment.bbox, garment.mask), garment.category).color
            colours.append(colour in truth["colour_family"])
            print(f"  {photo['name']:<13} {truth['category']:<10} IoU {best:.2f} (classical "
                  f"{old_ious[-1]:.2f}) colour {colour} (accepts {truth['colour_family']})")
    wrong = sum(c in ("shoes", "bottom") for c in claimed)
    return {
        "real_photo_upper_iou": figure(round(statistics.mean(ious), 3), "mean best IoU, labelled upper garments",
                                       "classical detector alone", round(statistics.mean(old_ious), 3)),
        "real_photo_upper_found": figure(sum(v >= 0.5 for v in ious), f"of {len(ious)} at IoU>=0.5"),
        "real_photo_colour_right": figure(sum(colours), f"of {len(colours)} (colour family)"),
        "real_photo_shoes_or_bottoms_claimed": figure(wrong, "detections in portraits"),
        "real_photo_detect_ms": figure(round(statistics.mean(ms), 1), "ms per photo"),
    }


def _synthetic(efficientnet: ImageEmbedder, n_street: int) -> dict[str, dict[str, Any]]:
    from bench.descriptor_quality import load_dataset

    data = load_dataset(n_street)
    out = {}
    for name, embedder in (("efficientnet", efficientnet), ("descriptor", DescriptorEmbedder())):
        catalog = np.concatenate([embedder.embed(data.catalog[i : i + 32]) for i in range(0, len(data.catalog), 32)])
        street = np.concatenate([embedder.embed(data.street[i : i + 32]) for i in range(0, len(data.street), 32)])
        best = np.argmax(street @ catalog.T, axis=1)
        top1 = float(np.mean([data.catalog_sku[j] == sku for j, sku in zip(best, data.street_sku, strict=True)]))
        out[f"synthetic_street_sku_top1_{name}"] = figure(round(top1, 4), f"top-1 SKU, {len(data.street)} crops")
    return out


def _latency(embedder: Any, rounds: int) -> dict[str, dict[str, Any]]:
    """Full path vs bare session, one image at a time, interleaved."""
    from unde.models.clip_preprocess import preprocess
    from unde.synthetic.catalog import generate_catalog
    from unde.synthetic.render import render_product_image
    from unde.vision.images import crop, decode_image

    skus = generate_catalog(7, "small").skus[:8]
    jpegs = []
    for sku in skus:
        buffer = io.BytesIO()
        render_product_image(sku, 1).convert("RGB").save(buffer, format="JPEG", quality=88)
        jpegs.append(buffer.getvalue())
    m = embedder.manifest
    ready = [preprocess([decode_image(j, max_pixels=40_000_000)], m.image_size, mode=m.preprocess,
                        mean=m.mean, std=m.std) for j in jpegs]
    full_ms, bare_ms = [], []
    for r in range(rounds):
        i = r % len(jpegs)
        t0 = time.perf_counter()
        image = decode_image(jpegs[i], max_pixels=40_000_000)
        embedder.embed([crop(image, (0, 0, image.width, image.height))])
        t1 = time.perf_counter()
        embedder.run(ready[i])
        t2 = time.perf_counter()
        full_ms.append((t1 - t0) * 1000)
        bare_ms.append((t2 - t1) * 1000)
    full, bare = statistics.median(full_ms), statistics.median(bare_ms)
    return {
        "offline_embedder_full_ms": figure(round(full, 2), "ms (median, single image)", "bare ONNX session",
                                           round(bare, 2)),
        "offline_embedder_full_over_bare": figure(round(full / bare, 3), "× (target ≤ 1.10)"),
    }


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """All figures of this module."""
    settings = EmbeddingModelSettings.model_validate({"embed_provider": "efficientnet", "intra_op_threads": 2})
    efficientnet = load_embedder(settings, "throughput")
    results: dict[str, dict[str, Any]] = {}
    results.update(_latency(load_embedder(settings, "latency"), 40 if quick else 120))
    data = fashion_mnist(2000, 1000)
    for suffix, embedder in (("", efficientnet), ("_descriptor", DescriptorEmbedder())):
        started = time.perf_counter()
        top1, p10 = retrieval(embedder, data)
        print(f"  fmnist {embedder.model_version}: top-1 {top1:.3f}, P@10 {p10:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        results[f"fmnist_top1{suffix}"] = figure(round(top1, 4), f"top-1, {embedder.model_version}")
        results[f"fmnist_p10{suffix}"] = figure(round(p10, 4), f"P@10, {embedder.model_version}")
    results.update(_detections(real_photos()))
    results.update(_synthetic(efficientnet, 40 if quick else 150))
    print_table("Offline providers on real images (and the synthetic set)",
                [(name, entry["value"], entry["unit"]) for name, entry in results.items()])
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
