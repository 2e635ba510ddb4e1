"""Room projection snapshots: a `RoomView` as of a room seq, stored so "as of" reads replay only the tail.

A snapshot at seq S holds the view folded from every event of the room's two streams (durable and
volatile) up to the log position P of the room's event S. Replaying the events after P, in position
order, from that view gives exactly the view a fold from the start gives: both run the same
`engine.projections.rooms.apply_many` over the same events, and the encoding below round-trips every
field of the view (tests/unit/test_history_snapshots.py checks it field by field).

Snapshots are a cache of the log, never truth: any of them may be deleted at any time, and a row is
written once and never updated (two readers saving the same seq write the same view; the second
insert is ignored). A snapshot lives in its room's partition of the log, like the positions it counts
in, and every read names that partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.schema import room_snapshots
from engine.projections import frozen
from engine.projections.rooms import Attendance, Member, RoomView

# Bumped when the encoding changes, so a reader never decodes a snapshot written in another shape.
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    room_id: str
    seq: int
    position: int  # the log position of the room's event `seq`, in the room's partition
    view: RoomView
    partition: int  # the room's (engine/log/partitions.py)


def encode_view(view: RoomView) -> dict[str, Any]:
    """The view as JSON; `decode_view` gives back an equal view."""
    attendance = view.attendance
    return {
        "format": FORMAT,
        "room_id": view.room_id,
        "members": [_encode_member(member) for member in view.members.values()],
        "active_sheets": list(view.active_sheets),
        "seq": view.seq,
        "last_activity": _encode_time(view.last_activity),
        "messages_sent": view.messages_sent,
        "attendance": {
            "hour": _encode_time(attendance.hour),
            "users": sorted(attendance.users),
            "past_hours": attendance.past_hours,
            "past_user_hours": attendance.past_user_hours,
        },
    }


def decode_view(state: dict[str, Any]) -> RoomView:
    """The view `encode_view` encoded; ValueError for a snapshot of another format."""
    if state.get("format") != FORMAT:
        raise ValueError(f"snapshot format {state.get('format')!r} is not {FORMAT}")
    attendance = state["attendance"]
    # Members keep their order of first arrival: room_state.users lists them in that order.
    members = {m["user_id"]: _decode_member(m) for m in state["members"]}
    return RoomView(
        room_id=state["room_id"],
        members=frozen(members),
        active_sheets=tuple(state["active_sheets"]),
        seq=int(state["seq"]),
        last_activity=_decode_time(state["last_activity"]),
        messages_sent=int(state["messages_sent"]),
        attendance=Attendance(
            hour=_decode_time(attendance["hour"]),
            users=frozenset(attendance["users"]),
            past_hours=int(attendance["past_hours"]),
            past_user_hours=int(attendance["past_user_hours"]),
        ),
    )


class SnapshotStore:
    """Reads and writes the `room_snapshots` table."""

    def __init__(self, db_engine: AsyncEngine) -> None:
        self.db_engine = db_engine

    async def latest(self, room_id: str, *, partition: int, upto_position: int) -> Snapshot | None:
        """The newest snapshot of the room (in its `partition`) taken at or before log position
        `upto_position`."""
        query = (
            select(room_snapshots)
            .where(
                room_snapshots.c.partition == partition,
                room_snapshots.c.room_id == room_id,
                room_snapshots.c.position <= upto_position,
            )
            .order_by(room_snapshots.c.seq.desc())
            .limit(1)
        )
        async with self.db_engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return Snapshot(
            row["room_id"], int(row["seq"]), int(row["position"]), decode_view(row["state"]), partition
        )

    async def save(self, snapshot: Snapshot) -> bool:
        """Store the snapshot unless one of that seq exists; whether this call wrote it."""
        if snapshot.view.seq != snapshot.seq or snapshot.view.room_id != snapshot.room_id:
            raise ValueError(f"snapshot at seq {snapshot.seq} of {snapshot.room_id!r} holds another view")
        statement = (
            insert(room_snapshots)
            .values(
                room_id=snapshot.room_id,
                seq=snapshot.seq,
                partition=snapshot.partition,
                position=snapshot.position,
                state=encode_view(snapshot.view),
            )
            .on_conflict_do_nothing(index_elements=["room_id", "seq", "partition"])
        )
        async with self.db_engine.begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    async def seqs(self, room_id: str, *, partition: int) -> list[int]:
        """The seqs of the room's stored snapshots, oldest first."""
        query = (
            select(room_snapshots.c.seq)
            .where(room_snapshots.c.partition == partition, room_snapshots.c.room_id == room_id)
            .order_by(room_snapshots.c.seq)
        )
        async with self.db_engine.connect() as conn:
            found: list[int] = list((await conn.execute(query)).scalars())
            return [int(seq) for seq in found]


def _encode_member(member: Member) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "username": member.username,
        "email": member.email,
        "status": member.status,
        "cursor": dict(member.cursor) if member.cursor is not None else None,
        "last_seen": _encode_time(member.last_seen),
        "connections": sorted(member.connections),
    }


def _decode_member(data: dict[str, Any]) -> Member:
    return Member(
        user_id=data["user_id"],
        username=data["username"],
        email=data["email"],
        status=data["status"],
        cursor=frozen(dict(data["cursor"])) if data["cursor"] is not None else None,
        last_seen=datetime.fromisoformat(data["last_seen"]),
        connections=frozenset(data["connections"]),
    )


def _encode_time(at: datetime | None) -> str | None:
    # isoformat keeps microseconds and the offset, so the time decodes to an equal datetime.
    return at.isoformat() if at is not None else None


def _decode_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


__all__ = ["FORMAT", "Snapshot", "SnapshotStore", "decode_view", "encode_view"]
