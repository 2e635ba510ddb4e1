"""Rooms as the projection tables hold them, for `GET /ws/rooms` and `GET /ws/rooms/{room_id}`.

Read from `rooms`, `room_members` and `declared_statuses` (kept by engine/readmodels/runner.py), never
by replay, so listing a thousand rooms costs one indexed query. The tables trail the log by at most
one runner step (up to `PROJECTION_INTERVAL_MS`, 100 ms by default); `position` in a room's detail
says how far they have got.

`avg_users_per_hour` is the room's attendance (engine/projections/rooms.py, `Attendance`) averaged
up to the hour of `now`: the hours since the last event count the members present through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.partitions import partition_of
from engine.model.errors import RoomNotFound
from engine.model.streams import room_stream, user_stream
from engine.projections.rooms import Attendance
from engine.readmodels.runner import CHECKPOINT

_COLUMNS = """r.room_id, r.seq, r.user_count, r.active_sheets, r.active_sheets_count, r.last_activity,
    r.messages_sent, r.attendance_hour, r.attendance_users, r.attendance_past_hours,
    r.attendance_past_user_hours"""
# Busiest first: rooms with members before empty ones, then the most recently active.
_LIST = f"""
    SELECT {_COLUMNS} FROM rooms AS r
    WHERE (NOT :active_only OR r.user_count > 0)
      AND (CAST(:patterns AS text[]) IS NULL OR r.room_id ~ ANY(CAST(:patterns AS text[])))
    ORDER BY r.user_count DESC, r.last_activity DESC NULLS LAST, r.room_id
    LIMIT :limit OFFSET :offset
"""
# A room's rows are in its partition of the log (engine/log/partitions.py); the listing reads every
# partition on purpose.
_ONE = f"SELECT {_COLUMNS} FROM rooms AS r WHERE r.partition = :partition AND r.room_id = :room_id"
_MEMBERS = """
    SELECT user_id, username, email, status, cursor, last_seen FROM room_members
    WHERE partition = :partition AND room_id = :room_id ORDER BY ordinal
"""
# The status a member declared is the user's, kept from their own stream in `declared_statuses`, in
# the user's partition; `room_members.status` is only "online", being in the room.
_DECLARED = """
    SELECT user_id, status FROM declared_statuses
    WHERE partition = ANY(CAST(:partitions AS smallint[])) AND user_id = ANY(CAST(:users AS text[]))
"""
# A room's partition's checkpoint of the projection tables (engine/log/partitions.py).
_CHECKPOINT = "SELECT position FROM projector_checkpoints WHERE partition = :partition AND name = :name"


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """The seed's `GET /ws/rooms` item."""

    room_id: str
    user_count: int
    active_sheets_count: int
    last_activity: datetime | None
    messages_sent: int
    avg_users_per_hour: float


@dataclass(frozen=True, slots=True)
class RoomDetail:
    summary: RoomSummary
    seq: int
    active_sheets: list[str]
    members: list[dict[str, Any]]  # the seed's `room_state.users` fields
    position: int  # of the room's log partition, as far as the projection tables have got


def _summary(row: Any, now: datetime) -> RoomSummary:
    attendance = Attendance(
        hour=row["attendance_hour"],
        users=frozenset(row["attendance_users"]),
        past_hours=row["attendance_past_hours"],
        past_user_hours=row["attendance_past_user_hours"],
    )
    return RoomSummary(
        room_id=row["room_id"],
        user_count=row["user_count"],
        active_sheets_count=row["active_sheets_count"],
        last_activity=row["last_activity"],
        messages_sent=row["messages_sent"],
        avg_users_per_hour=round(attendance.average(row["user_count"], now), 2),
    )


async def list_rooms(
    db_engine: AsyncEngine,
    *,
    now: datetime,
    limit: int = 100,
    offset: int = 0,
    active_only: bool = False,
    patterns: Sequence[str] | None = None,
) -> list[RoomSummary]:
    """Rooms, busiest first; with `active_only`, only rooms somebody is in; with `patterns` (anchored
    regular expressions, `Actor.rooms_regex`), only the rooms one of them matches."""
    params = {"active_only": active_only, "limit": limit, "offset": offset, "patterns": patterns}
    async with db_engine.connect() as conn:
        found = await conn.execute(text(_LIST), params)
        return [_summary(row, now) for row in found.mappings()]


async def room_detail(
    db_engine: AsyncEngine, room_id: str, *, now: datetime, partitions: int = 1
) -> RoomDetail:
    """One room with its members; RoomNotFound if the log has no event of it (yet projected)."""
    partition = partition_of(room_stream(room_id), partitions)
    where = {"partition": partition, "room_id": room_id}
    async with db_engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")  # room, members, checkpoint agree
        row = (await conn.execute(text(_ONE), where)).mappings().first()
        if row is None:
            raise RoomNotFound(f"room {room_id!r} not found", room_id=room_id)
        members = [dict(member) for member in (await conn.execute(text(_MEMBERS), where)).mappings()]
        users = [member["user_id"] for member in members]
        owners = sorted({partition_of(user_stream(user), partitions) for user in users})
        found = await conn.execute(text(_DECLARED), {"partitions": owners, "users": users})
        declared = {user: status for user, status in found}
        found = await conn.execute(text(_CHECKPOINT), {"partition": partition, "name": CHECKPOINT})
        position = found.scalar()
        await conn.rollback()
    members = [
        {**member, "status": declared.get(member["user_id"], member["status"]), "room": room_id}
        for member in members
    ]
    return RoomDetail(_summary(row, now), row["seq"], list(row["active_sheets"]), members, int(position or 0))


__all__ = ["RoomDetail", "RoomSummary", "list_rooms", "room_detail"]
