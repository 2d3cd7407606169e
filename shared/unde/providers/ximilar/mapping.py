"""Ximilar's fashion taxonomy and scores, translated into ours — in one place.

Ximilar names things its own way (`Top Category` "Clothing", object names such as
"Clothing/Upper", `Category` "Clothing/Jackets", `Subcategory` "bomber jackets", colours such
as "gray" or "multicolor", `Design` "stripes"). Everything downstream speaks
`unde.vocabulary`; these functions are the only translation.

Scores: Ximilar collection search answers *distances* (smaller = more similar). We treat them
as cosine distances between L2-normalised descriptors, d ∈ [0, 2], and map them onto the scale
pgvector uses for our own candidates — cosine similarity s = 1 − d — clipped to [0, 1]
(`ximilar_similarity`). Using the same formula as pgvector (`1 − (embedding <=> q)`) is what
makes the two sources comparable when candidates are merged and de-duplicated; the fake
server computes exactly this distance. If a collection is ever configured with another
metric, only `ximilar_similarity` changes.
"""

from __future__ import annotations

import re
from typing import Final

from unde.vocabulary import CATEGORIES, COLOUR_BY_NAME, MATERIALS, PATTERNS, category_of

# Longer phrases first: "shirt dress" must win over "shirt", "denim jacket" over "jacket".
_TYPE_KEYWORDS: Final[tuple[tuple[str, str], ...]] = (
    ("shirt dress", "shirt_dress"), ("maxi", "maxi_dress"), ("midi", "midi_dress"),
    ("bomber", "bomber_jacket"), ("blazer", "blazer"), ("denim jacket", "denim_jacket"),
    ("jean jacket", "denim_jacket"), ("trench", "coat"), ("parka", "coat"), ("coat", "coat"),
    ("t-shirt", "t_shirt"), ("t shirt", "t_shirt"), ("tshirt", "t_shirt"), ("tee", "t_shirt"),
    ("hoodie", "hoodie"), ("sweatshirt", "hoodie"), ("sweater", "sweater"),
    ("jumper", "sweater"), ("cardigan", "sweater"), ("pullover", "sweater"),
    ("blouse", "shirt"), ("shirt", "shirt"), ("jeans", "jeans"), ("trousers", "trousers"),
    ("pants", "trousers"), ("chinos", "trousers"), ("skirt", "skirt"), ("shorts", "shorts"),
    ("dress", "midi_dress"), ("sneaker", "sneakers"), ("trainer", "sneakers"),
    ("boot", "boots"), ("loafer", "loafers"), ("moccasin", "loafers"), ("tote", "tote"),
    ("shopper", "tote"), ("crossbody", "crossbody"), ("shoulder bag", "crossbody"),
    ("handbag", "crossbody"), ("backpack", "backpack"),
)

_CATEGORY_KEYWORDS: Final[tuple[tuple[str, str], ...]] = (
    ("outerwear", "outerwear"), ("jacket", "outerwear"), ("coat", "outerwear"),
    ("full", "dress"), ("dress", "dress"), ("jumpsuit", "dress"), ("overall", "dress"),
    ("upper", "top"), ("top", "top"), ("shirt", "top"), ("sweater", "top"), ("hoodie", "top"),
    ("lower", "bottom"), ("bottom", "bottom"), ("pants", "bottom"), ("trousers", "bottom"),
    ("jeans", "bottom"), ("skirt", "bottom"), ("shorts", "bottom"),
    ("footwear", "shoes"), ("foot", "shoes"), ("shoe", "shoes"), ("sneaker", "shoes"),
    ("boot", "shoes"), ("bag", "bag"), ("backpack", "bag"),
)

_COLOUR_SYNONYMS: Final[dict[str, str]] = {
    "gray": "grey", "violet": "purple", "lilac": "purple", "cream": "beige", "ivory": "white",
    "off-white": "white", "off white": "white", "maroon": "burgundy", "wine": "burgundy",
    "bordeaux": "burgundy", "olive": "khaki", "camel": "beige", "tan": "brown",
    "dark blue": "navy", "navy blue": "navy", "sky blue": "light blue", "turquoise": "blue",
    "teal": "green", "mustard": "yellow", "rose": "pink", "coral": "orange",
}

_PATTERN_KEYWORDS: Final[tuple[tuple[str, str], ...]] = (
    ("plain", "solid"), ("solid", "solid"), ("unicolor", "solid"), ("stripe", "striped"),
    ("check", "checked"), ("plaid", "checked"), ("tartan", "checked"), ("houndstooth", "checked"),
    ("dot", "dotted"), ("polka", "dotted"), ("print", "printed"), ("floral", "printed"),
    ("animal", "printed"), ("camouflage", "printed"), ("paisley", "printed"),
    ("graphic", "printed"), ("logo", "printed"),
)

_MATERIAL_KEYWORDS: Final[tuple[tuple[str, str], ...]] = (
    ("denim", "denim"), ("jeans", "denim"), ("leather", "leather"), ("suede", "leather"),
    ("nylon", "nylon ripstop"), ("ripstop", "nylon ripstop"), ("wool", "wool"),
    ("linen", "linen"), ("polyester", "polyester"), ("knit", "knit"), ("cotton", "cotton"),
)


def _normalise(text: str) -> str:
    return re.sub(r"[_\s]+", " ", text.strip().lower())


def _first_match(text: str | None, table: tuple[tuple[str, str], ...]) -> str | None:
    if not text:
        return None
    value = _normalise(text)
    for keyword, ours in table:
        if keyword in value:
            return ours
    return None


def garment_type(*labels: str | None) -> str | None:
    """Our fine garment type from Ximilar labels, most specific first (Subcategory, Category)."""
    for label in labels:
        found = _first_match(label, _TYPE_KEYWORDS)
        if found:
            return found
    return None


def garment_category(*labels: str | None) -> str | None:
    """Our coarse category from Ximilar labels (type labels first, then object/top names)."""
    found_type = garment_type(*labels)
    if found_type:
        return category_of(found_type)
    for label in labels:
        found = _first_match(label, _CATEGORY_KEYWORDS)
        if found in CATEGORIES:
            return found
    return None


def colour_name(label: str | None) -> str | None:
    """Our colour name for a Ximilar colour label (None for multicolour or unknown)."""
    if not label:
        return None
    value = _normalise(label)
    value = _COLOUR_SYNONYMS.get(value, value)
    return value if value in COLOUR_BY_NAME else None


def colour_hex(name: str | None) -> str | None:
    """The catalog hex of one of our colour names."""
    return COLOUR_BY_NAME[name].hex if name in COLOUR_BY_NAME else None


def pattern_name(label: str | None) -> str | None:
    """Our pattern for a Ximilar `Design`/`Pattern` label."""
    found = _first_match(label, _PATTERN_KEYWORDS)
    return found if found in PATTERNS else None


def material_name(label: str | None) -> str | None:
    """Our material for a Ximilar `Material` label."""
    found = _first_match(label, _MATERIAL_KEYWORDS)
    return found if found in MATERIALS else None


def ximilar_similarity(distance: float) -> float:
    """Cosine similarity on pgvector's scale from a Ximilar search distance (see module doc)."""
    return min(1.0, max(0.0, 1.0 - float(distance)))
