"""Planner: enqueue every catalog image not yet embedded for the current model version.

Staging (`raw_products`) and production (`index_jobs`, `sku_image_embeddings`) are two
databases, so the catalog's images are streamed from staging into a temporary table in
production with one COPY, and one INSERT … SELECT enqueues the ones that have neither an
embedding (same brand, SKU, URL, model version) nor a job yet. Running it twice enqueues
nothing the second time; a job that already exists — pending, done or dead — is left alone
(dead letters stay until someone looks at them).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

#: raw_products columns copied into every job's (and embedding's) metadata.
METADATA_FIELDS = ("name", "price", "currency", "category", "product_type", "colour", "pattern",
                   "material", "image_urls", "image_kinds")

PLAN_STATEMENT_TIMEOUT_MS = 600_000

_PRODUCTS_SQL = (
    "SELECT brand, external_id, " + ", ".join(METADATA_FIELDS) + " FROM raw_products"
    " ORDER BY brand, external_id"
)

_STAGE_SQL = """
CREATE TEMP TABLE catalog_images (
    brand text NOT NULL, sku_id text NOT NULL, image_url text NOT NULL,
    image_rank smallint NOT NULL, metadata jsonb
) ON COMMIT DROP
"""

_ENQUEUE_SQL = """
INSERT INTO index_jobs (brand, sku_id, image_url, image_rank, model_version, metadata)
SELECT c.brand, c.sku_id, c.image_url, c.image_rank, %(model_version)s, c.metadata
FROM catalog_images AS c
WHERE NOT EXISTS (
    SELECT 1 FROM sku_image_embeddings AS e
    WHERE e.brand = c.brand AND e.sku_id = c.sku_id AND e.model_version = %(model_version)s
      AND e.image_url = c.image_url)
ON CONFLICT (brand, sku_id, image_url, model_version) DO NOTHING
"""

_EMBEDDED_SQL = """
SELECT count(*) FROM catalog_images AS c
WHERE EXISTS (
    SELECT 1 FROM sku_image_embeddings AS e
    WHERE e.brand = c.brand AND e.sku_id = c.sku_id AND e.model_version = %(model_version)s
      AND e.image_url = c.image_url)
"""


@dataclass(frozen=True, slots=True)
class PlanReport:
    """What one planner run found and did."""

    model_version: str
    products: int
    images: int
    already_embedded: int
    enqueued: int

    @property
    def already_queued(self) -> int:
        return self.images - self.already_embedded - self.enqueued

    def summary(self) -> str:
        return (f"plan {self.model_version}: {self.products} products, {self.images} images; "
                f"{self.already_embedded} already embedded, {self.already_queued} already queued, "
                f"{self.enqueued} enqueued")


def _json_value(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def product_metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata stored with a job and its embeddings, from one raw_products row."""
    return {name: _json_value(row.get(name)) for name in METADATA_FIELDS}


def catalog_images(row: Mapping[str, Any]) -> list[tuple[str, str, str, int, str]]:
    """(brand, sku_id, image_url, rank, metadata JSON) for each usable URL of a product."""
    urls = row.get("image_urls") or []
    if not isinstance(urls, list):
        return []
    metadata = json.dumps(product_metadata(row))
    images = []
    seen: set[str] = set()
    for rank, url in enumerate(urls):
        if isinstance(url, str) and url.strip() and url not in seen and rank < 32767:
            seen.add(url)
            images.append((row["brand"], row["external_id"], url, rank, metadata))
    return images


async def _products(staging: AsyncConnection[Any]) -> AsyncIterator[dict[str, Any]]:
    from psycopg.rows import dict_row

    async with staging.cursor(row_factory=dict_row, name="plan_products") as cur:
        await cur.execute(_PRODUCTS_SQL)
        async for row in cur:
            yield row


async def plan_missing(staging: AsyncConnection[Any], production: AsyncConnection[Any],
                       model_version: str) -> PlanReport:
    """Enqueue every catalog image without an embedding or a job for `model_version`."""
    products = images = 0
    async with staging.transaction(), production.transaction():  # named cursors need one
        for conn in (staging, production):  # a whole-catalog pass outlasts a request's timeout
            await conn.execute("SELECT set_config('statement_timeout', %s, true)",
                               (str(PLAN_STATEMENT_TIMEOUT_MS),))
        await production.execute(_STAGE_SQL)
        async with production.cursor().copy(
                "COPY catalog_images (brand, sku_id, image_url, image_rank, metadata) FROM STDIN"
        ) as copy:
            async for product in _products(staging):
                products += 1
                for image in catalog_images(product):
                    images += 1
                    await copy.write_row(image)
        params = {"model_version": model_version}
        row = await (await production.execute(_EMBEDDED_SQL, params)).fetchone()
        embedded = int(row[0]) if row else 0
        cur = await production.execute(_ENQUEUE_SQL, params)
        enqueued = cur.rowcount
    return PlanReport(model_version, products, images, embedded, max(enqueued, 0))
