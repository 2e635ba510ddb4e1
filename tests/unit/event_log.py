"""Builds event logs the way the store records them, for projection and decision tests.

Global positions are contiguous, each stream has its own contiguous versions, and the clock is a
number of seconds after `T0`. Room and user events go to the stream `stream_for` names, so volatile
types land in the volatile twin just as the engine appends them. `sessions()` draws random but
well-formed logs for property tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from engine.model import catalogue as cat
from engine.model.catalogue import stream_for
from engine.model.events import RecordedEvent
from engine.model.streams import room_stream, user_stream, volatile_stream

T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Log:
    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self._versions: dict[str, int] = {}

    def append(self, stream_id: str, type_: str, data: dict[str, Any], seconds: float = 0) -> RecordedEvent:
        version = self._versions.get(stream_id, 0) + 1
        self._versions[stream_id] = version
        event = RecordedEvent(
            position=len(self.events) + 1,
            stream_id=stream_id,
            stream_version=version,
            type=type_,
            data=data,
            metadata={},
            recorded_at=at(seconds),
        )
        self.events.append(event)
        return event

    def room(self, room_id: str, type_: str, seconds: float = 0, **data: Any) -> RecordedEvent:
        return self.append(
            stream_for(type_, room_stream(room_id)), type_, {"room_id": room_id, **data}, seconds
        )

    def user(self, user_id: str, type_: str, seconds: float = 0, **data: Any) -> RecordedEvent:
        return self.append(
            stream_for(type_, user_stream(user_id)), type_, {"user_id": user_id, **data}, seconds
        )

    def stream(self, stream_id: str) -> list[RecordedEvent]:
        return [event for event in self.events if event.stream_id == stream_id]

    def of_room(self, room_id: str) -> list[RecordedEvent]:
        """The room's durable and volatile events, merged in position order."""
        streams = {room_stream(room_id), volatile_stream(room_stream(room_id))}
        return [event for event in self.events if event.stream_id in streams]

    # The common events, with the fields the engine records.

    def joined(self, room_id: str, user: str, connection: str, seconds: float = 0) -> RecordedEvent:
        return self.room(
            room_id,
            cat.USER_JOINED_ROOM,
            seconds,
            user_id=user,
            username=user.title(),
            email=f"{user}@example.com",
            connection_id=connection,
        )

    def left(
        self,
        room_id: str,
        user: str,
        connection: str | None,
        seconds: float = 0,
        reason: str = cat.DISCONNECTED,
    ) -> RecordedEvent:
        data: dict[str, Any] = {"user_id": user, "reason": reason}
        if connection is not None:
            data["connection_id"] = connection
        return self.room(room_id, cat.USER_LEFT_ROOM, seconds, **data)

    def cell(
        self, room_id: str, user: str, sheet: str, cell: str, value: Any, version: int, seconds: float = 0
    ) -> RecordedEvent:
        return self.room(
            room_id,
            cat.CELL_UPDATED,
            seconds,
            sheet_id=sheet,
            cell_id=cell,
            value=value,
            formula=None,
            version=version,
            user_id=user,
            username=user.title(),
        )

    def cursor(
        self, room_id: str, user: str, x: int, y: int, cell: str | None, seconds: float = 0
    ) -> RecordedEvent:
        return self.room(
            room_id, cat.CURSOR_MOVED, seconds, user_id=user, username=user.title(), x=x, y=y, cell=cell
        )

    def typing(
        self, room_id: str, user: str, cell: str, connection: str | None, seconds: float = 0, **extra: Any
    ) -> RecordedEvent:
        return self.room(
            room_id,
            cat.TYPING_STARTED,
            seconds,
            user_id=user,
            username=user.title(),
            cell_id=cell,
            connection_id=connection,
            **extra,
        )

    def typing_stopped(self, room_id: str, user: str, cell: str, seconds: float = 0) -> RecordedEvent:
        return self.room(
            room_id,
            cat.TYPING_STOPPED,
            seconds,
            user_id=user,
            username=user.title(),
            cell_id=cell,
            reason=cat.STOPPED,
        )


# Random sessions: a handful of users, rooms, connections and cells, so that events collide.

USERS = ("alice", "bob", "carol")
ROOMS = ("r1", "r2")
CONNECTIONS = ("c1", "c2", "c3")
SHEETS = {"s1": "r1", "s2": "r2"}  # each sheet stays in the room of its first edit
CELLS = ("A1", "B2")
NOTIFICATION_IDS = ("n1", "n2", "n3")
TAGS = ("a", "b")

_user, _room, _conn, _cell = (st.sampled_from(x) for x in (USERS, ROOMS, CONNECTIONS, CELLS))
_step = st.one_of(
    st.tuples(st.just("join"), _user, _room, _conn),
    st.tuples(
        st.just("leave"),
        _user,
        _room,
        st.none() | _conn,
        st.sampled_from((cat.LEFT, cat.DISCONNECTED)),
    ),
    st.tuples(st.just("cursor"), _user, _room, st.integers(0, 500), _cell),
    st.tuples(st.just("cell"), _user, st.sampled_from(sorted(SHEETS)), _cell, st.integers(1, 10**6)),
    st.tuples(st.just("typing"), _user, _room, _cell, _conn),
    st.tuples(st.just("stop"), _user, _room, _cell),
    st.tuples(st.just("status"), _user, st.sampled_from(("online", "away", "busy"))),
    st.tuples(st.just("notify"), _user, st.sampled_from(NOTIFICATION_IDS), st.sampled_from(TAGS)),
    st.tuples(st.just("read"), _user, st.sampled_from(NOTIFICATION_IDS)),
    st.tuples(st.just("subscribe"), _user, _conn, st.none() | st.lists(st.sampled_from(TAGS), max_size=2)),
    st.tuples(st.just("broadcast"), _room),
)


@st.composite
def sessions(draw: st.DrawFn, max_steps: int = 40) -> list[RecordedEvent]:
    """A random, well-formed log: joins, leaves, cursors, cells, typing, statuses, notifications."""
    log = Log()
    clock = 0.0
    for step in draw(st.lists(_step, max_size=max_steps)):
        clock += draw(st.sampled_from((0, 1, 59, 600, 3600, 7300)))
        _record(log, step, clock)
    return log.events


def _record(log: Log, step: tuple[Any, ...], t: float) -> None:
    kind, *args = step
    if kind == "join":
        log.joined(args[1], args[0], args[2], t)
    elif kind == "leave":
        log.left(args[1], args[0], args[2], t, reason=args[3])
    elif kind == "cursor":
        log.cursor(args[1], args[0], args[2], args[2] // 2, args[3], t)
    elif kind == "cell":
        log.cell(SHEETS[args[1]], args[0], args[1], args[2], f"v{t}", args[3], t)
    elif kind == "typing":
        log.typing(args[1], args[0], args[2], args[3], t)
    elif kind == "stop":
        log.typing_stopped(args[1], args[0], args[2], t)
    elif kind == "status":
        log.user(args[0], cat.USER_STATUS_CHANGED, t, status=args[1])
    elif kind == "notify":
        notification = {
            "id": args[1],
            "title": "T",
            "message": "M",
            "category": args[2],
            "priority": "normal",
        }
        log.user(args[0], cat.NOTIFICATION_CREATED, t, notification=notification)
    elif kind == "read":
        log.user(args[0], cat.NOTIFICATION_READ, t, notification_id=args[1])
    elif kind == "subscribe":
        filters = {"categories": args[2], "modules": None, "priorities": None}
        log.user(args[0], cat.NOTIFICATIONS_SUBSCRIBED, t, connection_id=args[1], filters=filters)
    else:
        log.room(args[0], cat.ROOM_MESSAGE_BROADCAST, t, user_id="admin", message={"type": "note"})
