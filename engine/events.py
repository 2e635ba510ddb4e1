"""What goes into the log and what comes back out of it.

A `NewEvent` is what a caller asks to append; a `RecordedEvent` is what the log holds. Two counters are
never mixed: `stream_version` is contiguous per stream (the `seq` clients see), `position` is global.
Event type names are past tense: each records something that happened, never a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


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


AppendOutcome = Committed | Duplicate | Conflict


# Room events live in the stream `room:{room_id}`; their stream_version is the room's `seq`.
USER_JOINED_ROOM = "UserJoinedRoom"
USER_LEFT_ROOM = "UserLeftRoom"

ROOM_STREAM_PREFIX = "room:"


def room_stream(room_id: str) -> str:
    return ROOM_STREAM_PREFIX + room_id


def room_id_of(stream_id: str) -> str:
    """The room id of a room stream; raises ValueError for any other stream."""
    if not stream_id.startswith(ROOM_STREAM_PREFIX):
        raise ValueError(f"{stream_id!r} is not a room stream")
    return stream_id[len(ROOM_STREAM_PREFIX) :]
