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
    MEMBERSHIP_EVENTS,
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
        if self.hour is not None and at < self.hour + _HOUR:
            return self  # within the hour already counted (or before it): the common case, kept cheap
        hour = _hour_of(at)
        if self.hour is None:
            return Attendance(hour, frozenset(present))
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
    """`apply` over `events` in order: folded into one mutable draft, frozen once at the end."""
    draft = _Draft(view)
    for event in events:
        _step(draft, event)
    return draft.freeze()


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


def project_with_stays(events: Iterable[RecordedEvent], room_id: str) -> tuple[RoomView, dict[str, int]]:
    """`project`, and the position of the join that began each current member's stay (a cursor moved
    before it belonged to an earlier stay: the fold shows none until they move), told by the same fold."""
    draft = _Draft(RoomView(room_id))
    began: dict[str, int] = {}
    for event in events:
        _step(draft, event)
        if event.type in MEMBERSHIP_EVENTS:
            user_id = str(event.data["user_id"])
            if user_id not in draft.members:
                began.pop(user_id, None)
            elif event.type == USER_JOINED_ROOM:
                began.setdefault(user_id, event.position)
    return draft.freeze(), began


def with_cursors(view: RoomView, began: Mapping[str, int], newest_moves: Iterable[RecordedEvent]) -> RoomView:
    """The view folded from the room's durable stream, with the cursor each member last moved during
    their current stay (`began`, from `project_with_stays`): what a view that also folded the room's
    volatile events shows. `newest_moves` holds each member's newest `CursorMoved` (older ones would
    be overwritten anyway)."""
    moves = [m for m in newest_moves if m.position > began.get(str(m.data["user_id"]), m.position)]
    return apply_many(view, sorted(moves, key=lambda move: move.position))


def cursors_from(view: RoomView, current: RoomView) -> RoomView:
    """The view with each member's cursor as `current` (a view at least as new) shows it, during the
    same stay (a connection in common): a view folded from the durable stream alone has none."""
    members = dict(view.members)
    for user_id, member in view.members.items():
        now = current.members.get(user_id)
        if now is not None and now.connections & member.connections:
            members[user_id] = replace(member, cursor=now.cursor)
    return replace(view, members=frozen(members))


def with_statuses(view: RoomView, statuses: Mapping[str, str]) -> RoomView:
    """The view with each member's declared status (user id -> status, e.g. from presence)."""
    members = {
        user_id: replace(member, status=statuses.get(user_id, member.status))
        for user_id, member in view.members.items()
    }
    return replace(view, members=frozen(members))


class _Draft:
    """A room view while a batch folds into it. Every event of a busy room changes its counters and
    one member, and copying the frozen view (and that member) per event was most of a fold's cost."""

    __slots__ = ("active_sheets", "attendance", "last_activity", "members", "messages_sent", "room_id", "seq")

    def __init__(self, view: RoomView) -> None:
        self.room_id = view.room_id
        self.members = dict(view.members)
        self.active_sheets = view.active_sheets
        self.seq = view.seq
        self.last_activity = view.last_activity
        self.messages_sent = view.messages_sent
        self.attendance = view.attendance

    def freeze(self) -> RoomView:
        return RoomView(
            room_id=self.room_id,
            members=frozen(self.members),
            active_sheets=self.active_sheets,
            seq=self.seq,
            last_activity=self.last_activity,
            messages_sent=self.messages_sent,
            attendance=self.attendance,
        )


def _step(draft: _Draft, event: RecordedEvent) -> None:
    stream = room_stream(draft.room_id)
    durable = event.stream_id == stream
    if not durable and event.stream_id != volatile_stream(stream):
        raise ValueError(f"event of stream {event.stream_id!r} applied to room {draft.room_id!r}")
    if durable and event.stream_version != draft.seq + 1:
        raise ValueError(
            f"room {draft.room_id!r} is at seq {draft.seq}; got event {event.stream_version} (gap or repeat)"
        )
    handled = folds("rooms", event.type, HANDLED, SKIPPED)
    if durable:
        draft.attendance = draft.attendance.advance(event.recorded_at, draft.members)
    if handled:
        _FOLDS[event.type](draft, event)
    elif not durable:
        return
    if durable:
        draft.seq = event.stream_version
    if draft.last_activity is None or event.recorded_at > draft.last_activity:
        draft.last_activity = event.recorded_at


def _joined(draft: _Draft, event: RecordedEvent) -> None:
    data = event.data
    user_id = str(data["user_id"])
    current = draft.members.get(user_id)
    if current is None:
        draft.members[user_id] = Member(
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
        draft.members[user_id] = replace(
            current,
            username=str(data.get("username") or current.username),
            email=data.get("email", current.email),
            last_seen=event.recorded_at,
            connections=current.connections | {str(data["connection_id"])},
        )
    draft.attendance = replace(draft.attendance, users=draft.attendance.users | {user_id})
    draft.messages_sent += 1


def _left(draft: _Draft, event: RecordedEvent) -> None:
    data = event.data
    user_id = str(data["user_id"])
    if data.get("reason", LEFT) == LEFT:
        draft.messages_sent += 1
    current = draft.members.get(user_id)
    if current is None:
        return  # already gone (e.g. an explicit leave followed by the socket closing)
    connection_id = data.get("connection_id")
    remaining = frozenset() if connection_id is None else current.connections - {str(connection_id)}
    if remaining:
        draft.members[user_id] = replace(current, last_seen=event.recorded_at, connections=remaining)
    else:
        del draft.members[user_id]


def _cell_updated(draft: _Draft, event: RecordedEvent) -> None:
    sheet_id = str(event.data["sheet_id"])
    _seen(draft.members, event)
    if sheet_id not in draft.active_sheets:
        draft.active_sheets = (*draft.active_sheets, sheet_id)
    draft.messages_sent += 1


def _broadcast(draft: _Draft, event: RecordedEvent) -> None:
    draft.messages_sent += 1


def _cursor_moved(draft: _Draft, event: RecordedEvent) -> None:
    data = event.data
    # A cursor of someone no longer in the room (a move racing the leave) is not shown.
    cursor = frozen({"x": data.get("x"), "y": data.get("y"), "cell": data.get("cell")})
    _seen(draft.members, event, cursor)


def _seen(members: dict[str, Member], event: RecordedEvent, cursor: Mapping[str, Any] | None = None) -> None:
    """Move the acting member's `last_seen` to this event (and its cursor, when given); nothing for a
    non-member. Built directly, by position, rather than by `replace`: this runs for nearly every
    event (a unit test holds Member's fields in this order)."""
    member = members.get(str(event.data.get("user_id")))
    if member is not None:
        last_seen = event.recorded_at if event.recorded_at > member.last_seen else member.last_seen
        members[member.user_id] = Member(
            member.user_id,
            member.username,
            member.email,
            member.status,
            member.cursor if cursor is None else cursor,
            last_seen,
            member.connections,
        )


_FOLDS: dict[str, Callable[[_Draft, RecordedEvent], None]] = {
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
    "cursors_from",
    "key_of",
    "project",
    "project_with_stays",
    "with_cursors",
    "with_statuses",
]
