"""`unde eval` on the synthetic demo set (scale small) → the eval figures of results.json.

Runs the real local topology (one process per function, embedded PostgreSQL, offline models)
in its own DATA_DIR under bench/.cache/eval, once per search backend. Quality figures come
from the pgvector configuration (no simulation involved); conditional/dual call Ximilar's wire
format on the local fake, so their credits are the pipeline's real call behaviour and their
baseline is dual (every garment searched on Ximilar), measured in the same run.
"""

from __future__ import annotations

from typing import Any

from bench.common import CACHE, figure, print_table
from unde.commands.eval import index_catalog, prepare_data
from unde.db.embedded import resolve_urls
from unde.evaluation import report
from unde.evaluation.run import EvalPlan, run_eval

DATA_DIR = CACHE / "eval"
BACKENDS = ["pgvector", "conditional", "dual"]


def run(quick: bool) -> dict[str, dict[str, Any]]:
    urls = resolve_urls(None, None, DATA_DIR)
    truth = prepare_data(urls, DATA_DIR, None)
    plan = EvalPlan(BACKENDS, truth, DATA_DIR, urls, photos=6 if quick else None)
    results = run_eval(plan, lambda: print("  " + index_catalog(urls, DATA_DIR)))
    built = report.build(results, str(truth))
    paths = report.write(built, DATA_DIR / "report")
    print(report.format_table(built))
    print(f"  report: {paths[1]}")
    by_name = {c["name"]: c["summary"] for c in built["configs"]}
    plain, conditional, dual = by_name["pgvector"], by_name["conditional"], by_name["dual"]
    figures = {
        "eval_photos": figure(plain["photos"], "photos"),
        "eval_detection_recall": figure(plain["detection_recall"], "ratio"),
        "eval_sku_hit_at_1": figure(plain["sku_hit_at_1"], "ratio"),
        "eval_sku_hit_at_5": figure(plain["sku_hit_at_5"], "ratio"),
        "eval_sku_hit_at_20": figure(plain["sku_hit_at_20"], "ratio"),
        "eval_exact_tier_precision": figure(plain["exact_tier_precision"], "ratio"),
        "eval_credits_per_photo_conditional": figure(conditional["credits_per_photo"], "credits/photo (simulated "
                                                     "Ximilar)", "dual", dual["credits_per_photo"]),
        "eval_credits_per_photo_dual": figure(dual["credits_per_photo"], "credits/photo (simulated Ximilar)"),
        "eval_ximilar_search_share_conditional": figure(conditional["ximilar_search_share"], "ratio of requests",
                                                        "dual", dual["ximilar_search_share"]),
        "eval_p50_total_ms_pgvector": figure(plain["p50_ms"].get("total"), "ms"),
        "eval_p50_total_ms_conditional": figure(conditional["p50_ms"].get("total"), "ms", "pgvector",
                                                plain["p50_ms"].get("total")),
    }
    print_table("eval on the synthetic demo set (offline models; Ximilar = local fake)",
                [(name, entry["value"], entry["unit"]) for name, entry in figures.items()])
    return figures
