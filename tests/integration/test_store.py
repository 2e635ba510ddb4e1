"""What only PostgreSQL does for the log: refuse to change or remove an event (a trigger). What every
log owes the engine is tested against both stores in tests/contract/."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.log.store import EventStore
from engine.model.events import NewEvent


def ev(stream: str, n: int = 0, **kw: object) -> NewEvent:
    return NewEvent(stream_id=stream, type="TestHappened", data={"n": n, "text": "é ✓"}, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'Tampered' WHERE stream_id = :s",
        "DELETE FROM events WHERE stream_id = :s",
        "TRUNCATE events",
    ],
)
async def test_database_refuses_to_change_or_remove_events(
    store: EventStore, stream: str, statement: str
) -> None:
    await store.append([ev(stream)])
    with pytest.raises(DBAPIError, match="append-only"):
        async with store.db_engine.begin() as conn:
            await conn.execute(text(statement), {"s": stream})
    assert [e.type for e in await store.read_stream(stream)] == ["TestHappened"]
