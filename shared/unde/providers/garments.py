"""Detection and tagging providers of the vision gateway: Ximilar or the offline baseline.

`DETECT_PROVIDER` / `TAG_PROVIDER`: `ximilar`, `local`, or `auto` (Ximilar when
XIMILAR_API_TOKEN is set, else local). Both providers answer in our vocabulary, so swapping
them changes a setting, not the pipeline. The local ones are `unde.vision.detector` (MediaPipe
Pose landmarks + person mask, classical rules when no person is found) and `unde.vision.tagger`;
never presented as Ximilar. Local detections carry their mask, so crops are the garment on white.

With Ximilar as the provider, `ximilar_or_local` gives Ximilar the request's budget minus the
time the offline provider needs (`LOCAL_RESERVE_S`): a slow or failing Ximilar is answered by
the offline provider, flagged, inside the budget — and the credits of Ximilar attempts that
timed out after sending are still reported (they are billed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import numpy as np
from PIL import Image

from unde import budget
from unde.budget import Deadline
from unde.errors import UpstreamError
from unde.providers.ximilar import CreditMeter, XimilarClient
from unde.providers.ximilar import mapping as xmap
from unde.providers.ximilar.wire import DetectedImage, Tag
from unde.settings import ProviderChoice
from unde.vision.detector import Detection, detect_garments
from unde.vision.images import encode_jpeg
from unde.vision.tagger import tag_garment

log = logging.getLogger(__name__)

Provider = Literal["ximilar", "local"]
T = TypeVar("T")

#: Time kept back from the request's budget for the offline provider when Ximilar fails:
#: about twice the slowest offline run measured on the 2-core development VM under a load
#: average of 13 (detect_local on 800×1000 and 1280×1600 street photos 0.32–0.53 s, tag_local
#: on their first garment's crop 0.12–0.36 s).
LOCAL_RESERVE_S: Final = {"detect": 1.0, "tag": 0.6}


def resolve_provider(choice: ProviderChoice, ximilar_configured: bool) -> Provider:
    """`auto` → ximilar when a token is configured, else local."""
    if choice == "auto":
        return "ximilar" if ximilar_configured else "local"
    return choice


@dataclass(frozen=True, slots=True)
class Garment:
    """One detected garment in our vocabulary; `bbox` in pixels of the input image.

    ``mask`` (offline detector only): the garment's pixels inside `bbox`, an "L" image of the
    box's size (255 = garment); `crop_jpeg` paints everything else white.
    """

    bbox: tuple[int, int, int, int]
    category: str
    type: str | None
    confidence: float
    mask: Image.Image | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Tags:
    """What `/tag` answers about a crop."""

    type: str | None = None
    category: str | None = None
    color: str | None = None
    color_hex: str | None = None
    material: str | None = None
    pattern: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        values = {"type": self.type, "category": self.category, "color": self.color,
                  "color_hex": self.color_hex, "material": self.material, "pattern": self.pattern}
        return {**values, "probabilities": self.probabilities,
                "unknown": [name for name, value in values.items() if value is None]}


def _clamp(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    x0, y0, x1, y1 = (round(v) for v in box)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def _top(tags: dict[str, list[Tag]], *features: str) -> Tag | None:
    for feature in features:
        values = tags.get(feature)
        if values:
            return values[0]
    return None


def garments_from_ximilar(image: DetectedImage, size: tuple[int, int]) -> list[Garment]:
    """Ximilar objects mapped to our categories; objects outside them (jewellery...) dropped."""
    garments = []
    for obj in image.objects:
        sub = _top(obj.tags, "Subcategory")
        cat = _top(obj.tags, "Category")
        labels = (sub.name if sub else None, cat.name if cat else None, obj.name, obj.top_category)
        category = xmap.garment_category(*labels)
        box = _clamp(obj.bbox, size)
        if category is None or box[2] - box[0] < 8 or box[3] - box[1] < 8:
            continue
        garments.append(Garment(box, category, xmap.garment_type(*labels[:2]), round(obj.prob, 4)))
    return garments


def tags_from_ximilar(tags: dict[str, list[Tag]], category_hint: str | None) -> Tags:
    """Ximilar's tag features mapped to our vocabulary, with the probability of each."""
    out = Tags()
    sub, cat = _top(tags, "Subcategory"), _top(tags, "Category")
    out.type = xmap.garment_type(sub.name if sub else None, cat.name if cat else None)
    out.category = (xmap.garment_category(sub.name if sub else None, cat.name if cat else None)
                    or xmap.garment_category(category_hint))
    if out.type and sub:
        out.probabilities["type"] = sub.prob
    if out.category and cat:
        out.probabilities["category"] = cat.prob
    colour = _top(tags, "Color", "Colour")
    out.color = xmap.colour_name(colour.name if colour else None)
    out.color_hex = xmap.colour_hex(out.color)
    if out.color and colour:
        out.probabilities["color"] = colour.prob
    material = _top(tags, "Material")
    out.material = xmap.material_name(material.name if material else None)
    if out.material and material:
        out.probabilities["material"] = material.prob
    pattern = _top(tags, "Design", "Pattern", "Design/Pattern")
    out.pattern = xmap.pattern_name(pattern.name if pattern else None)
    if out.pattern and pattern:
        out.probabilities["pattern"] = pattern.prob
    return out


def box_mask(detection: Detection, box: tuple[int, int, int, int]) -> Image.Image | None:
    """The detection's mask cut to `box` (input pixels) and scaled to its size, or None."""
    if detection.mask is None or box[2] <= box[0] or box[3] <= box[1]:
        return None
    s = detection.mask_scale
    h, w = detection.mask.shape
    x0, y0 = min(w - 1, int(box[0] * s)), min(h - 1, int(box[1] * s))
    x1, y1 = max(x0 + 1, min(w, int(np.ceil(box[2] * s)))), max(y0 + 1, min(h, int(np.ceil(box[3] * s))))
    part = Image.fromarray(detection.mask[y0:y1, x0:x1].astype(np.uint8) * 255)
    return part.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.BILINEAR)


def local_garments(image: Image.Image) -> list[Garment]:
    """The offline detector (`unde.vision.detector`) in our wire shape, masks attached."""
    garments = []
    for d in detect_garments(image):
        box = _clamp(tuple(float(v) for v in d.bbox), image.size)  # type: ignore[arg-type]
        garments.append(Garment(box, d.category, None, float(d.confidence), box_mask(d, box)))
    return garments


async def detect_local(image: Image.Image) -> list[Garment]:
    """The offline detector (person model, classical fallback), run in a worker thread."""
    return await asyncio.to_thread(local_garments, image)


async def tag_local(image: Image.Image, category_hint: str | None) -> Tags:
    """The offline baseline tagger, run in a worker thread."""
    found = await asyncio.to_thread(tag_garment, image, category_hint)
    return Tags(type=found.type, category=found.category, color=found.color,
                color_hex=found.color_hex, material=found.material, pattern=found.pattern,
                probabilities=dict(found.probabilities))


async def detect_ximilar(client: XimilarClient, data: bytes, size: tuple[int, int],
                         deadline: Deadline, meter: CreditMeter) -> list[Garment]:
    """Ximilar fashion detection on the photo's bytes (credits go to `meter`)."""
    answer = await client.detect_tags([data], deadline=deadline, meter=meter)
    return garments_from_ximilar(answer.value[0], size)


async def tag_ximilar(client: XimilarClient, data: bytes, category_hint: str | None,
                      deadline: Deadline, meter: CreditMeter) -> Tags:
    """Ximilar fashion tags of a crop (credits go to `meter`)."""
    answer = await client.tags([data], deadline=deadline, meter=meter)
    return tags_from_ximilar(answer.value[0], category_hint)


XimilarStep = Callable[[Deadline, CreditMeter], Awaitable[T]]


async def ximilar_or_local(provider: Provider, step: Literal["detect", "tag"],
                           ximilar: XimilarStep[T],
                           local: Callable[[], Awaitable[T]]) -> tuple[T, str, int, list[str]]:
    """Ximilar when it is the provider, within the budget less the offline provider's reserve;
    on its failure or time-out the offline provider answers, flagged.

    Returns (result, provider that answered, credits spent, degradations).
    """
    if provider != "ximilar":
        return await local(), "local", 0, []
    meter = CreditMeter()
    try:
        result = await ximilar(budget.current().reserve(LOCAL_RESERVE_S[step]), meter)
        return result, "ximilar", meter.credits, []
    except UpstreamError as exc:
        log.warning("Ximilar %s failed, using the offline provider: %s", step, exc)
        return await local(), "local", meter.credits, [f"ximilar_{step}_failed"]


def masked_crop(image: Image.Image, bbox: tuple[int, int, int, int],
                mask: Image.Image | None = None) -> Image.Image:
    """The garment's box; with a mask, its pixels on white (what the embedder and tagger see)."""
    crop = image.crop(bbox)
    if mask is None or mask.size != crop.size:
        return crop
    backdrop = Image.new("RGB", crop.size, (255, 255, 255))
    backdrop.paste(crop.convert("RGB"), mask=mask)
    return backdrop


def crop_jpeg(image: Image.Image, bbox: tuple[int, int, int, int], mask: Image.Image | None = None) -> bytes:
    """The crop that travels between functions (CONTRACTS.md: inline JPEG), masked when it can be."""
    return encode_jpeg(masked_crop(image, bbox, mask))
