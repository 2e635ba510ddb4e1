"""The writer's three paths on a real PostgreSQL: known (one round trip), read, and locked, and that
stale knowledge never commits anything wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from engine.log import migrate
from engine.log.batch_plan import LogState, Plan
from engine.log.store import EventStore
from engine.log.writer import LogWriter
from engine.model.catalogue import SheetClaimed
from engine.model.errors import VersionConflict
from engine.model.events import AppendOutcome, CellWrite, Committed, Duplicate, NewEvent, Origin, Refused
from engine.readmodels.history import EventFilter, History


@pytest.fixture
def store(one_partition_store: EventStore) -> EventStore:
    """Tests of one partition's writer: on a log of one, whatever TEST_LOG_PARTITIONS says."""
    return one_partition_store


def ev(stream: str, n: int, **kw: object) -> NewEvent:
    return NewEvent(stream_id=stream, type="Happened", data={"n": n}, **kw)  # type: ignore[arg-type]


async def test_second_batch_commits_on_what_the_writer_knows(store: EventStore, stream: str) -> None:
    writer = store.writer()
    try:
        await writer.append([ev(stream, 1)])
        (second,) = await writer.append([ev(stream, 2)])
    finally:
        await writer.close()
    assert writer.paths == {"known": 1, "read": 1, "locked": 0}
    assert isinstance(second, Committed) and second.stream_version == 2


async def test_stale_knowledge_after_another_writer_falls_back_and_stays_contiguous(
    store: EventStore, stream: str
) -> None:
    mine, theirs = store.writer(), store.writer()
    try:
        await mine.append([ev(stream, 1)])
        await theirs.append([ev(stream, 2)])  # mine now believes the stream is at 1 and the head older
        (outcome,) = await mine.append([ev(stream, 3, expected_version=2)])
    finally:
        await mine.close()
        await theirs.close()
    assert isinstance(outcome, Committed) and outcome.stream_version == 3
    assert mine.paths["known"] == 0 and mine.paths["read"] == 2
    assert [(e.stream_version, e.data["n"]) for e in await store.read_stream(stream)] == [
        (1, 1),
        (2, 2),
        (3, 3),
    ]


async def test_known_path_assumes_keys_unused_and_a_used_one_is_caught_by_the_index(
    store: EventStore, stream: str
) -> None:
    writer = store.writer()
    try:
        (first,) = await writer.append([ev(stream, 1, user_id="u", idempotency_key=f"{stream}-k")])
        (again,) = await writer.append([ev(stream, 2, user_id="u", idempotency_key=f"{stream}-k")])
    finally:
        await writer.close()
    assert isinstance(first, Committed)
    assert isinstance(again, Duplicate) and again.position == first.position
    assert [e.data["n"] for e in await store.read_stream(stream)] == [1]


class InterruptedWriter(LogWriter):
    """Lets a competing append commit between this writer's read and its write, every time it tries
    the optimistic paths: a real race, on the real database, made deterministic."""

    def __init__(self, store: EventStore, competitor_stream: str) -> None:
        super().__init__(store.db_engine)
        self.store = store
        self.competitor_stream = competitor_stream

    async def _try_write(self, p: Plan, state: LogState | None = None) -> list[AppendOutcome] | None:
        await self.store.append([ev(self.competitor_stream, -1)])
        return await super()._try_write(p, state)


async def test_losing_the_race_twice_ends_on_the_locked_path(store: EventStore, stream: str) -> None:
    writer = InterruptedWriter(store, stream)
    try:
        outcomes: Sequence[AppendOutcome] = await writer.append([ev(stream, 1), ev(stream, 2)])
    finally:
        await writer.close()
    assert writer.paths == {"known": 0, "read": 0, "locked": 1}
    # One competing event landed before the batch; the batch follows it, contiguous and in order.
    assert [o.stream_version for o in outcomes if isinstance(o, Committed)] == [2, 3]
    assert [e.data["n"] for e in await store.read_stream(stream)] == [-1, 1, 2]


def claim(room: str, sheet: str) -> NewEvent:
    return SheetClaimed(sheet, room).claim(Origin("n", "u1"))


def cell_update(room: str, sheet: str, version: int | None, value: str) -> NewEvent:
    return NewEvent(
        stream_id=f"room:{room}",
        type="CellUpdated",
        data={
            "room_id": room,
            "sheet_id": sheet,
            "cell_id": "A1",
            "value": value,
            "formula": None,
            "user_id": "u1",
        },
        user_id="u1",
        cells=(CellWrite(sheet, "A1", room, version, value),),
    )


async def test_two_writers_racing_on_one_base_version_exactly_one_wins(
    store: EventStore, stream: str
) -> None:
    """Two writers (as two processes would be) update the same cell from the same base version; the
    loser is decided against the winner's cell and refused, whichever commits first."""
    room, sheet = stream, f"{stream}-sheet"
    mine, theirs = store.writer(), store.writer()
    try:
        await mine.append([claim(room, sheet)])
        (base,) = await mine.append([cell_update(room, sheet, 1642161000000, "first")])
        assert isinstance(base, Committed) and base.data is not None
        version = base.data["version"]
        assert version == 1642161000001
        results = await asyncio.gather(
            mine.append([cell_update(room, sheet, version, "mine")]),
            theirs.append([cell_update(room, sheet, version, "theirs")]),
        )
    finally:
        await mine.close()
        await theirs.close()
    outcomes = [r[0] for r in results]
    assert sorted(type(o).__name__ for o in outcomes) == ["Committed", "Refused"]
    winner = next(o for o in outcomes if isinstance(o, Committed))
    loser = next(o for o in outcomes if isinstance(o, Refused))
    assert isinstance(loser.error, VersionConflict)
    assert loser.error.details["current"]["version"] == winner.data["version"] == version + 1  # type: ignore[index]
    assert [e.data["version"] for e in await store.read_stream(f"room:{room}")] == [version, version + 1]


async def test_cells_table_follows_the_log_and_known_path_uses_it(store: EventStore, stream: str) -> None:
    room, sheet = stream, f"{stream}-sheet"
    writer = store.writer()
    try:
        await writer.append([claim(room, sheet), cell_update(room, sheet, None, "a")])
        (second,) = await writer.append([cell_update(room, sheet, None, "b")])
        (stale,) = await writer.append([cell_update(room, sheet, 1, "c")])
    finally:
        await writer.close()
    assert isinstance(second, Committed) and second.data["version"] == 2  # type: ignore[index]
    assert isinstance(stale, Refused)
    assert writer.paths["known"] >= 1
    async with store.db_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT value, version, seq FROM cells WHERE sheet_id = :s AND cell_id = 'A1'"),
                {"s": sheet},
            )
        ).one()
        owner = (
            await conn.execute(text("SELECT room_id FROM sheets WHERE sheet_id = :s"), {"s": sheet})
        ).scalar()
    assert (row.value, row.version, row.seq) == ("b", 2, 2)
    assert owner == room


async def test_a_sheet_stays_in_the_room_of_its_first_edit(store: EventStore, stream: str) -> None:
    sheet = f"{stream}-sheet"
    await store.append([claim(f"{stream}-r1", sheet), cell_update(f"{stream}-r1", sheet, None, "a")])
    (other,) = await store.append([cell_update(f"{stream}-r2", sheet, None, "b")])
    assert isinstance(other, Refused) and other.error.code == "VALIDATION_ERROR"
    assert await store.read_stream(f"room:{stream}-r2") == []


async def test_recorded_at_never_goes_below_the_head_events_when_the_clock_steps_back(
    empty_database: str,
) -> None:
    """The database's clock stepped back an hour, as the newest event sees it: the next commit is
    recorded no earlier than that event, so times still rise along positions and a page from a
    time finds it."""
    await asyncio.to_thread(migrate.upgrade_to_head, empty_database)
    db_engine = create_async_engine(empty_database)
    try:
        store = EventStore(db_engine)
        (first,) = await store.append([ev("clock", 1)])
        assert isinstance(first, Committed)
        async with db_engine.begin() as conn:
            # Past the append-only trigger, as only a test may: the clock's step, seen from the log.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            ahead = await conn.execute(
                text("UPDATE events SET recorded_at = now() + interval '1 hour' RETURNING recorded_at")
            )
            stepped = ahead.scalar_one()
        (second,) = await store.append([ev("clock", 2)])
        assert isinstance(second, Committed)
        async with db_engine.connect() as conn:
            times = (await conn.execute(text("SELECT recorded_at FROM events ORDER BY position"))).scalars()
            assert list(times) == [stepped, stepped]
        page = await History(db_engine).all_events(where=EventFilter(since=stepped))
        assert [e.stream_version for e in page.events] == [1, 2]
    finally:
        await db_engine.dispose()
