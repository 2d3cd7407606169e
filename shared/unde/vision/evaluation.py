"""Scoring the offline detector and tagger against labelled street photos.

Used by ``bench/vision_quality.py`` and ``tests/vision``. A ground-truth item counts as found
when a detection overlaps it with IoU ≥ 0.5 (one-to-one, greedy by IoU, any category);
category accuracy is measured over the found items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

BBox = tuple[int, int, int, int] | Sequence[int]

IOU_THRESHOLD = 0.5


def iou(a: BBox, b: BBox) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, ix1 - ix0) * max(0, iy1 - iy0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(slots=True)
class DetectionScore:
    """Running counts for box recall/precision and category accuracy.

    Matching is one-to-one at IoU ≥ 0.5; among qualifying pairs, same-category pairs are taken
    first (so an outerwear box is not "stolen" by the top under it), then by overlap.
    """

    ground_truth: int = 0
    detections: int = 0
    matched: int = 0
    category_correct: int = 0

    @property
    def recall(self) -> float:
        """Share of ground-truth items matched at IoU ≥ 0.5."""
        return self.matched / self.ground_truth if self.ground_truth else 0.0

    @property
    def precision(self) -> float:
        """Share of detections matched to a ground-truth item."""
        return self.matched / self.detections if self.detections else 0.0

    @property
    def category_accuracy(self) -> float:
        """Share of matched items whose detection has the right category."""
        return self.category_correct / self.matched if self.matched else 0.0

    def add(self, truth: Iterable[dict[str, Any]], detected: Iterable[tuple[BBox, str]]) -> list[tuple[int, int]]:
        """Score one photo; returns the matched (truth index, detection index) pairs."""
        gt = list(truth)
        det = list(detected)
        self.ground_truth += len(gt)
        self.detections += len(det)
        scored = [
            (iou(g["bbox"], d[0]), g["category"] == d[1], gi, di)
            for gi, g in enumerate(gt) for di, d in enumerate(det)
        ]
        # Same-category pairs first (as per-class evaluation would), then by overlap.
        pairs = sorted((p for p in scored if p[0] >= IOU_THRESHOLD), key=lambda p: (p[1], p[0]), reverse=True)
        used_g: set[int] = set()
        used_d: set[int] = set()
        matches: list[tuple[int, int]] = []
        for _, _, gi, di in pairs:
            if gi in used_g or di in used_d:
                continue
            used_g.add(gi)
            used_d.add(di)
            matches.append((gi, di))
            self.matched += 1
            self.category_correct += int(gt[gi]["category"] == det[di][1])
        return matches


def _render_street(args: tuple[int, int]) -> tuple[Any, list[dict[str, Any]]]:
    from unde.synthetic.catalog import generate_catalog
    from unde.synthetic.street import render_street_photo

    seed, index = args
    photo = render_street_photo(generate_catalog(seed, "small"), {}, "Dubai Hills Mall", index, seed)
    return photo.image, photo.items


def street_photos(seed: int, count: int, workers: int = 2) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Render ``count`` synthetic street photos of a fresh seed with their ground-truth items.

    Calls the generator's street renderer directly (no database); deterministic in ``seed``.
    """
    jobs = [(seed, i) for i in range(count)]
    if workers <= 1 or count < 4:
        return [_render_street(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_render_street, jobs))
