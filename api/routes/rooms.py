"""`GET /api/v1/ws/rooms` (the seed's list), `GET /api/v1/ws/rooms/{room_id}` (one room with its
members), both for auditors and admins and read from the projection tables
(engine/readmodels/room_listing.py);
and `POST /api/v1/ws/projections/rebuild` (admin), which replays the log into every projection table
(engine/readmodels/rebuild.py) or, with `check=true`, only reports how the tables differ from the log.

The list holds every room the log knows, busiest first (rooms with members before empty ones, then by
last activity), `limit` at a time from `offset`; `active=true` keeps only rooms somebody is in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import EngineDep
from api.params import IdPath, count_query
from api.rest_auth import ActorDep, AdminDep, require_room_reader
from engine.protocol import iso
from engine.readmodels.room_listing import RoomSummary

router = APIRouter(tags=["rooms"])

MAX_DETAILS = 100  # difference lines returned; the count covers them all


class RoomOut(BaseModel):
    """The seed's `GET /ws/rooms` item."""

    room_id: str
    user_count: int = Field(description="users in the room now (over all their connections)")
    active_sheets_count: int = Field(description="sheets first edited in this room")
    last_activity: str | None = Field(description="ISO-8601 UTC time of the room's newest event")
    messages_sent: int = Field(description="joins, explicit leaves, cell updates and broadcasts")
    avg_users_per_hour: float = Field(description="distinct users per hour, from the first hour to now")


class MemberOut(BaseModel):
    """A member as in the seed's `room_state.users`."""

    user_id: str
    username: str
    email: str | None
    room: str
    status: str = Field(description="the status the user declared (online, away, busy)")
    cursor: dict[str, Any] | None
    last_seen: str


class RoomDetailOut(RoomOut):
    seq: int = Field(description="the room's newest seq the projection has folded")
    active_sheets: list[str]
    members: list[MemberOut]
    position: int = Field(
        description="position of the room's log partition the projection tables have reached"
    )


class RebuildOut(BaseModel):
    rebuilt: bool = Field(description="false for check=true: nothing was changed")
    position: int | None = Field(
        description="the events of the partitions rebuilt: the sum of `heads` (the log head in a log of one)"
    )
    heads: dict[str, int] | None = Field(
        description="each partition rebuilt, with the head it was rebuilt to"
    )
    events_read: int | None
    seconds: float | None
    tables: dict[str, int] = Field(description="rows written per table")
    differences: int | None = Field(
        description="with check=true: rows that differ from the log (null for a rebuild)"
    )
    details: list[str] = Field(description=f"the first {MAX_DETAILS} differences")


def _room_out(summary: RoomSummary) -> dict[str, Any]:
    return {
        "room_id": summary.room_id,
        "user_count": summary.user_count,
        "active_sheets_count": summary.active_sheets_count,
        "last_activity": None if summary.last_activity is None else iso(summary.last_activity),
        "messages_sent": summary.messages_sent,
        "avg_users_per_hour": summary.avg_users_per_hour,
    }


@router.get("/ws/rooms", response_model=list[RoomOut])
async def get_rooms(
    engine: EngineDep,
    actor: ActorDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="rooms per page")] = 100,
    offset: Annotated[int, count_query("rooms to skip")] = 0,
    active: Annotated[bool, Query(description="only rooms with at least one member")] = False,
) -> list[dict[str, Any]]:
    rooms = await engine.list_rooms(
        actor, now=datetime.now(UTC), limit=limit, offset=offset, active_only=active
    )
    return [_room_out(summary) for summary in rooms]


@router.get("/ws/rooms/{room_id:id}", response_model=RoomDetailOut)
async def get_room(
    engine: EngineDep,
    actor: ActorDep,
    room_id: IdPath,
) -> dict[str, Any]:
    """One room with its members: for auditors, admins and those who may join it."""
    require_room_reader(actor, room_id)
    detail = await engine.room_detail(room_id, now=datetime.now(UTC))
    members = [{**member, "last_seen": iso(member["last_seen"])} for member in detail.members]
    return {
        **_room_out(detail.summary),
        "seq": detail.seq,
        "active_sheets": detail.active_sheets,
        "members": members,
        "position": detail.position,
    }


@router.post("/ws/projections/rebuild", response_model=RebuildOut)
async def rebuild_projections(
    engine: EngineDep,
    _: AdminDep,
    check: Annotated[bool, Query(description="only compare the tables with the log")] = False,
    partition: Annotated[
        int | None, Query(ge=0, description="only this partition of the log (default: every one)")
    ] = None,
) -> dict[str, Any]:
    # The diff is a second full fold of the log: only when asked for, not before every rebuild.
    differences = await engine.check_projections(partition=partition) if check else []
    summary: dict[str, Any] = {
        "rebuilt": False,
        "position": None,
        "heads": None,
        "events_read": None,
        "seconds": None,
        "tables": {},
        "differences": len(differences) if check else None,
        "details": differences[:MAX_DETAILS],
    }
    if check:
        return summary
    report = await engine.rebuild_projections(partition=partition)
    return {
        **summary,
        "rebuilt": True,
        "position": report.projections.head,
        "heads": {str(p): head for p, head in sorted(report.projections.heads.items())},
        "events_read": report.projections.events_read,
        "seconds": round(report.cells.seconds + report.projections.seconds, 3),
        "tables": {"cells": report.cells.cells, "sheets": report.cells.sheets, **report.projections.rows},
    }
