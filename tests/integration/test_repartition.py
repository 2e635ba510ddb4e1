"""Moving a log to another partition count (engine/cluster/repartition.py) on a real PostgreSQL: every
event arrives in its stream's new partition with its version, data, key and time; positions are
gapless and `recorded_at` never goes backwards in each partition; each partition is written by its own
transaction; and whatever the move refuses leaves both databases as they were."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster.repartition import MoveRefused, move_log
from engine.log.migrate import downgrade, head_revision, upgrade_to_head
from engine.log.partitions import partition_of
from engine.log.store import EventStore, create_db_engine, libpq_dsn
from engine.model.catalogue import FILE_UPLOAD_STARTED, TypingStarted, UserJoinedRoom
from engine.model.events import Committed, Duplicate, NewEvent, Origin
from engine.model.streams import room_stream, volatile_stream
from engine.projections import typing_indicators
from engine.readmodels.rebuild import diff_all
from tests.conftest import transactions_spanning_partitions
from tests.integration.projection_helpers import fresh_database

_EVENTS = """
    SELECT stream_id, stream_version, type, data, metadata, user_id, idempotency_key, recorded_at
    FROM events ORDER BY stream_id, stream_version
"""


@pytest.fixture
def source(server_url: str) -> Iterator[str]:
    with fresh_database(server_url, partitions=4) as url:
        yield url


@pytest.fixture
def target(empty_database: str) -> str:
    """A new database with no schema: the move migrates it."""
    return empty_database


@pytest.fixture
async def source_engine(source: str) -> AsyncIterator[AsyncEngine]:
    db_engine = create_db_engine(source)
    yield db_engine
    await db_engine.dispose()


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def fill(store: EventStore, streams: int = 12, rounds: int = 5) -> None:
    """Events in `streams` streams over the source's partitions, appended in interleaved batches, so
    the partitions' times interleave; every other one with an idempotency key."""
    for round_ in range(rounds):
        batch = [
            NewEvent(
                f"test:s{n}",
                "Noted",
                {"round": round_, "n": n, "text": "é ✓"},
                metadata={"client_msg_id": f"k-{n}-{round_}"} if n % 2 else {},
                user_id=f"u{n}",
                idempotency_key=f"k-{n}-{round_}" if n % 2 else None,
            )
            for n in range(streams)
        ]
        for part in (batch[: streams // 2], batch[streams // 2 :]):
            outcomes = await store.append(part)
            assert all(isinstance(o, Committed) for o in outcomes)


async def test_a_log_of_four_moved_into_three_keeps_every_event_in_recorded_order(
    source: str, target: str, source_engine: AsyncEngine
) -> None:
    await fill(EventStore(source_engine))
    blocks = "INSERT INTO rate_blocks VALUES ('u1', now() + interval '1 hour', 'flood'), ('u2', now(), 'old')"
    await fetch(source, blocks)
    report = await move_log(source, target, 3, page=7)  # pages smaller than the log
    assert (report.source_partitions, report.streams, report.events, report.blocks) == (4, 12, 60, 1)
    assert [r["user_id"] for r in await fetch(target, "SELECT user_id FROM rate_blocks")] == ["u1"]

    before, after = await fetch(source, _EVENTS), await fetch(target, _EVENTS)
    assert [tuple(row) for row in after] == [tuple(row) for row in before]
    moved = await fetch(target, "SELECT partition, position, stream_id, recorded_at FROM events")
    by_partition = {
        p: sorted(rows, key=lambda r: r["position"])
        for p, rows in itertools.groupby(
            sorted(moved, key=lambda r: r["partition"]), lambda r: r["partition"]
        )
    }
    assert len(by_partition) > 1
    for partition, rows in by_partition.items():
        assert [r["position"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(partition_of(r["stream_id"], 3) == partition for r in rows)
        times = [r["recorded_at"] for r in rows]
        assert times == sorted(times)
    heads = await fetch(target, "SELECT partition, position FROM log_head ORDER BY partition")
    assert (
        {r["partition"]: r["position"] for r in heads}
        == report.heads
        == {p: len(by_partition.get(p, [])) for p in range(3)}
    )
    counters = await fetch(target, "SELECT stream_id, partition, version FROM streams")
    assert {(r["stream_id"], r["partition"], r["version"]) for r in counters} == {
        (f"test:s{n}", partition_of(f"test:s{n}", 3), 5) for n in range(12)
    }
    assert await transactions_spanning_partitions(target) == []

    moved_engine = create_db_engine(target)
    try:
        assert await diff_all(moved_engine) == []
        store = EventStore(moved_engine)
        again = NewEvent("test:s1", "Noted", {}, user_id="u1", idempotency_key="k-1-0")
        fresh = NewEvent("test:s1", "Noted", {"after": "move"}, expected_version=5)
        duplicate, committed = await store.append([again, fresh])
        assert isinstance(duplicate, Duplicate) and duplicate.stream_version == 1
        assert isinstance(committed, Committed) and committed.stream_version == 6
    finally:
        await moved_engine.dispose()


async def test_a_source_whose_clock_stepped_back_keeps_each_partitions_order(
    source: str, target: str, source_engine: AsyncEngine
) -> None:
    """A source partition's clock stepped back an hour midway, so its later events carry earlier times
    than its first ones. The move still reads each source partition in position order: every stream's
    versions stay in order, and in each target partition the events of one source partition keep
    their source order (a merge that sorted by time alone would put them before their own past)."""
    await fill(EventStore(source_engine))
    await source_engine.dispose()
    stepped = 0
    conn = await asyncpg.connect(libpq_dsn(source))
    try:
        head = await conn.fetchval("SELECT position FROM log_head WHERE partition = $1", stepped)
        assert head >= 4
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        await conn.execute(
            "UPDATE events SET recorded_at = recorded_at - interval '1 hour' "
            "WHERE partition = $1 AND position > $2",
            stepped,
            head // 2,
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
    finally:
        await conn.close()
    origin = {
        (r["stream_id"], r["stream_version"]): (r["partition"], r["position"])
        for r in await fetch(source, "SELECT stream_id, stream_version, partition, position FROM events")
    }

    report = await move_log(source, target, 3, page=5)
    assert report.events == 60
    moved, kept = await fetch(target, _EVENTS), await fetch(source, _EVENTS)
    assert [tuple(r) for r in moved] == [tuple(r) for r in kept]
    placed_rows = "SELECT partition, stream_id, stream_version, recorded_at FROM events"
    moved = await fetch(target, placed_rows + " ORDER BY partition, position")
    went_back = 0
    for _, rows in itertools.groupby(moved, lambda r: r["partition"]):
        placed = list(rows)
        went_back += sum(a["recorded_at"] > b["recorded_at"] for a, b in itertools.pairwise(placed))
        seen: dict[int, int] = {}  # source partition -> the last source position placed from it
        for row in placed:
            from_partition, from_position = origin[(row["stream_id"], row["stream_version"])]
            assert from_position > seen.get(from_partition, 0)
            seen[from_partition] = from_position
    assert went_back  # the step is in the copy: times go back where the source's did
    assert await transactions_spanning_partitions(target) == []


@pytest.fixture
def one_partition_source(server_url: str) -> Iterator[str]:
    with fresh_database(server_url, partitions=1) as url:
        yield url


async def test_a_log_of_one_moved_into_sixteen(one_partition_source: str, target: str) -> None:
    db_engine = create_db_engine(one_partition_source)
    try:
        await fill(EventStore(db_engine), streams=40, rounds=2)
    finally:
        await db_engine.dispose()
    report = await move_log(one_partition_source, target, 16)
    assert (report.source_partitions, report.events, len(report.heads)) == (1, 80, 16)
    moved, kept = await fetch(target, _EVENTS), await fetch(one_partition_source, _EVENTS)
    assert [tuple(r) for r in moved] == [tuple(r) for r in kept]
    assert await transactions_spanning_partitions(target) == []


def users_apart(partitions: int) -> tuple[str, str]:
    """Two user ids whose streams are in different partitions of a log of `partitions`."""
    first = "user:ann"
    for n in itertools.count():
        other = f"user:bo{n}"
        if partition_of(other, partitions) != partition_of(first, partitions):
            return first.removeprefix("user:"), other.removeprefix("user:")
    raise AssertionError("unreachable")


async def heads_of(url: str) -> list[tuple[int, int]]:
    return [tuple(r) for r in await fetch(url, "SELECT partition, position FROM log_head ORDER BY partition")]


async def test_what_the_move_refuses_leaves_both_logs_as_they_were(
    source: str, target: str, source_engine: AsyncEngine
) -> None:
    store = EventStore(source_engine)
    await fill(store, streams=4, rounds=1)

    for partitions in (0, 1025):
        with pytest.raises(MoveRefused, match="1 to 1024 partitions"):
            await move_log(source, target, partitions)
    with pytest.raises(MoveRefused, match="is the source database"):
        await move_log(source, source, 2)
    # A source of another schema: the move reads the head schema's tables.
    await fetch(source, "UPDATE alembic_version SET version_num = 'from_a_newer_release'")
    with pytest.raises(MoveRefused, match=r"in the source, the database schema .* newer than this"):
        await move_log(source, target, 2)
    await fetch(source, "UPDATE alembic_version SET version_num = '0014'")
    with pytest.raises(MoveRefused, match=r"the source's schema is at revision '0014', older than"):
        await move_log(source, target, 2)
    await fetch(source, "UPDATE alembic_version SET version_num = $1", head_revision())

    # A node serving the source would append after the move's snapshot.
    await source_engine.dispose()
    conn = await asyncpg.connect(libpq_dsn(source))
    await conn.execute("INSERT INTO nodes (node_id) VALUES ('node-x')")
    with pytest.raises(MoveRefused, match="1 node"):
        await move_log(source, target, 2)
    await conn.execute("UPDATE nodes SET stopped_at = now()")
    await conn.close()

    # Two users' uploads of one file id (a log from before the file claims) that 4 partitions part.
    ann, bo = users_apart(4)
    started = [
        NewEvent(
            f"user:{user}", FILE_UPLOAD_STARTED, {"file_id": "f-1", "user_id": user, "filename": "a.csv"}
        )
        for user in (ann, bo)
    ]
    assert all(isinstance(o, Committed) for o in await store.append(started))
    source_heads = await heads_of(source)
    with pytest.raises(MoveRefused, match="f-1"):
        await move_log(source, target, 4)
    tables = "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'"
    assert (await fetch(target, tables))[0]["n"] == 0  # refused before the target was touched
    # An empty log of another count is refused, and so is a node serving it.
    await asyncio.to_thread(upgrade_to_head, target, 4)
    with pytest.raises(MoveRefused, match="already has 4 partition"):
        await move_log(source, target, 1)
    await fetch(target, "INSERT INTO nodes (node_id) VALUES ('node-y')")
    with pytest.raises(MoveRefused, match=r"1 node\(s\) already serve the target"):
        await move_log(source, target, 1)
    await fetch(target, "UPDATE nodes SET stopped_at = now()")
    # A target that holds a log is refused (here the source itself, moving the other way).
    with pytest.raises(MoveRefused, match="already holds a log of 6 event"):
        await move_log(target, source, 2)
    assert await heads_of(source) == source_heads
    assert await heads_of(target) == [(p, 0) for p in range(4)]


async def test_an_append_to_the_source_during_the_move_waits_for_it_to_end(
    source: str, target: str, source_engine: AsyncEngine
) -> None:
    store = EventStore(source_engine)
    await fill(store, streams=100, rounds=60)  # 6,000 events: a move long enough to meet
    moving = asyncio.create_task(move_log(source, target, 2, page=100))
    held = "SELECT count(*) FROM pg_locks WHERE mode = 'ShareLock' AND relation = 'log_head'::regclass"
    async with asyncio.timeout(30):
        while not (await fetch(source, held))[0][0]:
            assert not moving.done(), "the move ended before it was seen holding appends"
            await asyncio.sleep(0.005)
    # Committed only once the source lets go, by then the copy is written: had it committed now,
    # while the events are still being read, the target's heads would still be at zero.
    (outcome,) = await store.append([NewEvent("test:late", "Noted", {})])
    assert isinstance(outcome, Committed)
    written = await fetch(target, "SELECT coalesce(sum(position), 0) AS n FROM log_head")
    assert written[0]["n"] == 6000
    assert (await moving).events == 6000
    assert await fetch(target, "SELECT 1 FROM events WHERE stream_id = 'test:late'") == []


async def tables_in(url: str) -> list[str]:
    query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    return [r["tablename"] for r in await fetch(url, query)]


async def test_a_database_of_another_application_is_not_a_target(source: str, target: str) -> None:
    await fetch(target, "CREATE TABLE invoices (id int)")
    with pytest.raises(MoveRefused, match="belongs to something else"):
        await move_log(source, target, 2)
    assert await tables_in(target) == ["invoices"]
    # Another application that uses Alembic too: a schema revision, and no log.
    await fetch(target, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    await fetch(target, "INSERT INTO alembic_version VALUES ('0001_their_app')")
    with pytest.raises(MoveRefused, match="no collab-engine log: it belongs to something else"):
        await move_log(source, target, 2)
    assert await tables_in(target) == ["alembic_version", "invoices"]


async def test_a_target_of_a_newer_or_older_schema_is_refused_as_the_target(source: str, target: str) -> None:
    await asyncio.to_thread(upgrade_to_head, target, 1)
    await fetch(target, "UPDATE alembic_version SET version_num = 'from_a_newer_release'")
    with pytest.raises(MoveRefused, match=r"in the target, the database schema .* newer than this"):
        await move_log(source, target, 2)
    await fetch(target, "UPDATE alembic_version SET version_num = $1", head_revision())
    await asyncio.to_thread(downgrade, target, "0004")  # before the nodes' registry and the log's id
    with pytest.raises(MoveRefused, match=r"the target's schema is at revision '0004', older than"):
        await move_log(source, target, 2)


async def _expire_typing(store: EventStore, room: str) -> list[Any]:
    """Append the expiries a sweep would of every typing in the room, as of long after it started."""
    events = await store.read_stream(volatile_stream(room_stream(room)))
    view = typing_indicators.project(events, room)
    return list(
        await store.append(typing_indicators.expired(view, datetime.now(UTC) + timedelta(hours=1), 5))
    )


async def test_typing_ended_by_expiry_stays_ended_and_a_new_start_expires_after_a_move(
    one_partition_source: str, target: str
) -> None:
    """Positions are renumbered by a move; an expiry names its start by its version in the stream,
    which is kept: the rebuilt projection has nobody typing, and a new start whose position is an old
    start's gets its own expiry (not taken for a repeat of the old one)."""

    def start(user: str) -> NewEvent:
        return TypingStarted("r", user, user.title(), "A1", f"c-{user}").new(Origin("n", user))

    db_engine = create_db_engine(one_partition_source)
    store = EventStore(db_engine)
    try:
        await fill(store, streams=20, rounds=2)  # other streams first: the room's positions move
        (started,) = await store.append([start("alice")])
        assert [type(o) for o in await _expire_typing(store, "r")] == [Committed]
    finally:
        await db_engine.dispose()
    await move_log(one_partition_source, target, 4)
    assert await fetch(target, "SELECT user_id FROM typing") == []
    moved = create_db_engine(target)
    store = EventStore(moved)
    try:
        assert await diff_all(moved) == []
        partition = partition_of(room_stream("r"), 4)
        while (await store.heads())[partition] < started.position - 1:
            await store.append([UserJoinedRoom("r", "bob", "Bob", None, "c-bob").new(Origin("n", "bob"))])
        (again,) = await store.append([start("alice")])
        assert isinstance(again, Committed) and again.position == started.position
        assert [type(o) for o in await _expire_typing(store, "r")] == [Committed]
        events = await store.read_stream(volatile_stream(room_stream("r")))
        assert typing_indicators.project(events, "r").typing == {}
    finally:
        await moved.dispose()
