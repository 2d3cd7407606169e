"""Storing the shopper's verdicts in `recognition_requests.user_feedback` (calibration input)."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from unde.errors import NotFound
from unde.pipeline.inputs import FeedbackBody

# One entry per garment: a second verdict for the same garment replaces the first (idempotent).
FEEDBACK_SQL = """
UPDATE recognition_requests
SET user_feedback = COALESCE(user_feedback, '{}'::jsonb) || jsonb_build_object(%(item)s::text, %(entry)s::jsonb)
WHERE id = %(request_id)s
RETURNING user_feedback
"""


async def store_feedback(conn: AsyncConnection, body: FeedbackBody) -> dict[str, object]:
    """Record the verdict; NotFound when the request id is unknown."""
    entry = body.model_dump(mode="json", exclude={"request_id", "item_id"}, exclude_none=True)
    entry["at"] = datetime.now(UTC).isoformat()
    cursor = await conn.execute(FEEDBACK_SQL, {"item": body.item_id, "entry": Jsonb(entry),
                                               "request_id": body.request_id})
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"unknown request_id {body.request_id}")
    return {"request_id": str(body.request_id), "item_id": body.item_id, "stored": True}
