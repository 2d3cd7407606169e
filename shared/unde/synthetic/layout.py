"""On-disk layout of a synthetic data directory and its manifest.

::

    data_dir/
      manifest.json                              seed, scale, render version, lazy flag
      images/catalog/{brand}/{external_id}/{rank}.jpg
      street/{photo_id}.jpg
      street/ground_truth.json                   see unde.synthetic.seed

Image URLs are ``{image_base_url}/catalog/{brand}/{external_id}/{rank}.jpg``; the image server
maps the URL path onto ``data_dir/images``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

#: Bump when rendering changes, so cached JPEGs from an older renderer are thrown away.
RENDER_VERSION: Final[int] = 1
MANIFEST_NAME: Final[str] = "manifest.json"


def images_root(data_dir: Path) -> Path:
    """Directory the image server serves."""
    return data_dir / "images"


def catalog_image_relpath(brand: str, external_id: str, rank: int) -> str:
    """URL path (relative, no leading slash) of a catalog image."""
    return f"catalog/{brand}/{external_id}/{rank}.jpg"


def catalog_image_path(data_dir: Path, brand: str, external_id: str, rank: int) -> Path:
    """File path of a catalog image."""
    return images_root(data_dir) / catalog_image_relpath(brand, external_id, rank)


def street_dir(data_dir: Path) -> Path:
    """Directory holding street photos and ground_truth.json."""
    return data_dir / "street"


def read_manifest(data_dir: Path) -> dict[str, Any] | None:
    """The manifest, or None when absent/unreadable."""
    try:
        data = json.loads((data_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file atomically (temp file + rename), creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
