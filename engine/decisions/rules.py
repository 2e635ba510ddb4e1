"""Decisions: whether a message may become events, against the state it would change.

Pure functions over plain values and projection views: they read no clock and do no I/O, so the
same rule gives the same answer wherever it runs. Rules that must hold across processes (cell
versions, a sheet's room) are only safe when decided against the state at the head the append
commits on, i.e. inside the append transaction (DESIGN.md, principle 4); the appender calls them
there. Checks of what a connection may do (roles, membership) depend only on that connection and
can run before the message is queued.

Each check raises a `Rejected` (engine/model/errors.py) with a stable code and returns nothing or the
state it found; nothing is persisted for a rejected message (PROTOCOL.md, errors).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from engine.model.actors import Actor
from engine.model.catalogue import CELL_UPDATED
from engine.model.errors import NotFound, PermissionDenied, RoomNotFound, ValidationFailed, VersionConflict
from engine.model.events import NewEvent
from engine.model.streams import room_stream
from engine.projections.ai_requests import AiRequest
from engine.projections.cells import Cell, Sheet
from engine.projections.notifications import Inbox, Notification
from engine.projections.uploads import Upload

# Roles.


def authorize(actor: Actor, message_type: str) -> None:
    """PermissionDenied unless one of the actor's roles lets it send `message_type` (the table is
    in engine/model/actors.py, next to the roles): a viewer sends no `cell_update` or `ai_request`, an
    auditor nothing but `ping`."""
    if not actor.may_send(message_type):
        raise PermissionDenied(f"your roles do not allow {message_type!r}", roles=list(actor.roles))


# Rooms.


def check_join(actor: Actor, room_id: str, *, room_exists: bool, auto_create: bool = True) -> None:
    """PermissionDenied if the actor may not enter `room_id` (role or the token's `rooms` patterns);
    RoomNotFound if the room has no events yet and rooms are not created by joining."""
    if not actor.may_join(room_id):
        raise PermissionDenied(f"not allowed to join room {room_id!r}", room_id=room_id)
    if not room_exists and not auto_create:
        raise RoomNotFound(f"room {room_id!r} does not exist", room_id=room_id)


def require_member(room_id: str, joined_rooms: Collection[str]) -> None:
    """PermissionDenied unless the connection has joined `room_id`: acting in a room (cursor,
    typing, cell update) is only for those who receive its events."""
    if room_id not in joined_rooms:
        raise PermissionDenied(f"join room {room_id!r} before acting in it", room_id=room_id)


def require_in_room(room_id: str, joined_rooms: Collection[str]) -> None:
    """RoomNotFound unless the connection is in `room_id`: the check of `leave_room` (PROTOCOL.md)."""
    if room_id not in joined_rooms:
        raise RoomNotFound(f"you are not in room {room_id!r}", room_id=room_id)


# Cells.


def room_for_cell_update(
    sheet_id: str, *, room: str | None, sheet_room: str | None, joined_rooms: Collection[str]
) -> str:
    """The room a `cell_update` goes to: its `room` field, else the sheet's room, else the sender's
    only room (PROTOCOL.md). `joined_rooms` are the rooms of the sending connection.

    A sheet belongs to the room of its first edit, and all its history lives in that room's stream;
    an update naming another room would split it, so it is refused rather than silently moved.
    """
    if sheet_room is not None:
        if room is not None and room != sheet_room:
            raise ValidationFailed(
                f"sheet {sheet_id!r} belongs to room {sheet_room!r}", sheet_id=sheet_id, room=sheet_room
            )
        return sheet_room
    if room is not None:
        return room
    if len(joined_rooms) == 1:
        return next(iter(joined_rooms))
    raise ValidationFailed(
        f"cell_update of new sheet {sheet_id!r} needs 'room': you are in {len(joined_rooms)} rooms",
        details=[{"loc": ["room"], "msg": "required when the sender is not in exactly one room"}],
    )


def next_cell_version(current: Cell | None, version: int | None) -> int:
    """The version the server gives an update based on `version` (None: the client sent none).

    A base older than the cell's current version means the client edited a value that has changed
    since: VersionConflict with the current cell, so it can merge and retry. Otherwise the new
    version is above both the cell's and the client's (max + 1), which keeps a client's own
    versioning scheme monotonic: the seed's 1642161000000 in gives 1642161000001 out.
    """
    now = 0 if current is None else current.version
    if current is not None and version is not None and version < now:
        raise VersionConflict(
            f"cell {current.cell_id!r} is at version {now}, the update was based on {version}",
            current=current.current(),
        )
    return now + 1 if version is None else max(now, version) + 1


def cell_updated(
    actor: Actor,
    *,
    sheet: Sheet | None,
    joined_rooms: Collection[str],
    sheet_id: str,
    cell_id: str,
    value: Any,
    formula: str | None = None,
    version: int | None = None,
    room: str | None = None,
) -> NewEvent:
    """The `CellUpdated` a `cell_update` becomes, or the rejection: role, room, membership, version,
    in that order. `sheet` is the sheet as of the head the event will commit on (None if never edited).

    The caller adds metadata (connection, node, client_msg_id) and the idempotency key.
    """
    authorize(actor, "cell_update")
    sheet_room = sheet.room_id if sheet is not None else None
    room_id = room_for_cell_update(sheet_id, room=room, sheet_room=sheet_room, joined_rooms=joined_rooms)
    require_member(room_id, joined_rooms)
    current = sheet.cells.get(cell_id) if sheet is not None else None
    return NewEvent(
        stream_id=room_stream(room_id),
        type=CELL_UPDATED,
        data={
            "room_id": room_id,
            "sheet_id": sheet_id,
            "cell_id": cell_id,
            "value": value,
            "formula": formula,
            "version": next_cell_version(current, version),
            "user_id": actor.user_id,
            "username": actor.username,
        },
        user_id=actor.user_id,
    )


# Notifications, uploads, AI requests: the user's own things.


def require_notification(inbox: Inbox, notification_id: str) -> Notification:
    """NotFound unless the user has that notification (marking it read again is allowed)."""
    found = inbox.notifications.get(notification_id)
    if found is None:
        raise NotFound(f"no notification {notification_id!r}", notification_id=notification_id)
    return found


def check_upload_start(existing: Upload | None, file_id: str) -> None:
    """ValidationFailed if `file_id` is taken: file ids name stored files (GET /files/{file_id}),
    so a second upload under one id would replace what others may be reading."""
    if existing is not None:
        raise ValidationFailed(f"file_id {file_id!r} is already in use", file_id=file_id)


def require_own_upload(upload: Upload | None, actor: Actor, file_id: str) -> Upload:
    """The upload a progress report or the file body belongs to. NotFound for an unknown file, and
    for another user's (not PermissionDenied: that would confirm the id exists); ValidationFailed
    once it is complete."""
    if upload is None or upload.user_id != actor.user_id:
        raise NotFound(f"no upload {file_id!r}", file_id=file_id)
    if upload.complete:
        raise ValidationFailed(f"upload {file_id!r} is already complete", file_id=file_id)
    return upload


def check_ai_request(existing: AiRequest | None, request_id: str) -> None:
    """ValidationFailed if the user already sent a request with this id: its events would merge."""
    if existing is not None:
        raise ValidationFailed(f"request_id {request_id!r} is already in use", request_id=request_id)


def require_running_ai_request(request: AiRequest | None, request_id: str) -> AiRequest:
    """The request an `ai_cancel` stops: NotFound if the user has none by that id, ValidationFailed
    if it has already ended (the answer to it is on its way or was sent)."""
    if request is None:
        raise NotFound(f"no AI request {request_id!r}", request_id=request_id)
    if request.finished:
        raise ValidationFailed(
            f"AI request {request_id!r} is already {request.status}",
            request_id=request_id,
            status=request.status,
        )
    return request


__all__ = [
    "authorize",
    "cell_updated",
    "check_ai_request",
    "check_join",
    "check_upload_start",
    "next_cell_version",
    "require_in_room",
    "require_member",
    "require_notification",
    "require_own_upload",
    "require_running_ai_request",
    "room_for_cell_update",
]
