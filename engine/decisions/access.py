"""Who may do what where: roles, the token's `rooms` patterns, and membership of a room.

These depend only on the acting connection, so they run before a message is queued; the permission
table itself lives next to the roles (engine/model/actors.py), so every entry point applies the same
rules.
"""

from __future__ import annotations

from collections.abc import Collection

from engine.model.actors import Actor
from engine.model.errors import PermissionDenied, RoomNotFound


def authorize(actor: Actor, message_type: str) -> None:
    """PermissionDenied unless one of the actor's roles lets it send `message_type`: a viewer sends no
    `cell_update` or `ai_request`, an auditor nothing but `ping`."""
    if not actor.may_send(message_type):
        raise PermissionDenied(f"your roles do not allow {message_type!r}", roles=list(actor.roles))


def check_join(actor: Actor, room_id: str, *, room_exists: bool, auto_create: bool = True) -> None:
    """PermissionDenied if the actor may not enter `room_id` (role or the token's `rooms` patterns);
    RoomNotFound if the room has no events yet and rooms are not created by joining."""
    if not actor.may_join(room_id):
        raise PermissionDenied(f"not allowed to join room {room_id!r}", room_id=room_id)
    if not room_exists and not auto_create:
        raise RoomNotFound(f"room {room_id!r} does not exist", room_id=room_id)


def require_member(room_id: str, joined_rooms: Collection[str]) -> None:
    """PermissionDenied unless the connection has joined `room_id`: acting in a room (cursor, typing,
    cell update, AI) is only for those who receive its events."""
    if room_id not in joined_rooms:
        raise PermissionDenied(f"join room {room_id!r} before acting in it", room_id=room_id)


def require_in_room(room_id: str, joined_rooms: Collection[str]) -> None:
    """RoomNotFound unless the connection is in `room_id`: the check of `leave_room`."""
    if room_id not in joined_rooms:
        raise RoomNotFound(f"you are not in room {room_id!r}", room_id=room_id)


__all__ = ["authorize", "check_join", "require_in_room", "require_member"]
