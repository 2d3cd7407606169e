"""Filling the Ximilar search collection from the catalog (`unde ximilar sync`).

For every SKU of the pilot brands in staging `raw_products`, the spec's 2 photos (an on-model
shot and a flat one when both exist, else the first two) are inserted with
`_id = "brand/external_id/rank"` (rank = the photo's index in `image_urls`) and the metadata
search answers with. Idempotent: the collection's `_id`s are listed first (`allIDs`); only
missing records are inserted and records whose SKU left the catalog (or whose brand left the
pilot) are deleted, 10 per call. A photo replaced under the same rank keeps its old descriptor
until the record is deleted — Ximilar's `allIDs` does not tell images apart.

When listing the collection fails (`allIDs` errors or times out on a large collection), the
sync does not abort: it inserts every wanted record — an insert under an existing `_id`
replaces that record, so the result is the same collection — and skips the deletions (stale
records cannot be known without the list); the report says so (`listed=False`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from unde.errors import ProviderMisconfigured, UpstreamError
from unde.providers.ximilar.client import XimilarClient
from unde.providers.ximilar.wire import MAX_RECORDS

log = logging.getLogger(__name__)

PHOTOS_PER_SKU: Final = 2

PRODUCTS_SQL = """
SELECT brand, external_id, name, price, currency, category, product_type, colour, pattern,
       material, image_urls, image_kinds
FROM raw_products WHERE brand = ANY(%s) ORDER BY brand, external_id
"""


@dataclass(slots=True)
class SyncReport:
    skus: int = 0
    wanted: int = 0
    present: int = 0
    inserted: int = 0
    deleted: int = 0
    listed: bool = True  # False: allIDs failed, every record was (re-)inserted, none deleted
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = (f"ximilar sync: {self.skus} SKUs, {self.wanted} records wanted, "
                f"{self.present} already present, {self.inserted} inserted, "
                f"{self.deleted} deleted")
        if not self.listed:
            line += " (collection listing failed: all records re-inserted, stale ones kept)"
        return line + (f", {len(self.failed)} batches FAILED" if self.failed else "")


def record_id(brand: str, external_id: str, rank: int) -> str:
    return f"{brand}/{external_id}/{rank}"


def choose_photos(image_urls: Sequence[str], image_kinds: Sequence[str],
                  count: int = PHOTOS_PER_SKU) -> list[tuple[int, str]]:
    """(rank, url) of the photos to insert: on-model first, then flat, then the rest in order."""
    kinds = list(image_kinds) + [""] * (len(image_urls) - len(image_kinds))
    preferred: list[int] = []
    for wanted in ("on_model", "flat"):
        rank = next((i for i, kind in enumerate(kinds[:len(image_urls)])
                     if kind == wanted and i not in preferred), None)
        if rank is not None:
            preferred.append(rank)
    preferred += [i for i in range(len(image_urls)) if i not in preferred]
    return [(rank, image_urls[rank]) for rank in preferred[:count]]


def _json_value(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


async def wanted_records(conn: AsyncConnection[Any],
                         brands: Sequence[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """SKU count and the records the collection should hold, by `_id`."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(PRODUCTS_SQL, (list(brands),))
        rows = await cursor.fetchall()
    records: dict[str, dict[str, Any]] = {}
    for row in rows:
        metadata = {key: _json_value(value) for key, value in row.items()}
        for rank, url in choose_photos(row["image_urls"] or [], row["image_kinds"] or []):
            rid = record_id(row["brand"], row["external_id"], rank)
            records[rid] = {"_id": rid, "_url": url, **metadata, "image_rank": rank}
    return len(rows), records


def _batches(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + MAX_RECORDS] for i in range(0, len(items), MAX_RECORDS)]


async def sync_collection(client: XimilarClient, conn: AsyncConnection[Any],
                          brands: Sequence[str], *, dry_run: bool = False) -> SyncReport:
    """Make the collection hold exactly the pilot brands' chosen photos."""
    report = SyncReport()
    report.skus, wanted = await wanted_records(conn, brands)
    report.wanted = len(wanted)
    try:
        existing = set(await client.all_ids())
    except ProviderMisconfigured:
        raise  # a wrong token fails the inserts too
    except UpstreamError as exc:
        log.warning("listing the collection failed, inserting every record instead: %s", exc)
        report.listed = False
        existing = set()
    missing = [wanted[rid] for rid in sorted(wanted) if rid not in existing]
    stale = sorted(existing - set(wanted))
    report.present = report.wanted - len(missing) if report.listed else 0
    if dry_run:
        report.inserted, report.deleted = len(missing), len(stale)
        return report
    for batch in _batches(missing):
        try:
            await client.insert(list(batch))
            report.inserted += len(batch)
        except UpstreamError as exc:
            log.warning("insert of %s.. failed: %s", batch[0]["_id"], exc)
            report.failed.append(f"insert {batch[0]['_id']}..: {exc}")
    for batch in _batches(stale):
        try:
            await client.delete(list(batch))
            report.deleted += len(batch)
        except UpstreamError as exc:
            report.failed.append(f"delete {batch[0]}..: {exc}")
    return report
