"""Plans for the mall-filtered top-k query: which way to answer, and its SQL.

Five kinds of plan (see `unde.retrieval.knn`, `unde.retrieval.cells` and
`unde.retrieval.sku_cells` for why):

* ``exact`` — every row the filter keeps, ranked by true distance: filters keeping at most
  ``cell_rows`` rows (a brand's rows are found by the ``(model_version, cell, brand)`` /
  ``brand`` indexes), and the last resort.
* ``skus`` — the filter's SKU vectors in the cells nearest to the query, ranked by distance;
  every photo of the best ``candidates`` SKUs ranked by true distance. The default once the
  model version has cells and the SKU vectors cover every photo of the filter's brands.
* ``memory`` — a skus plan whose SKU stage ran in this process (`unde.retrieval.sku_memory`:
  the SKU means, then the held photos): the statement ranks only the photos of the chosen SKUs.
  The default once the process holds the model version's SKU vectors and they cover every
  photo of the filter's brands.
* ``cells`` — the filter's photos in the cells nearest to the query, ranked by true distance,
  plus every photo not yet assigned to a cell. When the SKU vectors are incomplete.
* ``global`` — the global HNSW index with the filter applied after it: only before the model
  version has cells. On pgvector ≥ 0.8 it uses iterative scans; on older servers it raises ef
  and over-fetches, and a short result escalates ef, then falls back to the exact plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from psycopg import sql

from unde.retrieval.cells import CELL_ROWS, CellStats
from unde.retrieval.sku_cells import CANDIDATES_PER_K, SKU_ROWS, SkuCounts
from unde.retrieval.sku_memory import SkuMatrix

#: The global HNSW path over-fetches: ef ≥ k × OVERFETCH / (share of rows the filter keeps).
OVERFETCH = 8.0
#: The global path asks for k × SURVIVORS filtered rows; fewer means the filter is locally more
#: selective than on average (brands cluster by style): escalate.
SURVIVORS = 2
#: pgvector caps hnsw.ef_search at 1000.
MAX_EF = 1000
#: On pgvector ≥ 0.8, how many tuples an iterative scan may visit at most.
MAX_SCAN_TUPLES = 50_000
GLOBAL_INDEX = "sku_image_embeddings_hnsw"

#: What every statement returns, in this order, then ``distance``. The metadata comes as text:
#: json.loads on 50 rows is ≈ 0.3 ms cheaper than psycopg's jsonb loader (`knn._hit`).
COLUMNS = ("id", "brand", "sku_id", "image_url", "image_rank", "metadata")


def _columns(table: str = "") -> sql.Composed:
    prefix = sql.SQL(f"{table}." if table else "")
    return sql.SQL(", ").join(
        sql.SQL("{}{}::text AS {}").format(prefix, sql.Identifier(c), sql.Identifier(c)) if c == "metadata"
        else sql.SQL("{}{}").format(prefix, sql.Identifier(c)) for c in COLUMNS)


PlanKind = Literal["exact", "global", "cells", "skus", "memory"]


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """How one query runs: `limit` rows asked of each statement; `ef` (global plans) is
    hnsw.ef_search; `cells` (cells plans) the cells scanned, split into `groups` of about
    equal rows when the scan is spread over several connections (empty: one statement);
    `unknown` the filter's brands the cached counts do not know (scanned exactly); `n_cells`
    the model version's cell count (rows with a cell outside 0…n−1 are scanned too);
    `candidates` (skus plans) the SKUs whose photos are ranked; `pairs` (filtered skus plans)
    the (cell, brand) pairs of the probed cells and the filter's brands that hold SKUs; `chosen`
    (memory plans) the (brand, sku_id) of the SKUs whose photos are ranked."""

    kind: PlanKind
    limit: int
    ef: int | None = None
    iterative: bool = False
    cells: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    unknown: tuple[str, ...] = ()
    n_cells: int = 0
    candidates: int = 0
    pairs: tuple[tuple[int, str], ...] = ()
    chosen: tuple[tuple[str, str], ...] = ()

    @property
    def parts(self) -> tuple[tuple[int, ...], ...]:
        """The cells of each statement of a cells plan."""
        return self.groups or (self.cells,)

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    @property
    def in_cells(self) -> bool:
        """A cells, skus or memory plan: it probes cells chosen from the cached counts."""
        return self.kind in ("cells", "skus", "memory")


@dataclass(frozen=True, slots=True)
class Catalog:
    """What the planner knows: pgvector version, the model version's rows per brand, rows in
    the global HNSW index (every model version), whether that index is valid, the model
    version's cells (None before training), its SKU vectors per cell, and the SKU vectors this
    process holds (None until loaded)."""

    version: tuple[int, ...]
    counts: Mapping[str, int]
    index_rows: int
    global_index: bool
    cells: CellStats | None = None
    skus: SkuCounts | None = None
    memory: SkuMatrix | None = None

    def known(self, brands: Sequence[str] | None) -> Iterable[str]:
        """The filter's brands the counts know (every brand when unfiltered)."""
        return self.counts.keys() if brands is None else set(brands) & self.counts.keys()

    def kept(self, brands: Sequence[str] | None) -> int:
        wanted = self.counts if brands is None else set(brands)
        return sum(self.counts.get(b, 0) for b in wanted)

    def skus_ready(self, brands: Sequence[str] | None) -> bool:
        """Do the SKU vectors cover every photo of the filter's (known) brands?"""
        return self.skus is not None and self.skus.complete(self.known(brands), self.counts)

    def memory_ready(self, brands: Sequence[str] | None) -> bool:
        """Does this process hold the SKU vectors the cached SKU counts describe, covering every
        photo of the filter's brands?"""
        return (self.memory is not None and self.skus is not None and self.memory.signature == self.skus.signature
                and self.memory.complete(self.known(brands), self.counts))


VERSION_SQL = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
INDEX_ROWS_SQL = "SELECT count(*) FROM sku_image_embeddings"
GLOBAL_SQL = ("SELECT count(*) FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
              "WHERE c.relname = %s AND i.indisvalid")


def parse_version(text: str | None) -> tuple[int, ...]:
    """'0.6.2' → (0, 6, 2); missing extension → (0,)."""
    if not text:
        return (0,)
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def supports_iterative_scan(version: tuple[int, ...]) -> bool:
    """`hnsw.iterative_scan` exists from pgvector 0.8.0."""
    return version >= (0, 8)


def _global_plan(k: int, kept: int, total: int, ef_search: int, iterative: bool) -> SearchPlan | None:
    """The global HNSW plan, or None when no ef within pgvector's cap can serve the filter."""
    if iterative:
        return SearchPlan("global", limit=k, ef=max(ef_search, k), iterative=True)
    share = min(1.0, kept / total) if total else 0.0
    needed = math.ceil(k * OVERFETCH / share) if share > 0 else MAX_EF + 1
    if needed > MAX_EF:
        return None
    return SearchPlan("global", limit=k * SURVIVORS, ef=max(ef_search, needed, k * SURVIVORS))


def split_cells(cells: Sequence[int], rows: np.ndarray, parts: int) -> tuple[tuple[int, ...], ...]:
    """`cells` in at most `parts` groups of about equal rows (largest cell first, each into the
    lightest group); () when one group would do."""
    if parts <= 1 or len(cells) <= 1:
        return ()
    groups: list[list[int]] = [[] for _ in range(min(parts, len(cells)))]
    load = [0] * len(groups)
    for cell in sorted(cells, key=lambda c: (-int(rows[c]), c)):
        lightest = load.index(min(load))
        groups[lightest].append(cell)
        load[lightest] += int(rows[cell])
    return tuple(tuple(sorted(group)) for group in groups)


def plan_search(k: int, catalog: Catalog, brands: Sequence[str] | None, q: np.ndarray,
                ef_search: int, *, cell_rows: int = CELL_ROWS, use_cells: bool = True,
                parallel: int = 1, sku_rows: int = SKU_ROWS, use_skus: bool = True,
                use_memory: bool = True) -> SearchPlan:
    """The plan for this filter and query (see the module docstring). `parallel`: how many
    connections a cells plan may spread its scan over."""
    kept = catalog.kept(brands)
    if use_cells and catalog.cells is not None and kept > k:
        stats = catalog.cells
        unknown = () if brands is None else tuple(sorted(set(brands) - set(catalog.counts)))
        if use_skus and catalog.skus is not None and catalog.skus_ready(brands):
            probed = catalog.skus.probe(q, brands, max(sku_rows, k))
            if use_memory and catalog.memory is not None and catalog.memory_ready(brands):
                chosen = catalog.memory.candidates(q, probed, brands, k)
                return SearchPlan("memory", limit=k, cells=probed, unknown=unknown, n_cells=len(stats.centroids),
                                  candidates=len(chosen), chosen=chosen)
            return SearchPlan("skus", limit=k, cells=probed, unknown=unknown, n_cells=len(stats.centroids),
                              candidates=CANDIDATES_PER_K * k,
                              pairs=() if brands is None else catalog.skus.pairs(probed, brands))
        cells = stats.probe(q, brands, max(cell_rows, k))
        return SearchPlan("cells", limit=k, cells=cells, unknown=unknown, n_cells=len(stats.centroids),
                          groups=split_cells(cells, stats.rows_per_cell(brands), parallel))
    if kept <= max(cell_rows, k):
        return SearchPlan("exact", limit=k)
    if catalog.global_index:
        plan = _global_plan(k, kept, catalog.index_rows, ef_search, supports_iterative_scan(catalog.version))
        if plan is not None:
            return plan
    return SearchPlan("exact", limit=k)


def fallback(plan: SearchPlan, k: int) -> SearchPlan:
    """The next, more thorough plan after a result that cannot be trusted."""
    if plan.kind == "global" and not plan.iterative and plan.ef is not None and plan.ef < MAX_EF:
        return replace(plan, ef=min(MAX_EF, plan.ef * 4))
    return SearchPlan("exact", limit=k)


def accept(plan: SearchPlan, rows: int, k: int, kept: int) -> bool:
    """Is this result trustworthy as the top k? `kept`: rows the filter keeps (cached counts).

    A cells plan ranks every row of its cells exactly (a skus plan every photo of its SKUs), so
    it is complete when it returned as many rows as the filter has (up to k); fewer means the
    counts were stale.
    """
    if plan.kind == "exact":
        return True
    if plan.in_cells:
        return rows >= min(k, kept)
    if plan.iterative or (plan.ef is not None and plan.ef >= MAX_EF):
        return rows >= k
    return rows >= plan.limit


def search_sql(plan: SearchPlan, model_version: str, filtered: bool, part: int = 0) -> sql.Composed:
    """The statement of a plan (of one of its `parts` for a cells plan). Parameters: q (sent in
    binary: no text formatting of 512 floats on either side) [, brands] [, cells: that part's
    cells (cells, unfiltered skus plans)] [, pair_cells and pair_brands: `plan.pairs` (filtered
    skus plans)] [, sku_brands and sku_ids: `plan.chosen` (memory plans)] [, unknown:
    `plan.unknown`].

    Exact, cells and skus statements rank in two steps: the scan yields only ``(id, distance)``
    and the k winners are then joined to their rows (no wide tuples through the sort). A skus
    statement reads the SKU vectors by an index-only scan (``sku_embeddings_cell``, migration
    0006), one descent per (cell, brand) pair when filtered; a memory statement starts from the
    SKUs the process chose. A cells statement ranks
    the rows of its cells; the first part also ranks every row not (or not validly) assigned to
    a cell and every row of the brands the cached counts do not know. They order by
    ``(embedding <=> q) + 0`` so the planner cannot swap in the (lossy) HNSW index scan.
    """
    where = sql.SQL("model_version = {} AND embedding IS NOT NULL").format(sql.Literal(model_version))
    member = sql.SQL(" AND brand = ANY(%(brands)s)") if filtered else sql.SQL("")
    if plan.kind == "global":
        order = sql.SQL("embedding <=> %(q)b")
        inner = sql.SQL("SELECT {cols}, embedding <=> %(q)b AS distance "
                        "FROM sku_image_embeddings WHERE {where}{member} ORDER BY {order} LIMIT {limit}").format(
            cols=_columns(), where=where, member=member, order=order, limit=sql.Literal(plan.limit))
        if plan.iterative:
            return sql.SQL("WITH hits AS MATERIALIZED ({}) SELECT * FROM hits ORDER BY distance, id").format(inner)
        return inner
    arm = sql.SQL("SELECT id, (embedding <=> %(q)b) + 0 AS distance FROM sku_image_embeddings "
                  "WHERE {where}{cond}")
    if plan.kind in ("skus", "memory"):
        return _skus_sql(plan, model_version, arm.format(where=where, cond=sql.SQL(" AND brand = ANY(%(unknown)s)")),
                         filtered)
    if plan.kind == "exact":
        arms = [arm.format(where=where, cond=member)]
    else:
        # %(brands)s: the filter's brands known to the cached counts; the rest are %(unknown)s.
        arms = [arm.format(where=where, cond=sql.SQL(" AND cell = ANY(%(cells)s::int4[]){}").format(member))]
        if part == 0:
            arms.append(arm.format(where=where, cond=sql.SQL(" AND (cell IS NULL OR cell >= {}){}").format(
                sql.Literal(plan.n_cells), member)))
            if plan.unknown:
                arms.append(arm.format(where=where, cond=sql.SQL(" AND brand = ANY(%(unknown)s)")))
    return _winners_sql(sql.SQL(""), arms, plan.limit)


def _winners_sql(prefix: sql.Composable, arms: Sequence[sql.Composable], limit: int) -> sql.Composed:
    """``WITH [prefix,] hits``: the arms' (id, distance) rows, best `limit`, then their rows."""
    ranked = sql.SQL(" UNION ALL ").join(sql.SQL("({})").format(a) for a in arms)
    return sql.SQL("WITH {prefix}hits AS MATERIALIZED ({ranked} ORDER BY distance, id LIMIT {limit}) "
                   "SELECT {cols}, hits.distance FROM hits JOIN sku_image_embeddings AS e USING (id) "
                   "ORDER BY hits.distance, hits.id").format(
        prefix=prefix, ranked=ranked, limit=sql.Literal(limit),
        cols=_columns("e"))


def _chosen_skus(plan: SearchPlan, model_version: str, filtered: bool) -> sql.Composed:
    """``skus AS (...)``: the (brand, sku_id) whose photos a skus or memory plan ranks."""
    if plan.kind == "memory":  # ranked in this process: the chosen SKUs are parameters, sent in
        # binary (a text array in text format costs ≈ 0.3 ms more to quote on the client)
        return sql.SQL("skus AS MATERIALIZED (SELECT * FROM unnest(%(sku_brands)b::text[], "
                       "%(sku_ids)b::text[]) AS k(brand, sku_id)), ").format()
    version = sql.Literal(model_version)
    if filtered:  # the filter's (cell, brand) pairs holding SKUs, one index descent each
        source = sql.SQL("unnest(%(pair_cells)s::int4[], %(pair_brands)s::text[]) AS k(cell, brand) "
                         "JOIN sku_embeddings AS s ON s.model_version = {mv} AND s.cell = k.cell "
                         "AND s.brand = k.brand").format(mv=version)
    else:
        source = sql.SQL("sku_embeddings AS s WHERE s.model_version = {mv} "
                         "AND s.cell = ANY(%(cells)s::int4[])").format(mv=version)
    return sql.SQL("skus AS MATERIALIZED (SELECT s.brand, s.sku_id FROM {source} "
                   "ORDER BY (s.embedding <=> %(q)b) + 0, s.brand, s.sku_id LIMIT {candidates}), ").format(
        source=source, candidates=sql.Literal(plan.candidates))


def _skus_sql(plan: SearchPlan, model_version: str, unknown_arm: sql.Composable,
              filtered: bool) -> sql.Composed:
    """A skus plan: the filter's SKU vectors in the plan's cells, the best `candidates` of them
    (a memory plan: the SKUs it chose), every photo of those (plus every photo of brands the
    cached counts do not know), best k."""
    photos = sql.SQL("SELECT p.id, (p.embedding <=> %(q)b) + 0 AS distance FROM skus "
                     "JOIN sku_image_embeddings AS p ON p.model_version = {mv} AND p.brand = skus.brand "
                     "AND p.sku_id = skus.sku_id WHERE p.embedding IS NOT NULL").format(
        mv=sql.Literal(model_version))
    return _winners_sql(_chosen_skus(plan, model_version, filtered),
                        [photos, unknown_arm] if plan.unknown else [photos], plan.limit)


def settings_sql(plan: SearchPlan) -> list[tuple[str, str]]:
    """Transaction-local settings a plan needs, as (name, value) for set_config."""
    if plan.ef is None:
        return []
    out = [("hnsw.ef_search", str(plan.ef))]
    if plan.iterative:
        out += [("hnsw.iterative_scan", "relaxed_order"),
                ("hnsw.max_scan_tuples", str(MAX_SCAN_TUPLES))]
    return out
