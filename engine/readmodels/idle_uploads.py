"""Uploads nothing has happened to for a while: the candidates the upload sweeper checks against the
log (engine/features/upload_sweeper.py).

Read from the `uploads` projection table (kept by engine/readmodels/runner.py), so a restarted node,
or any node, finds the same uploads the log holds: neither complete nor failed, with their newest
event (start or progress) at or before `cutoff`, stalest first, a bounded page at a time (each after
the previous page's last upload, in `idle_order`), each read off an index of the unfinished uploads
alone, so a page costs its own rows whatever the table's history. The table trails the log by a
runner step, so a candidate may have moved on since: the sweeper re-reads each one from the log
before it decides.
`idle_in` is the same question asked of a sequence of events, for a memory log (no tables).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.model.catalogue import UPLOAD_EVENTS
from engine.model.events import RecordedEvent
from engine.projections import uploads
from engine.projections.uploads import IdleOrder, Upload
from engine.readmodels.rows.user_models import UPLOADS

# The statuses are written out, not bound: a prepared statement's generic plan could not match them
# to the predicate of the partial index `ix_uploads_idle` (migration 0022), which the page reads in
# order, its rows only, however many uploads ever ended.
_IDLE: Final = f"""
    SELECT {{columns}} FROM uploads
    WHERE status IN ('{uploads.STARTED}', '{uploads.UPLOADING}') AND updated_at <= :cutoff{{after}}
    ORDER BY updated_at, file_id, user_id
    LIMIT :limit
"""
_AFTER: Final = " AND (updated_at, file_id, user_id) > (:after_at, :after_file, :after_user)"
_FIRST_PAGE: Final = _IDLE.format(columns=", ".join(UPLOADS.column_names), after="")
_NEXT_PAGE: Final = _IDLE.format(columns=", ".join(UPLOADS.column_names), after=_AFTER)


async def idle_uploads(
    db_engine: AsyncEngine, cutoff: datetime, *, after: IdleOrder | None = None, limit: int = 100
) -> list[Upload]:
    """At most `limit` unfinished uploads whose newest event is at or before `cutoff`, in
    `idle_order`, after `after` (the last of the previous page) when given."""
    params: dict[str, object] = {"cutoff": cutoff, "limit": limit}
    if after is not None:
        params.update(after_at=after[0], after_file=after[1], after_user=after[2])
    async with db_engine.connect() as conn:
        found = (await conn.execute(text(_FIRST_PAGE if after is None else _NEXT_PAGE), params)).mappings()
        return [Upload(**row) for row in found.all()]


def idle_in(
    events: Iterable[RecordedEvent], cutoff: datetime, *, after: IdleOrder | None = None, limit: int = 100
) -> list[Upload]:
    """The same, folded from `events` (the whole log, in position order)."""
    views: dict[str, Upload] = {}
    for event in events:
        if event.type not in UPLOAD_EVENTS:
            continue
        file_id = str(event.data["file_id"])
        folded = uploads.apply(views.get(file_id), event)
        if folded is not None:
            views[file_id] = folded
    idle = sorted(
        (u for u in views.values() if not u.ended and u.updated_at <= cutoff), key=uploads.idle_order
    )
    return [u for u in idle if after is None or uploads.idle_order(u) > after][:limit]


__all__ = ["idle_in", "idle_uploads"]
