"""Rooms (a `rooms` row and a `room_members` row per member) and typing (a row per user and cell typing
in a room now), as rows and back."""

from __future__ import annotations

from collections.abc import Sequence

from engine.model.events import RecordedEvent
from engine.projections import frozen, rooms, typing_indicators
from engine.projections.rooms import Attendance, Member, RoomView
from engine.projections.typing_indicators import TypingView, Typist
from engine.readmodels.rows.base import TS, ReadModel, Rows, TableSpec, frozen_or_none, plain, sorted_rows

ROOMS = TableSpec(
    "rooms",
    (
        ("room_id", "text"),
        ("seq", "bigint"),
        ("user_count", "integer"),
        ("active_sheets", "jsonb"),
        ("active_sheets_count", "integer"),
        ("last_activity", TS),
        ("messages_sent", "bigint"),
        ("attendance_hour", TS),
        ("attendance_users", "jsonb"),
        ("attendance_past_hours", "bigint"),
        ("attendance_past_user_hours", "bigint"),
    ),
    ("room_id",),
)
ROOM_MEMBERS = TableSpec(
    "room_members",
    (
        ("room_id", "text"),
        ("user_id", "text"),
        ("ordinal", "integer"),
        ("username", "text"),
        ("email", "text"),
        ("status", "text"),
        ("cursor", "jsonb"),
        ("last_seen", TS),
        ("connections", "jsonb"),
    ),
    ("room_id", "user_id"),
)


def _room_rows(view: RoomView) -> Rows:
    attendance = view.attendance
    room = {
        "room_id": view.room_id,
        "seq": view.seq,
        "user_count": view.total_users,
        "active_sheets": list(view.active_sheets),
        "active_sheets_count": len(view.active_sheets),
        "last_activity": view.last_activity,
        "messages_sent": view.messages_sent,
        "attendance_hour": attendance.hour,
        "attendance_users": sorted(attendance.users),
        "attendance_past_hours": attendance.past_hours,
        "attendance_past_user_hours": attendance.past_user_hours,
    }
    members = [
        {
            "room_id": view.room_id,
            "user_id": member.user_id,
            "ordinal": ordinal,
            "username": member.username,
            "email": member.email,
            "status": member.status,
            "cursor": plain(member.cursor),
            "last_seen": member.last_seen,
            "connections": sorted(member.connections),
        }
        for ordinal, member in enumerate(view.members.values())
    ]
    return {ROOMS.name: [room], ROOM_MEMBERS.name: members}


def _room_view(room_id: str, rows: Rows) -> RoomView:
    if not rows.get(ROOMS.name):
        return RoomView(room_id)
    room = rows[ROOMS.name][0]
    members = {
        row["user_id"]: Member(
            user_id=row["user_id"],
            username=row["username"],
            email=row["email"],
            status=row["status"],
            cursor=frozen_or_none(row["cursor"]),
            last_seen=row["last_seen"],
            connections=frozenset(row["connections"]),
        )
        for row in sorted_rows(rows.get(ROOM_MEMBERS.name, []))
    }
    return RoomView(
        room_id=room_id,
        members=frozen(members),
        active_sheets=tuple(room["active_sheets"]),
        seq=room["seq"],
        last_activity=room["last_activity"],
        messages_sent=room["messages_sent"],
        attendance=Attendance(
            hour=room["attendance_hour"],
            users=frozenset(room["attendance_users"]),
            past_hours=room["attendance_past_hours"],
            past_user_hours=room["attendance_past_user_hours"],
        ),
    )


def _fold_room(view: RoomView | None, key: str, events: Sequence[RecordedEvent]) -> RoomView:
    return rooms.apply_many(view or RoomView(key), events)


# Typing: a row per (user, cell) typing in a room now; a room nobody types in has no rows.

TYPING = TableSpec(
    "typing",
    (
        ("room_id", "text"),
        ("user_id", "text"),
        ("cell_id", "text"),
        ("ordinal", "integer"),
        ("username", "text"),
        ("connection_id", "text"),
        ("started_at", TS),
        ("position", "bigint"),
        ("version", "bigint"),
    ),
    ("room_id", "user_id", "cell_id"),
)


def _typing_rows(view: TypingView) -> Rows:
    return {
        TYPING.name: [
            {
                "room_id": view.room_id,
                "user_id": typist.user_id,
                "cell_id": typist.cell_id,
                "ordinal": ordinal,
                "username": typist.username,
                "connection_id": typist.connection_id,
                "started_at": typist.started_at,
                "position": typist.position,
                "version": typist.version,
            }
            for ordinal, typist in enumerate(view.typing.values())
        ]
    }


def _typing_view(room_id: str, rows: Rows) -> TypingView:
    typing = {
        (row["user_id"], row["cell_id"]): Typist(
            user_id=row["user_id"],
            username=row["username"],
            cell_id=row["cell_id"],
            connection_id=row["connection_id"],
            started_at=row["started_at"],
            position=row["position"],
            version=row["version"],
        )
        for row in sorted_rows(rows.get(TYPING.name, []))
    }
    return TypingView(room_id, frozen(typing))


def _fold_typing(view: TypingView | None, key: str, events: Sequence[RecordedEvent]) -> TypingView:
    view = view or TypingView(key)
    for event in events:
        view = typing_indicators.apply(view, event)
    return view


ROOMS_MODEL = ReadModel(
    "rooms", (ROOMS, ROOM_MEMBERS), ("room_id",), rooms.key_of, _fold_room, _room_rows, _room_view
)
TYPING_MODEL = ReadModel(
    "typing", (TYPING,), ("room_id",), typing_indicators.key_of, _fold_typing, _typing_rows, _typing_view
)

__all__ = ["ROOMS", "ROOMS_MODEL", "ROOM_MEMBERS", "TYPING", "TYPING_MODEL"]
