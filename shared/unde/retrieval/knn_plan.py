"""Plans for the mall-filtered top-k query: which way to answer, its cost, and its SQL.

Three kinds of plan (see `unde.retrieval.knn` for why): ``union`` (a partial HNSW index per
brand, UNION ALL of per-brand searches, small or unindexed brands scanned exactly), ``global``
(the global HNSW index, filter applied after it, ef raised), ``exact``. `plan_search` picks the
cheapest by `PlanCosts`, whose constants are measured by bench/pgvector.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from psycopg import sql

from unde.retrieval.brand_index import MAX_SHARDS, brand_index_name, shard_index_name, shard_predicate

#: The global HNSW path over-fetches: ef ≥ k × OVERFETCH / (share of rows the filter keeps).
OVERFETCH = 8.0
#: The global path asks for k × SURVIVORS filtered rows; fewer means the filter is locally more
#: selective than on average (brands cluster by style): escalate.
SURVIVORS = 2
#: pgvector caps hnsw.ef_search at 1000.
MAX_EF = 1000
#: Brands with at most this many rows are scanned exactly inside the union plan, and filters
#: keeping at most this many rows in total are answered by the exact scan.
EXACT_MAX_ROWS = 1500
#: A partial-index search runs at ef ≥ PARTIAL_EF_PER_K × k: at ef = k the graph walk often
#: stays in one style cluster of the brand (measured recall@50 0.78–0.89 vs 0.98 at 4k).
PARTIAL_EF_PER_K = 2
#: A union plan shares this much ef among its brands in proportion to their rows (each gets
#: at least PARTIAL_EF_PER_K × k, at most MAX_EF): a query far from every photo of a large
#: brand needs a large ef there (its top-k is spread over many style clusters), while a small
#: brand's graph is walked whole at a small ef. Brands are grouped into power-of-two ef tiers,
#: one statement per tier (hnsw.ef_search is one setting per statement).
UNION_EF_BUDGET = 1000
#: …and never more than PARTIAL_EF_PER_SQRT_ROW × √(brand rows): a small brand's graph is
#: walked whole long before ef 1000 (measured at ef ≥ 5·√rows: recall@50 ≥ 0.98 per brand).
PARTIAL_EF_PER_SQRT_ROW = 5.0
#: A shard's ef is this fraction of its share of the budget (its rows' share, like a brand's).
#: Measured (bench/pgvector.py, 38.7K-row brand in 8 shards): ef 100 per shard → recall@50
#: 0.95–0.97, ef 200 → 0.996–0.998; its one graph at ef 1000 → 0.90. 0.5 saves latency on
#: mid-size malls but drops their recall from ~0.993 to ~0.98.
SHARD_EF_SCALE = 1.0
#: On pgvector ≥ 0.8, how many tuples an iterative scan may visit at most.
MAX_SCAN_TUPLES = 50_000
GLOBAL_INDEX = "sku_image_embeddings_hnsw"

_COLUMNS = "id, brand, sku_id, image_url, image_rank, metadata"
PlanKind = Literal["exact", "global", "union"]


@dataclass(frozen=True, slots=True)
class PlanCosts:
    """Cost model (µs) of the three ways to answer; measured in bench/pgvector.py."""

    exact_per_row: float = 2.5
    partial_base: float = 800.0
    partial_per_ef: float = 8.0
    global_base: float = 1000.0
    global_per_ef: float = 12.0

    def exact(self, rows: int) -> float:
        return self.exact_per_row * rows

    def partial(self, ef: int) -> float:
        return self.partial_base + self.partial_per_ef * ef

    def global_(self, ef: int) -> float:
        return self.global_base + self.global_per_ef * ef


COSTS = PlanCosts()


class Part(NamedTuple):
    """One indexed subquery of a union: a brand (or one shard of it), the rows it must
    return (min(k, rows), less for a shard whose exact size is unknown) and its ef."""

    brand: str
    expected: int
    ef: int
    shard: int = 0
    shards: int = 1  # 1: the brand's unsplit index


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """How one query runs.

    `ef` is hnsw.ef_search of the global search (the largest one of a union); `limit` rows
    are asked of each statement. A union plan searches `indexed` brands in their partial
    indexes, each with its expected row count and ef, and scans `exact_brands` (or,
    unfiltered with `exact_rest`, every other brand) exactly.
    """

    kind: PlanKind
    ef: int | None = None
    limit: int = 0
    iterative: bool = False
    indexed: tuple[Part, ...] = ()
    exact_brands: tuple[str, ...] = ()
    exact_rest: bool = False  # no filter: scan every brand not in `indexed` exactly

    @property
    def exact(self) -> bool:
        return self.kind == "exact"


@dataclass(frozen=True, slots=True)
class Catalog:
    """What the planner knows: pgvector version, rows per brand, which brands have an index,
    and into how many valid shard indexes a brand is split (absent: not split)."""

    version: tuple[int, ...]
    counts: Mapping[str, int]
    total: int
    indexed_brands: frozenset[str]
    global_index: bool
    shards: Mapping[str, int] = field(default_factory=dict)


VERSION_SQL = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
COUNTS_SQL = (
    "SELECT brand, count(*) FROM sku_image_embeddings WHERE model_version = %s GROUP BY brand"
)
TOTAL_SQL = "SELECT count(*) FROM sku_image_embeddings"
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


def build_catalog(version: tuple[int, ...], model_version: str, counts: dict[str, int], total: int,
                  index_names: set[str], global_index: bool) -> Catalog:
    """The planner's view; a brand counts as indexed when its valid partial index exists, and
    as split in n shards when all n of its shard indexes are valid (the most complete split)."""
    indexed = frozenset(b for b in counts if brand_index_name(b, model_version) in index_names)
    shards: dict[str, int] = {}
    for brand in counts:
        n = MAX_SHARDS
        while n >= 2 and brand not in shards:
            if all(shard_index_name(brand, model_version, i, n) in index_names for i in range(n)):
                shards[brand] = n
            n //= 2
    return Catalog(version, counts, total, indexed, global_index, shards)


def _global_plan(k: int, kept: int, total: int, ef_search: int, iterative: bool) -> SearchPlan | None:
    """The global HNSW plan, or None when no ef within pgvector's cap can serve the filter."""
    if iterative:
        return SearchPlan("global", ef=max(ef_search, k), limit=k, iterative=True)
    share = min(1.0, kept / total) if total else 0.0
    needed = math.ceil(k * OVERFETCH / share) if share > 0 else MAX_EF + 1
    if needed > MAX_EF:
        return None
    return SearchPlan("global", ef=max(ef_search, needed, k * SURVIVORS), limit=k * SURVIVORS)


def ef_tier(ef: int, k: int) -> int:
    """Round ef up to the tier PARTIAL_EF_PER_K × k × 2^i (capped at MAX_EF)."""
    tier = PARTIAL_EF_PER_K * k
    while tier < ef and tier < MAX_EF:
        tier *= 2
    return min(MAX_EF, tier)


def union_plan(k: int, catalog: Catalog, brands: Sequence[str] | None, ef_search: int,
               exact_max_rows: int = EXACT_MAX_ROWS, ef_budget: int = UNION_EF_BUDGET,
               use_shards: bool = True) -> SearchPlan:
    """Partial-index search for indexed brands above `exact_max_rows`, exact scan for the rest.

    A split brand (`Catalog.shards`, with `use_shards`) is searched in each of its shard
    indexes instead of its one index. Each part's ef is its share of `ef_budget` by rows, at
    least PARTIAL_EF_PER_K × k, at most max(ef_search, PARTIAL_EF_PER_SQRT_ROW × √rows),
    rounded up to its tier.
    """
    wanted = sorted(catalog.counts) if brands is None else sorted(set(brands))
    chosen: list[tuple[str, int, int]] = []  # brand, rows, shards
    exact = []
    for brand in wanted:
        rows = catalog.counts.get(brand)
        shards = catalog.shards.get(brand, 1) if use_shards else 1
        if rows is not None and rows > exact_max_rows and (shards > 1 or brand in catalog.indexed_brands):
            chosen.append((brand, rows, shards))
        else:  # small, not indexed (yet), or unknown to the cached counts: scan exactly
            exact.append(brand)
    if not chosen:
        return SearchPlan("exact", limit=k) if brands is None else SearchPlan(
            "union", limit=k, exact_brands=tuple(exact))
    rows_indexed = sum(rows for _, rows, _ in chosen)
    floor = PARTIAL_EF_PER_K * k

    def ef_of(rows: float, scale: float = 1.0) -> int:
        return ef_tier(max(floor, min(math.ceil(scale * ef_budget * rows / rows_indexed), max(
            ef_search, math.ceil(PARTIAL_EF_PER_SQRT_ROW * math.sqrt(rows))))), k)

    # A shard's exact size is unknown (hash split): it must return min(k, half its share).
    indexed = tuple(
        Part(brand, min(k, rows), ef_of(rows)) if shards == 1 else
        Part(brand, min(k, rows // (2 * shards)), ef_of(rows / shards, SHARD_EF_SCALE), shard,
             shards)
        for brand, rows, shards in chosen for shard in range(shards))
    top = max(part.ef for part in indexed)
    if brands is None:  # brands newer than the cached counts must be scanned too
        return SearchPlan("union", ef=top, limit=k, indexed=indexed, exact_rest=True)
    return SearchPlan("union", ef=top, limit=k, indexed=indexed, exact_brands=tuple(exact))


def plan_cost(plan: SearchPlan, catalog: Catalog, costs: PlanCosts = COSTS, share: float = 1.0) -> float:
    """Estimated µs of a plan (see `PlanCosts`); `share`: of the rows the filter keeps."""
    if plan.kind == "global":
        assert plan.ef is not None
        if plan.iterative:  # the scan goes on until k rows pass the filter: ~ef / share tuples
            return costs.global_(min(MAX_SCAN_TUPLES, math.ceil(plan.ef / max(share, 1e-6))))
        return costs.global_(plan.ef)
    if plan.kind == "exact":
        return costs.exact(catalog.total)
    rest = set(catalog.counts) - {part[0] for part in plan.indexed} if plan.exact_rest else ()
    exact_rows = sum(catalog.counts.get(b, 0) for b in (*plan.exact_brands, *rest))
    return costs.exact(exact_rows) + sum(costs.partial(part.ef) for part in plan.indexed)


def plan_search(k: int, catalog: Catalog, brands: Sequence[str] | None, ef_search: int, *,
                exact_max_rows: int = EXACT_MAX_ROWS, use_brand_indexes: bool = True,
                ef_budget: int = UNION_EF_BUDGET, costs: PlanCosts = COSTS,
                use_shards: bool = True) -> SearchPlan:
    """The cheapest correct plan for this filter (see the module docstring)."""
    kept = catalog.total if brands is None else sum(catalog.counts.get(b, 0) for b in set(brands))
    if kept <= max(exact_max_rows, k):
        return SearchPlan("exact", limit=k)
    candidates: list[SearchPlan] = []
    if catalog.global_index:
        plan = _global_plan(k, kept, catalog.total, ef_search,
                            supports_iterative_scan(catalog.version))
        if plan is not None:
            candidates.append(plan)
    # Without a filter the union would also need a scan of every brand without an index
    # (including brands newer than the cached counts): only when there is no global index.
    if use_brand_indexes and (catalog.indexed_brands or catalog.shards) and (
            brands is not None or not candidates):
        candidates.append(union_plan(k, catalog, brands, ef_search, exact_max_rows, ef_budget,
                                     use_shards))
    if not candidates:
        return SearchPlan("exact", limit=k)
    share = kept / catalog.total if catalog.total else 1.0
    return min(candidates, key=lambda p: plan_cost(p, catalog, costs, share))


def fallback(plan: SearchPlan, k: int, catalog: Catalog, brands: Sequence[str] | None,
             ef_search: int, use_brand_indexes: bool, ef_budget: int = UNION_EF_BUDGET,
             use_shards: bool = True) -> SearchPlan:
    """The next, more thorough plan after a result that cannot be trusted."""
    if plan.kind == "global" and not plan.iterative and plan.ef is not None and plan.ef < MAX_EF:
        return replace(plan, ef=min(MAX_EF, plan.ef * 4))
    if plan.kind == "global" and use_brand_indexes and (catalog.indexed_brands or catalog.shards):
        return union_plan(k, catalog, brands, ef_search, ef_budget=ef_budget, use_shards=use_shards)
    if brands is None:
        return SearchPlan("exact", limit=k)
    return SearchPlan("union", limit=k, exact_brands=tuple(sorted(set(brands))))


def accept(plan: SearchPlan, rows: int, complete: bool, k: int) -> bool:
    """Is this result trustworthy as the top k? (else fall back)."""
    if plan.kind == "exact" or (plan.kind == "union" and not plan.indexed):
        return True
    if plan.kind == "union":
        return complete
    if plan.iterative or (plan.ef is not None and plan.ef >= MAX_EF):
        return rows >= k
    return rows >= plan.limit


Statement = tuple[list[tuple[str, str]], sql.Composed, int]


def statements(plan: SearchPlan, model_version: str, filtered: bool) -> list[Statement]:
    """(settings, SQL, indexed parts) per statement of a plan, run in one transaction.

    Parameters: q [, brands for filtered exact/global plans]. A union has one statement per
    ef tier (the first one also scans the exact brands); rows are merged by distance.
    """
    if plan.kind != "union":
        return [(settings_sql(plan), search_sql(plan, model_version, filtered), 0)]
    tiers = sorted({part.ef for part in plan.indexed}) or [0]
    out: list[Statement] = []
    for n, ef in enumerate(tiers):
        parts = tuple(part for part in plan.indexed if part.ef == ef)
        step = replace(plan, ef=ef or None, indexed=parts,
                       exact_brands=plan.exact_brands if n == 0 else (),
                       exact_rest=plan.exact_rest and n == 0)
        excluded = sorted({part.brand for part in plan.indexed})  # exact_rest: every other brand
        out.append((settings_sql(step), _union_sql(step, model_version, excluded), len(parts)))
    return out


def search_sql(plan: SearchPlan, model_version: str, filtered: bool) -> sql.Composed:
    """One statement for an exact or global plan (a union: see `statements`)."""
    cols = sql.SQL(_COLUMNS)
    if plan.kind == "union":
        return _union_sql(plan, model_version)
    where = sql.SQL("model_version = {} AND embedding IS NOT NULL").format(sql.Literal(model_version))
    if filtered:
        where = sql.SQL("{} AND brand = ANY(%(brands)s)").format(where)
    order = sql.SQL("(embedding <=> %(q)s) + 0" if plan.exact else "embedding <=> %(q)s")
    inner = sql.SQL("SELECT {cols}, embedding <=> %(q)s AS distance, true AS complete "
                    "FROM sku_image_embeddings WHERE {where} ORDER BY {order} LIMIT {limit}").format(
        cols=cols, where=where, order=order, limit=sql.Literal(plan.limit))
    if plan.iterative:
        return sql.SQL("WITH hits AS MATERIALIZED ({}) SELECT * FROM hits ORDER BY distance, id").format(inner)
    return inner


def _union_sql(plan: SearchPlan, model_version: str, excluded: Sequence[str] = ()) -> sql.Composed:
    version = sql.Literal(model_version)
    parts: list[sql.Composable] = [
        sql.SQL("(SELECT {cols}, embedding <=> %(q)s AS distance, {part} AS part, {expected} AS expected "
                "FROM sku_image_embeddings WHERE brand = {brand} AND model_version = {version}{shard} "
                "ORDER BY embedding <=> %(q)s LIMIT {k})").format(
            cols=sql.SQL(_COLUMNS), part=sql.Literal(i), expected=sql.Literal(p.expected),
            brand=sql.Literal(p.brand), version=version, k=sql.Literal(plan.limit),
            shard=sql.SQL(" AND {}").format(shard_predicate(p.shard, p.shards))
            if p.shards > 1 else sql.SQL(""))
        for i, p in enumerate(plan.indexed)]
    if plan.exact_brands or plan.exact_rest:
        listed = list(plan.exact_brands) if plan.exact_brands else list(excluded or sorted(
            {part.brand for part in plan.indexed}))
        parts.append(sql.SQL(
            "(SELECT {cols}, embedding <=> %(q)s AS distance, -1 AS part, 0 AS expected "
            "FROM sku_image_embeddings WHERE {member} AND model_version = {version} "
            "AND embedding IS NOT NULL ORDER BY (embedding <=> %(q)s) + 0 LIMIT {k})").format(
            cols=sql.SQL(_COLUMNS), version=version,
            member=sql.SQL("NOT (brand = ANY({}))" if plan.exact_rest else "brand = ANY({})").format(
                sql.Literal(listed)),
            k=sql.Literal(plan.limit)))
    # complete: every indexed part returned the rows its brand has (up to k).
    return sql.SQL(
        "WITH parts AS ({parts}) SELECT {cols}, distance, "
        "(SELECT count(*) FROM (SELECT part FROM parts WHERE part >= 0 GROUP BY part "
        "HAVING count(*) >= max(expected)) AS full_parts) = {n} AS complete "
        "FROM parts ORDER BY distance, id LIMIT {k}").format(
        parts=sql.SQL(" UNION ALL ").join(parts), cols=sql.SQL(_COLUMNS),
        n=sql.Literal(len(plan.indexed)), k=sql.Literal(plan.limit))


def settings_sql(plan: SearchPlan) -> list[tuple[str, str]]:
    """Transaction-local settings a plan needs, as (name, value) for set_config."""
    if plan.ef is None:
        return []
    out = [("hnsw.ef_search", str(plan.ef))]
    if plan.iterative:
        out += [("hnsw.iterative_scan", "relaxed_order"),
                ("hnsw.max_scan_tuples", str(MAX_SCAN_TUPLES))]
    return out

