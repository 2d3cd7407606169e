"""Synthetic store availability: per (SKU, store of its brand) snapshots over the last 72 h.

Definitions (all relative to the ``now`` the plan is built with):

* a (product, store) *pair* is **fresh** when its latest snapshot is at most 24 h old;
* a pair is **in stock** when it is fresh and its latest ``sizes_in_stock`` is non-empty;
* a SKU is **in stock in a mall** when its pair with the brand's store in that mall is in stock.

Promised proportions (exact up to rounding; see the module constants):

* ``STALE_PAIR_FRACTION`` of pairs are stale: latest snapshot 24–48 h old (sizes non-empty);
* ``EMPTY_PAIR_FRACTION`` of pairs are fresh with an empty latest ``sizes_in_stock``;
* ``SINGLE_MALL_SKU_FRACTION`` of SKUs are in stock in exactly one mall; every other SKU is
  in stock in at least two malls.

Snapshots: ``SNAPSHOTS_PER_DAY`` a day over ``HISTORY_HOURS`` (≈12 per pair; fewer for stale
pairs), generated with numpy and written with one ``COPY`` — ~2.8 M rows at full scale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np

from unde.synthetic.catalog import Catalog
from unde.synthetic.util import np_rng_for

STALE_PAIR_FRACTION: Final[float] = 0.10
EMPTY_PAIR_FRACTION: Final[float] = 0.15
SINGLE_MALL_SKU_FRACTION: Final[float] = 0.20
SNAPSHOTS_PER_DAY: Final[int] = 4
HISTORY_HOURS: Final[float] = 72.0
FRESH_HOURS: Final[float] = 24.0
STALE_MAX_HOURS: Final[float] = 48.0

CLOTHING_SIZES: Final[tuple[str, ...]] = ("XS", "S", "M", "L", "XL")
SHOE_SIZES: Final[tuple[str, ...]] = tuple(str(s) for s in range(38, 46))
BAG_SIZES: Final[tuple[str, ...]] = ("ONE SIZE",)

OK, STALE, EMPTY = 0, 1, 2
_HOUR_US: Final[int] = 3_600_000_000


def sizes_for_category(category: str) -> tuple[str, ...]:
    """The size run of a coarse category."""
    return SHOE_SIZES if category == "shoes" else BAG_SIZES if category == "bag" else CLOTHING_SIZES


def _mask_json(sizes: tuple[str, ...]) -> list[str]:
    """JSON text for every bitmask over ``sizes`` (bit i = sizes[i] in stock)."""
    return [json.dumps([s for i, s in enumerate(sizes) if m >> i & 1]) for m in range(1 << len(sizes))]


@dataclass(slots=True)
class AvailabilityPlan:
    """Which (SKU, store) pairs exist, their state, and how to expand them into snapshots."""

    catalog: Catalog
    seed: int
    now: datetime
    pair_sku: np.ndarray  # int32 index into catalog.skus
    pair_store: np.ndarray  # int32 index into catalog.stores
    pair_state: np.ndarray  # int8: OK | STALE | EMPTY

    @property
    def n_pairs(self) -> int:
        """Number of (product, store) pairs."""
        return int(self.pair_sku.shape[0])

    def in_stock_malls(self) -> dict[tuple[str, str], frozenset[str]]:
        """For every SKU key, the malls where it is in stock (fresh, non-empty latest snapshot)."""
        malls: dict[tuple[str, str], set[str]] = {s.key: set() for s in self.catalog.skus}
        ok = np.nonzero(self.pair_state == OK)[0]
        for i in ok:
            sku = self.catalog.skus[self.pair_sku[i]]
            malls[sku.key].add(self.catalog.stores[self.pair_store[i]].mall_name)
        return {k: frozenset(v) for k, v in malls.items()}

    def snapshot_chunks(self, chunk_pairs: int = 50_000) -> Iterator[str]:
        """COPY text-format rows ``brand, store_id, product_id, sizes_in_stock, fetched_at``."""
        cat = self.catalog
        store_brand = np.array([s.brand for s in cat.stores], dtype=object)
        store_id = np.array([s.store_id for s in cat.stores], dtype=object)
        ext_id = np.array([s.external_id for s in cat.skus], dtype=object)
        cat_kind = np.array(
            [2 if s.category == "shoes" else 1 if s.category == "bag" else 0 for s in cat.skus], dtype=np.int8
        )
        tables = [_mask_json(CLOTHING_SIZES), _mask_json(BAG_SIZES), _mask_json(SHOE_SIZES)]
        widths = [len(CLOTHING_SIZES), len(BAG_SIZES), len(SHOE_SIZES)]
        now_us = int(self.now.timestamp() * 1_000_000)
        slots = round(HISTORY_HOURS / 24 * SNAPSHOTS_PER_DAY)
        step_h = 24.0 / SNAPSHOTS_PER_DAY
        for start in range(0, self.n_pairs, chunk_pairs):
            sl = slice(start, min(start + chunk_pairs, self.n_pairs))
            rng = np_rng_for("snapshots", self.seed, start)
            state = self.pair_state[sl]
            n = state.shape[0]
            latest = np.where(
                state == STALE,
                rng.uniform(FRESH_HOURS + 1.0, STALE_MAX_HOURS - 1.0, n),
                rng.uniform(0.1, step_h - 1.0, n),
            )
            jitter = rng.uniform(-0.4, 0.4, (n, slots))
            jitter[:, 0] = 0.0
            age_h = latest[:, None] + np.arange(slots)[None, :] * step_h + jitter
            valid = age_h <= HISTORY_HOURS
            kinds = cat_kind[self.pair_sku[sl]]
            width = np.array(widths, dtype=np.int64)[kinds]
            bits = rng.random((n, slots, 8)) < 0.65
            bits &= np.arange(8)[None, None, :] < width[:, None, None]
            masks = (bits * (1 << np.arange(8))[None, None, :]).sum(axis=2)
            # Non-empty unless this is the latest snapshot of an EMPTY pair.
            fallback = 1 << (rng.integers(0, 8, (n, slots)) % width[:, None])
            masks = np.where(masks == 0, fallback, masks)
            masks[state == EMPTY, 0] = 0
            pr, sr = np.nonzero(valid)
            fetched = (now_us - (age_h[pr, sr] * _HOUR_US).astype(np.int64)).astype("datetime64[us]")
            ts = np.char.add(np.datetime_as_string(fetched, unit="us"), "+00")
            pair_idx = pr + start
            brands = store_brand[self.pair_store[pair_idx]]
            stores = store_id[self.pair_store[pair_idx]]
            products = ext_id[self.pair_sku[pair_idx]]
            row_kinds = kinds[pr]
            row_masks = masks[pr, sr]
            sizes = [tables[k][m] for k, m in zip(row_kinds.tolist(), row_masks.tolist(), strict=True)]
            lines = map("\t".join, zip(brands, stores, products, sizes, ts.tolist(), strict=True))
            yield "\n".join(lines) + "\n"


def plan_availability(catalog: Catalog, seed: int, now: datetime | None = None) -> AvailabilityPlan:
    """Decide every (SKU, store) pair's state so the promised proportions hold exactly."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    rng = np_rng_for("availability", seed, catalog.scale)
    brand_stores: dict[str, list[int]] = {}
    for i, st in enumerate(catalog.stores):
        brand_stores.setdefault(st.brand, []).append(i)
    counts = np.array([len(brand_stores[s.brand]) for s in catalog.skus], dtype=np.int64)
    n_skus = len(catalog.skus)
    pair_sku = np.repeat(np.arange(n_skus, dtype=np.int32), counts)
    pair_store = np.concatenate([np.array(brand_stores[s.brand], dtype=np.int32) for s in catalog.skus])
    n_pairs = pair_sku.shape[0]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Random order of a SKU's pairs: the first ranked pairs are protected as in-stock.
    rank = np.empty(n_pairs, dtype=np.int64)
    keys = rng.random(n_pairs) + pair_sku  # sort within each SKU by a random key
    order = np.argsort(keys, kind="stable")
    rank[order] = np.arange(n_pairs) - np.repeat(first, counts)
    single = np.zeros(n_skus, dtype=bool)
    single[rng.choice(n_skus, size=round(SINGLE_MALL_SKU_FRACTION * n_skus), replace=False)] = True
    nonok = single[pair_sku] & (rank >= 1)
    target_nonok = round((STALE_PAIR_FRACTION + EMPTY_PAIR_FRACTION) * n_pairs)
    candidates = np.nonzero(~single[pair_sku] & (rank >= 2))[0]
    extra = max(0, min(target_nonok - int(nonok.sum()), candidates.shape[0]))
    nonok[rng.choice(candidates, size=extra, replace=False)] = True
    state = np.full(n_pairs, OK, dtype=np.int8)
    nonok_idx = np.nonzero(nonok)[0]
    n_stale = min(round(STALE_PAIR_FRACTION * n_pairs), nonok_idx.shape[0])
    stale_idx = rng.choice(nonok_idx, size=n_stale, replace=False)
    state[nonok_idx] = EMPTY
    state[stale_idx] = STALE
    return AvailabilityPlan(catalog, seed, now, pair_sku, pair_store, state)
