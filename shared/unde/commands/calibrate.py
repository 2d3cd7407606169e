"""`unde calibrate`: recommend CONFIDENCE_THRESHOLD/MARGIN and CONFIDENCE_HIGH/MEDIUM from the
request log (`recognition_requests` with `user_feedback`) or an eval run's labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unde.commands.common import add_parser, database_urls, tool_settings
from unde.evaluation import calibrate as cal
from unde.evaluation import calibration_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "calibrate", "recommend confidence thresholds from logged requests "
                        "and feedback (or an eval run's labels)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target-ximilar-rate", type=float, default=None,
                        help="highest acceptable share of garments calling Ximilar (default 0.5)")
    target.add_argument("--target-precision", type=float, default=None,
                        help="lowest acceptable precision of the confident (pgvector-only) answers")
    parser.add_argument("--tier-precision", type=float, default=0.9,
                        help="exact-tier precision to reach (sets CONFIDENCE_HIGH)")
    parser.add_argument("--similar-precision", type=float, default=0.6,
                        help="share of similar answers showing the right SKU (sets CONFIDENCE_MEDIUM)")
    parser.add_argument("--requests-per-month", type=int, default=100_000)
    parser.add_argument("--min-support", type=int, default=10,
                        help="labelled garments a recommendation must rest on")
    parser.add_argument("--tagging-mode", choices=("on_demand", "always"), default="on_demand",
                        help="how Ximilar tagging is billed in the credit estimate")
    parser.add_argument("--days", type=float, default=None, help="only requests of the last N days")
    parser.add_argument("--labels", type=Path, default=None,
                        help="an eval run's labels.json instead of the request log")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default DATA_DIR/calibration)")
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    for name in ("target_ximilar_rate", "target_precision", "tier_precision", "similar_precision"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be between 0 and 1 (got {value})")
    if args.requests_per_month < 0 or args.min_support < 1:
        raise SystemExit("--requests-per-month must be ≥ 0 and --min-support ≥ 1")


def run(args: argparse.Namespace) -> int:
    _check(args)
    settings = tool_settings()
    if args.labels is not None:
        garments = cal.garments_from_labels(args.labels)
        per_request = cal.garments_per_photo(args.labels)
        source = f"eval labels {args.labels} (found garments per photo as garments per request)"
    else:
        rows = cal.read_rows(database_urls(settings).production, args.days)
        garments = cal.garments_from_rows(rows)
        per_request = calibration_report.garments_per_request(rows)
        source = f"recognition_requests ({len(rows)} requests)"
    if not garments:
        print("nothing to calibrate on: no logged garments")
        return 1
    rate = args.target_ximilar_rate
    if rate is None and args.target_precision is None:
        rate = 0.5
    targets = calibration_report.Targets(
        ximilar_rate=rate,
        precision=args.target_precision, tier_precision=args.tier_precision,
        similar_precision=args.similar_precision, requests_per_month=args.requests_per_month,
        min_support=args.min_support, tag_on_demand=args.tagging_mode == "on_demand")
    report = calibration_report.build(garments, targets, source, per_request)
    json_path, html_path = calibration_report.write(report, args.out or settings.data_dir / "calibration")
    print(json.dumps({"gate": report["gate"], "tiers": {k: report["tiers"][k] for k in
                                                        ("CONFIDENCE_HIGH", "CONFIDENCE_MEDIUM")}}, indent=2))
    print(f"{report['garments']} garments ({report['labelled']} labelled); report: {html_path} ({json_path.name})")
    return 0
