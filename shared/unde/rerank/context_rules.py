"""Offline context tags: what can honestly be said from a garment's type and colour alone.

The production tagger (Gemini) looks at the crop; the offline one only knows what /detect
and the gateway's /tag already said (type, category, colour), passed as hints. It applies
plain rules — a coat or boots mean autumn-winter, shorts mean summer, a blazer means smart
office wear — and lists every field no rule covers in `unknown` with a null value.
`brand_style` has no rule: it cannot be told from a garment type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from unde.vocabulary import category_of

CONTEXT_FIELDS: Final[tuple[str, ...]] = ("style", "occasion", "brand_style", "season")

SEASON_BY_TYPE: Final[dict[str, str]] = {
    "coat": "autumn-winter",
    "boots": "autumn-winter",
    "sweater": "autumn-winter",
    "shorts": "summer",
    "maxi_dress": "spring-summer",
}
STYLE_BY_TYPE: Final[dict[str, str]] = {
    "blazer": "smart",
    "loafers": "smart",
    "shirt": "smart casual",
    "trousers": "smart casual",
    "shirt_dress": "smart casual",
    "t_shirt": "casual",
    "hoodie": "casual",
    "jeans": "casual",
    "shorts": "casual",
    "sneakers": "casual",
    "denim_jacket": "casual",
    "bomber_jacket": "casual",
    "backpack": "casual",
}
OCCASION_BY_STYLE: Final[dict[str, str]] = {"smart": "office", "casual": "everyday"}
#: Light colours that, on a type with no season of its own, read as spring-summer.
LIGHT_SUMMER_COLOURS: Final[frozenset[str]] = frozenset(
    {"white", "light blue", "yellow", "pink", "beige"})
LIGHT_SUMMER_TYPES: Final[frozenset[str]] = frozenset({"t_shirt", "shirt", "skirt", "midi_dress"})


@dataclass(slots=True)
class ContextTags:
    """The four context fields; a None field is listed in `unknown`. `basis` says why."""

    style: str | None = None
    occasion: str | None = None
    brand_style: str | None = None
    season: str | None = None
    basis: dict[str, str] = field(default_factory=dict)

    @property
    def unknown(self) -> list[str]:
        return [name for name in CONTEXT_FIELDS if getattr(self, name) is None]

    def to_json(self) -> dict[str, Any]:
        """The contract's fields plus `unknown` and `basis`."""
        body: dict[str, Any] = {name: getattr(self, name) for name in CONTEXT_FIELDS}
        body["unknown"] = self.unknown
        body["basis"] = dict(self.basis)
        return body


def _clean(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower().replace("-", "_").replace(" ", "_")


def infer_context(hints: Mapping[str, Any]) -> ContextTags:
    """Context tags from hints `type`, `category`, `color`/`colour`; unknown stays None."""
    garment = _clean(hints.get("type"))
    if garment is not None and category_of(garment) is None:
        garment = None  # not a type of our vocabulary: no rule applies to it
    colour_raw = hints.get("color") or hints.get("colour")
    colour = colour_raw.strip().lower() if isinstance(colour_raw, str) else None
    tags = ContextTags()
    if garment in SEASON_BY_TYPE:
        tags.season = SEASON_BY_TYPE[garment]
        tags.basis["season"] = f"type {garment}"
    elif garment in LIGHT_SUMMER_TYPES and colour in LIGHT_SUMMER_COLOURS:
        tags.season = "spring-summer"
        tags.basis["season"] = f"light {colour} {garment}"
    if garment in STYLE_BY_TYPE:
        tags.style = STYLE_BY_TYPE[garment]
        tags.basis["style"] = f"type {garment}"
        if tags.style in OCCASION_BY_STYLE:
            tags.occasion = OCCASION_BY_STYLE[tags.style]
            tags.basis["occasion"] = f"style {tags.style}"
    return tags
