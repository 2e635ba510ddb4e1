"""What goes into the log and what comes back out of it.

A `NewEvent` is what a caller asks to append; a `RecordedEvent` is what the log holds. Two counters are
never mixed: `stream_version` is contiguous per stream (the `seq` clients see), `position` is global.
Event type names are past tense: each records something that happened, never a request.

The catalogue below names every event type, the fields of its `data`, and the stream it lives in:
a room's (`room:{id}`), a user's (`user:{id}`), or the volatile twin of either (`volatile:...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from engine.model.errors import Rejected


@dataclass(frozen=True, slots=True)
class NewEvent:
    stream_id: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    # None: append whatever the stream's version is. An int: the stream must be exactly at that
    # version (0 = the stream must not exist yet), otherwise the item gets a Conflict.
    expected_version: int | None = None
    # With user_id: an item whose (user_id, idempotency_key) was already appended is not appended
    # again; it gets a Duplicate carrying the original position and version.
    idempotency_key: str | None = None
    user_id: str | None = None
    # A cell write, decided by the writer against the cell as of the head the batch commits on, so
    # that two processes can never both accept updates on the same base version (DESIGN principle 4).
    # The writer sets `data["version"]`; the outcome is Refused when the rule says no.
    cell: CellWrite | None = None


@dataclass(frozen=True, slots=True)
class CellWrite:
    sheet_id: str
    cell_id: str
    room_id: str
    requested_version: int | None  # the client's base version; None: it sent none


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    stream_id: str
    stream_version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    user_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    position: int
    stream_version: int
    recorded_at: datetime
    # The data as written, when the writer completed it (a cell write's version); else None.
    data: dict[str, Any] | None = None
    outcome: Literal["committed"] = "committed"


@dataclass(frozen=True, slots=True)
class Duplicate:
    position: int
    stream_version: int
    recorded_at: datetime
    outcome: Literal["duplicate"] = "duplicate"


@dataclass(frozen=True, slots=True)
class Conflict:
    expected_version: int
    actual_version: int
    outcome: Literal["conflict"] = "conflict"


@dataclass(frozen=True, slots=True)
class Refused:
    """A decision made inside the append refused the item (e.g. VersionConflict); nothing written."""

    error: Rejected
    outcome: Literal["refused"] = "refused"


AppendOutcome = Committed | Duplicate | Conflict | Refused


# The catalogue
# -------------
# Every type the log may hold, with the fields of its `data`. A durable event takes the next version
# of its stream (a room's `seq`, or a user's own `seq`); a volatile one (`VOLATILE_EVENTS`) goes to the
# stream's volatile twin (`volatile_stream`), so it takes no place in that sequence and resume never
# replays it. Ids and names are strings, times come from `recorded_at`, never from `data`.

# Room events: stream `room:{room_id}`, volatile ones `volatile:room:{room_id}`. Every `data` has
# `room_id` (the seed's wire name is `room` for cursors and typing; the api renames on the way out).

# room_id, user_id, username, email, connection_id
USER_JOINED_ROOM = "UserJoinedRoom"
# room_id, user_id, connection_id (absent: every connection of the user), reason (`LEAVE_REASONS`)
USER_LEFT_ROOM = "UserLeftRoom"
# room_id, sheet_id, cell_id, value, formula, version (server-assigned), user_id, username.
# The first CellUpdated of a sheet is what attaches the sheet to its room: there is no SheetAttached,
# because every durable room event becomes a message with a `seq`, and an event clients never see
# would look to them like a gap. `engine.decisions.rules.room_for_cell_update` keeps a sheet in one room.
CELL_UPDATED = "CellUpdated"
# room_id, user_id (the admin), message (the posted JSON object, delivered to members as it is)
ROOM_MESSAGE_BROADCAST = "RoomMessageBroadcast"
# volatile. room_id, user_id, username, x, y, cell (or None)
CURSOR_MOVED = "CursorMoved"
# volatile. room_id, user_id, username, cell_id, connection_id
TYPING_STARTED = "TypingStarted"
# volatile. room_id, user_id, username, cell_id, connection_id, reason ("stopped" or "expired")
TYPING_STOPPED = "TypingStopped"

# User events: stream `user:{user_id}` (the requester's, for AI), volatile ones `volatile:user:{user_id}`.
# Every `data` has `user_id`.

# user_id, status ("online", "away", "busy")
USER_STATUS_CHANGED = "UserStatusChanged"
# user_id, notification {id, title, message, category, priority, module_name}
NOTIFICATION_CREATED = "NotificationCreated"
# user_id, notification_id
NOTIFICATION_READ = "NotificationRead"
# user_id, connection_id, filters {categories, modules, priorities} (each a list of strings or None)
NOTIFICATIONS_SUBSCRIBED = "NotificationsSubscribed"
# user_id, file_id, filename, file_size, mime_type
FILE_UPLOAD_STARTED = "FileUploadStarted"
# volatile. user_id, file_id, bytes_uploaded, total_bytes, percentage
FILE_UPLOAD_PROGRESSED = "FileUploadProgressed"
# user_id, file_id, filename, mime_type, url, size, sha256
FILE_UPLOAD_COMPLETED = "FileUploadCompleted"
# user_id, request_id, query, sheet_id, context (an object; may hold table_range), room_id (or None)
AI_REQUEST_STARTED = "AiRequestStarted"
# user_id, request_id, progress (0-100), status (what the provider is doing, for people)
AI_PROGRESSED = "AiProgressed"
# user_id, request_id, result, processing_time (seconds)
AI_COMPLETED = "AiCompleted"
# user_id, request_id, error
AI_FAILED = "AiFailed"
# user_id, request_id, reason
AI_CANCELLED = "AiCancelled"
# user_id (the recipient), sender_id (the admin), message (the posted JSON object, delivered as it is)
USER_MESSAGE_SENT = "UserMessageSent"

# Why a user left a room. Only LEFT is a message the user sent; the others are recorded by the server.
LEFT = "left"  # the client's `leave_room`
DISCONNECTED = "disconnected"  # the socket closed (by the client, the network or a server shutdown)
TIMED_OUT = "timed_out"  # no pong within WEBSOCKET_PING_TIMEOUT
REMOVED = "removed"  # an admin's DELETE /ws/connections/{connection_id}
NODE_LOST = "node_lost"  # the connection's node stopped heartbeating; a survivor recorded the leave
LEAVE_REASONS: Final = frozenset({LEFT, DISCONNECTED, TIMED_OUT, REMOVED, NODE_LOST})

# Why typing stopped: the client said so, or no stop came within TYPING_TIMEOUT_SECONDS.
STOPPED = "stopped"
EXPIRED = "expired"

# Families: who is concerned by what. Each projection folds the types of its concern and names the
# families it skips (engine/projections/__init__.py); together they must cover the catalogue.
MEMBERSHIP_EVENTS: Final = frozenset({USER_JOINED_ROOM, USER_LEFT_ROOM})
CELL_EVENTS: Final = frozenset({CELL_UPDATED})
# Messages an admin posts over REST, delivered as posted: to a room's members, or to one user.
BROADCAST_EVENTS: Final = frozenset({ROOM_MESSAGE_BROADCAST, USER_MESSAGE_SENT})
CURSOR_EVENTS: Final = frozenset({CURSOR_MOVED})
TYPING_EVENTS: Final = frozenset({TYPING_STARTED, TYPING_STOPPED})
STATUS_EVENTS: Final = frozenset({USER_STATUS_CHANGED})
NOTIFICATION_EVENTS: Final = frozenset({NOTIFICATION_CREATED, NOTIFICATION_READ, NOTIFICATIONS_SUBSCRIBED})
UPLOAD_EVENTS: Final = frozenset({FILE_UPLOAD_STARTED, FILE_UPLOAD_PROGRESSED, FILE_UPLOAD_COMPLETED})
AI_EVENTS: Final = frozenset({AI_REQUEST_STARTED, AI_PROGRESSED, AI_COMPLETED, AI_FAILED, AI_CANCELLED})

ROOM_EVENTS: Final = (
    MEMBERSHIP_EVENTS | CELL_EVENTS | frozenset({ROOM_MESSAGE_BROADCAST}) | CURSOR_EVENTS | TYPING_EVENTS
)
USER_EVENTS: Final = (
    STATUS_EVENTS | NOTIFICATION_EVENTS | UPLOAD_EVENTS | AI_EVENTS | frozenset({USER_MESSAGE_SENT})
)
CATALOGUE: Final = ROOM_EVENTS | USER_EVENTS
# High-frequency and only worth their latest value: PROTOCOL.md keeps them out of every sequence.
VOLATILE_EVENTS: Final = frozenset({CURSOR_MOVED, TYPING_STARTED, TYPING_STOPPED, FILE_UPLOAD_PROGRESSED})


def is_volatile(event_type: str) -> bool:
    """Whether events of this type go to a volatile stream: no `seq`, no replay, retention-bound."""
    return event_type in VOLATILE_EVENTS


# Streams.

ROOM_STREAM_PREFIX = "room:"
USER_STREAM_PREFIX = "user:"
# A prefix, not a suffix: ids may contain any printable character, so only a prefix parses back.
VOLATILE_STREAM_PREFIX = "volatile:"


def room_stream(room_id: str) -> str:
    return ROOM_STREAM_PREFIX + room_id


def user_stream(user_id: str) -> str:
    return USER_STREAM_PREFIX + user_id


def room_id_of(stream_id: str) -> str:
    """The room id of a room stream; raises ValueError for any other stream."""
    if not stream_id.startswith(ROOM_STREAM_PREFIX):
        raise ValueError(f"{stream_id!r} is not a room stream")
    return stream_id[len(ROOM_STREAM_PREFIX) :]


def user_id_of(stream_id: str) -> str:
    """The user id of a user stream; raises ValueError for any other stream."""
    if not stream_id.startswith(USER_STREAM_PREFIX):
        raise ValueError(f"{stream_id!r} is not a user stream")
    return stream_id[len(USER_STREAM_PREFIX) :]


def volatile_stream(stream_id: str) -> str:
    """The twin of a durable stream that holds its volatile events."""
    if is_volatile_stream(stream_id):
        raise ValueError(f"{stream_id!r} is already a volatile stream")
    return VOLATILE_STREAM_PREFIX + stream_id


def is_volatile_stream(stream_id: str) -> bool:
    return stream_id.startswith(VOLATILE_STREAM_PREFIX)


def is_engine_stream(stream_id: str) -> bool:
    """Whether the engine fans the stream out: a room's or a user's, or the volatile twin of one."""
    durable = durable_stream(stream_id)
    return durable.startswith(ROOM_STREAM_PREFIX) or durable.startswith(USER_STREAM_PREFIX)


def durable_stream(stream_id: str) -> str:
    """The durable stream of `stream_id` (itself, or the stream a volatile twin belongs to)."""
    return stream_id.removeprefix(VOLATILE_STREAM_PREFIX)


def stream_for(event_type: str, stream_id: str) -> str:
    """Where an event of `event_type` owned by the durable `stream_id` is appended.

    Raises ValueError for a type outside the catalogue or one that does not belong to that kind of
    stream (a CellUpdated in a user stream), so a misrouted event is refused before it is written.
    """
    kind = ROOM_EVENTS if stream_id.startswith(ROOM_STREAM_PREFIX) else None
    kind = USER_EVENTS if stream_id.startswith(USER_STREAM_PREFIX) else kind
    if kind is None or event_type not in kind:
        raise ValueError(f"{event_type!r} events do not belong in stream {stream_id!r}")
    return volatile_stream(stream_id) if is_volatile(event_type) else stream_id
