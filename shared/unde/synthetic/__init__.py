"""Deterministic synthetic mall data: catalog, product photos, street photos, availability.

Entry points::

    from unde.synthetic import generate_catalog, seed_dataset, ImageServer, serve_images

``python -m unde.synthetic seed|serve --help`` seeds a staging DB / serves images from the shell.
"""

from __future__ import annotations

from unde.synthetic.availability import AvailabilityPlan, plan_availability
from unde.synthetic.catalog import Brand, Catalog, Design, Mall, Sku, Store, generate_catalog
from unde.synthetic.image_server import ImageServer, serve_images
from unde.synthetic.render import image_kind, image_kinds, render_product_image, render_product_images
from unde.synthetic.seed import SeedReport, seed_dataset
from unde.synthetic.street import StreetPhoto, render_street_photo

__all__ = [
    "AvailabilityPlan",
    "Brand",
    "Catalog",
    "Design",
    "ImageServer",
    "Mall",
    "SeedReport",
    "Sku",
    "Store",
    "StreetPhoto",
    "generate_catalog",
    "image_kind",
    "image_kinds",
    "plan_availability",
    "render_product_image",
    "render_product_images",
    "render_street_photo",
    "seed_dataset",
    "serve_images",
]
