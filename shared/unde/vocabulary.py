"""The fashion vocabulary every function shares: categories, garment types, colours, patterns.

One table, so the synthetic generator, the offline tagger, the attribute fallback and the
Ximilar mapping all speak the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Coarse categories, the granularity the offline detector reports.
CATEGORIES: Final[tuple[str, ...]] = ("top", "outerwear", "dress", "bottom", "shoes", "bag")

#: Fine garment types per coarse category (what the spec's attribute fallback calls "type").
TYPES_BY_CATEGORY: Final[dict[str, tuple[str, ...]]] = {
    "top": ("t_shirt", "shirt", "sweater", "hoodie"),
    "outerwear": ("bomber_jacket", "blazer", "coat", "denim_jacket"),
    "dress": ("midi_dress", "maxi_dress", "shirt_dress"),
    "bottom": ("jeans", "trousers", "skirt", "shorts"),
    "shoes": ("sneakers", "boots", "loafers"),
    "bag": ("tote", "crossbody", "backpack"),
}

CATEGORY_OF_TYPE: Final[dict[str, str]] = {
    garment_type: category
    for category, types in TYPES_BY_CATEGORY.items()
    for garment_type in types
}

PATTERNS: Final[tuple[str, ...]] = ("solid", "striped", "checked", "dotted", "printed")

MATERIALS: Final[tuple[str, ...]] = (
    "cotton", "denim", "wool", "leather", "nylon ripstop", "linen", "polyester", "knit",
)


@dataclass(frozen=True, slots=True)
class NamedColour:
    """A colour name as shoppers and catalogs use it, with its sRGB hex value."""

    name: str
    hex: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        value = self.hex.lstrip("#")
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


#: Catalog colour names. Distinct enough in CIELAB that a classical tagger can tell them apart.
COLOURS: Final[tuple[NamedColour, ...]] = (
    NamedColour("black", "#1C1C1C"),
    NamedColour("white", "#F2F2F0"),
    NamedColour("grey", "#8C8C8C"),
    NamedColour("navy", "#1F2A4D"),
    NamedColour("blue", "#2F6DB5"),
    NamedColour("light blue", "#9CC3E6"),
    NamedColour("red", "#B22222"),
    NamedColour("burgundy", "#6D1A2B"),
    NamedColour("pink", "#E8A0B4"),
    NamedColour("orange", "#E07B28"),
    NamedColour("yellow", "#E8C93A"),
    NamedColour("beige", "#D8C3A0"),
    NamedColour("brown", "#6B4A2E"),
    NamedColour("khaki", "#8F8A55"),
    NamedColour("green", "#2E7D46"),
    NamedColour("purple", "#6A3D8F"),
)

COLOUR_BY_NAME: Final[dict[str, NamedColour]] = {colour.name: colour for colour in COLOURS}


def category_of(garment_type_or_category: str) -> str | None:
    """Map a fine type or a coarse category to its coarse category (None when unknown)."""
    if garment_type_or_category in TYPES_BY_CATEGORY:
        return garment_type_or_category
    return CATEGORY_OF_TYPE.get(garment_type_or_category)
