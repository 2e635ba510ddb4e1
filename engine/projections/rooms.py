"""A room as its members see it: who is in it, since when, where their cursors are, which sheets are
edited in it, and how far its sequence has got.

Folded from the room's own streams: `room:{room_id}`, whose `stream_version` is the room's `seq`, and
its volatile twin (cursors). "As of seq N" is `project(durable_events[:N])`; with the volatile events
merged in by position, the same view also carries the latest cursors.

Presence is per user but recorded per connection: a user who joined from two tabs stays a member
until both tabs have left or closed, which is why a member keeps the set of its connection ids and
`UserLeftRoom` names the connection that left. A leave without a connection id (an explicit "leave
everywhere") removes the user at once.

A member's `status` here is always "online" (being in the room); what the user declared with
`status_update` lives in the user's own stream and the presence projection: `with_statuses` lays it
over a room view for `room_state`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.model.catalogue import (
    AI_EVENTS,
    CELL_EVENTS,
    CELL_UPDATED,
    CELLS_UPDATED,
    CLAIM_EVENTS,
    CURSOR_MOVED,
    DISCONNECTED,
    LEFT,
    NOTIFICATION_EVENTS,
    ROOM_MESSAGE_BROADCAST,
    STATUS_EVENTS,
    TYPING_EVENTS,
    UPLOAD_EVENTS,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    USER_MESSAGE_SENT,
)
from engine.model.events import RecordedEvent
from engine.model.streams import ROOM_STREAM_PREFIX, durable_stream, room_id_of, room_stream, volatile_stream
from engine.projections import empty, folds, frozen

ONLINE = "online"

HANDLED = frozenset({USER_JOINED_ROOM, USER_LEFT_ROOM, ROOM_MESSAGE_BROADCAST, CURSOR_MOVED}) | CELL_EVENTS
SKIPPED = (
    TYPING_EVENTS
    | STATUS_EVENTS
    | NOTIFICATION_EVENTS
    | UPLOAD_EVENTS
    | AI_EVENTS
    | {USER_MESSAGE_SENT}
    | CLAIM_EVENTS
)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    username: str
    email: str | None
    status: str
    cursor: Mapping[str, Any] | None
    last_seen: datetime
    connections: frozenset[str]


@dataclass(frozen=True, slots=True)
class Attendance:
    """Distinct users present per UTC hour, summed as the room's durable events pass.

    A user counts in an hour if they were a member at any moment of it. Hours without events count
    the members present through them, so a quiet afternoon with three members still counts three.
    """

    hour: datetime | None = None  # the hour of the newest durable event
    users: frozenset[str] = frozenset()  # who was present during `hour`
    past_hours: int = 0
    past_user_hours: int = 0

    def advance(self, at: datetime, present: Iterable[str]) -> Attendance:
        """Attendance once the clock of the log has reached `at`; `present` are the members now."""
        hour = _hour_of(at)
        if self.hour is None:
            return Attendance(hour, frozenset(present))
        if hour <= self.hour:
            return self
        members = frozenset(present)
        silent = (hour - self.hour) // _HOUR - 1  # hours in between without a durable event
        return Attendance(
            hour,
            members,
            self.past_hours + 1 + silent,
            self.past_user_hours + len(self.users) + silent * len(members),
        )

    def average(self, present: int, now: datetime | None = None) -> float:
        """Mean distinct users per hour from the room's first hour to the newest event's hour, or to
        `now`'s hour when given (the hours since then count the `present` members)."""
        if self.hour is None:
            return 0.0
        hours, user_hours = self.past_hours + 1, self.past_user_hours + len(self.users)
        if now is not None and (later := (_hour_of(now) - self.hour) // _HOUR) > 0:
            hours, user_hours = hours + later, user_hours + later * present
        return user_hours / hours


def _hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class RoomView:
    room_id: str
    # In order of first arrival, so `room_state.users` is stable between messages.
    members: Mapping[str, Member] = field(default_factory=empty)
    # Sheets first edited in this room, in that order (a sheet belongs to one room).
    active_sheets: tuple[str, ...] = ()
    seq: int = 0
    last_activity: datetime | None = None
    # Durable events caused by a message someone sent: joins, explicit leaves, cell updates and
    # admin broadcasts. Disconnects are the server's doing; volatile events are not in the sequence.
    messages_sent: int = 0
    attendance: Attendance = Attendance()

    @property
    def total_users(self) -> int:
        return len(self.members)

    def avg_users_per_hour(self, now: datetime | None = None) -> float:
        """GET /ws/rooms' `avg_users_per_hour`: see `Attendance.average`."""
        return self.attendance.average(len(self.members), now)


def key_of(event: RecordedEvent) -> str | None:
    """The room whose view `event` changes; None for an event of another concern outside a room."""
    handled = folds("rooms", event.type, HANDLED, SKIPPED)
    stream = durable_stream(event.stream_id)
    if not stream.startswith(ROOM_STREAM_PREFIX):
        return None
    # A skipped durable room event still takes a seq, so the room must see it.
    return room_id_of(stream) if handled or event.stream_id == stream else None


def apply(view: RoomView, event: RecordedEvent) -> RoomView:
    """The view after `event`, which must be the next durable event of this room's stream or one of
    its volatile events.

    A gap or a repeat means a reader skipped or re-read the log; folding on would hide that bug
    behind a plausible-looking view, so it raises ValueError instead.
    """
    return apply_many(view, (event,))


def apply_many(view: RoomView, events: Iterable[RecordedEvent]) -> RoomView:
    """`apply` over `events` in order, copying the members once rather than once per event."""
    members = dict(view.members)
    for event in events:
        view = _step(view, members, event)
    return replace(view, members=frozen(members))


def project(events: Iterable[RecordedEvent], room_id: str | None = None) -> RoomView:
    """Fold a room's events from the start of its stream.

    `room_id` names the room when `events` may be empty; otherwise it comes from the first event.
    """
    events = list(events)
    if room_id is None:
        if not events:
            raise ValueError("project() needs room_id when there are no events")
        room_id = room_id_of(durable_stream(events[0].stream_id))
    return apply_many(RoomView(room_id), events)


def with_statuses(view: RoomView, statuses: Mapping[str, str]) -> RoomView:
    """The view with each member's declared status (user id -> status, e.g. from presence)."""
    members = {
        user_id: replace(member, status=statuses.get(user_id, member.status))
        for user_id, member in view.members.items()
    }
    return replace(view, members=frozen(members))


def _step(view: RoomView, members: dict[str, Member], event: RecordedEvent) -> RoomView:
    stream = room_stream(view.room_id)
    durable = event.stream_id == stream
    if not durable and event.stream_id != volatile_stream(stream):
        raise ValueError(f"event of stream {event.stream_id!r} applied to room {view.room_id!r}")
    if durable and event.stream_version != view.seq + 1:
        raise ValueError(
            f"room {view.room_id!r} is at seq {view.seq}; got event {event.stream_version} (gap or repeat)"
        )
    handled = folds("rooms", event.type, HANDLED, SKIPPED)
    if durable and (attendance := view.attendance.advance(event.recorded_at, members)) is not view.attendance:
        view = replace(view, attendance=attendance)
    if handled:
        view = _FOLDS[event.type](view, members, event)
    elif not durable:
        return view
    last = event.recorded_at if view.last_activity is None else max(view.last_activity, event.recorded_at)
    return replace(view, seq=event.stream_version if durable else view.seq, last_activity=last)


def _joined(view: RoomView, members: dict[str, Member], event: RecordedEvent) -> RoomView:
    data = event.data
    user_id = str(data["user_id"])
    current = members.get(user_id)
    if current is None:
        members[user_id] = Member(
            user_id=user_id,
            username=str(data.get("username") or user_id),
            email=data.get("email"),
            status=ONLINE,
            cursor=None,
            last_seen=event.recorded_at,
            connections=frozenset({str(data["connection_id"])}),
        )
    else:
        # A user already present keeps status and cursor; name and email follow the newest token.
        members[user_id] = replace(
            current,
            username=str(data.get("username") or current.username),
            email=data.get("email", current.email),
            last_seen=event.recorded_at,
            connections=current.connections | {str(data["connection_id"])},
        )
    attendance = replace(view.attendance, users=view.attendance.users | {user_id})
    return replace(view, messages_sent=view.messages_sent + 1, attendance=attendance)


def _left(view: RoomView, members: dict[str, Member], event: RecordedEvent) -> RoomView:
    data = event.data
    user_id = str(data["user_id"])
    counted = view.messages_sent + (1 if data.get("reason", LEFT) == LEFT else 0)
    current = members.get(user_id)
    if current is None:
        # Already gone (e.g. an explicit leave followed by the socket closing): nothing to change.
        return replace(view, messages_sent=counted)
    connection_id = data.get("connection_id")
    remaining = frozenset() if connection_id is None else current.connections - {str(connection_id)}
    if remaining:
        members[user_id] = replace(current, last_seen=event.recorded_at, connections=remaining)
    else:
        del members[user_id]
    return replace(view, messages_sent=counted)


def _cell_updated(view: RoomView, members: dict[str, Member], event: RecordedEvent) -> RoomView:
    sheet_id = str(event.data["sheet_id"])
    _seen(members, event)
    sheets = view.active_sheets if sheet_id in view.active_sheets else (*view.active_sheets, sheet_id)
    return replace(view, active_sheets=sheets, messages_sent=view.messages_sent + 1)


def _broadcast(view: RoomView, members: dict[str, Member], event: RecordedEvent) -> RoomView:
    return replace(view, messages_sent=view.messages_sent + 1)


def _cursor_moved(view: RoomView, members: dict[str, Member], event: RecordedEvent) -> RoomView:
    data = event.data
    # A cursor of someone no longer in the room (a move racing the leave) is not shown.
    _seen(members, event, cursor=frozen({"x": data.get("x"), "y": data.get("y"), "cell": data.get("cell")}))
    return view


def _seen(members: dict[str, Member], event: RecordedEvent, **changes: Any) -> None:
    """Move the acting member's `last_seen` to this event, with `changes`; nothing for a non-member."""
    member = members.get(str(event.data.get("user_id")))
    if member is not None:
        last_seen = max(member.last_seen, event.recorded_at)
        members[member.user_id] = replace(member, last_seen=last_seen, **changes)


_FOLDS: dict[str, Callable[[RoomView, dict[str, Member], RecordedEvent], RoomView]] = {
    USER_JOINED_ROOM: _joined,
    USER_LEFT_ROOM: _left,
    CELL_UPDATED: _cell_updated,
    CELLS_UPDATED: _cell_updated,
    ROOM_MESSAGE_BROADCAST: _broadcast,
    CURSOR_MOVED: _cursor_moved,
}

__all__ = [
    "DISCONNECTED",
    "HANDLED",
    "LEFT",
    "ONLINE",
    "SKIPPED",
    "Attendance",
    "Member",
    "RoomView",
    "apply",
    "apply_many",
    "key_of",
    "project",
    "with_statuses",
]
