"""A log in four partitions on a real PostgreSQL: each partition has its own head, gapless positions
and transactions; every decision of the append (versions, idempotency keys, cells, a sheet's room)
holds as in a log of one; and nothing serves or writes a log under another partition count than its
own."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster import reaper
from engine.log.appender import Appender
from engine.log.embedded_postgres import database_url_for
from engine.log.migrate import upgrade_to_head
from engine.log.partition_locks import ALONE, Standing
from engine.log.partitions import (
    create_partitions,
    ensure_partitions,
    partition_of,
    read_heads,
)
from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import (
    FILE_UPLOAD_STARTED,
    FileClaimed,
    FileUploadStarted,
    UserJoinedRoom,
    UserStatusChanged,
)
from engine.model.errors import EngineError, ValidationFailed
from engine.model.events import Committed, Conflict, Duplicate, NewEvent, Origin, Refused
from engine.model.streams import room_stream, user_stream
from engine.projections.rooms import project
from engine.readmodels import idle_uploads, rebuild, room_listing
from engine.readmodels.history import History
from engine.readmodels.runner import ProjectorRunner, lock_checkpoint
from tests.conftest import admin_execute
from tests.integration.test_history_time_travel import _session
from tests.integration.test_log_writer import cell_update, claim, ev

PARTITIONS = 4
HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check


def split_database(server_url: str) -> Iterator[str]:
    """A database of its own whose log was created with four partitions, dropped afterwards."""
    name = f"collab_partitions_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_execute(server_url, f'CREATE DATABASE "{name}"'))
    url = database_url_for(server_url, name)
    upgrade_to_head(url, PARTITIONS)
    yield url
    asyncio.run(admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def partitioned_url(server_url: str) -> Iterator[str]:
    """Shared by the tests of this module, each on streams of its own."""
    yield from split_database(server_url)


@pytest.fixture
async def split_engine(partitioned_url: str) -> AsyncIterator[AsyncEngine]:
    db_engine = create_db_engine(partitioned_url, pool_size=PARTITIONS + 2)
    yield db_engine
    await db_engine.dispose()


def streams_in_each_partition(prefix: str, per_partition: int) -> dict[int, list[str]]:
    """Room stream ids, `per_partition` of them in every partition."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while any(len(ids) < per_partition for ids in found.values()):
        stream = f"room:{prefix}-{n}"
        n += 1
        ids = found[partition_of(stream, PARTITIONS)]
        if len(ids) < per_partition:
            ids.append(stream)
    return found


async def test_each_partition_has_its_own_gapless_positions_and_no_transaction_writes_two(
    split_engine: AsyncEngine,
) -> None:
    store = EventStore(split_engine)
    assert await store.partitions() == PARTITIONS
    async with split_engine.connect() as conn:
        heads_before = await read_heads(conn)
    streams = [s for ids in streams_in_each_partition(uuid.uuid4().hex, 5).values() for s in ids]
    appender = Appender(store, partitions=PARTITIONS, max_batch=64)
    await appender.start()
    try:
        # Concurrent submitters, each batch mixing every partition: the appender splits them.
        batches = [[ev(stream, n) for stream in streams] for n in range(1, 11)]
        results = await asyncio.gather(*(appender.append_many(batch) for batch in batches))
    finally:
        await appender.stop()
    assert all(isinstance(o, Committed) for outcomes in results for o in outcomes)
    assert set(appender._lanes) == set(range(PARTITIONS))  # one writer per partition

    async with split_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT partition, position, stream_id, stream_version, xmin::text AS tx FROM events "
                    "WHERE stream_id = ANY(:streams) ORDER BY partition, position"
                ),
                {"streams": streams},
            )
        ).all()
        heads = await read_heads(conn)
        counters = (
            await conn.execute(
                text("SELECT stream_id, partition, version FROM streams WHERE stream_id = ANY(:s)"),
                {"s": streams},
            )
        ).all()
    assert len(rows) == len(streams) * 10
    for partition in range(PARTITIONS):
        positions = [r.position for r in rows if r.partition == partition]
        # Gapless from the partition's own head, which counts this partition's events only.
        assert positions == list(range(heads_before[partition] + 1, heads[partition] + 1))
    for row in rows:
        assert row.partition == partition_of(row.stream_id, PARTITIONS)
    for stream in streams:
        assert [r.stream_version for r in rows if r.stream_id == stream] == list(range(1, 11))
    assert {(c.stream_id, c.partition, c.version) for c in counters} == {
        (s, partition_of(s, PARTITIONS), 10) for s in streams
    }
    transactions: dict[str, set[int]] = {}
    for row in rows:
        transactions.setdefault(row.tx, set()).add(row.partition)
    assert all(len(partitions) == 1 for partitions in transactions.values())
    assert len(transactions) >= PARTITIONS


async def test_decisions_hold_within_each_partition(split_engine: AsyncEngine) -> None:
    store = EventStore(split_engine)
    tag = uuid.uuid4().hex
    # A room and a sheet whose claim lives in another partition than the room's events and cells.
    room = next(
        f"{tag}-r{n}"
        for n in range(100)
        if partition_of(f"room:{tag}-r{n}", PARTITIONS) != partition_of(f"sheet:{tag}-s", PARTITIONS)
    )
    sheet = f"{tag}-s"
    (claimed,) = await store.append([claim(room, sheet)])
    assert isinstance(claimed, Committed)
    assert isinstance((await store.append([claim(f"{tag}-other", sheet)]))[0], Conflict)

    first, refused = await store.append(
        [cell_update(room, sheet, None, "first"), cell_update(f"{tag}-other", sheet, None, "elsewhere")]
    )
    assert isinstance(first, Committed) and isinstance(refused, Refused)  # the claim's room decides
    (stale,) = await store.append([cell_update(room, sheet, 0, "stale")])
    assert isinstance(stale, Refused)
    assert await store.sheet_room(sheet) == room
    at_head = await store.sheet_at_head(sheet)
    assert at_head is not None and at_head.cells["A1"]["value"] == "first"

    # A key is unique per user and stream, the volatile twin counting as its stream: a repeat in a
    # later append, to the twin, is found by the database's key lookup in the stream's partition.
    (once,) = await store.append([ev(f"user:{tag}", 1, user_id=tag, idempotency_key="k")])
    (again,) = await store.append([ev(f"volatile:user:{tag}", 2, user_id=tag, idempotency_key="k")])
    assert isinstance(once, Committed) and isinstance(again, Duplicate) and again.position == once.position
    (conflict,) = await store.append([ev(f"room:{room}", 9, expected_version=0)])
    assert isinstance(conflict, Conflict) and conflict.actual_version == 1

    async with split_engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT (SELECT partition FROM cells WHERE sheet_id = :sheet), "
                "(SELECT partition FROM sheets WHERE sheet_id = :sheet)"
            ),
            {"sheet": sheet},
        )
        assert tuple(found.one()) == (
            partition_of(f"room:{room}", PARTITIONS),
            partition_of(f"sheet:{sheet}", PARTITIONS),
        )


async def test_a_writer_refuses_a_stream_of_another_partition_or_a_log_split_otherwise(
    split_engine: AsyncEngine,
) -> None:
    store = EventStore(split_engine)
    streams = streams_in_each_partition(uuid.uuid4().hex, 1)
    writer = store.writer(0, PARTITIONS)
    try:
        with pytest.raises(ValueError, match="not in partition 0"):
            await writer.append([ev(streams[1][0], 1)])
    finally:
        await writer.close()
    unaware = store.writer()  # made for a log of one partition
    try:
        with pytest.raises(EngineError, match="4 partition"):
            await unaware.append([ev(streams[0][0], 1)])
    finally:
        await unaware.close()
    async with split_engine.connect() as conn:
        written = await conn.execute(
            text("SELECT count(*) FROM events WHERE stream_id = ANY(:s)"),
            {"s": [streams[0][0], streams[1][0]]},
        )
        assert written.scalar_one() == 0


async def test_partitions_are_fixed_when_the_log_is_created(split_engine: AsyncEngine) -> None:
    async with split_engine.begin() as conn:
        with pytest.raises(ValueError, match="fixed when a log is created"):
            await create_partitions(conn, 8)
    with pytest.raises(ValueError, match="1 to 1024"):
        async with split_engine.begin() as conn:
            await create_partitions(conn, 0)


@asynccontextmanager
async def new_log(server_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A database of its own, migrated, its log of one partition and empty; dropped afterwards."""
    name = f"collab_new_{uuid.uuid4().hex[:8]}"
    await admin_execute(server_url, f'CREATE DATABASE "{name}"')
    url = database_url_for(server_url, name)
    db_engine = create_db_engine(url)
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        yield url, db_engine
    finally:
        await db_engine.dispose()
        await admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_new_log_is_split_once_by_nodes_starting_together(server_url: str) -> None:
    """Two nodes with `LOG_PARTITIONS=4` starting at once both find four partitions: the second
    waits for the first and then sees the heads it added."""
    async with new_log(server_url) as (url, db_engine):
        assert await asyncio.gather(ensure_partitions(url, 4), ensure_partitions(url, 4)) == [4, 4]
        async with db_engine.connect() as conn:
            assert sorted(await read_heads(conn)) == [0, 1, 2, 3]
        assert await ensure_partitions(url, 8) == 4  # created with four, it keeps four


async def test_an_empty_log_that_a_node_serves_is_not_split(server_url: str) -> None:
    """A running node holds the count of the log it serves: splitting it under the node would send
    its appends and reads to the wrong partitions."""
    async with new_log(server_url) as (url, db_engine):
        async with db_engine.begin() as conn:
            await conn.execute(text("INSERT INTO nodes (node_id) VALUES ('serving-one')"))
        assert await ensure_partitions(url, 4) == 1
        async with db_engine.connect() as conn:
            assert list(await read_heads(conn)) == [0]


async def test_the_cells_rebuild_works_one_partition_at_a_time(split_engine: AsyncEngine) -> None:
    """Each partition's cells and sheets rows are its own: a rebuild of one partition puts back its
    rows and touches no other, and its diff shows only its own differences."""
    store = EventStore(split_engine)
    tag = uuid.uuid4().hex[:8]
    rooms = {p: ids[0].removeprefix("room:") for p, ids in streams_in_each_partition(tag, 1).items()}
    for p, room in rooms.items():
        (claimed,) = await store.append([claim(room, f"{tag}-s{p}")])
        (edited,) = await store.append([cell_update(room, f"{tag}-s{p}", None, f"v{p}")])
        assert isinstance(claimed, Committed) and isinstance(edited, Committed)
    assert await rebuild.diff_cells(split_engine) == []

    async with split_engine.begin() as conn:  # damage a cell in partitions 1 and 2
        for p in (1, 2):
            await conn.execute(
                text("UPDATE cells SET value = '\"damaged\"' WHERE partition = :p AND sheet_id = :s"),
                {"p": p, "s": f"{tag}-s{p}"},
            )
    assert await rebuild.diff_cells(split_engine, partition=0) == []
    assert any(f"{tag}-s1" in line for line in await rebuild.diff_cells(split_engine, partition=1))

    report = await rebuild.rebuild_cells(split_engine, partition=1)
    assert list(report.heads) == [1] and report.cells >= 1
    assert await rebuild.diff_cells(split_engine, partition=1) == []
    left = await rebuild.diff_cells(split_engine)
    assert left and all(f"{tag}-s2" in line for line in left)  # partition 2 was not touched
    await rebuild.rebuild_cells(split_engine)
    assert await rebuild.diff_cells(split_engine) == []
    with pytest.raises(ValidationFailed, match="0 to 3"):
        await rebuild.rebuild_cells(split_engine, partition=PARTITIONS)


async def test_the_one_off_append_splits_a_batch_and_keeps_its_order(split_engine: AsyncEngine) -> None:
    store = EventStore(split_engine)
    streams = streams_in_each_partition(uuid.uuid4().hex, 2)
    order = [streams[p][i] for i in range(2) for p in (3, 0, 2, 1)]
    items: list[NewEvent] = [ev(stream, n) for n, stream in enumerate(order)]
    outcomes = await store.append(items)
    for stream, item, outcome in zip(order, items, outcomes, strict=True):
        (logged,) = await store.read_stream(stream)
        assert logged.data == item.data and logged.partition == partition_of(stream, PARTITIONS)
        assert isinstance(outcome, Committed) and outcome.position == logged.position


async def test_an_edit_after_its_sheets_claim_in_another_partition_is_decided_on_the_claim(
    split_engine: AsyncEngine,
) -> None:
    """A claim commits in the sheet's partition without moving the room's head: neither a one-off
    batch holding both nor a room writer that saw the sheet unclaimed may refuse the edit after it."""
    store = EventStore(split_engine)
    tag = uuid.uuid4().hex[:8]
    pairs = (
        (f"{tag}-r{n}", f"{tag}-s{n}")
        for n in range(1000)
        if partition_of(f"room:{tag}-r{n}", PARTITIONS) != partition_of(f"sheet:{tag}-s{n}", PARTITIONS)
    )
    (room, sheet), (other_room, other_sheet) = next(pairs), next(pairs)

    # One batch: the claim is committed before the edit after it is decided.
    joined, claimed, edited = await store.append(
        [ev(f"room:{room}", 1), claim(room, sheet), cell_update(room, sheet, None, "x")]
    )
    assert isinstance(joined, Committed) and isinstance(claimed, Committed)
    assert isinstance(edited, Committed), edited

    # A room writer that saw the sheet unclaimed, then the claim by the sheet's writer.
    room_writer = store.writer(partition_of(f"room:{other_room}", PARTITIONS), PARTITIONS)
    sheet_writer = store.writer(partition_of(f"sheet:{other_sheet}", PARTITIONS), PARTITIONS)
    try:
        first, early = await room_writer.append(
            [ev(f"room:{other_room}", 1), cell_update(other_room, other_sheet, None, "early")]
        )
        assert isinstance(first, Committed) and isinstance(early, Refused)
        (claimed,) = await sheet_writer.append([claim(other_room, other_sheet)])
        assert isinstance(claimed, Committed)
        late, after = await room_writer.append(
            [cell_update(other_room, other_sheet, None, "late"), ev(f"room:{other_room}", 2)]
        )
    finally:
        await room_writer.close()
        await sheet_writer.close()
    assert isinstance(late, Committed), late
    assert isinstance(after, Committed)


async def test_a_rooms_history_and_time_travel_read_its_own_partition(split_engine: AsyncEngine) -> None:
    """On a log of several partitions, positions of one partition overlap another's: every read of a
    room, its export included, must stay in the room's partition and reach its own head."""
    store = EventStore(split_engine)
    tag = uuid.uuid4().hex[:8]
    room = next(f"{tag}-{n}" for n in range(100) if partition_of(room_stream(f"{tag}-{n}"), PARTITIONS) == 3)
    # The room's partition runs ahead of partition 0 first, so all of the room's events lie beyond
    # partition 0's head, where an export bounded by that head would not reach.
    filler = streams_in_each_partition(f"{tag}-filler", 1)[3][0]
    async with split_engine.connect() as conn:
        heads = await read_heads(conn)
    await store.append([ev(filler, n) for n in range(heads[0] - heads[3] + 10)])
    await _session(store, room)
    async with split_engine.connect() as conn:
        heads = await read_heads(conn)

    history = History(split_engine, partitions=PARTITIONS, snapshot_every=4)
    logged = await store.read_stream(room_stream(room))
    assert await history.room_seq(room) == len(logged) == 9
    page = await history.room_events(room, limit=100, include_volatile=True)
    assert len(page.events) == 12 and all(e.partition == 3 for e in page.events)
    assert min(e.position for e in page.events) > heads[0]
    exported = [e async for chunk in await history.export_room(room, include_volatile=True) for e in chunk]
    assert [e.position for e in exported] == [e.position for e in page.events]
    for index, event in enumerate(page.events):  # the room as of each seq: its log up to there
        if event.stream_id == room_stream(room):
            view = project(page.events[: index + 1], room)
            assert await history.room_state(room, seq=event.stream_version) == view
    sheet = f"{room}-sheet"
    assert await history.sheet_room(sheet) == room
    as_of = await history.sheet_cells(sheet, seq=5)
    assert {cell_id: cell.value for cell_id, cell in as_of.sheet.cells.items()} == {"A1": 2, "B1": "x"}
    versions, _ = await history.cell_history(sheet, "A1")
    assert [cell.value for cell in versions] == [1, 2, 3]


@pytest.fixture
def fresh_split_url(server_url: str) -> Iterator[str]:
    """For a test that folds the whole log: nothing else may be in it."""
    yield from split_database(server_url)


async def test_two_runners_share_the_partitions_and_one_takes_them_all_when_alone(
    fresh_split_url: str,
) -> None:
    """Two runners told that two share the log each project half of its partitions, never the same
    one; once one stops and the other is told it is alone, it takes every partition over. The tables
    then say what a fold of the log says."""
    engines = [create_db_engine(fresh_split_url) for _ in range(2)]  # two processes' pools
    standings = [Standing(0, 2), Standing(1, 2)]
    runners = [
        ProjectorRunner(e, poll_seconds=0.05, share=lambda i=i: standings[i]) for i, e in enumerate(engines)
    ]
    store = EventStore(engines[0])
    try:
        for runner in runners:
            runner.start()
        for n in range(8):
            await _session(store, f"shared-{n}")
        async with asyncio.timeout(HANG_GUARD):
            while not all(runner.held and len(runner.held) == 2 for runner in runners):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        first, second = (runner.held or set() for runner in runners)
        assert first.isdisjoint(second) and first | second == set(range(PARTITIONS))
        await _caught_up(engines[0])
        assert all(runner.events_applied > 0 for runner in runners)
        assert await rebuild.diff_projections(engines[0]) == []

        await runners[0].stop()
        standings[1] = ALONE
        for n in range(8, 12):
            await _session(store, f"shared-{n}")
        async with asyncio.timeout(HANG_GUARD):
            while runners[1].held != set(range(PARTITIONS)):  # noqa: ASYNC110 (no event for it)
                await asyncio.sleep(0.02)
        await _caught_up(engines[0])
        assert await rebuild.diff_projections(engines[0]) == []
        async with engines[0].connect() as conn:
            listed = await conn.execute(text("SELECT count(*) FROM rooms WHERE room_id LIKE 'shared-%'"))
            assert listed.scalar_one() == 12
    finally:
        for runner in runners:
            await runner.stop()
        for db_engine in engines:
            await db_engine.dispose()


async def test_three_runners_on_four_partitions_hold_two_one_and_one(fresh_split_url: str) -> None:
    """Shares add up to the partition count: each rounding up would let the first two take two each
    and leave the third nothing. Two runners hold two each; when a third joins, the second hands one
    over; when that one stops and the two left are told so, they hold two each again."""
    engines = [create_db_engine(fresh_split_url) for _ in range(3)]
    standings = [Standing(0, 2), Standing(1, 2), Standing(2, 3)]
    runners = [
        ProjectorRunner(e, poll_seconds=0.05, share=lambda i=i: standings[i]) for i, e in enumerate(engines)
    ]
    try:
        for runner in runners[:2]:
            runner.start()
        async with asyncio.timeout(HANG_GUARD):
            while [len(runner.held or ()) for runner in runners[:2]] != [2, 2]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        standings[:2] = [Standing(0, 3), Standing(1, 3)]
        runners[2].start()
        async with asyncio.timeout(HANG_GUARD):
            while [len(runner.held or ()) for runner in runners] != [2, 1, 1]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        held = [runner.held or set() for runner in runners]
        assert set().union(*held) == set(range(PARTITIONS))
        assert sum(len(h) for h in held) == PARTITIONS  # no partition held twice

        await runners[1].stop()
        standings[0], standings[2] = Standing(0, 2), Standing(1, 2)
        async with asyncio.timeout(HANG_GUARD):
            while [len(runners[i].held or ()) for i in (0, 2)] != [2, 2]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert (runners[0].held or set()) | (runners[2].held or set()) == set(range(PARTITIONS))
    finally:
        for runner in runners:
            await runner.stop()
        for db_engine in engines:
            await db_engine.dispose()


async def _caught_up(db_engine: AsyncEngine) -> None:
    """Every partition's projections checkpoint at its head as it is now."""
    async with db_engine.connect() as conn:
        heads = await read_heads(conn)
    async with asyncio.timeout(HANG_GUARD):
        while True:
            async with db_engine.connect() as conn:
                found = await conn.execute(
                    text("SELECT partition, position FROM projector_checkpoints WHERE name = 'projections'")
                )
                reached = dict(found.all())
            if all(reached.get(p, 0) >= head for p, head in heads.items()):
                return
            await asyncio.sleep(0.02)


async def test_the_projections_fold_each_partition_from_its_own_checkpoint_and_rebuild_to_the_same(
    fresh_split_url: str,
) -> None:
    db_engine = create_db_engine(fresh_split_url)
    try:
        store = EventStore(db_engine)
        rooms = [f"proj-{n}" for n in range(12)]
        assert len({partition_of(room_stream(room), PARTITIONS) for room in rooms}) > 1
        for room in rooms:
            await _session(store, room)
        runner = ProjectorRunner(db_engine, page=25)
        async with db_engine.connect() as conn:
            while await runner.step(conn):
                pass
            heads = await read_heads(conn)
            found = await conn.execute(
                text("SELECT partition, position FROM projector_checkpoints WHERE name = 'projections'")
            )
            checkpoints = dict(found.all())
            listed = (await conn.execute(text("SELECT room_id, seq FROM rooms ORDER BY room_id"))).all()
        assert checkpoints == heads and runner.positions == heads
        assert dict(listed) == {room: 9 for room in rooms}
        # More rooms the runner has not folded yet: the diff folds each partition up to its own
        # checkpoint, not its head, so the tables still agree with it.
        for room in rooms[:3]:
            await _session(store, f"{room}-later")
        assert await rebuild.diff_projections(db_engine) == []

        # A rebuild from the log writes the same rows and moves every partition's checkpoint to its head.
        async with db_engine.begin() as conn:
            await conn.execute(text("UPDATE rooms SET messages_sent = messages_sent + 1"))
        assert await rebuild.diff_projections(db_engine) != []
        report = await rebuild.rebuild_projections(db_engine)
        async with db_engine.connect() as conn:
            heads = await read_heads(conn)
        assert report.head == sum(heads.values()) == report.events_read
        assert await rebuild.diff_projections(db_engine) == []
        # The runner finds its checkpoints moved, reloads what it cached, and carries on from them.
        await _session(store, "after-the-rebuild")
        async with db_engine.connect() as conn:
            while await runner.step(conn):
                pass
            found = await conn.execute(text("SELECT seq FROM rooms WHERE room_id = 'after-the-rebuild'"))
            assert found.scalar_one() == 9
        assert await rebuild.diff_projections(db_engine) == []
    finally:
        await db_engine.dispose()


async def test_the_projections_rebuild_works_one_partition_at_a_time(fresh_split_url: str) -> None:
    """Every projection row is kept in the partition of the streams that feed it (a room's rows in
    the room's, a declared status in its user's), a rebuild of one partition puts back its rows and
    checkpoint and touches no other partition's, and the diff finds a row kept in the wrong
    partition."""
    db_engine = create_db_engine(fresh_split_url)
    try:
        store = EventStore(db_engine)
        rooms = {p: ids[0].removeprefix("room:") for p, ids in streams_in_each_partition("rb", 1).items()}
        users = {partition_of(user_stream(u), PARTITIONS): u for u in (f"rb-user-{n}" for n in range(40))}
        assert sorted(users) == list(range(PARTITIONS))
        for room in rooms.values():
            await _session(store, room)
        for user in users.values():
            await store.append([UserStatusChanged(user, "busy").new(Origin("n", user))])
        runner = ProjectorRunner(db_engine)
        async with db_engine.connect() as conn:
            while await runner.step(conn):
                pass
            found = await conn.execute(text("SELECT room_id, partition FROM rooms"))
            assert dict(found.all()) == {room: p for p, room in rooms.items()}
            found = await conn.execute(text("SELECT DISTINCT room_id, partition FROM room_members"))
            assert dict(found.all()) == {room: p for p, room in rooms.items()}
            found = await conn.execute(text("SELECT user_id, partition FROM declared_statuses"))
            assert dict(found.all()) == {user: p for p, user in users.items()}
        assert await rebuild.diff_projections(db_engine) == []

        async with db_engine.begin() as conn:  # damage rows in partitions 1 and 2; move one to 3
            await conn.execute(text("UPDATE rooms SET messages_sent = 1000 WHERE partition IN (1, 2)"))
            await conn.execute(
                text("UPDATE declared_statuses SET partition = 3 WHERE partition = 0 AND user_id = :u"),
                {"u": users[0]},
            )
            found = await conn.execute(
                text("SELECT partition, position FROM projector_checkpoints WHERE name = 'projections'")
            )
            checkpoints = dict(found.all())
        moved = f"declared_statuses {users[0]}"
        assert await rebuild.diff_projections(db_engine, partition=0) == [
            f"{moved}: in the log but missing from the table"
        ]
        assert await rebuild.diff_projections(db_engine, partition=3) == [
            f"{moved}: in the table but not in the log"
        ]
        everywhere = await rebuild.diff_projections(db_engine)
        assert f"{moved}: partition is 3 in the table, 0 in the log" in everywhere
        assert await rebuild.diff_projections(db_engine, partition=1) == [
            f"rooms {rooms[1]}: messages_sent is 1000 in the table, 8 in the log"
        ]

        # A room the runner has not folded yet: the rebuild folds the partition up to its head.
        later = streams_in_each_partition("rb-later", 1)[1][0].removeprefix("room:")
        await _session(store, later)
        report = await rebuild.rebuild_projections(db_engine, partition=1)
        async with db_engine.connect() as conn:
            heads = await read_heads(conn)
            found = await conn.execute(
                text("SELECT partition, position FROM projector_checkpoints WHERE name = 'projections'")
            )
            after = dict(found.all())
        assert report.heads == {1: heads[1]} and after[1] == heads[1]
        assert report.rows["rooms"] == 2  # rooms[1] and the later one
        assert after[2] == checkpoints[2] and after[3] == checkpoints[3]
        assert await rebuild.diff_projections(db_engine, partition=1) == []
        left = await rebuild.diff_projections(db_engine)
        assert f"rooms {rooms[2]}: messages_sent is 1000 in the table, 8 in the log" in left  # untouched
        assert f"{moved}: partition is 3 in the table, 0 in the log" in left

        await rebuild.rebuild_projections(db_engine, partition=3)  # takes the stray row out of 3
        assert await rebuild.diff_projections(db_engine, partition=3) == []
        await rebuild.rebuild_projections(db_engine)
        assert await rebuild.diff_projections(db_engine) == []
        with pytest.raises(ValidationFailed, match="0 to 3"):
            await rebuild.rebuild_projections(db_engine, partition=PARTITIONS)
    finally:
        await db_engine.dispose()


async def test_a_partition_being_rebuilt_holds_back_no_other_partition_of_its_runner(
    fresh_split_url: str,
) -> None:
    """While a rebuild holds one partition's checkpoint row (it does for the whole of its fold), the
    runner projecting every partition skips that one and moves the others on; once the rebuild
    commits, it carries that one on too."""
    db_engine = create_db_engine(fresh_split_url)
    try:
        store = EventStore(db_engine)
        users = {partition_of(user_stream(u), PARTITIONS): u for u in (f"held-{n}" for n in range(40))}

        async def declare(partition: int, status: str) -> None:
            user = users[partition]
            (outcome,) = await store.append([UserStatusChanged(user, status).new(Origin("n", user))])
            assert isinstance(outcome, Committed)

        for partition in (1, 2):
            await declare(partition, "busy")
        runner = ProjectorRunner(db_engine)
        async with db_engine.connect() as conn:
            while await runner.step(conn):
                pass
        for partition in (1, 2):
            await declare(partition, "away")
        async with db_engine.connect() as rebuilding, db_engine.connect() as conn:
            async with rebuilding.begin():
                await lock_checkpoint(rebuilding, partition=1)  # as the rebuild of partition 1 does
                async with asyncio.timeout(HANG_GUARD):
                    while await runner.step(conn):
                        pass
                found = await conn.execute(text("SELECT user_id, status FROM declared_statuses"))
                await conn.rollback()
                assert dict(found.all()) == {users[1]: "busy", users[2]: "away"}
            async with asyncio.timeout(HANG_GUARD):
                while await runner.step(conn):
                    pass
            found = await conn.execute(text("SELECT user_id, status FROM declared_statuses"))
            assert dict(found.all()) == {users[1]: "away", users[2]: "away"}
            assert runner.positions == await read_heads(conn)
    finally:
        await db_engine.dispose()


# The tables whose rows live in a partition, and what names the partition in a statement: a filter
# (`partition = ...`, `partition IN ...`, `= ANY(...)`) or, for an insert, the column itself.
_PARTITIONED = re.compile(
    r"\b(events|streams|cells|sheets|log_head|projector_checkpoints|rooms|room_members|declared_statuses"
    r"|typing|notifications|uploads|ai_requests|room_snapshots)\b"
)
_NAMES_PARTITION = re.compile(
    r'\bpartition\s*(=|IN\b)|INSERT INTO "?\w+"? \([^)]*\bpartition\b', re.IGNORECASE
)
# Reads of every partition at once, on purpose: how many there are, their heads, each partition's
# checkpoint of one projector, and the diff's scratch copies of the tables.
_EVERY_PARTITION = (
    "SELECT count(*) FROM log_head",
    "SELECT partition, position FROM log_head",
    "SELECT partition, position FROM projector_checkpoints WHERE name = ",
    "CREATE TEMP TABLE",
)
# And two reads across every partition by design: the room listing (busiest first) and the sweep of
# idle uploads.
_ACROSS_PARTITIONS = ("ORDER BY r.user_count DESC", "ORDER BY updated_at, file_id")


async def test_every_statement_on_a_partitioned_table_names_its_partition(fresh_split_url: str) -> None:
    """What a distributed database needs to send a statement to one node: run the store's reads,
    history, the projector runner, the projections' and the cells' rebuild and diff, a room's detail
    and the reaper's search on a log of four partitions,
    and check that every statement they send names a partition. A statement over two tables passes
    when one of them names it, so the reads run on ids whose partitions differ (room and sheet, file
    and owner) and their answers are checked: a read in the wrong partition finds nothing. (The
    appender's writes go through the driver directly; the transaction test above shows them one
    partition at a time.)"""
    db_engine = create_db_engine(fresh_split_url)
    sent: list[str] = []
    sqlalchemy_event.listen(
        db_engine.sync_engine, "before_cursor_execute", lambda *args: sent.append(args[2])
    )
    try:
        store = EventStore(db_engine)
        room = next(
            f"lint-{n}"
            for n in range(100)
            if partition_of(f"room:lint-{n}", PARTITIONS) != partition_of(f"sheet:lint-{n}-sheet", PARTITIONS)
        )
        sheet = f"{room}-sheet"
        user = next(
            f"u{n}"
            for n in range(100)
            if len({partition_of(f"user:u{n}", PARTITIONS), partition_of("file:f1", PARTITIONS)}) == 2
        )
        await _session(store, room)
        await store.append([FileClaimed("f1", user).claim(Origin("n", user))])
        start = FileUploadStarted(user, "f1", "a.csv", 3, "text/csv").new(Origin("n", user))
        await store.append([replace(start, idempotency_key="k")])
        await store.append([UserStatusChanged(user, "busy").new(Origin("n", user))])
        assert len(await store.read_stream(room_stream(room))) == 9
        assert await store.stream_version(room_stream(room)) == 9
        assert await store.sheet_room(sheet) == room
        at_head = await store.sheet_at_head(sheet)
        assert at_head is not None and at_head.seq == 9 and at_head.cells["A1"]["value"] == 3
        assert [e.type for e in await store.file_claims("f1")] == [FILE_UPLOAD_STARTED]
        assert [e.type for e in await store.upload_events(user, "f1")] == [FILE_UPLOAD_STARTED]
        found = await store.event_by_key(user, "k", user_stream(user))
        assert found is not None and found.type == FILE_UPLOAD_STARTED
        assert await store.latest_statuses([user, "bob"]) == {user: "busy"}
        cursors = await store.latest_cursors(room, ["alice", "bob", "carol"])
        assert [(e.data["user_id"], e.data["x"]) for e in cursors] == [("bob", 1), ("alice", 5), ("carol", 9)]
        assert len(await store.read_all(0, partition=partition_of(room_stream(room), PARTITIONS))) >= 12
        history = History(db_engine, partitions=PARTITIONS, snapshot_every=2)
        await history.room_events(room, include_volatile=True)
        await history.room_state(room, seq=5)
        await history.sheet_cells(sheet, seq=5)
        await history.cell_history(sheet, "A1")
        async for _ in await history.export_room(room):
            pass
        async with db_engine.connect() as conn:
            while await ProjectorRunner(db_engine).step(conn):
                pass
        await rebuild.rebuild_projections(db_engine)
        assert await rebuild.diff_projections(db_engine) == []
        rebuilt = await rebuild.rebuild_cells(db_engine)
        assert rebuilt.cells >= 2 and await rebuild.diff_cells(db_engine) == []
        detail = await room_listing.room_detail(db_engine, room, now=datetime.now(UTC), partitions=PARTITIONS)
        assert detail.seq == 9
        assert [room] == [r.room_id for r in await room_listing.list_rooms(db_engine, now=datetime.now(UTC))]
        assert [u.file_id for u in await idle_uploads.idle_uploads(db_engine, datetime.now(UTC))] == ["f1"]
        # A node that died with a member in the room: the reaper finds the open join in the room's
        # partition.
        joined = UserJoinedRoom(room, "dave", "Dave", None, "c-dave").new(
            Origin("lost-node", "dave", "c-dave")
        )
        await store.append([joined])
        gone = reaper.DeadNode("lost-node", datetime(2000, 1, 1, tzinfo=UTC))
        async with db_engine.connect() as conn:
            leaves = await reaper.leaves_for(conn, gone, "survivor")
        assert [(e.stream_id, e.data["user_id"]) for e in leaves] == [(room_stream(room), "dave")]
    finally:
        await db_engine.dispose()
    checked = [
        s
        for s in sent
        if _PARTITIONED.search(s)
        and not s.strip().startswith(_EVERY_PARTITION)
        and not any(across in s for across in _ACROSS_PARTITIONS)
    ]
    assert len(checked) > 20
    unnamed = [" ".join(s.split()) for s in checked if not _NAMES_PARTITION.search(s)]
    assert unnamed == []
