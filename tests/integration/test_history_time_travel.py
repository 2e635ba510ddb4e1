"""engine/readmodels/history.py against a real PostgreSQL: a room as of every seq is the fold of its prefix,
with or without snapshots; snapshots are stored every K events and really are read; a sheet as of a
seq and a cell's versions come from the log as written."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.log import migrate
from engine.log.partitions import partition_of
from engine.log.store import EventStore
from engine.model.catalogue import (
    CELL_UPDATED,
    CURSOR_MOVED,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    SheetClaimed,
    UserStatusChanged,
)
from engine.model.errors import NotFound, ValidationFailed
from engine.model.events import CellWrite, Committed, NewEvent, Origin
from engine.model.streams import room_stream, volatile_stream
from engine.projections.rooms import project, with_statuses
from engine.readmodels.history import EventFilter, History
from engine.readmodels.snapshots import Snapshot
from tests.integration.query_plans import plans, rows_read, shape, statements_of


@pytest.fixture
def room() -> str:
    return f"hist-{uuid.uuid4().hex[:10]}"


def _room_event(room: str, type_: str, user: str, **data: Any) -> NewEvent:
    stream = volatile_stream(room_stream(room)) if type_ == CURSOR_MOVED else room_stream(room)
    cells: tuple[CellWrite, ...] = ()
    if type_ == CELL_UPDATED:
        sheet, cell_id = str(data["sheet_id"]), str(data["cell_id"])
        cells = (CellWrite(sheet, cell_id, room, None, data["value"], data["formula"]),)
    return NewEvent(stream, type_, {"room_id": room, "user_id": user, **data}, user_id=user, cells=cells)


async def _session(store: EventStore, room: str) -> None:
    """Joins, cursors, cell updates and leaves: 9 durable room events, 3 volatile ones."""
    sheet = f"{room}-sheet"
    script = [
        (USER_JOINED_ROOM, "alice", {"username": "Alice", "email": None, "connection_id": "c1"}),
        (USER_JOINED_ROOM, "bob", {"username": "Bob", "email": "b@x", "connection_id": "c2"}),
        (CURSOR_MOVED, "bob", {"username": "Bob", "x": 1, "y": 2, "cell": "A1"}),
        (CELL_UPDATED, "alice", {"sheet_id": sheet, "cell_id": "A1", "value": 1, "formula": None}),
        (CELL_UPDATED, "bob", {"sheet_id": sheet, "cell_id": "A1", "value": 2, "formula": "=1+1"}),
        (CURSOR_MOVED, "alice", {"username": "Alice", "x": 5, "y": 6, "cell": "B1"}),
        (CELL_UPDATED, "alice", {"sheet_id": sheet, "cell_id": "B1", "value": "x", "formula": None}),
        (USER_JOINED_ROOM, "carol", {"username": "Carol", "email": None, "connection_id": "c3"}),
        (CURSOR_MOVED, "carol", {"username": "Carol", "x": 9, "y": 9, "cell": None}),
        (USER_LEFT_ROOM, "bob", {"connection_id": "c2", "reason": "left"}),
        (CELL_UPDATED, "carol", {"sheet_id": sheet, "cell_id": "A1", "value": 3, "formula": None}),
        (USER_LEFT_ROOM, "alice", {"connection_id": "c1", "reason": "disconnected"}),
    ]
    await store.append([SheetClaimed(sheet, room).claim(Origin("n", "alice"))])  # before its first edit
    for type_, user, data in script:  # one by one: distinct recorded_at for the time queries
        (outcome,) = await store.append([_room_event(room, type_, user, **data)])
        assert isinstance(outcome, Committed), outcome


async def _room_log(store: EventStore, room: str) -> list[Any]:
    """The room's events and its volatile twin's, in the log's order (both are in the room's
    partition)."""
    streams = [room_stream(room), volatile_stream(room_stream(room))]
    found = [e for s in streams for e in await store.read_stream(s)]
    return sorted(found, key=lambda e: e.position)


async def test_history_room_state_as_of_every_seq_is_the_fold_with_and_without_snapshots(
    store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    await _session(store, room)
    log = await _room_log(store, room)
    plain, snapshotting = History(db_engine, snapshot_every=10_000), History(db_engine, snapshot_every=2)

    expected = {0: project([], room)}
    for index, event in enumerate(log):
        if event.stream_id == room_stream(room):
            expected[event.stream_version] = project(log[: index + 1], room)

    for seq, view in expected.items():
        assert await plain.room_state(room, seq=seq) == view, seq
    partition = partition_of(room_stream(room), await snapshotting.partitions())
    assert await snapshotting.snapshots.seqs(room, partition=partition) == []
    assert await snapshotting.room_state(room, seq=9) == expected[9]
    assert await snapshotting.snapshots.seqs(room, partition=partition) == [2, 4, 6, 8]
    for seq, view in expected.items():  # now answered from the snapshots
        assert await snapshotting.room_state(room, seq=seq) == view, seq
        assert await plain.room_state(room, seq=seq) == view, seq
    assert expected[9].members.keys() == {"carol"}
    assert expected[9].members["carol"].cursor == {"x": 9, "y": 9, "cell": None}


async def test_history_room_state_reads_the_snapshot(
    store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    """A snapshot stored for seq 4 (here a doctored one) is where the fold for seq >= 4 starts."""
    await _session(store, room)
    history = History(db_engine, snapshot_every=10_000)
    at4 = await history.room_state(room, seq=4)
    fourth = (await history.room_events(room, after_seq=3, limit=1)).events[0]
    doctored = replace(at4, messages_sent=1000)
    await history.snapshots.save(Snapshot(room, 4, fourth.position, doctored, fourth.partition))

    assert (await history.room_state(room, seq=3)).messages_sent == at4.messages_sent - 1
    assert (await history.room_state(room, seq=5)).messages_sent == 1001


async def test_history_room_state_as_of_a_time_is_the_state_of_the_newest_event_then(
    store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    await _session(store, room)
    history = History(db_engine)
    log = await _room_log(store, room)
    for index, event in enumerate(log):
        assert await history.room_state(room, at=event.recorded_at) == project(log[: index + 1], room)
    assert await history.room_state(room, at=log[0].recorded_at.replace(year=2000)) == project([], room)


async def test_history_room_state_refuses_bad_points(
    store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    history = History(db_engine)
    with pytest.raises(NotFound):
        await history.room_state(room, seq=0)
    await _session(store, room)
    with pytest.raises(ValidationFailed, match="outside"):
        await history.room_state(room, seq=10)
    with pytest.raises(ValidationFailed, match="at most one"):
        await history.room_state(room, seq=1, at=datetime.now(UTC))
    assert (await history.room_state(room)).seq == 9  # neither: as it is now
    with pytest.raises(ValidationFailed, match="control characters"):
        await history.room_state(room + "\x00", seq=0)
    with pytest.raises(ValidationFailed, match="control characters"):
        await history.cell_history(f"{room}-sheet", "A\x001")


async def test_history_sheet_cells_and_cell_versions_follow_the_log(
    store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    await _session(store, room)
    history, sheet = History(db_engine), f"{room}-sheet"

    at3 = await history.sheet_cells(sheet, seq=3)
    assert at3.room_seq == 3 and {c: v.value for c, v in at3.sheet.cells.items()} == {"A1": 1}
    at9 = await history.sheet_cells(sheet, seq=9)
    assert {c: (v.value, v.version) for c, v in at9.sheet.cells.items()} == {"A1": (3, 3), "B1": ("x", 1)}
    assert (await history.sheet_cells(sheet, seq=0)).sheet.cells == {}

    versions, more = await history.cell_history(sheet, "A1")
    assert [(v.value, v.formula, v.version, v.updated_by, v.seq) for v in versions] == [
        (1, None, 1, "alice", 3),
        (2, "=1+1", 2, "bob", 4),
        (3, None, 3, "carol", 8),
    ]
    assert more is None
    first, more = await history.cell_history(sheet, "A1", limit=2)
    assert [v.version for v in first] == [1, 2] and more == 4
    rest, more = await history.cell_history(sheet, "A1", after_seq=4, limit=2)
    assert [v.version for v in rest] == [3] and more is None
    with pytest.raises(NotFound):
        await history.cell_history(sheet, "Z9")
    with pytest.raises(NotFound):
        await history.sheet_cells(f"{sheet}-never", seq=0)


async def test_history_pages_return_every_event_once_and_filter(
    store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    await _session(store, room)
    history = History(db_engine)
    log = await _room_log(store, room)

    async def walk(**options: Any) -> list[int]:
        seen: list[int] = []
        cursor = None
        while True:
            page = await history.room_events(room, cursor=cursor, limit=5, **options)
            seen.extend(e.position for e in page.events)
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    assert await walk(include_volatile=True) == [e.position for e in log]
    assert await walk() == [e.position for e in log if e.stream_id == room_stream(room)]
    cells = await walk(where=EventFilter(types=frozenset({CELL_UPDATED})))
    assert cells == [e.position for e in log if e.type == CELL_UPDATED]
    with pytest.raises(ValidationFailed, match="volatile"):
        await history.room_events(room, where=EventFilter(types=frozenset({CURSOR_MOVED})))
    after = await history.room_events(room, after_seq=7, limit=100)
    assert [e.stream_version for e in after.events] == [8, 9]


async def test_history_export_reads_page_by_page_up_to_the_head_at_its_start(
    store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    await _session(store, room)
    history = History(db_engine)
    pages = await history.export_room(room, include_volatile=True, page_size=5)
    (late,) = await store.append([_room_event(room, USER_JOINED_ROOM, "dave", connection_id="c4")])
    assert isinstance(late, Committed)
    sizes = [len(page) async for page in pages]
    assert sizes == [5, 5, 2]  # the 12 events of the session; the join after the start is not in it
    with pytest.raises(NotFound):
        await history.export_room(f"{room}-never")


async def test_history_time_travel_reads_the_room_not_the_log_when_statistics_undercount_streams(
    empty_database: str,
) -> None:
    """A quiet room's state as of a time, in a log that went on without it. When the planner thinks
    every stream is huge (as a small sample of a large log can make it think), "the room's newest event
    then" must still be found in the room's own entries, not by walking the log back from its end, and
    so must its members' statuses then in their own streams."""
    await asyncio.to_thread(migrate.upgrade_to_head, empty_database)
    db_engine = create_async_engine(empty_database)
    try:
        store = EventStore(db_engine)
        quiet = "quiet"
        await _session(store, quiet)
        declared = await store.append([UserStatusChanged("carol", "busy").new(Origin("n", "carol"))])
        assert all(isinstance(o, Committed) for o in declared)
        for batch in range(_BUSY_EVENTS // 500):
            busy = [
                NewEvent(
                    volatile_stream(room_stream(f"busy-{i % 5_000}")), CURSOR_MOVED, {"n": i}, user_id="u"
                )
                for i in range(batch * 500, (batch + 1) * 500)
            ]
            assert all(isinstance(o, Committed) for o in await store.append(busy))
        async with db_engine.begin() as conn:
            await conn.execute(text("ALTER TABLE events ALTER COLUMN stream_id SET (n_distinct = 2)"))
            await conn.execute(text("ANALYZE events"))

        log = await _room_log(store, quiet)
        history = History(db_engine)
        with statements_of(db_engine) as statements:
            assert await history.room_state(quiet, at=log[4].recorded_at) == project(log[:5], quiet)
            now = with_statuses(project(log, quiet), {"carol": "busy"})
            assert await history.room_state(quiet, at=datetime.now(UTC)) == now
        for statement, plan in await plans(db_engine, statements):
            read = rows_read(plan)
            assert read < _BUSY_EVENTS / 10, f"{read} rows read by {shape(plan)} for {statement}"
    finally:
        await db_engine.dispose()


_BUSY_EVENTS = 20_000
