"""Stream ids: where each event lives in the log.

A room's durable events are in `room:{room_id}` (its `stream_version` is the room's `seq`), a user's in
`user:{user_id}`; each has a volatile twin, `volatile:room:...` or `volatile:user:...`, for events that
take no place in a sequence (cursors, typing, upload progress). A file id's owner is decided in
`file:{file_id}` and a sheet's room in `sheet:{sheet_id}`, each by its stream's first event (its
claim): a decision about a global id lives in that id's own stream, never in a stream another user or
room writes. Which type goes to which stream is the catalogue's decision (engine/model/catalogue.py,
`stream_for`).
"""

from __future__ import annotations

from typing import Final

ROOM_STREAM_PREFIX: Final = "room:"
USER_STREAM_PREFIX: Final = "user:"
FILE_STREAM_PREFIX: Final = "file:"
SHEET_STREAM_PREFIX: Final = "sheet:"
# A prefix, not a suffix: ids may contain any printable character, so only a prefix parses back.
VOLATILE_STREAM_PREFIX: Final = "volatile:"


def room_stream(room_id: str) -> str:
    return ROOM_STREAM_PREFIX + room_id


def user_stream(user_id: str) -> str:
    return USER_STREAM_PREFIX + user_id


def file_stream(file_id: str) -> str:
    return FILE_STREAM_PREFIX + file_id


def sheet_stream(sheet_id: str) -> str:
    return SHEET_STREAM_PREFIX + sheet_id


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


__all__ = [
    "FILE_STREAM_PREFIX",
    "ROOM_STREAM_PREFIX",
    "SHEET_STREAM_PREFIX",
    "USER_STREAM_PREFIX",
    "VOLATILE_STREAM_PREFIX",
    "durable_stream",
    "file_stream",
    "is_engine_stream",
    "is_volatile_stream",
    "room_id_of",
    "room_stream",
    "sheet_stream",
    "user_id_of",
    "user_stream",
    "volatile_stream",
]
