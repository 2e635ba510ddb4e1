"""Presence of one user over all their connections: online or not, declared status, latest cursor,
last seen.

Folded from the user's events wherever they are: joins and leaves in room streams (which connection
is in which room), cursors in volatile room streams, cell updates (activity), and `UserStatusChanged`
in the user's own stream. A user is online while at least one of their connections is in a room, so
closing one of two tabs keeps them online. A connection that never joined a room is not
in the log and so not in presence.

The declared status (`status_update`: online, away, busy) is the user's until they change it: it
survives their last connection leaving and holds when they come back. `shown_status` is what
others see: "offline" when no connection is left.

The node's live presence (engine/fanout/live.py) folds only the joins, leaves and statuses it
publishes, which are what it reads: its rooms and declared statuses. The database keeps the same facts
per stream instead (room rows in `room_members`, the declared status in `declared_statuses`) and lays
them together in its `presence` view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from engine.model.catalogue import (
    AI_EVENTS,
    BROADCAST_EVENTS,
    CELL_EVENTS,
    CLAIM_EVENTS,
    CURSOR_MOVED,
    NOTIFICATION_EVENTS,
    TYPING_EVENTS,
    UPLOAD_EVENTS,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    USER_STATUS_CHANGED,
)
from engine.model.events import RecordedEvent
from engine.model.streams import durable_stream, room_id_of
from engine.projections import empty, folds, frozen

ONLINE = "online"
OFFLINE = "offline"

HANDLED = frozenset({USER_JOINED_ROOM, USER_LEFT_ROOM, CURSOR_MOVED, USER_STATUS_CHANGED}) | CELL_EVENTS
SKIPPED = BROADCAST_EVENTS | TYPING_EVENTS | NOTIFICATION_EVENTS | UPLOAD_EVENTS | AI_EVENTS | CLAIM_EVENTS


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    username: str | None = None
    email: str | None = None
    status: str = ONLINE  # as the user last declared it
    cursor: Mapping[str, Any] | None = None  # the latest anywhere: {room_id, x, y, cell}
    last_seen: datetime | None = None
    # Connection id -> the rooms it is in. A connection with no room left is dropped.
    connections: Mapping[str, frozenset[str]] = field(default_factory=empty)

    @property
    def online(self) -> bool:
        return bool(self.connections)

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    @property
    def shown_status(self) -> str:
        return self.status if self.online else OFFLINE

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset().union(*self.connections.values())


def key_of(event: RecordedEvent) -> str | None:
    """The user whose presence `event` changes; None for events of other concerns."""
    return str(event.data["user_id"]) if folds("presence", event.type, HANDLED, SKIPPED) else None


def apply(view: Presence, event: RecordedEvent) -> Presence:
    """The presence after `event`; events of other concerns leave it as it was."""
    key = key_of(event)
    if key is None:
        return view
    if key != view.user_id:
        raise ValueError(f"event of user {key!r} applied to the presence of {view.user_id!r}")
    seen = event.recorded_at if view.last_seen is None else max(view.last_seen, event.recorded_at)
    view = replace(view, last_seen=seen)
    data = event.data
    if event.type == USER_JOINED_ROOM:
        return _joined(view, room_id_of(event.stream_id), str(data["connection_id"]), data)
    if event.type == USER_LEFT_ROOM:
        connection_id = data.get("connection_id")
        return _left(view, room_id_of(event.stream_id), None if connection_id is None else str(connection_id))
    if event.type == CURSOR_MOVED:
        cursor = {
            "room_id": room_id_of(durable_stream(event.stream_id)),
            "x": data.get("x"),
            "y": data.get("y"),
            "cell": data.get("cell"),
        }
        return replace(view, cursor=frozen(cursor))
    if event.type == USER_STATUS_CHANGED:
        return replace(view, status=str(data["status"]))
    return view  # a cell update: activity only


def project(events: Iterable[RecordedEvent], user_id: str) -> Presence:
    """The presence of `user_id` folded from their events among `events` (in position order)."""
    view = Presence(user_id)
    for event in events:
        if key_of(event) == user_id:
            view = apply(view, event)
    return view


def _joined(view: Presence, room_id: str, connection_id: str, data: Mapping[str, Any]) -> Presence:
    connections = dict(view.connections)
    connections[connection_id] = connections.get(connection_id, frozenset()) | {room_id}
    return replace(
        view,
        username=data.get("username") or view.username,
        email=data.get("email", view.email),
        connections=frozen(connections),
    )


def _left(view: Presence, room_id: str, connection_id: str | None) -> Presence:
    """Without a connection id the user left the room from every connection."""
    affected = view.connections if connection_id is None else (connection_id,)
    connections = dict(view.connections)
    for cid in affected:
        rooms = connections.get(cid, frozenset()) - {room_id}
        if rooms:
            connections[cid] = rooms
        else:
            connections.pop(cid, None)
    if connections:
        return replace(view, connections=frozen(connections))
    # The last connection is gone: the cursor ends with it; the declared status is the user's until
    # they change it, and holds when they come back.
    return replace(view, connections=frozen(connections), cursor=None)


def statuses(views: Iterable[Presence]) -> dict[str, str]:
    """User id -> shown status, for `rooms.with_statuses`."""
    return {view.user_id: view.shown_status for view in views}


__all__ = [
    "HANDLED",
    "OFFLINE",
    "ONLINE",
    "SKIPPED",
    "Presence",
    "apply",
    "key_of",
    "project",
    "statuses",
]
