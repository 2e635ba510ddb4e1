"""What the server sends: one pure builder per message type, returning the plain dict to serialise.

Shapes are the seed's, key for key, so Socket.IO-era clients keep working. The protocol's additions
ride on an `Envelope`: `room_id`, `seq` and `ts` on messages that stem from a durable event, and the
sender's `client_msg_id` on everything fanned out from its message. Envelope keys that are None are
left out, never sent as null, so a message without them is exactly the seed's shape.

Builders never read the clock: times come in, which keeps this module pure and its output testable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from engine.model.actors import Actor
from engine.model.errors import ValidationFailed
from engine.model.events import RecordedEvent
from engine.model.streams import ROOM_STREAM_PREFIX, is_volatile_stream, room_id_of
from engine.projections.rooms import Member, RoomView

AiEventType = Literal["ai_start", "ai_progress", "ai_complete", "ai_error"]
AI_EVENT_TYPES: Final = frozenset({"ai_start", "ai_progress", "ai_complete", "ai_error"})


def iso(at: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, as in the seed; microseconds kept so a `ts` can be queried back."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Envelope:
    """The protocol's optional envelope of a message that stems from an event.

    `seq` is the event's version in its stream: the room's sequence for room events, the user's own
    stream for status, notifications and uploads (those have no `room_id`). Volatile events (cursor,
    typing, upload progress) take no place in a sequence and carry at most `client_msg_id`.
    """

    room_id: str | None = None
    seq: int | None = None
    ts: datetime | None = None
    client_msg_id: str | None = None

    @classmethod
    def of(cls, event: RecordedEvent) -> Envelope:
        """The envelope of an event as recorded in the log.

        `client_msg_id` comes from the event's metadata, never from its idempotency key: the server
        keys its own events too (a typing expiry), and those keys are no client's.
        """
        client_msg_id = event.metadata.get("client_msg_id")
        if not isinstance(client_msg_id, str):
            client_msg_id = None
        if is_volatile_stream(event.stream_id):
            return cls(client_msg_id=client_msg_id)
        room_id = room_id_of(event.stream_id) if event.stream_id.startswith(ROOM_STREAM_PREFIX) else None
        return cls(room_id, event.stream_version, event.recorded_at, client_msg_id)

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.room_id is not None:
            fields["room_id"] = self.room_id
        if self.seq is not None:
            fields["seq"] = self.seq
        if self.ts is not None:
            fields["ts"] = iso(self.ts)
        if self.client_msg_id is not None:
            fields["client_msg_id"] = self.client_msg_id
        return fields


def _stamped(message: dict[str, Any], envelope: Envelope | None) -> dict[str, Any]:
    if envelope is None:
        return message
    extra = envelope.fields()
    if "room_id" in message and extra.get("room_id", message["room_id"]) != message["room_id"]:
        raise ValueError(f"envelope of room {extra['room_id']!r} on a message of {message['room_id']!r}")
    return {**message, **extra}


# Connection.


def connected(
    connection_id: str, actor: Actor, *, heartbeat_interval: float, heartbeat_timeout: float
) -> dict[str, Any]:
    return {
        "type": "connected",
        "connection_id": connection_id,
        "user": actor.public(),
        "heartbeat": {"interval": heartbeat_interval, "timeout": heartbeat_timeout},
    }


def pong(now: datetime, echo: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"type": "pong", "ts": iso(now), **(echo or {})}


def ack(client_msg_id: str, *, room_id: str | None = None, seq: int | None = None) -> dict[str, Any]:
    """The sender's receipt once its event is durably committed (again, with the original `seq`, for a
    repeated `client_msg_id`). Events of the user's own stream have no `room_id`; volatile ones no `seq`."""
    return _stamped({"type": "ack", "client_msg_id": client_msg_id}, Envelope(room_id=room_id, seq=seq))


def error(
    code: str, text: str, *, now: datetime, echo: Mapping[str, str] | None = None, **details: Any
) -> dict[str, Any]:
    """`{"type":"error","error","code","timestamp"}`, echoing the inbound's ids, plus any details."""
    return {"type": "error", "error": text, "code": code, "timestamp": iso(now), **details, **(echo or {})}


def server_shutdown(now: datetime, *, reason: str, reconnect_after: float | None = None) -> dict[str, Any]:
    """Sent to every connection before the server closes it with 1012: reconnect (after
    `reconnect_after` seconds, when given) and resume each room with `join_room since`."""
    message: dict[str, Any] = {"type": "server_shutdown", "reason": reason, "timestamp": iso(now)}
    if reconnect_after is not None:
        message["reconnect_after"] = reconnect_after
    return message


def token_expiring(expires_at: datetime) -> dict[str, Any]:
    """Sent before the connection's token expires: answer with `refresh_token`."""
    return {"type": "token_expiring", "expires_at": iso(expires_at)}


def token_refreshed(expires_at: datetime | None) -> dict[str, Any]:
    """The answer to `refresh_token`: the connection acts with the new token from now on."""
    return {"type": "token_refreshed", "expires_at": iso(expires_at) if expires_at is not None else None}


# Rooms.


def room_user(member: Member, room_id: str) -> dict[str, Any]:
    """The seed's `room_state.users[]` entry."""
    return {
        "user_id": member.user_id,
        "username": member.username,
        "email": member.email,
        "room": room_id,
        "status": member.status,
        "cursor": dict(member.cursor) if member.cursor is not None else None,
        "last_seen": iso(member.last_seen),
    }


def room_state(view: RoomView) -> dict[str, Any]:
    """The seed's `room_state`, plus `seq` and `ts` of the newest event it reflects."""
    return {
        "type": "room_state",
        "room_id": view.room_id,
        "users": [room_user(member, view.room_id) for member in view.members.values()],
        "active_sheets": list(view.active_sheets),
        "total_users": view.total_users,
        "seq": view.seq,
        "ts": iso(view.last_activity) if view.last_activity is not None else None,
    }


def user_joined(
    room_id: str, user: Member | Mapping[str, Any], *, envelope: Envelope | None = None
) -> dict[str, Any]:
    """To the room's members; `user` is the joiner as a `room_state.users[]` entry."""
    entry = room_user(user, room_id) if isinstance(user, Member) else dict(user)
    return _stamped({"type": "user_joined", "room_id": room_id, "user": entry}, envelope)


def user_left(room_id: str, user_id: str, *, envelope: Envelope | None = None) -> dict[str, Any]:
    return _stamped({"type": "user_left", "room_id": room_id, "user_id": user_id}, envelope)


def room_left(room_id: str, reason: str, *, envelope: Envelope | None = None) -> dict[str, Any]:
    """To a connection taken out of a room while it stays open: `reason` is the leave's in the log,
    "left" for its own `leave_room`, "revoked" when a refreshed token no longer allows the room."""
    return _stamped({"type": "room_left", "room_id": room_id, "reason": reason}, envelope)


def replay_complete(room_id: str, seq: int) -> dict[str, Any]:
    """After the events a `join_room since` missed: from here on, live events."""
    return {"type": "replay_complete", "room_id": room_id, "seq": seq}


def cursor_moved(
    room: str,
    user_id: str,
    username: str,
    *,
    x: float,
    y: float,
    cell: str | None,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    message = {
        "type": "cursor_moved",
        "room": room,
        "user_id": user_id,
        "username": username,
        "cursor": {"x": x, "y": y, "cell": cell},
    }
    return _stamped(message, envelope)


def _typing(
    kind: str, room: str, user_id: str, username: str, cell_id: str, envelope: Envelope | None
) -> dict[str, Any]:
    message = {"type": kind, "room": room, "user_id": user_id, "username": username, "cell_id": cell_id}
    return _stamped(message, envelope)


def user_typing_start(
    room: str, user_id: str, username: str, cell_id: str, *, envelope: Envelope | None = None
) -> dict[str, Any]:
    return _typing("user_typing_start", room, user_id, username, cell_id, envelope)


def user_typing_stop(
    room: str, user_id: str, username: str, cell_id: str, *, envelope: Envelope | None = None
) -> dict[str, Any]:
    """Also sent when a start expires without a stop."""
    return _typing("user_typing_stop", room, user_id, username, cell_id, envelope)


# Cells and presence.


def cell_updated(
    sheet_id: str,
    cell_id: str,
    *,
    value: Any,
    formula: str | None,
    user_id: str,
    username: str,
    version: int,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    """The seed's `cell_updated`; `version` is the one the server assigned."""
    message = {
        "type": "cell_updated",
        "sheet_id": sheet_id,
        "cell_id": cell_id,
        "value": value,
        "formula": formula,
        "user_id": user_id,
        "username": username,
        "version": version,
    }
    return _stamped(message, envelope)


def cells_updated(
    sheet_id: str,
    cells: Sequence[Mapping[str, Any]],
    *,
    user_id: str,
    username: str,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    """A range written at once (`cells_update`): every cell with the version the server assigned."""
    message = {
        "type": "cells_updated",
        "sheet_id": sheet_id,
        "user_id": user_id,
        "username": username,
        "cells": [
            {
                "cell_id": c["cell_id"],
                "value": c.get("value"),
                "formula": c.get("formula"),
                "version": c["version"],
            }
            for c in cells
        ],
    }
    return _stamped(message, envelope)


def sheet_state(sheet_id: str, room_id: str | None, seq: int, cells: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to `load_sheet`: the sheet as of its room's `seq` (apply live events with a higher
    seq on top); `cells` are `{cell_id: {value, formula, version, user_id, updated_at}}`. A sheet never
    edited has no room yet and no cells."""
    return {"type": "sheet_state", "sheet_id": sheet_id, "room_id": room_id, "seq": seq, "cells": cells}


def user_status_changed(user_id: str, status: str, *, envelope: Envelope | None = None) -> dict[str, Any]:
    return _stamped({"type": "user_status_changed", "user_id": user_id, "status": status}, envelope)


# AI.


def ai_event(
    event_type: AiEventType,
    request_id: str,
    user_id: str,
    data: Mapping[str, Any],
    *,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    """The seed's `ai_event`. `data` by `event_type`: `ai_start` {query, sheet_id}, `ai_progress`
    {progress (0-100), status}, `ai_complete` {result, processing_time}, `ai_error` {error, code}."""
    if event_type not in AI_EVENT_TYPES:
        raise ValueError(f"not an AI event type: {event_type!r}")
    message = {
        "type": "ai_event",
        "event_type": event_type,
        "request_id": request_id,
        "user_id": user_id,
        "data": dict(data),
    }
    return _stamped(message, envelope)


# Notifications.


def notifications_subscribed(
    filters: Mapping[str, Sequence[str] | None],
    unread: Sequence[Mapping[str, Any]],
    *,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    """To the subscribing connection: its filters as now in force (`SubscribeNotifications.filters()`)
    and the user's unread notifications that match them, each in `notification_event.notification` shape."""
    message = {
        "type": "notifications_subscribed",
        "filters": {key: None if tags is None else list(tags) for key, tags in filters.items()},
        "unread": [dict(notification) for notification in unread],
    }
    return _stamped(message, envelope)


def notification_event(
    event_type: str,
    notification: Mapping[str, Any],
    user_id: str,
    *,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    """The seed's `notification_event`: `event_type` is `notification_created`, `notification_read`, or
    the one an admin broadcast named; `notification` is {id, title, message, category, priority,
    module_name, ...}."""
    message = {
        "type": "notification_event",
        "event_type": event_type,
        "notification": dict(notification),
        "user_id": user_id,
    }
    return _stamped(message, envelope)


# Uploads.


def file_upload_started(
    file_id: str,
    filename: str,
    *,
    file_size: int,
    mime_type: str,
    user_id: str,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    message = {
        "type": "file_upload_started",
        "file_id": file_id,
        "filename": filename,
        "file_size": file_size,
        "mime_type": mime_type,
        "user_id": user_id,
    }
    return _stamped(message, envelope)


def file_upload_progress(
    file_id: str,
    *,
    bytes_uploaded: int,
    total_bytes: int,
    percentage: float,
    user_id: str,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    message = {
        "type": "file_upload_progress",
        "file_id": file_id,
        "bytes_uploaded": bytes_uploaded,
        "total_bytes": total_bytes,
        "percentage": percentage,
        "user_id": user_id,
    }
    return _stamped(message, envelope)


def file_upload_complete(
    file_id: str,
    filename: str,
    *,
    url: str,
    user_id: str,
    size: int,
    sha256: str,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    """The seed's `file_upload_complete` plus `size` and `sha256` of the stored bytes."""
    message = {
        "type": "file_upload_complete",
        "file_id": file_id,
        "filename": filename,
        "url": url,
        "user_id": user_id,
        "size": size,
        "sha256": sha256,
    }
    return _stamped(message, envelope)


def file_upload_failed(
    file_id: str,
    filename: str,
    *,
    reason: str,
    bytes_uploaded: int,
    user_id: str,
    envelope: Envelope | None = None,
) -> dict[str, Any]:
    """An upload ended without a stored file: `reason` is `too_large`, `too_short`, `idle_timeout`,
    `aborted` or `storage_error`; `bytes_uploaded` had arrived (none kept). The owner may start the id
    again."""
    message = {
        "type": "file_upload_failed",
        "file_id": file_id,
        "filename": filename,
        "reason": reason,
        "bytes_uploaded": bytes_uploaded,
        "user_id": user_id,
    }
    return _stamped(message, envelope)


# Admin broadcasts.

# Types a broadcast may not take: a client would act on a forged protocol message as if it were real.
RESERVED_TYPES: Final = frozenset(
    """connected pong ack error server_shutdown room_state user_joined user_left room_left
    replay_complete cursor_moved user_typing_start user_typing_stop cell_updated user_status_changed
    ai_event notifications_subscribed notification_event file_upload_started file_upload_progress
    file_upload_complete file_upload_failed cells_updated sheet_state token_expiring
    token_refreshed""".split()  # noqa: SIM905
)


def broadcast(
    payload: Mapping[str, Any], *, default_type: str = "system_announcement", envelope: Envelope | None = None
) -> dict[str, Any]:
    """An admin's message passed through as sent (the seed's `system_announcement`, `direct_message`,
    ...), `type` defaulting to `default_type`. Raises ValidationFailed for a protocol message's type."""
    kind = payload.get("type", default_type)
    if not isinstance(kind, str) or not kind:
        raise ValidationFailed("a broadcast's 'type' must be a non-empty string")
    if kind in RESERVED_TYPES:
        raise ValidationFailed(f"type {kind[:64]!r} is reserved for the protocol's own messages")
    # The envelope wins over same-named keys of the payload: an admin cannot forge a room's `seq`.
    return {**payload, "type": kind, **(envelope.fields() if envelope is not None else {})}
