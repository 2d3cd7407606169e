"""Deterministic synthetic mall catalog: malls, brands, stores and SKUs from a seed.

``generate_catalog(seed, scale)`` always returns the same :class:`Catalog` for the same
arguments (no global random state, no ``hash()``), so images can be re-rendered lazily from
``(seed, scale)`` alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from unde.synthetic.util import delta_e, rng_for
from unde.vocabulary import CATEGORY_OF_TYPE, COLOURS, TYPES_BY_CATEGORY

SCALES: Final[tuple[str, ...]] = ("small", "medium", "full")

#: Total SKU count per scale (split evenly over the brands).
SKUS_PER_SCALE: Final[dict[str, int]] = {"small": 150, "medium": 2400, "full": 47000}

IMAGES_PER_SKU_RANGE: Final[tuple[int, int]] = (5, 7)


@dataclass(frozen=True, slots=True)
class Mall:
    """A shopping mall."""

    name: str
    code: str
    address: str
    city: str


@dataclass(frozen=True, slots=True)
class Brand:
    """A fashion brand; ``name`` is the identifier used in ``raw_*.brand`` and image URLs."""

    name: str
    display_name: str
    sku_prefix: str


@dataclass(frozen=True, slots=True)
class Store:
    """One brand's store in one mall (a brand has at most one store per mall)."""

    brand: str
    store_id: str
    name: str
    mall_name: str
    address: str
    floor: str
    city: str


@dataclass(frozen=True, slots=True)
class Design:
    """Visual parameters so SKUs of the same type and colour still look different.

    Lengths are in body units (figure height = 1); ``length``/``fit`` are multipliers.
    """

    length: float = 1.0
    fit: float = 1.0
    sleeve: str = "long"  # none | short | long
    collar: bool = False
    pockets: int = 0
    buttons: int = 0
    closure: str = "none"  # none | zip | buttons
    stripe_period: float = 0.04
    stripe_fraction: float = 0.33
    stripe_vertical: bool = False
    check_period: float = 0.06
    dot_radius: float = 0.008
    dot_spacing: float = 0.035
    print_seed: int = 0
    print_density: float = 1.0
    trim_colour: str = "white"


@dataclass(frozen=True, slots=True)
class Sku:
    """A catalog product with its exact visual ground truth."""

    brand: str
    external_id: str
    name: str
    price: Decimal
    currency: str
    category: str
    product_type: str
    colour: str
    secondary_colour: str
    material: str
    pattern: str
    design: Design
    n_images: int

    @property
    def key(self) -> tuple[str, str]:
        """``(brand, external_id)``, the product's primary key."""
        return self.brand, self.external_id


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything the staging DB's catalog tables hold, plus visual ground truth."""

    seed: int
    scale: str
    malls: tuple[Mall, ...]
    brands: tuple[Brand, ...]
    stores: tuple[Store, ...]
    skus: tuple[Sku, ...]
    _sku_index: dict[tuple[str, str], int] = field(default_factory=dict, compare=False, repr=False)

    def sku(self, brand: str, external_id: str) -> Sku | None:
        """Look a SKU up by its key (None when absent)."""
        if not self._sku_index:
            self._sku_index.update({s.key: i for i, s in enumerate(self.skus)})
        i = self._sku_index.get((brand, external_id))
        return None if i is None else self.skus[i]

    def stores_of(self, brand: str) -> tuple[Store, ...]:
        """The stores of one brand."""
        return tuple(s for s in self.stores if s.brand == brand)

    def mall(self, name: str) -> Mall:
        """A mall by name (KeyError when absent)."""
        for m in self.malls:
            if m.name == name:
                return m
        raise KeyError(name)


MALLS: Final[tuple[Mall, ...]] = (
    Mall("Dubai Hills Mall", "dhm", "Al Khail Road, Dubai Hills Estate, Dubai", "Dubai"),
    Mall("Mall of the Emirates", "moe", "Sheikh Zayed Road, Al Barsha 1, Dubai", "Dubai"),
    Mall("Dubai Mall", "tdm", "Financial Centre Road, Downtown Dubai, Dubai", "Dubai"),
    Mall("Ibn Battuta Mall", "ibm", "Sheikh Zayed Road, Jebel Ali Village, Dubai", "Dubai"),
    Mall("City Centre Mirdif", "ccm", "Sheikh Mohammed Bin Zayed Road, Mirdif, Dubai", "Dubai"),
    Mall("Yas Mall", "yas", "Yas Leisure Drive, Yas Island, Abu Dhabi", "Abu Dhabi"),
    Mall("Dalma Mall", "dal", "Mussafah, Abu Dhabi", "Abu Dhabi"),
    Mall("Al Wahda Mall", "wah", "Hazza Bin Zayed the First Street, Al Wahdah, Abu Dhabi", "Abu Dhabi"),
)

BRANDS: Final[tuple[Brand, ...]] = (
    Brand("northline", "Northline", "NL"),
    Brand("aurelle", "Aurelle", "AU"),
    Brand("sable", "Sable & Co", "SB"),
    Brand("kestrel", "Kestrel", "KS"),
    Brand("miraloom", "Mira Loom", "ML"),
    Brand("dunestreet", "Dune Street", "DS"),
)

#: Coarse category mix of the catalog.
CATEGORY_WEIGHTS: Final[dict[str, float]] = {
    "top": 0.28,
    "outerwear": 0.15,
    "dress": 0.12,
    "bottom": 0.2,
    "shoes": 0.13,
    "bag": 0.12,
}
PATTERN_WEIGHTS: Final[dict[str, float]] = {
    "solid": 0.45,
    "striped": 0.16,
    "checked": 0.13,
    "dotted": 0.12,
    "printed": 0.14,
}
#: Types that are (almost) always solid: pattern fill would not read on them.
SOLID_TYPES: Final[frozenset[str]] = frozenset(
    {"jeans", "denim_jacket", "sneakers", "boots", "loafers", "bomber_jacket"}
)
MATERIAL_BY_TYPE: Final[dict[str, tuple[str, ...]]] = {
    "t_shirt": ("cotton", "linen", "polyester"),
    "shirt": ("cotton", "linen"),
    "sweater": ("knit", "wool"),
    "hoodie": ("cotton", "knit"),
    "bomber_jacket": ("nylon ripstop", "leather", "polyester"),
    "blazer": ("wool", "linen", "polyester"),
    "coat": ("wool",),
    "denim_jacket": ("denim",),
    "midi_dress": ("cotton", "linen", "polyester"),
    "maxi_dress": ("cotton", "linen", "polyester"),
    "shirt_dress": ("cotton", "linen"),
    "jeans": ("denim",),
    "trousers": ("wool", "cotton", "linen"),
    "skirt": ("cotton", "wool", "denim", "polyester"),
    "shorts": ("cotton", "denim", "linen"),
    "sneakers": ("leather", "knit", "nylon ripstop"),
    "boots": ("leather",),
    "loafers": ("leather",),
    "tote": ("leather", "cotton"),
    "crossbody": ("leather", "nylon ripstop"),
    "backpack": ("nylon ripstop", "leather", "polyester"),
}
DENIM_COLOURS: Final[tuple[str, ...]] = ("blue", "light blue", "navy", "black", "grey")
PRICE_RANGE: Final[dict[str, tuple[int, int]]] = {
    "top": (59, 259),
    "outerwear": (199, 899),
    "dress": (149, 599),
    "bottom": (99, 349),
    "shoes": (149, 699),
    "bag": (99, 799),
}
TYPE_LABEL: Final[dict[str, str]] = {
    "t_shirt": "T-Shirt",
    "bomber_jacket": "Bomber Jacket",
    "denim_jacket": "Denim Jacket",
    "midi_dress": "Midi Dress",
    "maxi_dress": "Maxi Dress",
    "shirt_dress": "Shirt Dress",
}
ADJECTIVES: Final[tuple[str, ...]] = (
    "Relaxed",
    "Slim",
    "Oversized",
    "Classic",
    "Cropped",
    "Tailored",
    "Essential",
    "Boxy",
    "Soft",
    "Structured",
    "Everyday",
    "Studio",
)
FLOORS: Final[tuple[str, ...]] = ("Ground Floor", "Level 1", "Level 2", "Lower Ground")


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()), k=1)[0]


#: For each colour, the vocabulary colours clearly distinct from it (CIELAB ΔE > 35).
CONTRASTING: Final[dict[str, tuple[str, ...]]] = {
    p.name: tuple(c.name for c in COLOURS if delta_e(c.rgb, p.rgb) > 35) for p in COLOURS
}


def secondary_colour_for(rng: random.Random, primary: str) -> str:
    """A vocabulary colour clearly distinct from ``primary`` (CIELAB ΔE > 35)."""
    return rng.choice(CONTRASTING[primary])


def random_design(rng: random.Random, product_type: str, category: str) -> Design:
    """Draw visual design parameters for one garment."""
    if category in ("top", "dress"):
        sleeve = rng.choice(("short", "long", "long") if category == "top" else ("none", "short", "long"))
        if product_type in ("sweater", "hoodie", "shirt_dress"):
            sleeve = "long" if product_type != "shirt_dress" else rng.choice(("short", "long"))
    elif category == "outerwear":
        sleeve = "long"
    else:
        sleeve = "none"
    collar = product_type in ("shirt", "shirt_dress", "blazer", "coat", "denim_jacket") or (
        product_type == "t_shirt" and rng.random() < 0.2
    )
    closure = {
        "shirt": "buttons",
        "shirt_dress": "buttons",
        "blazer": "buttons",
        "coat": "buttons",
        "denim_jacket": "buttons",
        "bomber_jacket": "zip",
    }.get(product_type, "zip" if product_type == "hoodie" and rng.random() < 0.4 else "none")
    return Design(
        length=round(rng.uniform(0.9, 1.1), 3),
        fit=round(rng.uniform(0.92, 1.15), 3),
        sleeve=sleeve,
        collar=collar,
        pockets=rng.choice((0, 0, 1, 2)),
        buttons=rng.randint(3, 6) if closure == "buttons" else rng.choice((0, 0, 2)),
        closure=closure,
        stripe_period=round(rng.uniform(0.025, 0.06), 4),
        stripe_fraction=round(rng.uniform(0.2, 0.33), 3),
        stripe_vertical=rng.random() < 0.3,
        check_period=round(rng.uniform(0.045, 0.09), 4),
        dot_radius=round(rng.uniform(0.005, 0.012), 4),
        dot_spacing=round(rng.uniform(0.028, 0.05), 4),
        print_seed=rng.randrange(1 << 30),
        print_density=round(rng.uniform(0.7, 1.3), 3),
        trim_colour=rng.choice(("white", "black", "beige", "grey")),
    )


def random_look(rng: random.Random, product_type: str) -> tuple[str, str, str, str, Design]:
    """``(colour, secondary_colour, material, pattern, design)`` for a garment of a type."""
    category = CATEGORY_OF_TYPE[product_type]
    material = rng.choice(MATERIAL_BY_TYPE[product_type])
    colour = rng.choice(DENIM_COLOURS) if material == "denim" else rng.choice(COLOURS).name
    pattern = "solid" if product_type in SOLID_TYPES or material == "denim" else _weighted(rng, PATTERN_WEIGHTS)
    if category == "bag" and pattern in ("dotted", "printed") and rng.random() < 0.5:
        pattern = "solid"
    secondary = secondary_colour_for(rng, colour)
    return colour, secondary, material, pattern, random_design(rng, product_type, category)


def _product_name(rng: random.Random, product_type: str, colour: str, pattern: str) -> str:
    label = TYPE_LABEL.get(product_type, product_type.replace("_", " ").title())
    pattern_word = {
        "solid": "",
        "striped": "Striped ",
        "checked": "Checked ",
        "dotted": "Polka-Dot ",
        "printed": "Printed ",
    }[pattern]
    return f"{rng.choice(ADJECTIVES)} {colour.title()} {pattern_word}{label}"


def _make_sku(seed: int, brand: Brand, index: int) -> Sku:
    rng = rng_for("sku", seed, brand.name, index)
    category = _weighted(rng, CATEGORY_WEIGHTS)
    product_type = rng.choice(TYPES_BY_CATEGORY[category])
    colour, secondary, material, pattern, design = random_look(rng, product_type)
    lo, hi = PRICE_RANGE[category]
    price = Decimal(rng.randint(lo, hi)) - Decimal("0.01") * rng.choice((0, 1, 5, 10))
    return Sku(
        brand=brand.name,
        external_id=f"{brand.sku_prefix}-{index:06d}",
        name=_product_name(rng, product_type, colour, pattern),
        price=price.quantize(Decimal("0.01")),
        currency="AED",
        category=category,
        product_type=product_type,
        colour=colour,
        secondary_colour=secondary,
        material=material,
        pattern=pattern,
        design=design,
        n_images=rng.randint(*IMAGES_PER_SKU_RANGE),
    )


def _make_stores(seed: int) -> tuple[Store, ...]:
    """Each brand gets 4–6 malls; Dubai Hills Mall hosts four brands, no mall hosts all six."""
    rng = rng_for("stores", seed)
    dhm, others = MALLS[0], MALLS[1:]
    brand_order = list(BRANDS)
    rng.shuffle(brand_order)
    in_dhm = {b.name for b in brand_order[:4]}
    mall_count = {m.name: 0 for m in MALLS}
    mall_count[dhm.name] = 4
    stores: list[Store] = []
    for brand in BRANDS:
        n = rng.randint(4, 6)
        chosen: list[Mall] = [dhm] if brand.name in in_dhm else []
        pool = [m for m in others if mall_count[m.name] < len(BRANDS) - 1]
        rng.shuffle(pool)
        pool.sort(key=lambda m: mall_count[m.name])  # spread brands over malls
        chosen += pool[: n - len(chosen)]
        for mall in sorted(chosen, key=MALLS.index):
            mall_count[mall.name] += 1
            stores.append(
                Store(
                    brand=brand.name,
                    store_id=f"{brand.sku_prefix.lower()}-{mall.code}",
                    name=f"{brand.display_name} {mall.name}",
                    mall_name=mall.name,
                    address=f"Unit {rng.choice('ABCDEFG')}{rng.randint(10, 299)}, {mall.address}",
                    floor=rng.choice(FLOORS),
                    city=mall.city,
                )
            )
    return tuple(stores)


def generate_catalog(seed: int, scale: str = "small") -> Catalog:
    """Generate the synthetic catalog for ``seed`` at ``scale`` (small | medium | full)."""
    if scale not in SKUS_PER_SCALE:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
    total = SKUS_PER_SCALE[scale]
    per_brand, extra = divmod(total, len(BRANDS))
    skus: list[Sku] = []
    for b_index, brand in enumerate(BRANDS):
        count = per_brand + (1 if b_index < extra else 0)
        skus.extend(_make_sku(seed, brand, i) for i in range(1, count + 1))
    return Catalog(seed=seed, scale=scale, malls=MALLS, brands=BRANDS, stores=_make_stores(seed), skus=tuple(skus))
