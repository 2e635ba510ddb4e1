"""The event log against a real PostgreSQL: round trips, conflicts, idempotency, mixed batches."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.log.store import EventStore
from engine.model.events import Committed, Conflict, Duplicate, NewEvent


def ev(stream: str, n: int = 0, **kw: object) -> NewEvent:
    return NewEvent(stream_id=stream, type="TestHappened", data={"n": n, "text": "é ✓"}, **kw)  # type: ignore[arg-type]


async def test_append_then_read_stream_round_trips(store: EventStore, stream: str) -> None:
    outcomes = await store.append([ev(stream, 1, metadata={"user": "u1"}), ev(stream, 2)])
    assert [type(o) for o in outcomes] == [Committed, Committed]
    assert [o.stream_version for o in outcomes] == [1, 2]  # type: ignore[union-attr]
    assert outcomes[1].position == outcomes[0].position + 1  # type: ignore[union-attr]

    read = await store.read_stream(stream)
    assert [(e.stream_version, e.data["n"], e.type) for e in read] == [
        (1, 1, "TestHappened"),
        (2, 2, "TestHappened"),
    ]
    assert read[0].metadata == {"user": "u1"}
    assert read[0].data["text"] == "é ✓"
    assert read[0].recorded_at.tzinfo is not None
    assert await store.stream_version(stream) == 2
    assert [e.stream_version for e in await store.read_stream(stream, after_version=1)] == [2]


async def test_read_all_returns_positions_in_order_after_a_cursor(store: EventStore, stream: str) -> None:
    before = await store.head()
    await store.append([ev(stream, i) for i in range(5)])
    assert await store.head() == before + 5
    read = await store.read_all(after=before, limit=3)
    assert [e.position for e in read] == [before + 1, before + 2, before + 3]
    rest = await store.read_all(after=read[-1].position)
    assert [e.position for e in rest][:2] == [before + 4, before + 5]


async def test_expected_version_conflict_reports_actual_version(store: EventStore, stream: str) -> None:
    (first,) = await store.append([ev(stream, expected_version=0)])
    assert isinstance(first, Committed) and first.stream_version == 1
    (clash,) = await store.append([ev(stream, expected_version=0)])
    assert clash == Conflict(expected_version=0, actual_version=1)
    (ok,) = await store.append([ev(stream, expected_version=1)])
    assert isinstance(ok, Committed) and ok.stream_version == 2
    assert await store.stream_version(stream) == 2


async def test_idempotency_key_returns_the_original_outcome(store: EventStore, stream: str) -> None:
    (first,) = await store.append([ev(stream, 1, user_id="u1", idempotency_key="k1")])
    (again,) = await store.append([ev(stream, 2, user_id="u1", idempotency_key="k1")])
    assert isinstance(again, Duplicate)
    assert (again.position, again.stream_version) == (first.position, first.stream_version)  # type: ignore[union-attr]
    # The same key from another user is a different message.
    (other,) = await store.append([ev(stream, 3, user_id="u2", idempotency_key="k1")])
    assert isinstance(other, Committed)
    assert [e.data["n"] for e in await store.read_stream(stream)] == [1, 3]


async def test_duplicate_key_within_one_batch_is_written_once(store: EventStore, stream: str) -> None:
    a, b = await store.append(
        [
            ev(stream, 1, user_id="u", idempotency_key="same"),
            ev(stream, 2, user_id="u", idempotency_key="same"),
        ]
    )
    assert isinstance(a, Committed) and isinstance(b, Duplicate)
    assert b.position == a.position
    assert len(await store.read_stream(stream)) == 1


async def test_mixed_batch_conflict_rejects_only_itself(store: EventStore, stream: str) -> None:
    other = stream + ":other"
    await store.append([ev(stream)])
    before = await store.head()
    outcomes = await store.append(
        [
            ev(other, 1),
            ev(stream, 2, expected_version=0),  # stale: the stream is at 1
            ev(stream, 3, expected_version=1),
            ev(other, 4, user_id="u", idempotency_key=f"{stream}-k"),
        ]
    )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Committed", "Conflict", "Committed", "Committed"]
    assert outcomes[1] == Conflict(expected_version=0, actual_version=1)
    # Positions stay dense: the conflict took none.
    assert [o.position for o in outcomes if isinstance(o, Committed)] == [before + 1, before + 2, before + 3]
    assert [e.data["n"] for e in await store.read_stream(stream)] == [0, 3]
    assert [e.data["n"] for e in await store.read_stream(other)] == [1, 4]


async def test_batch_where_nothing_commits_leaves_the_log_unchanged(store: EventStore, stream: str) -> None:
    await store.append([ev(stream)])
    before = await store.head()
    outcomes = await store.append([ev(stream, expected_version=5), ev(stream, expected_version=0)])
    assert all(isinstance(o, Conflict) for o in outcomes)
    assert await store.head() == before


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
