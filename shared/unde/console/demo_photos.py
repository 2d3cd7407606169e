"""The demo's street photos (`DATA_DIR/street`, written by `unde seed`/`unde demo`), offered by
the console as ready-made inputs. Outside a demo data directory there are none."""

from __future__ import annotations

import json
import re
from pathlib import Path

from unde.console.shapes import DemoPhoto
from unde.errors import BadInput, NotFound
from unde.synthetic.layout import street_dir

MAX_LISTED = 200
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.(jpe?g|png)$")
MEDIA_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


def list_demo_photos(data_dir: Path) -> list[DemoPhoto]:
    """The street photos named in ground_truth.json that exist, with the mall each was taken in."""
    folder = street_dir(data_dir)
    try:
        photos = json.loads((folder / "ground_truth.json").read_text())["photos"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    listed: list[DemoPhoto] = []
    for photo in photos if isinstance(photos, list) else []:
        name = photo.get("file") if isinstance(photo, dict) else None
        if isinstance(name, str) and _NAME.match(name) and (folder / name).is_file():
            listed.append(DemoPhoto(name=name, mall=photo.get("mall")))
        if len(listed) >= MAX_LISTED:
            break
    return listed


def read_demo_photo(data_dir: Path, name: str, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and media type of one street photo; 422 for a name that is not a plain file name."""
    match = _NAME.match(name)
    if match is None:
        raise BadInput("name: must be a street photo's file name (letters, digits, '_.-'; .jpg or .png)",
                       field="name")
    path = street_dir(data_dir) / name
    if not path.is_file():
        raise NotFound(f"no demo photo named {name!r}")
    if path.stat().st_size > max_bytes:
        raise BadInput(f"demo photo {name!r} exceeds {max_bytes} bytes", field="name", status_code=413)
    return path.read_bytes(), MEDIA_TYPES[match.group(1).lower()]
