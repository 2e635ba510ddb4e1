"""A room as its members see it: who is in it, since when, and how far its sequence has got.

Folded from the room's own stream (`room:{room_id}`), whose `stream_version` is the room's `seq`.

Presence is per user but recorded per connection: a user who joined from two tabs stays a member
until both tabs have left or closed, which is why a member keeps the set of its connection ids and
`UserLeftRoom` names the connection that left. A leave without a connection id (an explicit "leave
everywhere") removes the user at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from engine.errors import UnknownEvent
from engine.events import USER_JOINED_ROOM, USER_LEFT_ROOM, RecordedEvent, room_id_of, room_stream

ONLINE = "online"

# Why a user left: "left" is the client's own `leave_room`; "disconnected" is recorded by the server
# when a socket closes (or its node died), so it is not a message anybody sent.
LEFT = "left"
DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    username: str
    email: str | None
    status: str
    cursor: Mapping[str, Any] | None
    last_seen: datetime
    connections: frozenset[str]


def _frozen(members: dict[str, Member]) -> Mapping[str, Member]:
    return MappingProxyType(members)


@dataclass(frozen=True, slots=True)
class RoomView:
    room_id: str
    # In order of first arrival, so `room_state.users` is stable between messages.
    members: Mapping[str, Member] = field(default_factory=lambda: _frozen({}))
    active_sheets: tuple[str, ...] = ()
    seq: int = 0
    last_activity: datetime | None = None
    # Events in this room caused by a client's message (joins, explicit leaves, later edits).
    messages_sent: int = 0

    @property
    def total_users(self) -> int:
        return len(self.members)


def apply(view: RoomView, event: RecordedEvent) -> RoomView:
    """The view after `event`, which must be the next event of this room's stream.

    A gap or a repeat means a reader skipped or re-read the log; folding on would hide that bug
    behind a plausible-looking view, so it raises ValueError instead.
    """
    if event.stream_id != room_stream(view.room_id):
        raise ValueError(f"event of stream {event.stream_id!r} applied to room {view.room_id!r}")
    if event.stream_version != view.seq + 1:
        raise ValueError(
            f"room {view.room_id!r} is at seq {view.seq}; got event {event.stream_version} (gap or repeat)"
        )
    fold = _FOLDS.get(event.type)
    if fold is None:
        raise UnknownEvent(f"the rooms projection does not know event type {event.type!r}", type=event.type)
    changed = fold(view, event)
    return replace(changed, seq=event.stream_version, last_activity=event.recorded_at)


def project(events: Iterable[RecordedEvent], room_id: str | None = None) -> RoomView:
    """Fold a room's events from the start of its stream.

    `room_id` names the room when `events` may be empty; otherwise it comes from the first event.
    """
    view: RoomView | None = RoomView(room_id) if room_id is not None else None
    for event in events:
        if view is None:
            view = RoomView(room_id_of(event.stream_id))
        view = apply(view, event)
    if view is None:
        raise ValueError("project() needs room_id when there are no events")
    return view


def _joined(view: RoomView, event: RecordedEvent) -> RoomView:
    data = event.data
    user_id = str(data["user_id"])
    members = dict(view.members)
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
    return replace(view, members=_frozen(members), messages_sent=view.messages_sent + 1)


def _left(view: RoomView, event: RecordedEvent) -> RoomView:
    data = event.data
    user_id = str(data["user_id"])
    counted = view.messages_sent + (1 if data.get("reason", LEFT) == LEFT else 0)
    current = view.members.get(user_id)
    if current is None:
        # Already gone (e.g. an explicit leave followed by the socket closing): nothing to change.
        return replace(view, messages_sent=counted)
    members = dict(view.members)
    connection_id = data.get("connection_id")
    remaining = frozenset() if connection_id is None else current.connections - {str(connection_id)}
    if remaining:
        members[user_id] = replace(current, last_seen=event.recorded_at, connections=remaining)
    else:
        del members[user_id]
    return replace(view, members=_frozen(members), messages_sent=counted)


_FOLDS: dict[str, Callable[[RoomView, RecordedEvent], RoomView]] = {
    USER_JOINED_ROOM: _joined,
    USER_LEFT_ROOM: _left,
}

__all__ = ["DISCONNECTED", "LEFT", "ONLINE", "Member", "RoomView", "apply", "project"]
