"""The catalogue: every event type the log may hold, as a frozen dataclass with its fields.

An event is built here and nowhere else: `UserJoinedRoom(room_id=..., ...).new(origin)` gives the
`NewEvent` to append, with the `data` column written by `to_data` and the stream decided by the type
(`stream_for`): a room's events go to `room:{id}`, a user's to `user:{id}`, a file id's claim to
`file:{id}`, a sheet's room to `sheet:{id}`, and the volatile types (`VOLATILE_EVENTS`) to the
stream's volatile twin, where they take no place in the sequence and resume never replays them.
`decode` reads a recorded event back into its class.

The log is append-only and never migrated, so `from_data` must read every row ever written: fields
that older code did not write have defaults, and keys this code does not know are ignored. Ids and
names are strings; times come from `recorded_at`, never from `data`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Final, Self

from engine.model.events import CellWrite, NewEvent, Origin, RecordedEvent
from engine.model.streams import (
    FILE_STREAM_PREFIX,
    ROOM_STREAM_PREFIX,
    SHEET_STREAM_PREFIX,
    USER_STREAM_PREFIX,
    file_stream,
    room_stream,
    sheet_stream,
    user_stream,
    volatile_stream,
)

# Type names, as the `type` column holds them (past tense: each records something that happened).
USER_JOINED_ROOM: Final = "UserJoinedRoom"
USER_LEFT_ROOM: Final = "UserLeftRoom"
CELL_UPDATED: Final = "CellUpdated"
CELLS_UPDATED: Final = "CellsUpdated"
ROOM_MESSAGE_BROADCAST: Final = "RoomMessageBroadcast"
CURSOR_MOVED: Final = "CursorMoved"
TYPING_STARTED: Final = "TypingStarted"
TYPING_STOPPED: Final = "TypingStopped"
USER_STATUS_CHANGED: Final = "UserStatusChanged"
NOTIFICATION_CREATED: Final = "NotificationCreated"
NOTIFICATION_READ: Final = "NotificationRead"
NOTIFICATIONS_SUBSCRIBED: Final = "NotificationsSubscribed"
FILE_UPLOAD_STARTED: Final = "FileUploadStarted"
FILE_UPLOAD_PROGRESSED: Final = "FileUploadProgressed"
FILE_UPLOAD_COMPLETED: Final = "FileUploadCompleted"
FILE_UPLOAD_FAILED: Final = "FileUploadFailed"
AI_REQUEST_STARTED: Final = "AiRequestStarted"
AI_PROGRESSED: Final = "AiProgressed"
AI_COMPLETED: Final = "AiCompleted"
AI_FAILED: Final = "AiFailed"
AI_CANCELLED: Final = "AiCancelled"
USER_MESSAGE_SENT: Final = "UserMessageSent"
FILE_CLAIMED: Final = "FileClaimed"
SHEET_CLAIMED: Final = "SheetClaimed"

# Why a user left a room. Only LEFT is a message the user sent; the others are recorded by the server.
LEFT: Final = "left"  # the client's `leave_room`
# the socket closed (by the client, the network or a server shutdown), also when a send to it failed
DISCONNECTED: Final = "disconnected"
TIMED_OUT: Final = "timed_out"  # a valid reason, but not recorded: the server's keepalive closes a
# socket whose pong is late without telling the app why, so such a leave is `disconnected`
REMOVED: Final = "removed"  # an admin's DELETE /ws/connections/{connection_id}
NODE_LOST: Final = "node_lost"  # the connection's node stopped heartbeating; a survivor recorded the leave
REVOKED: Final = "revoked"  # a refreshed token no longer allows the room
SLOW_CONSUMER: Final = "slow_consumer"  # closed with 4008 for not keeping up: its queue over the limit
LEAVE_REASONS: Final = frozenset({LEFT, DISCONNECTED, TIMED_OUT, REMOVED, NODE_LOST, REVOKED, SLOW_CONSUMER})

# Why typing stopped: the client said so, or no stop came within TYPING_TIMEOUT_SECONDS.
STOPPED: Final = "stopped"
EXPIRED: Final = "expired"

# Why an upload failed (`FileUploadFailed.reason`). Each releases the file id to its owner.
TOO_LARGE: Final = "too_large"  # the body crossed MAX_UPLOAD_BYTES, or the file_size its upload announced
TOO_SHORT: Final = "too_short"  # the body ended before the file_size its upload announced: a truncated file
IDLE_TIMEOUT: Final = "idle_timeout"  # nothing arrived for UPLOAD_IDLE_TIMEOUT_SECONDS: no byte, or no body
ABORTED: Final = "aborted"  # the client went away (or the request was cancelled) before the body ended
STORAGE_ERROR: Final = "storage_error"  # the bytes could not be stored, or the end not recorded
UPLOAD_FAILURE_REASONS: Final = frozenset({TOO_LARGE, TOO_SHORT, IDLE_TIMEOUT, ABORTED, STORAGE_ERROR})

# Families: who is concerned by what. Each projection folds the types of its concern and names the
# families it skips (engine/projections/__init__.py); together they must cover the catalogue.
MEMBERSHIP_EVENTS: Final = frozenset({USER_JOINED_ROOM, USER_LEFT_ROOM})
CELL_EVENTS: Final = frozenset({CELL_UPDATED, CELLS_UPDATED})
# Messages an admin posts over REST, delivered as posted: to a room's members, or to one user.
BROADCAST_EVENTS: Final = frozenset({ROOM_MESSAGE_BROADCAST, USER_MESSAGE_SENT})
CURSOR_EVENTS: Final = frozenset({CURSOR_MOVED})
TYPING_EVENTS: Final = frozenset({TYPING_STARTED, TYPING_STOPPED})
STATUS_EVENTS: Final = frozenset({USER_STATUS_CHANGED})
NOTIFICATION_EVENTS: Final = frozenset({NOTIFICATION_CREATED, NOTIFICATION_READ, NOTIFICATIONS_SUBSCRIBED})
UPLOAD_EVENTS: Final = frozenset(
    {FILE_UPLOAD_STARTED, FILE_UPLOAD_PROGRESSED, FILE_UPLOAD_COMPLETED, FILE_UPLOAD_FAILED}
)
# The upload events that claim a file id or end an attempt: who owns an id, and whether its owner's last
# attempt is over, are decided from these alone (engine/features/files.py), progress left out.
FILE_CLAIM_EVENTS: Final = frozenset({FILE_UPLOAD_STARTED, FILE_UPLOAD_COMPLETED, FILE_UPLOAD_FAILED})
AI_EVENTS: Final = frozenset({AI_REQUEST_STARTED, AI_PROGRESSED, AI_COMPLETED, AI_FAILED, AI_CANCELLED})
# Claims: the first event of a global id's own stream settles it for ever (a file id's owner, a
# sheet's room). No client receives one; the writer keeps `sheets` from sheet claims, and no read
# model folds them.
FILE_EVENTS: Final = frozenset({FILE_CLAIMED})
SHEET_EVENTS: Final = frozenset({SHEET_CLAIMED})
CLAIM_EVENTS: Final = FILE_EVENTS | SHEET_EVENTS

ROOM_EVENTS: Final = (
    MEMBERSHIP_EVENTS | CELL_EVENTS | frozenset({ROOM_MESSAGE_BROADCAST}) | CURSOR_EVENTS | TYPING_EVENTS
)
USER_EVENTS: Final = (
    STATUS_EVENTS | NOTIFICATION_EVENTS | UPLOAD_EVENTS | AI_EVENTS | frozenset({USER_MESSAGE_SENT})
)
CATALOGUE: Final = ROOM_EVENTS | USER_EVENTS | CLAIM_EVENTS
# High-frequency and only worth their latest value: the protocol keeps them out of every sequence.
VOLATILE_EVENTS: Final = frozenset({CURSOR_MOVED, TYPING_STARTED, TYPING_STOPPED, FILE_UPLOAD_PROGRESSED})


def is_volatile(event_type: str) -> bool:
    """Whether events of this type go to a volatile stream: no `seq`, no replay."""
    return event_type in VOLATILE_EVENTS


def stream_for(event_type: str, stream_id: str) -> str:
    """Where an event of `event_type` owned by the durable `stream_id` is appended.

    Raises ValueError for a type outside the catalogue or one that does not belong to that kind of
    stream (a CellUpdated in a user stream), so a misrouted event is refused before it is written.
    """
    kind = ROOM_EVENTS if stream_id.startswith(ROOM_STREAM_PREFIX) else None
    kind = USER_EVENTS if stream_id.startswith(USER_STREAM_PREFIX) else kind
    kind = FILE_EVENTS if stream_id.startswith(FILE_STREAM_PREFIX) else kind
    kind = SHEET_EVENTS if stream_id.startswith(SHEET_STREAM_PREFIX) else kind
    if kind is None or event_type not in kind:
        raise ValueError(f"{event_type!r} events do not belong in stream {stream_id!r}")
    return volatile_stream(stream_id) if is_volatile(event_type) else stream_id


@dataclass(frozen=True, slots=True)
class Event:
    """What every typed event does: name its type, write its `data`, and know its stream."""

    TYPE: ClassVar[str]

    def owner_stream(self) -> str:
        """The durable stream of the room or user the event belongs to."""
        raise NotImplementedError

    @property
    def stream_id(self) -> str:
        return stream_for(self.TYPE, self.owner_stream())

    def to_data(self) -> dict[str, Any]:
        """The `data` column: every field, mappings copied so the event and the row never share one."""
        data: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            data[field.name] = dict(value) if isinstance(value, Mapping) else value
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        """The event a `data` column holds; ValueError when a field without a default is missing."""
        missing = [
            f.name for f in fields(cls) if f.name not in data and f.default is MISSING
        ]  # fmt: skip
        if missing:
            raise ValueError(f"{cls.TYPE} data lacks {', '.join(missing)}")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def new(
        self,
        origin: Origin,
        *,
        key: str | None = None,
        user_id: str | None = None,
        cells: tuple[CellWrite, ...] = (),
        **metadata: Any,
    ) -> NewEvent:
        """The event to append. `key` (default: the origin's `client_msg_id`) is its idempotency key in
        the scope of `user_id` (default: the origin's user); `metadata` adds to the origin's."""
        return NewEvent(
            stream_id=self.stream_id,
            type=self.TYPE,
            data=self.to_data(),
            metadata=origin.metadata(**metadata),
            idempotency_key=key if key is not None else origin.client_msg_id,
            user_id=user_id if user_id is not None else origin.user_id,
            cells=cells,
        )

    def claim(self, origin: Origin) -> NewEvent:
        """The event to append as the first of its stream (expected version 0), or a Conflict if the
        stream has one: how a claim settles a global id (engine/features/claims.py). No idempotency
        key: a repeated claim is answered by reading the stream's first event, not by a key."""
        return NewEvent(
            stream_id=self.stream_id,
            type=self.TYPE,
            data=self.to_data(),
            metadata=origin.metadata(),
            expected_version=0,
            user_id=origin.user_id,
        )


@dataclass(frozen=True, slots=True)
class RoomEvent(Event):
    room_id: str

    def owner_stream(self) -> str:
        return room_stream(self.room_id)


@dataclass(frozen=True, slots=True)
class UserEvent(Event):
    user_id: str

    def owner_stream(self) -> str:
        return user_stream(self.user_id)


# Room events.


@dataclass(frozen=True, slots=True)
class UserJoinedRoom(RoomEvent):
    TYPE: ClassVar[str] = USER_JOINED_ROOM
    user_id: str
    username: str
    email: str | None
    connection_id: str
    # The status the joiner had declared, as the node that took the join knew it, so that a node
    # that never saw the declaration shows it too. None in joins recorded before it was kept.
    status: str | None = None


@dataclass(frozen=True, slots=True)
class UserLeftRoom(RoomEvent):
    TYPE: ClassVar[str] = USER_LEFT_ROOM
    user_id: str
    connection_id: str | None  # None: the user left from every connection
    reason: str = LEFT  # one of LEAVE_REASONS


@dataclass(frozen=True, slots=True)
class CellUpdated(RoomEvent):
    """A sheet is attached to its room by its claim (`SheetClaimed`), in the sheet's own stream and
    not the room's: every durable room event becomes a message with a `seq`, and an event clients
    never see would look to them like a gap. Logs written before the claims have one for every sheet
    that had a room then (migration 0011)."""

    TYPE: ClassVar[str] = CELL_UPDATED
    sheet_id: str
    cell_id: str
    value: Any
    formula: str | None
    user_id: str
    username: str
    version: int | None = None  # assigned by the writer inside the append (engine/log/batch_plan.py)

    def writes(self, requested_version: int | None) -> tuple[CellWrite, ...]:
        return (
            CellWrite(self.sheet_id, self.cell_id, self.room_id, requested_version, self.value, self.formula),
        )


@dataclass(frozen=True, slots=True)
class CellsUpdated(RoomEvent):
    """A range of one sheet written at once (a paste, a fill, a sort): one event, all or nothing.
    `cells` are `{cell_id, value, formula, version}`, each version assigned by the writer."""

    TYPE: ClassVar[str] = CELLS_UPDATED
    sheet_id: str
    user_id: str
    username: str
    cells: tuple[Mapping[str, Any], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", tuple(self.cells))  # read back from JSON as a list

    def writes(self, requested: Mapping[str, int | None]) -> tuple[CellWrite, ...]:
        """One write per cell; `requested` maps a cell id to the client's base version."""
        return tuple(
            CellWrite(
                self.sheet_id,
                c["cell_id"],
                self.room_id,
                requested.get(c["cell_id"]),
                c.get("value"),
                c.get("formula"),
            )
            for c in self.cells
        )

    def to_data(self) -> dict[str, Any]:
        data = super(CellsUpdated, self).to_data()
        data["cells"] = [dict(cell) for cell in self.cells]
        return data


def with_versions(event_type: str, data: Mapping[str, Any], versions: Sequence[int]) -> dict[str, Any]:
    """A cell event's data with the versions the writer assigned, one per written cell in order."""
    if event_type == CELLS_UPDATED:
        cells = [{**cell, "version": version} for cell, version in zip(data["cells"], versions, strict=True)]
        return {**data, "cells": cells}
    (version,) = versions
    return {**data, "version": version}


def written_cells(event_type: str, data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The cells a cell event's data writes, each `{cell_id, value, formula, version}`."""
    if event_type == CELLS_UPDATED:
        return list(data["cells"])
    if event_type == CELL_UPDATED:
        return [data]
    return []


@dataclass(frozen=True, slots=True)
class RoomMessageBroadcast(RoomEvent):
    TYPE: ClassVar[str] = ROOM_MESSAGE_BROADCAST
    user_id: str  # the admin
    message: Mapping[str, Any]  # the posted JSON object, delivered to members as it is


@dataclass(frozen=True, slots=True)
class CursorMoved(RoomEvent):
    TYPE: ClassVar[str] = CURSOR_MOVED
    user_id: str
    username: str
    x: float
    y: float
    cell: str | None = None


@dataclass(frozen=True, slots=True)
class TypingStarted(RoomEvent):
    TYPE: ClassVar[str] = TYPING_STARTED
    user_id: str
    username: str
    cell_id: str
    connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class TypingStopped(RoomEvent):
    TYPE: ClassVar[str] = TYPING_STOPPED
    user_id: str
    username: str
    cell_id: str
    connection_id: str | None = None
    reason: str = STOPPED  # STOPPED or EXPIRED
    # Of an expiry: the start it ends, by its version in the room's volatile stream (which, unlike a
    # position, a move to another partition count keeps). A start refreshed while the expiry
    # committed is not ended by it (engine/projections/typing_indicators.py).
    start_version: int | None = None

    def to_data(self) -> dict[str, Any]:
        data = RoomEvent.to_data(self)
        if data["start_version"] is None:  # a client's stop: the data it always had
            del data["start_version"]
        return data


# User events: the stream of `user_id` (the recipient, the requester, the uploader).


@dataclass(frozen=True, slots=True)
class UserStatusChanged(UserEvent):
    TYPE: ClassVar[str] = USER_STATUS_CHANGED
    status: str  # "online", "away", "busy"


@dataclass(frozen=True, slots=True)
class NotificationCreated(UserEvent):
    TYPE: ClassVar[str] = NOTIFICATION_CREATED
    notification: Mapping[str, Any]  # {id, title, message, category, priority, module_name}


@dataclass(frozen=True, slots=True)
class NotificationRead(UserEvent):
    TYPE: ClassVar[str] = NOTIFICATION_READ
    notification_id: str


@dataclass(frozen=True, slots=True)
class NotificationsSubscribed(UserEvent):
    TYPE: ClassVar[str] = NOTIFICATIONS_SUBSCRIBED
    connection_id: str
    filters: Mapping[str, Any]  # {categories, modules, priorities}, each a list of strings or None


@dataclass(frozen=True, slots=True)
class FileUploadStarted(UserEvent):
    TYPE: ClassVar[str] = FILE_UPLOAD_STARTED
    file_id: str
    filename: str
    file_size: int
    mime_type: str = ""
    room_id: str | None = None  # the room a REST upload is shared in


@dataclass(frozen=True, slots=True)
class FileUploadProgressed(UserEvent):
    TYPE: ClassVar[str] = FILE_UPLOAD_PROGRESSED
    file_id: str
    bytes_uploaded: int
    total_bytes: int
    percentage: float


@dataclass(frozen=True, slots=True)
class FileUploadCompleted(UserEvent):
    TYPE: ClassVar[str] = FILE_UPLOAD_COMPLETED
    file_id: str
    filename: str
    url: str
    size: int
    sha256: str
    mime_type: str | None = None
    room_id: str | None = None


@dataclass(frozen=True, slots=True)
class FileUploadFailed(UserEvent):
    """An upload ended without a stored file; its partial bytes were discarded. The owner may start the
    id again (a new FileUploadStarted begins a new attempt)."""

    TYPE: ClassVar[str] = FILE_UPLOAD_FAILED
    file_id: str
    reason: str  # one of UPLOAD_FAILURE_REASONS
    filename: str | None = None
    bytes_uploaded: int = 0  # bytes received before it failed (none of them kept)


@dataclass(frozen=True, slots=True)
class AiRequestStarted(UserEvent):
    TYPE: ClassVar[str] = AI_REQUEST_STARTED
    request_id: str
    query: str
    sheet_id: str
    context: Mapping[str, Any] | None = None  # may hold table_range
    room_id: str | None = None  # the sheet's room


@dataclass(frozen=True, slots=True)
class AiProgressed(UserEvent):
    TYPE: ClassVar[str] = AI_PROGRESSED
    request_id: str
    progress: float  # 0-100
    status: str  # what the provider is doing, for people


@dataclass(frozen=True, slots=True)
class AiCompleted(UserEvent):
    TYPE: ClassVar[str] = AI_COMPLETED
    request_id: str
    result: Any
    processing_time: float  # seconds
    details: Any = None


@dataclass(frozen=True, slots=True)
class AiFailed(UserEvent):
    TYPE: ClassVar[str] = AI_FAILED
    request_id: str
    error: str


@dataclass(frozen=True, slots=True)
class AiCancelled(UserEvent):
    TYPE: ClassVar[str] = AI_CANCELLED
    request_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class UserMessageSent(UserEvent):
    TYPE: ClassVar[str] = USER_MESSAGE_SENT
    sender_id: str  # the admin
    message: Mapping[str, Any]  # the posted JSON object, delivered as it is
    message_id: str | None = None  # its id in the user's inbox, where it waits unread until read


# Claims.


@dataclass(frozen=True, slots=True)
class FileClaimed(Event):
    """`user_id` owns `file_id`: only the first claim of an id commits (`claim` appends it at expected
    version 0), so two users racing for one id on different nodes cannot both own it. The owner's
    uploads stay in their own stream; this stream only settles whose they are."""

    TYPE: ClassVar[str] = FILE_CLAIMED
    file_id: str
    user_id: str

    def owner_stream(self) -> str:
        return file_stream(self.file_id)


@dataclass(frozen=True, slots=True)
class SheetClaimed(Event):
    """`sheet_id` belongs to `room_id` for ever: its edits and their history are that room's. Claimed
    before the sheet's first edit, and the writer keeps the `sheets` row from it (engine/log/batch_plan.py),
    so the room's appends decide against a room that can no longer change."""

    TYPE: ClassVar[str] = SHEET_CLAIMED
    sheet_id: str
    room_id: str

    def owner_stream(self) -> str:
        return sheet_stream(self.sheet_id)


EVENT_CLASSES: Final[Mapping[str, type[Event]]] = {
    cls.TYPE: cls
    for cls in (
        UserJoinedRoom,
        UserLeftRoom,
        CellUpdated,
        CellsUpdated,
        RoomMessageBroadcast,
        CursorMoved,
        TypingStarted,
        TypingStopped,
        UserStatusChanged,
        NotificationCreated,
        NotificationRead,
        NotificationsSubscribed,
        FileUploadStarted,
        FileUploadProgressed,
        FileUploadCompleted,
        FileUploadFailed,
        AiRequestStarted,
        AiProgressed,
        AiCompleted,
        AiFailed,
        AiCancelled,
        UserMessageSent,
        FileClaimed,
        SheetClaimed,
    )
}


def decode(event: RecordedEvent) -> Event:
    """The typed event a recorded one holds; ValueError for a type outside the catalogue."""
    cls = EVENT_CLASSES.get(event.type)
    if cls is None:
        raise ValueError(f"{event.type!r} is not an event type of the catalogue")
    return cls.from_data(event.data)
