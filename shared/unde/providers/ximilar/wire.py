"""Ximilar's JSON, both ways, without I/O: request bodies and validated answers.

Every answer is checked before use: an HTTP 200 whose top-level `status.code` is not 200 is
an error, and so is a record whose `_status.code` is not 200. Anything that does not have the
documented shape raises `UpstreamError("ximilar", ...)` naming what was wrong.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Final

from unde.errors import UpstreamError

SERVICE: Final = "ximilar"
MAX_RECORDS: Final = 10

DETECT_TAGS_PATH: Final = "tagging/fashion/v2/detect_tags"
TAGS_PATH: Final = "tagging/fashion/v2/tags"
SEARCH_BASE: Final = "similarity/fashion-new/v2/"
SEARCH_PATH: Final = SEARCH_BASE + "visualKNN"
INSERT_PATH: Final = SEARCH_BASE + "insert"
DELETE_PATH: Final = SEARCH_BASE + "delete"
ALL_IDS_PATH: Final = SEARCH_BASE + "allIDs"

RETRYABLE_CODES: Final = frozenset({429, 500, 502, 503, 504})


class XimilarStatusError(UpstreamError):
    """Ximilar answered with a non-200 `status.code` (top level or per record)."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(SERVICE, message, retryable=code in RETRYABLE_CODES or code >= 500)
        self.ximilar_code = code


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    prob: float


@dataclass(frozen=True, slots=True)
class DetectedObject:
    """One `_objects[]` entry: a garment box with its tags."""

    name: str
    bbox: tuple[float, float, float, float]
    prob: float
    top_category: str | None
    tags: dict[str, list[Tag]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DetectedImage:
    width: int | None
    height: int | None
    objects: list[DetectedObject]


@dataclass(frozen=True, slots=True)
class SearchAnswer:
    """`answer_records[]` with their distances, in Ximilar's order (nearest first)."""

    records: list[dict[str, Any]]
    distances: list[float]


def image_record(data: bytes) -> dict[str, str]:
    """A `records[]` entry carrying image bytes inline."""
    return {"_base64": base64.b64encode(data).decode("ascii")}


def records_body(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not 1 <= len(records) <= MAX_RECORDS:
        raise ValueError(f"Ximilar takes 1..{MAX_RECORDS} records per call, got {len(records)}")
    return {"records": records}


def search_body(image: bytes, k: int, fields: list[str],
                filter_: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"query_record": image_record(image), "k": k,
                            "fields_to_return": fields}
    if filter_:
        body["filter"] = filter_
    return body


class XimilarMalformed(UpstreamError):
    """Ximilar answered something that is not the documented JSON (counts against the breaker)."""

    def __init__(self, message: str) -> None:
        super().__init__(SERVICE, f"malformed answer: {message}")


def _malformed(what: str) -> XimilarMalformed:
    return XimilarMalformed(what)


def check_status(status: Any, where: str) -> None:
    """Raise XimilarStatusError when a `status`/`_status` object reports a failure."""
    if status is None:
        return
    if not isinstance(status, dict):
        raise _malformed(f"{where} is not an object")
    code = status.get("code")
    if not isinstance(code, int):
        raise _malformed(f"{where}.code is missing or not an integer")
    if code != 200:
        text = status.get("text") or status.get("detail") or "no text"
        raise XimilarStatusError(f"{where}.code {code}: {text}", code=code)


def checked_body(body: Any) -> dict[str, Any]:
    """The answer as a dict whose top-level status (when present) is 200."""
    if not isinstance(body, dict):
        raise _malformed("answer is not a JSON object")
    check_status(body.get("status"), "status")
    return body


def checked_records(body: dict[str, Any], expected: int) -> list[dict[str, Any]]:
    """`records[]` of a tagging answer: one per record sent, each with `_status.code` 200."""
    records = body.get("records")
    if not isinstance(records, list) or len(records) != expected:
        raise _malformed(f"expected {expected} records, got "
                         f"{len(records) if isinstance(records, list) else type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _malformed(f"records[{index}] is not an object")
        check_status(record.get("_status"), f"records[{index}]._status")
    return records


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(f"{what} is not a number")
    return float(value)


def parse_tags(raw: Any, where: str) -> dict[str, list[Tag]]:
    """`_tags`: {feature: [{name, prob}]} (a bare list is kept under "Tags")."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        raw = {"Tags": raw}
    if not isinstance(raw, dict):
        raise _malformed(f"{where} is not an object")
    tags: dict[str, list[Tag]] = {}
    for feature, values in raw.items():
        if not isinstance(values, list):
            raise _malformed(f"{where}.{feature} is not a list")
        parsed = []
        for value in values:
            if not isinstance(value, dict) or not isinstance(value.get("name"), str):
                raise _malformed(f"{where}.{feature}[] has no name")
            parsed.append(Tag(value["name"], _float(value.get("prob", 0.0), f"{where}.prob")))
        tags[str(feature)] = sorted(parsed, key=lambda tag: -tag.prob)
    return tags


def parse_top_category(raw: Any, where: str) -> str | None:
    """`Top Category` of a detected object: Ximilar sends a list of `{id, name, prob}` (the most
    probable is taken); a bare name is accepted too."""
    if raw is None or isinstance(raw, str):
        return raw or None
    if not isinstance(raw, list):
        raise _malformed(f"{where} is not a list")
    best = max(parse_tags(raw, where).get("Tags", []), key=lambda tag: tag.prob, default=None)
    return best.name if best else None


def parse_object(raw: Any, where: str) -> DetectedObject:
    if not isinstance(raw, dict):
        raise _malformed(f"{where} is not an object")
    box = raw.get("bound_box")
    if not isinstance(box, list) or len(box) != 4:
        raise _malformed(f"{where}.bound_box is not [xmin, ymin, xmax, ymax]")
    x0, y0, x1, y1 = (_float(value, f"{where}.bound_box") for value in box)
    return DetectedObject(
        name=str(raw.get("name") or ""),
        bbox=(x0, y0, x1, y1),
        prob=_float(raw.get("prob", 0.0), f"{where}.prob"),
        top_category=parse_top_category(raw.get("Top Category"), f"{where}.Top Category"),
        tags=parse_tags(raw.get("_tags"), f"{where}._tags"),
    )


def parse_detected(record: dict[str, Any], where: str = "records[0]") -> DetectedImage:
    objects = record.get("_objects", [])
    if not isinstance(objects, list):
        raise _malformed(f"{where}._objects is not a list")
    width, height = record.get("_width"), record.get("_height")
    return DetectedImage(
        width=width if isinstance(width, int) else None,
        height=height if isinstance(height, int) else None,
        objects=[parse_object(item, f"{where}._objects[{i}]") for i, item in enumerate(objects)],
    )


def parse_search(body: dict[str, Any]) -> SearchAnswer:
    """`answer_records[]` and `answer_distances[]` of a visualKNN answer, checked to match."""
    records = body.get("answer_records")
    distances = body.get("answer_distances")
    if not isinstance(records, list) or not isinstance(distances, list):
        raise _malformed("answer_records/answer_distances missing")
    if len(records) != len(distances):
        raise _malformed(f"{len(records)} answer_records but {len(distances)} distances")
    if not all(isinstance(record, dict) for record in records):
        raise _malformed("answer_records[] entries must be objects")
    return SearchAnswer(records, [_float(d, "answer_distances[]") for d in distances])


def parse_record_tags(record: dict[str, Any], where: str) -> dict[str, list[Tag]]:
    """`_tags` of one record of a tags answer."""
    return parse_tags(record.get("_tags"), f"{where}._tags")


def check_record_statuses(body: dict[str, Any]) -> None:
    """Per-record `_status` of an insert/delete answer (when it lists records)."""
    records = body.get("records")
    if isinstance(records, list):
        checked_records(body, len(records))


def parse_ids(body: dict[str, Any]) -> list[str]:
    """`_id`s of an allIDs answer."""
    records = body.get("answer_records", body.get("records"))
    if not isinstance(records, list):
        raise _malformed("allIDs answer without answer_records")
    return [str(r["_id"]) for r in records if isinstance(r, dict) and "_id" in r]
