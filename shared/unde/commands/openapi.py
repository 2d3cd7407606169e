"""`unde openapi`: print, check or refresh the committed OpenAPI documents (docs/openapi/)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from unde.commands.common import add_parser
from unde.openapi import render
from unde.settings import REPO_ROOT

FUNCTIONS = ("orchestrator", "vision_gateway", "llm_reranker", "embedder", "indexer")
DOCS_DIR = REPO_ROOT / "docs" / "openapi"


def function_document(name: str) -> dict[str, Any]:
    """The OpenAPI document `functions/<name>/main.py` serves (imports the module)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    source = REPO_ROOT / "functions" / name / "main.py"
    spec = importlib.util.spec_from_file_location(f"unde_openapi_{name}", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    document: dict[str, Any] = module.OPENAPI
    return document


def document_path(name: str, docs_dir: Path = DOCS_DIR) -> Path:
    return docs_dir / f"{name}.json"


def stale(docs_dir: Path = DOCS_DIR) -> list[str]:
    """Functions whose committed document differs from what the code generates."""
    out = []
    for name in FUNCTIONS:
        path = document_path(name, docs_dir)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != render(function_document(name)):
            out.append(name)
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "openapi", "print, check or refresh the functions' OpenAPI "
                        "documents (docs/openapi/<function>.json)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite docs/openapi/*.json")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed document is stale")
    parser.add_argument("function", nargs="?", choices=FUNCTIONS, help="print one document")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.write:
        DOCS_DIR.mkdir(parents=True, exist_ok=True)
        for name in FUNCTIONS:
            path = document_path(name)
            path.write_text(render(function_document(name)), encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        return 0
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {document_path(name).relative_to(REPO_ROOT)} (run `unde openapi --write`)")
        return 1 if names else 0
    for name in [args.function] if args.function else FUNCTIONS:
        sys.stdout.write(render(function_document(name)))
    return 0
