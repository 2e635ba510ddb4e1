"""Uploads nothing has happened to for a while: the candidates the upload sweeper checks against the
log (engine/features/upload_sweeper.py).

Read from the `uploads` projection table (kept by engine/readmodels/runner.py), so a restarted node,
or any node, finds the same uploads the log holds: neither complete nor failed, with their newest
event (start or progress) at or before `cutoff`, stalest first. The table trails the log by a runner
step, so a candidate may have moved on since: the sweeper re-reads each one from the log before it
decides. `idle_in` is the same question asked of a sequence of events, for a memory log (no tables).
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
from engine.projections.uploads import Upload
from engine.readmodels.rows.user_models import UPLOADS

_IDLE: Final = f"""
    SELECT {", ".join(UPLOADS.column_names)} FROM uploads
    WHERE status IN (:started, :uploading) AND updated_at <= :cutoff
    ORDER BY updated_at, file_id
    LIMIT :limit
"""


async def idle_uploads(db_engine: AsyncEngine, cutoff: datetime, *, limit: int = 100) -> list[Upload]:
    """At most `limit` unfinished uploads whose newest event is at or before `cutoff`."""
    params = {"started": uploads.STARTED, "uploading": uploads.UPLOADING, "cutoff": cutoff, "limit": limit}
    async with db_engine.connect() as conn:
        found = (await conn.execute(text(_IDLE), params)).mappings().all()
    return [Upload(**row) for row in found]


def idle_in(events: Iterable[RecordedEvent], cutoff: datetime, *, limit: int = 100) -> list[Upload]:
    """The same, folded from `events` (the whole log, in position order)."""
    views: dict[str, Upload] = {}
    for event in events:
        if event.type not in UPLOAD_EVENTS:
            continue
        file_id = str(event.data["file_id"])
        folded = uploads.apply(views.get(file_id), event)
        if folded is not None:
            views[file_id] = folded
    idle = [u for u in views.values() if not u.ended and u.updated_at <= cutoff]
    return sorted(idle, key=lambda u: (u.updated_at, u.file_id))[:limit]


__all__ = ["idle_in", "idle_uploads"]
