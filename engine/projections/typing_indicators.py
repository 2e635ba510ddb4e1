"""Who is typing in which cell of a room, since when; and which of them have gone quiet too long.

Folded from the room's volatile stream (`TypingStarted`, `TypingStopped`) and its durable stream
(`UserLeftRoom`: a user who leaves stops typing there, without a stop anybody sent). A start repeated
while typing refreshes the start time, so a client may resend `typing_start` to keep it alive.

Expiry is decided from the view and a `now` passed in (`expired`), and recorded as `TypingStopped`
with reason "expired" and the version of the start it ends: the log, not a timer's memory, says when
typing ended, so a replay or a rebuild sees the same thing the live path did, also when a refreshed
start committed between the sweep's decision and its stop (`ends_current`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from engine.model.catalogue import (
    AI_EVENTS,
    BROADCAST_EVENTS,
    CELL_EVENTS,
    CLAIM_EVENTS,
    CURSOR_EVENTS,
    EXPIRED,
    NOTIFICATION_EVENTS,
    STATUS_EVENTS,
    TYPING_STARTED,
    TYPING_STOPPED,
    UPLOAD_EVENTS,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    TypingStopped,
)
from engine.model.events import NewEvent, Origin, RecordedEvent
from engine.model.streams import durable_stream, room_id_of
from engine.projections import empty, folds, frozen

HANDLED = frozenset({TYPING_STARTED, TYPING_STOPPED, USER_LEFT_ROOM})
SKIPPED = (
    frozenset({USER_JOINED_ROOM})
    | CELL_EVENTS
    | BROADCAST_EVENTS
    | CURSOR_EVENTS
    | STATUS_EVENTS
    | NOTIFICATION_EVENTS
    | UPLOAD_EVENTS
    | AI_EVENTS
    | CLAIM_EVENTS
)


@dataclass(frozen=True, slots=True)
class Typist:
    user_id: str
    username: str
    cell_id: str
    connection_id: str | None
    started_at: datetime
    position: int  # of the start
    # Of the start in the room's volatile stream: names this stretch of typing (see `expired`); None
    # in a projection row written before it was kept.
    version: int | None = None


@dataclass(frozen=True, slots=True)
class TypingView:
    room_id: str
    # (user_id, cell_id) -> who types there, in order of starting.
    typing: Mapping[tuple[str, str], Typist] = field(default_factory=empty)

    def in_cell(self, cell_id: str) -> tuple[Typist, ...]:
        return tuple(typist for typist in self.typing.values() if typist.cell_id == cell_id)


def key_of(event: RecordedEvent) -> str | None:
    """The room whose typing `event` changes; None for events of other concerns."""
    if not folds("typing", event.type, HANDLED, SKIPPED):
        return None
    return room_id_of(durable_stream(event.stream_id))


def apply(view: TypingView, event: RecordedEvent) -> TypingView:
    """The view after `event`; events of other concerns leave it as it was."""
    key = key_of(event)
    if key is None:
        return view
    if key != view.room_id:
        raise ValueError(f"event of room {key!r} applied to the typing of room {view.room_id!r}")
    data = event.data
    typing = dict(view.typing)
    user_id = str(data["user_id"])
    if event.type == TYPING_STARTED:
        cell_id = str(data["cell_id"])
        typing.pop((user_id, cell_id), None)  # a refreshed start moves to the end
        connection_id = data.get("connection_id")
        typing[(user_id, cell_id)] = Typist(
            user_id=user_id,
            username=str(data.get("username") or user_id),
            cell_id=cell_id,
            connection_id=None if connection_id is None else str(connection_id),
            started_at=event.recorded_at,
            position=event.position,
            version=event.stream_version,
        )
    elif event.type == TYPING_STOPPED:
        if not ends_current(view, event):
            return view
        typing.pop((user_id, str(data["cell_id"])), None)
    else:  # USER_LEFT_ROOM: that connection (or, without one, the user) stops typing here
        connection_id = data.get("connection_id")
        for key_, typist in view.typing.items():
            if typist.user_id == user_id and (
                connection_id is None or typist.connection_id in (None, str(connection_id))
            ):
                del typing[key_]
    return replace(view, typing=frozen(typing))


def ends_current(view: TypingView, stop: RecordedEvent) -> bool:
    """Whether a `TypingStopped` ends the typing the view holds. An expiry names the start it ends
    (`start_version`): a sweep decides it from its view, then commits it, and a start that refreshed
    the typing in between commits first. That refreshed typing goes on; its own expiry ends it later.
    A client's stop, or one for typing the view does not hold, ends whatever there is."""
    start = stop.data.get("start_version")
    typist = view.typing.get((str(stop.data["user_id"]), str(stop.data["cell_id"])))
    return start is None or typist is None or typist.version in (None, start)


def project(events: Iterable[RecordedEvent], room_id: str) -> TypingView:
    """The typing in `room_id` folded from its events among `events` (in position order)."""
    view = TypingView(room_id)
    for event in events:
        if key_of(event) == room_id:
            view = apply(view, event)
    return view


def expired(view: TypingView, now: datetime, timeout_seconds: float) -> list[NewEvent]:
    """The `TypingStopped` events to append for typing started `timeout_seconds` or more before `now`.

    Each carries an idempotency key made of its start's version in the room's volatile stream, so two
    nodes sweeping the same room append one stop per start: the second append is a duplicate, not a
    second `user_typing_stop`. (A position would do within one log, but a move to another partition
    count renumbers positions, and a new start could take an old one's: its expiry would be taken
    for the old one's repeat.)
    At exactly the timeout a start has expired, so a timer set for start + timeout always finds it.
    """
    limit = now - timedelta(seconds=timeout_seconds)
    return [
        TypingStopped(
            view.room_id,
            typist.user_id,
            typist.username,
            typist.cell_id,
            typist.connection_id,
            EXPIRED,
            start_version=typist.version,
        ).new(Origin(user_id=typist.user_id), key=expiry_key(typist), reason=EXPIRED)
        for typist in view.typing.values()
        if typist.started_at <= limit
    ]


def expiry_key(typist: Typist) -> str:
    """The idempotency key of the expiry of this stretch of typing (a start's position in a row
    written before versions were kept)."""
    return (
        f"typing-expired:{typist.position}" if typist.version is None else f"typing-expired:v{typist.version}"
    )


def next_expiry(view: TypingView, timeout_seconds: float) -> datetime | None:
    """When the earliest typing in the room expires, for a sweeper to sleep until; None if none."""
    starts = [typist.started_at for typist in view.typing.values()]
    return min(starts) + timedelta(seconds=timeout_seconds) if starts else None


__all__ = [
    "HANDLED",
    "SKIPPED",
    "TypingView",
    "Typist",
    "apply",
    "ends_current",
    "expired",
    "expiry_key",
    "key_of",
    "next_expiry",
    "project",
]
