"""Pages of a few streams (engine/readmodels/stream_walk.py) against a real PostgreSQL: a page narrowed
by a `rooms` claim holds exactly the admitted rooms' events, walked stream by stream or scanned, with
types and times, in every partition; and on a log of many commits, no statement of a page over a quiet
room reads more than a small part of it, whatever plan PostgreSQL makes, a prepared statement's
generic one included."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.partitions import partition_of
from engine.log.store import EventStore
from engine.model.actors import glob_regex
from engine.model.catalogue import CURSOR_MOVED, USER_JOINED_ROOM, USER_LEFT_ROOM, USER_STATUS_CHANGED
from engine.model.events import Committed, NewEvent, RecordedEvent
from engine.model.streams import ROOM_STREAM_PREFIX, room_stream, user_stream, volatile_stream
from engine.projections.rooms import project
from engine.readmodels import history as history_module
from engine.readmodels.history import EventFilter, History
from engine.readmodels.stream_walk import Admitted, walk_is_cheaper
from tests.conftest import LOG_PARTITIONS
from tests.integration.query_plans import plans, rows_read, shape, statements_of
from tests.unit import test_claim_patterns as claim_cases

ROOMS = ["team-a-1", "team-a-2", "team-b-1", "quiet", "busy"]


def _event(room: str, n: int) -> NewEvent:
    user = f"u{n}"
    if n % 3 == 0:
        moved = {"room_id": room, "user_id": user, "username": user, "x": n, "y": 1, "cell": None}
        return NewEvent(volatile_stream(room_stream(room)), CURSOR_MOVED, moved, user_id=user)
    joined = {"room_id": room, "user_id": user, "username": user, "email": None, "connection_id": f"c{n}"}
    return NewEvent(room_stream(room), USER_JOINED_ROOM, joined, user_id=user)


async def _append(store: EventStore, batch: list[NewEvent]) -> None:
    assert all(isinstance(outcome, Committed) for outcome in await store.append(batch))


async def _every_event(db_engine: AsyncEngine) -> list[RecordedEvent]:
    async with db_engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM events ORDER BY partition, position"))
        return [RecordedEvent(**row) for row in rows.mappings()]


def _admits(claim: tuple[str, ...], stream_id: str) -> bool:
    """The claim's rule, written again: a room stream or its volatile twin whose room id matches."""
    durable = stream_id.removeprefix("volatile:")
    if not durable.startswith(ROOM_STREAM_PREFIX):
        return False
    return any(fnmatchcase(durable.removeprefix(ROOM_STREAM_PREFIX), pattern) for pattern in claim)


def _wanted(
    e: RecordedEvent,
    claim: tuple[str, ...],
    types: frozenset[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> bool:
    in_time = (since is None or e.recorded_at >= since) and (until is None or e.recorded_at <= until)
    return _admits(claim, e.stream_id) and in_time and (types is None or e.type in types)


async def _pages(history: History, partition: int, where: EventFilter, limit: int) -> list[int]:
    found: list[int] = []
    cursor = 0
    while True:
        page = await history.all_events(after_position=cursor, limit=limit, where=where, partition=partition)
        assert len(page.events) == limit or page.next_cursor is None
        found += [e.position for e in page.events]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


@pytest.mark.parametrize("way", ["walked", "scanned"])
async def test_stream_walk_claim_pages_hold_exactly_the_admitted_rooms_events(
    log_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """Every page of every partition, read both ways, against the claim's rule applied to every event."""
    store, history = EventStore(log_engine), History(log_engine)
    monkeypatch.setattr(history_module, "walk_is_cheaper", lambda *_, **__: way == "walked")
    shuffled = random.Random(7)
    n = 0
    for size in [1, 4, 2, 9, 3, 1, 6, 2, 5, 1, 8, 3]:
        batch = [_event(shuffled.choice(ROOMS), n + i) for i in range(size)]
        batch.append(NewEvent(user_stream(f"u{n}"), USER_STATUS_CHANGED, {"status": "away"}, user_id="u"))
        await _append(store, batch)
        n += size
    everything = await _every_event(log_engine)
    times = sorted({e.recorded_at for e in everything})
    ranges: list[tuple[datetime | None, datetime | None]] = [
        (None, None),
        (times[3], None),
        (None, times[-4]),
    ]
    ranges.append((times[2], times[8]))
    claims = [("team-a-*",), ("quiet",), ("team-b-*", "busy"), ("nothing-*",), ("*",), ("team-?-1",)]
    for claim in claims:
        for types in (None, frozenset({CURSOR_MOVED})):
            for since, until in ranges:
                where = EventFilter(types=types, since=since, until=until, rooms=claim)

                for partition in range(LOG_PARTITIONS):
                    expected = [
                        e.position
                        for e in everything
                        if e.partition == partition and _wanted(e, claim, types, since, until)
                    ]
                    for limit in (1, 3, 100):
                        got = await _pages(history, partition, where, limit)
                        assert got == expected, (claim, types, since, until, partition, limit)


async def test_stream_walk_claim_patterns_admit_in_postgresql_what_the_glob_admits(
    log_engine: AsyncEngine,
) -> None:
    """The claims' regular expressions run in PostgreSQL, whose syntax differs from Python's inside a
    set: each pattern of the unit test, against each id, as the `streams` lookup runs it."""
    pairs = [(room_id, pattern) for pattern in claim_cases.PATTERNS for room_id in claim_cases.IDS]
    async with log_engine.connect() as conn:
        for room_id, pattern in pairs:
            found = await conn.execute(
                text("SELECT :id ~ :pattern"), {"id": room_id, "pattern": glob_regex(pattern)}
            )
            assert found.scalar_one() == fnmatchcase(room_id, pattern), (pattern, room_id)


def test_stream_walk_is_chosen_for_few_sparse_streams_and_a_scan_for_dense_ones() -> None:
    """Rows each way: a quiet room in a large log is walked; a claim holding most of the log, scanned."""
    quiet = Admitted(["room:q", "volatile:room:q"], events=60, longest=40)
    assert walk_is_cheaper(quiet, head=2_000_000, after=0, limit=101)
    dense = Admitted([f"room:r{i}" for i in range(200)], events=1_500_000, longest=9_000)
    assert not walk_is_cheaper(dense, head=2_000_000, after=0, limit=101)
    assert walk_is_cheaper(Admitted([], events=0, longest=0), head=2_000_000, after=0, limit=101)
    # Near the head little is left to scan, so even a quiet room is scanned.
    assert not walk_is_cheaper(quiet, head=2_000_000, after=1_999_990, limit=101)
    # A types filter may match all of the streams' events or none: the walk must win both ways, the
    # second counting each way as reading to the end (the walk its streams' events, the scan all).
    assert walk_is_cheaper(quiet, head=2_000_000, after=0, limit=101, typed=True)
    assert not walk_is_cheaper(dense, head=2_000_000, after=0, limit=101, typed=True)


async def test_stream_walk_a_room_as_of_a_time_holds_the_events_recorded_by_then(
    log_engine: AsyncEngine,
) -> None:
    """Commits of several events share a time: a room as of each time, a time between two commits and
    times outside the log is the fold of exactly its events recorded by then."""
    store, history = EventStore(log_engine), History(log_engine)
    shuffled = random.Random(11)
    n = 0
    for size in [2, 4, 1, 6, 3, 1, 5, 2]:
        await _append(store, [_event(shuffled.choice(ROOMS[:3]), n + i) for i in range(size)])
        n += size
    everything = await _every_event(log_engine)
    times = sorted({e.recorded_at for e in everything})
    points = [times[0] - _SECOND, *times, times[2] + (times[3] - times[2]) / 2, times[-1] + _SECOND]
    for room in ROOMS[:3]:
        streams = {room_stream(room), volatile_stream(room_stream(room))}
        log = [e for e in everything if e.stream_id in streams]
        if not any(e.stream_id == room_stream(room) for e in log):
            continue  # a room without a durable event has no history
        for at in points:
            expected = project([e for e in log if e.recorded_at <= at], room)
            assert await history.room_state(room, at=at) == expected, (room, at)


_SECOND = timedelta(seconds=1)
_EVENTS = 20_000
_COMMIT = 500


@pytest.mark.parametrize("generic", [False, True], ids=["custom-plans", "generic-plans"])
async def test_stream_walk_pages_of_a_quiet_room_read_only_a_small_part_of_the_log(
    log_engine: AsyncEngine, generic: bool
) -> None:
    """40 commits of 500 events, two of each commit in a quiet room. Its page from the start and from
    halfway, the same narrowed by a claim, with a types filter, and its whole export are read; no
    statement may read a tenth of the log. Filtered on the room's streams over a walk of the partition
    in position order (a generic plan's choice), each of these read about half the log or all of it."""
    store, history = EventStore(log_engine), History(log_engine)
    quiet = "quiet"
    for first in range(0, _EVENTS, _COMMIT):
        busy = [_event("busy", n) for n in range(first, first + _COMMIT - 2)]
        await _append(store, [*busy, _event(quiet, first), _event(quiet, first + 1)])
    async with log_engine.begin() as conn:
        await conn.execute(text("ANALYZE events"))
    partition = partition_of(room_stream(quiet), LOG_PARTITIONS)
    every = [e for e in await _every_event(log_engine) if e.partition == partition]
    streams = {room_stream(quiet), volatile_stream(room_stream(quiet))}
    in_room = [e.position for e in every if e.stream_id in streams]
    halfway = in_room[len(in_room) // 2]
    claim = EventFilter(rooms=(quiet,))
    moves = EventFilter(rooms=claim.rooms, types=frozenset({CURSOR_MOVED}))
    busy_log = [e for e in await _every_event(log_engine) if e.stream_id == room_stream("busy")]
    first_commit = busy_log[0].recorded_at
    busy_then = [e for e in busy_log if e.recorded_at <= first_commit]

    with statements_of(log_engine) as statements:
        first = await history.room_events(quiet, limit=10, include_volatile=True)
        later = await history.room_events(quiet, cursor=halfway, limit=10, include_volatile=True)
        claimed = await history.all_events(after_position=halfway, limit=10, where=claim, partition=partition)
        moved = await history.all_events(limit=10, where=moves, partition=partition)
        exported = [e async for page in await history.export_room(quiet, include_volatile=True) for e in page]
        early = await history.room_state("busy", at=first_commit)
    assert [e.position for e in first.events] == in_room[:10]
    assert [e.position for e in later.events] == [p for p in in_room if p > halfway][:10]
    assert [e.position for e in claimed.events] == [p for p in in_room if p > halfway][:10]
    moved_in_room = [e.position for e in every if e.stream_id in streams and e.type == CURSOR_MOVED]
    assert [e.position for e in moved.events] == moved_in_room[:10]
    assert [e.position for e in exported] == in_room
    assert early.seq == len(busy_then) > 0
    for statement, plan in await plans(log_engine, statements, generic=generic):
        read = rows_read(plan)
        assert read < _EVENTS / 10, f"{read} rows read by {shape(plan)} for {statement}"


_CROWD = 3_000


@pytest.mark.parametrize("way", ["room", "walked", "scanned"])
async def test_stream_walk_pages_of_a_rare_type_take_a_few_statements_however_far_it_lies(
    log_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """3,000 joins of one room, then one leave and 3,000 more joins. A page of one leave (the room's,
    and a claim's walked or scanned) finds it in a few statements, about log2 of the distance, not
    the distance over the page size (1,500 statements or more), and says no page follows."""
    store, history = EventStore(log_engine), History(log_engine)
    monkeypatch.setattr(history_module, "walk_is_cheaper", lambda *_, **__: way == "walked")
    room = "crowded"
    joins = [_event(room, n) for n in range(1, 3 * _CROWD) if n % 3]  # no volatile events
    left = {"room_id": room, "user_id": "u0", "username": "u0", "connection_id": "c0"}
    leave = NewEvent(room_stream(room), USER_LEFT_ROOM, left, user_id="u0")
    for first in range(0, len(joins), _COMMIT):
        await _append(store, joins[first : first + _COMMIT])
        if first == _CROWD - _COMMIT:
            await _append(store, [leave])
    partition = partition_of(room_stream(room), LOG_PARTITIONS)
    leaves = frozenset({USER_LEFT_ROOM})

    with statements_of(log_engine) as statements:
        if way == "room":
            page = await history.room_events(room, limit=1, where=EventFilter(types=leaves))
        else:
            claim = EventFilter(rooms=("crowd*",), types=leaves)
            page = await history.all_events(limit=1, where=claim, partition=partition)
    assert [e.type for e in page.events] == [USER_LEFT_ROOM] and page.next_cursor is None
    assert len(statements) <= 20, len(statements)
