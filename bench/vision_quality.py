"""Quality and speed of the OFFLINE vision providers on synthetic data (detector: MediaPipe Pose
when it finds the figure, classical rules otherwise; tagger).

On a freshly seeded synthetic set (street photos rendered directly, no database):

- detector: box recall and precision at IoU ≥ 0.5 (one-to-one matching), category accuracy
  over the matched boxes, milliseconds per ~800×1000 photo. Baseline for the time: decoding
  the same photo from JPEG in the same run (the unavoidable cost of any provider).
- tagger: colour-name and pattern accuracy on catalog product images (flat lay, on-model,
  rotated flat) and on street crops cut at the ground-truth boxes.

These are the figures the README quotes as the offline baseline; Ximilar is the production
provider. Run: ``python -m bench.vision_quality [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

from PIL import Image

from bench.common import figure, print_table
from unde.synthetic.catalog import generate_catalog
from unde.synthetic.render import render_product_image
from unde.vision.detector import detect_garments
from unde.vision.evaluation import DetectionScore, street_photos
from unde.vision.tagger import tag_garment

SEED = 2024


def _detector(photos: list[tuple[Image.Image, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    score = DetectionScore()
    detect_ms: list[float] = []
    decode_ms: list[float] = []
    for image, items in photos:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        t0 = time.perf_counter()
        decoded = Image.open(io.BytesIO(data)).convert("RGB")
        t1 = time.perf_counter()
        detections = detect_garments(decoded)
        t2 = time.perf_counter()
        decode_ms.append((t1 - t0) * 1000)
        detect_ms.append((t2 - t1) * 1000)
        score.add(items, [(d.bbox, d.category) for d in detections])
    ms = sum(detect_ms) / len(detect_ms)
    decode = sum(decode_ms) / len(decode_ms)
    return {
        "detector_box_recall": figure(round(score.recall, 3), "share of GT boxes (IoU>=0.5)"),
        "detector_box_precision": figure(round(score.precision, 3), "share of detections"),
        "detector_category_accuracy": figure(round(score.category_accuracy, 3), "share of matched boxes"),
        "detector_ms_per_photo": figure(round(ms, 1), "ms", "JPEG decode of the same photo", round(decode, 1)),
        "detector_photos": figure(len(photos), "photos"),
        "detector_gt_items": figure(score.ground_truth, "garments"),
    }


def _tagger_products(n_skus: int) -> dict[str, dict[str, Any]]:
    catalog = generate_catalog(SEED, "small")
    colour = pattern = total = 0
    for sku in catalog.skus[:n_skus]:
        for rank in (0, 1, 3):  # flat lay, on-model, rotated flat lay
            tags = tag_garment(render_product_image(sku, rank), sku.category)
            total += 1
            colour += tags.color == sku.colour
            pattern += tags.pattern == sku.pattern
    return {
        "tagger_colour_accuracy": figure(round(colour / total, 3), "share of product images"),
        "tagger_pattern_accuracy": figure(round(pattern / total, 3), "share of product images"),
        "tagger_product_images": figure(total, "images"),
    }


def _tagger_street(photos: list[tuple[Image.Image, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    colour = pattern = total = 0
    for image, items in photos:
        for item in items:
            tags = tag_garment(image.crop(tuple(item["bbox"])), item["category"])
            total += 1
            colour += tags.color == item["colour"]
            pattern += tags.pattern == item["pattern"]
    return {
        "tagger_street_colour_accuracy": figure(round(colour / max(total, 1), 3), "share of GT street crops"),
        "tagger_street_pattern_accuracy": figure(round(pattern / max(total, 1), 3), "share of GT street crops"),
    }


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Measure the offline detector and tagger; print and return the figures."""
    photos = street_photos(SEED, 24 if quick else 80)
    results = _detector(photos)
    results.update(_tagger_products(40 if quick else 150))
    results.update(_tagger_street(photos))
    print_table(
        f"Offline vision providers (person model + classical fallback, synthetic data, seed {SEED})",
        [(name, entry["value"], entry["unit"]) for name, entry in results.items()],
    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
