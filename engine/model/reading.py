"""Reading a stream, whatever the store: the signature every reader is handed, and the one paging loop.

Components read streams through a function they are given (the PostgreSQL store's, the memory store's
in tests), never through a store they know, so that fanout and features stay free of the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Final, Protocol

from engine.model.events import RecordedEvent

PAGE: Final = 1000


class ReadStream(Protocol):
    """Reads a stream after a version, in version order, at most `limit` events."""

    def __call__(
        self, stream_id: str, after_version: int = ..., limit: int = ...
    ) -> Awaitable[Sequence[RecordedEvent]]: ...


async def read_through(read: ReadStream, stream_id: str, *, upto: int | None = None) -> list[RecordedEvent]:
    """The stream's events from the first up to version `upto` (all when None), a page at a time."""
    events: list[RecordedEvent] = []
    while upto is None or len(events) < upto:
        after = events[-1].stream_version if events else 0
        page = await read(stream_id, after_version=after, limit=PAGE)
        events.extend(page)
        if len(page) < PAGE:
            break
    return events if upto is None else [e for e in events if e.stream_version <= upto]


__all__ = ["PAGE", "ReadStream", "read_through"]
