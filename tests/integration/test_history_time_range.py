"""Pages of the log filtered by time (engine/readmodels/time_range.py) against a real PostgreSQL: every
`since`/`until` pair gives exactly the events recorded within it, ties and ends included, in every
partition; and on a log of many commits, no statement of such a page reads more than a small part of
it, however the range lies."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.partitions import partition_of, read_head
from engine.log.store import EventStore
from engine.model.catalogue import CURSOR_MOVED, USER_JOINED_ROOM
from engine.model.events import Committed, NewEvent, RecordedEvent
from engine.model.streams import room_stream, volatile_stream
from engine.readmodels.history import EventFilter, History
from tests.conftest import LOG_PARTITIONS
from tests.integration.query_plans import plans, rows_read, shape, statements_of

ROOMS = ["north", "south", "east"]


def _moves(count: int, first: int) -> list[NewEvent]:
    """Cursor moves spread over the rooms: one commit of them shares one recorded_at."""
    return [
        NewEvent(volatile_stream(room_stream(ROOMS[n % len(ROOMS)])), CURSOR_MOVED, {"n": n}, user_id="u")
        for n in range(first, first + count)
    ]


def _joins() -> list[NewEvent]:
    """A durable event in each room: a room without one has no history to page."""
    return [
        NewEvent(room_stream(room), USER_JOINED_ROOM, {"room_id": room, "user_id": "u"}, user_id="u")
        for room in ROOMS
    ]


async def _append(store: EventStore, batch: list[NewEvent]) -> None:
    assert all(isinstance(outcome, Committed) for outcome in await store.append(batch))


async def _partition_pages(history: History, partition: int, where: EventFilter, limit: int) -> list[int]:
    """The positions of every page of one partition, following next_cursor."""
    found: list[int] = []
    cursor = 0
    while True:
        page = await history.all_events(after_position=cursor, limit=limit, where=where, partition=partition)
        found += [e.position for e in page.events]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def _room_pages(history: History, room: str, where: EventFilter, limit: int) -> list[int]:
    found: list[int] = []
    cursor = None
    while True:
        page = await history.room_events(room, cursor=cursor, limit=limit, where=where, include_volatile=True)
        found += [e.position for e in page.events]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def test_history_time_range_pages_hold_exactly_the_events_recorded_within_it(
    log_engine: AsyncEngine,
) -> None:
    store, history = EventStore(log_engine), History(log_engine)
    await _append(store, _joins())
    n = len(ROOMS)
    for size in [1, 3, 2, 4, 1, 1, 5, 2, 3, 1, 2, 1]:  # commits of several events share their time
        await _append(store, _moves(size, n))
        n += size
    everything = [e for p in range(LOG_PARTITIONS) for e in await _every_event(log_engine, p)]
    assert len(everything) == n
    times = sorted({e.recorded_at for e in everything})
    # The ends, times outside the log, the times of commits of one and of several events, and a time
    # between two commits.
    inside = [times[0], times[3], times[3] + (times[4] - times[3]) / 2, times[6], times[7], times[-1]]
    points: list[datetime | None] = [None, times[0] - _SECOND, *inside, times[-1] + _SECOND]

    def within(e: RecordedEvent, since: datetime | None, until: datetime | None) -> bool:
        return (since is None or e.recorded_at >= since) and (until is None or e.recorded_at <= until)

    for since in points:
        for until in points:
            if since is not None and until is not None and since > until:
                continue
            where = EventFilter(since=since, until=until)
            for partition in range(LOG_PARTITIONS):
                expected = [
                    e.position for e in everything if e.partition == partition and within(e, since, until)
                ]
                assert await _partition_pages(history, partition, where, 3) == expected, (since, until)
            room = ROOMS[points.index(since) % len(ROOMS)]
            streams = {room_stream(room), volatile_stream(room_stream(room))}
            expected = [e.position for e in everything if e.stream_id in streams and within(e, since, until)]
            assert await _room_pages(history, room, where, 3) == expected, (room, since, until)


_SECOND = timedelta(seconds=1)
_EVENTS = 20_000
_COMMIT = 500


async def test_history_time_range_pages_read_only_the_positions_their_range_can_hold(
    log_engine: AsyncEngine,
) -> None:
    """40 commits of 500 events. A page from the time of the last 150 events, one up to the first
    commit's time and a room's page from halfway are read; no statement may read a tenth of the log.
    Filtered on time alone (in a log of one partition), the first walked the log from its start, the
    second rechecked every row of the time index's range and the third walked half the log."""
    store, history = EventStore(log_engine), History(log_engine)
    await _append(store, _joins())
    for first in range(0, _EVENTS, _COMMIT):
        await _append(store, _moves(_COMMIT, first))
    async with log_engine.begin() as conn:
        await conn.execute(text("ANALYZE events"))
    room = ROOMS[0]
    partition = partition_of(room_stream(room), LOG_PARTITIONS)
    head = await _head(log_engine, partition)

    async def recorded_after(position: int) -> datetime:
        page = await history.all_events(after_position=position, limit=1, partition=partition)
        return page.events[0].recorded_at

    first, halfway, late = (
        await recorded_after(0),
        await recorded_after(head // 2),
        await recorded_after(head - 150),
    )

    with statements_of(log_engine) as statements:
        newest = await history.all_events(limit=100, partition=partition, where=EventFilter(since=late))
        oldest_commit = await history.all_events(
            limit=1000, partition=partition, where=EventFilter(until=first)
        )
        from_middle = await history.room_events(
            room, limit=100, include_volatile=True, where=EventFilter(since=halfway)
        )
    everything = await _every_event(log_engine, partition)
    from_late = [e.position for e in everything if e.recorded_at >= late][:100]
    assert [e.position for e in newest.events] == from_late and newest.next_cursor is not None
    assert oldest_commit.events and all(e.recorded_at == first for e in oldest_commit.events)
    assert oldest_commit.next_cursor is None
    streams = {room_stream(room), volatile_stream(room_stream(room))}
    in_room = [e.position for e in everything if e.stream_id in streams and e.recorded_at >= halfway]
    assert [e.position for e in from_middle.events] == in_room[:100]
    for statement, plan in await plans(log_engine, statements):
        read = rows_read(plan)
        assert read < _EVENTS / 10, f"{read} rows read by {shape(plan)} for {statement}"


async def _head(db_engine: AsyncEngine, partition: int) -> int:
    async with db_engine.connect() as conn:
        return await read_head(conn, partition)


async def _every_event(db_engine: AsyncEngine, partition: int) -> list[RecordedEvent]:
    async with db_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT * FROM events WHERE partition = :p ORDER BY position"), {"p": partition}
        )
        return [RecordedEvent(**row) for row in rows.mappings()]


# An event appended the way a log written before `recorded_at` was kept from going back could hold
# one: at the partition's next position and its stream's next version, recorded an hour earlier than
# the event before it.
_STEPPED_BACK = """
    WITH head AS (
        UPDATE log_head SET position = position + 1 WHERE partition = :partition RETURNING position
    ), stream AS (
        UPDATE streams SET version = version + 1
        WHERE partition = :partition AND stream_id = :stream RETURNING version
    )
    INSERT INTO events (partition, position, stream_id, stream_version, type, data, user_id, recorded_at)
    SELECT :partition, head.position, :stream, stream.version, :type, CAST(:data AS jsonb), 'u',
           (SELECT recorded_at FROM events WHERE partition = :partition ORDER BY position DESC LIMIT 1)
           - interval '1 hour'
    FROM head, stream
"""


async def test_history_time_range_pages_of_a_log_whose_clock_went_back_hold_no_event_outside_it(
    log_engine: AsyncEngine,
) -> None:
    """A log written on a clock that stepped back, before the rule: a page of a range that starts after
    the stepped event's time holds no event outside the range (the stepped one), and every event of
    the range after it, whether the page is the partition's, the room's or a claim's. (Events of the
    range before the step may be missed: the range's positions are found by bisection.)"""
    store, history = EventStore(log_engine), History(log_engine)
    room = ROOMS[0]
    await _append(store, _joins())
    await _append(store, _moves(6, 0))
    partition = partition_of(room_stream(room), LOG_PARTITIONS)
    stepped = {"stream": room_stream(room), "type": USER_JOINED_ROOM, "data": '{"room_id": "north"}'}
    async with log_engine.begin() as conn:
        await conn.execute(text(_STEPPED_BACK), {"partition": partition, **stepped})
    await _append(store, _moves(6, 6))
    everything = await _every_event(log_engine, partition)
    back = next(e for e in reversed(everything) if e.stream_id == room_stream(room))
    since = back.recorded_at + _SECOND
    where = EventFilter(since=since)
    streams = {room_stream(room), volatile_stream(room_stream(room))}
    claimed = EventFilter(since=since, rooms=(room,))
    cases: list[tuple[list[int], set[str] | None]] = [
        (await _room_pages(history, room, where, 2), streams),
        (await _partition_pages(history, partition, claimed, 2), streams),
        (await _partition_pages(history, partition, where, 2), None),
    ]
    for pages, only in cases:
        held = [e for e in everything if e.position in pages]
        assert back.position not in pages and all(e.recorded_at >= since for e in held), only
        after = [e for e in everything if e.position > back.position]
        later = [e.position for e in after if only is None or e.stream_id in only]
        assert [p for p in pages if p > back.position] == later, only
