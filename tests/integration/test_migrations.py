"""Migrations on a database of their own: upgrade, downgrade to base, upgrade again; the schema they
build matches engine.log.schema; a schema newer than the code is refused; a log written before the
file and sheet claims gets them, and one from before `declared_statuses` gets them from the log; no
number is drawn from a sequence."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from engine.log import migrate
from engine.log.embedded_postgres import database_url_for
from engine.log.partitions import create_partitions, partition_count, partition_of
from engine.log.schema import metadata
from engine.log.store import EventStore
from engine.model.catalogue import (
    FILE_CLAIMED,
    FILE_UPLOAD_COMPLETED,
    FILE_UPLOAD_STARTED,
    SHEET_CLAIMED,
    FileClaimed,
    FileUploadCompleted,
    FileUploadStarted,
    SheetClaimed,
    TypingStarted,
    UserJoinedRoom,
    UserStatusChanged,
)
from engine.model.errors import SchemaMismatch
from engine.model.events import Committed, Conflict, NewEvent, Origin
from engine.model.streams import room_stream, user_stream
from engine.readmodels import rebuild
from tests.conftest import admin_execute


@pytest.fixture
def scratch_url(empty_database: str) -> str:
    return empty_database


@pytest.fixture
async def db_engine(scratch_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the scratch database; each test migrates it to the revision it starts from."""
    engine = create_async_engine(scratch_url)
    yield engine
    await engine.dispose()


async def _inspect(url: str) -> tuple[set[str], list[object]]:
    db_engine = create_async_engine(url)
    try:
        async with db_engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
            return tables, diff
    finally:
        await db_engine.dispose()


def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    # Alembic's env runs its own event loop, so from a test's loop it runs in a worker thread.
    return asyncio.to_thread(fn, *args)


async def test_upgrade_downgrade_upgrade_round_trips(scratch_url: str) -> None:
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    tables, diff = await _inspect(scratch_url)
    assert {"events", "streams", "log_head", "projector_checkpoints"} <= tables
    assert diff == [], f"migrations and engine/log/schema.py disagree: {diff}"
    assert await _in_thread(migrate.current_revision, scratch_url) == migrate.head_revision()

    await _in_thread(migrate.downgrade, scratch_url, "base")
    tables, _ = await _inspect(scratch_url)
    assert tables <= {"alembic_version"}

    await _in_thread(migrate.upgrade_to_head, scratch_url)
    tables, diff = await _inspect(scratch_url)
    assert "events" in tables and diff == []


async def test_the_schema_draws_no_number_from_a_sequence(scratch_url: str, db_engine: AsyncEngine) -> None:
    # A sequence is one counter for a whole cluster: a log split into partitions, or distributed by
    # Citus, could not keep it inside one partition. Positions come from the log's head rows instead.
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    async with db_engine.connect() as conn:
        sequences = (await conn.execute(text(_SEQUENCES))).all()
        drawn = (await conn.execute(text(_DRAWN))).all()
    assert sequences == [] and drawn == []


_SEQUENCES = "SELECT relname FROM pg_class WHERE relkind = 'S'"
_DRAWN = """
    SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = 'public' AND (is_identity = 'YES' OR column_default LIKE '%nextval(%')
"""


async def test_schema_newer_than_the_code_is_refused(scratch_url: str) -> None:
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    db_engine = create_async_engine(scratch_url)
    async with db_engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    await db_engine.dispose()
    with pytest.raises(SchemaMismatch, match="from_the_future"):
        await _in_thread(migrate.upgrade_to_head, scratch_url)


async def test_analyze_builds_no_statistics_for_event_payloads_and_the_key_scope(
    scratch_url: str, db_engine: AsyncEngine
) -> None:
    # Autovacuum analyzes a young log at nearly every visit; these statistics were most of its cost.
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    alice = Origin("n", "alice")
    joins = [
        UserJoinedRoom(f"r{i}", "alice", "Alice", None, f"c{i}").new(alice, key=f"k{i}") for i in range(20)
    ]
    await EventStore(db_engine).append(joins)
    assert await _statistics_of(db_engine) == ({"stream_id", "type", "user_id", "position"}, set())

    await _in_thread(migrate.downgrade, scratch_url, "0015")
    columns, index = await _statistics_of(db_engine)
    assert {"data", "metadata"} <= columns and index == {_SCOPE_EXPRESSION}
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    assert await _statistics_of(db_engine) == ({"stream_id", "type", "user_id", "position"}, set())


async def test_analyze_samples_a_tenth_of_the_default_for_the_events_columns(
    scratch_url: str, db_engine: AsyncEngine
) -> None:
    # The sample's size follows the largest target; a histogram has at most target + 1 bounds.
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    alice = Origin("n", "alice")
    joins = [UserJoinedRoom(f"r{i}", "alice", "Alice", None, f"c{i}").new(alice) for i in range(300)]
    await EventStore(db_engine).append(joins)
    assert await _histogram_bounds(db_engine) == {"position": 11, "stream_id": 11}

    await _in_thread(migrate.downgrade, scratch_url, "0016")
    assert await _histogram_bounds(db_engine) == {"position": 101, "stream_id": 101}
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    assert await _histogram_bounds(db_engine) == {"position": 11, "stream_id": 11}


async def _histogram_bounds(db_engine: AsyncEngine) -> dict[str, int]:
    async with db_engine.connect() as conn:
        await conn.execute(text("ANALYZE events"))
        found = await conn.execute(
            text(
                "SELECT attname, cardinality(histogram_bounds::text::text[]) FROM pg_stats"
                " WHERE tablename = 'events' AND attname IN ('position', 'stream_id')"
            )
        )
        return {str(name): int(bounds) for name, bounds in found.all()}


_SCOPE_INDEX = "uq_events_user_id_idempotency_key_scope_partition"
_SCOPE_EXPRESSION = "regexp_replace"  # PostgreSQL's name for the index's expression column


async def _statistics_of(db_engine: AsyncEngine) -> tuple[set[str], set[str]]:
    """Of the columns that matter here, those of `events` an ANALYZE built statistics for, and the
    idempotency index's expression if it got any."""
    async with db_engine.connect() as conn:
        await conn.execute(text("ANALYZE events"))
        found = await conn.execute(
            text("SELECT tablename, attname FROM pg_stats WHERE tablename IN ('events', :index)"),
            {"index": _SCOPE_INDEX},
        )
        rows = found.all()
    watched = {"stream_id", "type", "user_id", "position", "data", "metadata"}
    columns = {name for table, name in rows if table == "events" and name in watched}
    return columns, {name for table, name in rows if table == _SCOPE_INDEX}


async def test_file_ids_claimed_before_their_streams_get_a_claim_for_their_first_claimer(
    scratch_url: str,
    db_engine: AsyncEngine,
) -> None:
    await _in_thread(migrate.upgrade, scratch_url, "0009")
    store = EventStore(db_engine)

    def start(user: str, file_id: str) -> NewEvent:
        return FileUploadStarted(user, file_id, "a.csv", 3, "text/csv").new(Origin("n", user))

    # As the code before the claims recorded them: the first start naming an id owns it.
    done = FileUploadCompleted("bob", "f2", "b.csv", "/api/v1/files/f2", 3, "ab" * 32, "text/csv")
    async with db_engine.begin() as conn:
        before = await legacy_append(
            conn, [start("alice", "f1"), start("bob", "f1"), start("bob", "f2"), done.new(Origin("n", "bob"))]
        )

    await _in_thread(migrate.upgrade_to_head, scratch_url)

    assert await store.head() == before + 2  # one claim per id, at the next positions
    logged = await store.read_all(after=0)
    assert [e.position for e in logged] == list(range(1, before + 3))
    claims = logged[before:]
    assert [(e.stream_id, e.stream_version, e.type, e.data) for e in claims] == [
        ("file:f1", 1, FILE_CLAIMED, {"file_id": "f1", "user_id": "alice"}),
        ("file:f2", 1, FILE_CLAIMED, {"file_id": "f2", "user_id": "bob"}),
    ]
    assert claims[0].recorded_at >= logged[before - 1].recorded_at
    assert await store.stream_version("file:f1") == 1
    assert [e.data["user_id"] for e in await store.file_claims("f1")] == ["alice"]
    assert [e.type for e in await store.file_claims("f2")] == [FILE_UPLOAD_STARTED, FILE_UPLOAD_COMPLETED]
    (late,) = await store.append([FileClaimed("f1", "bob").claim(Origin("n", "bob"))])
    assert isinstance(late, Conflict)  # the migrated claim holds

    # Down and up again: the claims stay, and none is appended twice.
    await _in_thread(migrate.downgrade, scratch_url, "0009")
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    assert await store.head() == before + 2


async def test_sheets_edited_before_their_streams_get_a_claim_and_the_tables_still_equal_a_rebuild(
    scratch_url: str,
    db_engine: AsyncEngine,
) -> None:
    await _in_thread(migrate.upgrade, scratch_url, "0010")
    # As the writer before the claims left a sheet's first edit: the event, its cell, and the
    # sheets row for the room of that edit.
    async with db_engine.begin() as conn:
        await conn.execute(text(_LEGACY_EDIT))
        claims = await conn.execute(text("SELECT count(*) FROM events WHERE stream_id LIKE 'sheet:%'"))
        assert claims.scalar_one() == 0
    store = EventStore(db_engine)

    await _in_thread(migrate.upgrade_to_head, scratch_url)

    assert await store.head() == 2
    (claim,) = await store.read_stream("sheet:s1")
    assert (claim.position, claim.type, claim.data) == (
        2,
        SHEET_CLAIMED,
        {"sheet_id": "s1", "room_id": "r1"},
    )
    assert await store.sheet_room("s1") == "r1"
    assert await rebuild.diff_cells(db_engine) == []  # the sheets row now points at its claim
    (late,) = await store.append([SheetClaimed("s1", "r2").claim(Origin("n", "bob"))])
    assert isinstance(late, Conflict)

    await _in_thread(migrate.downgrade, scratch_url, "0010")  # the row points at the first edit again
    async with db_engine.connect() as conn:
        assert (await conn.execute(text("SELECT position FROM sheets"))).scalar_one() == 1
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    assert await store.head() == 2 and await rebuild.diff_cells(db_engine) == []


async def test_declared_statuses_come_from_the_log_as_far_as_the_checkpoint_and_presence_is_a_view(
    scratch_url: str,
    db_engine: AsyncEngine,
) -> None:
    await _in_thread(migrate.upgrade, scratch_url, "0011")
    alice, bob = Origin("n", "alice"), Origin("n", "bob")
    async with db_engine.begin() as conn:
        await legacy_append(
            conn,
            [
                UserJoinedRoom("r1", "alice", "Alice", "a@x", "c1").new(alice),
                UserJoinedRoom("r2", "alice", "Alice", "a@x", "c1").new(alice),
                UserStatusChanged("alice", "busy").new(alice),
                UserStatusChanged("alice", "away").new(alice),
                UserStatusChanged("bob", "busy").new(bob),
                UserStatusChanged("bob", "online").new(bob),
            ],
        )
        # A runner of the code before had folded five of them (its rooms tables are not needed here).
        await conn.execute(text(_CHECKPOINT_AT), {"position": 5})

    await _in_thread(migrate.upgrade_to_head, scratch_url)

    async with db_engine.connect() as conn:
        declared = (await conn.execute(text("SELECT user_id, status FROM declared_statuses"))).all()
        assert sorted(map(tuple, declared)) == [("alice", "away"), ("bob", "busy")]  # not the sixth
    await rebuild.rebuild_projections(db_engine)  # today's folds, the whole log: the view over them
    assert await rebuild.diff_projections(db_engine) == []
    async with db_engine.connect() as conn:
        found = await conn.execute(text("SELECT * FROM presence ORDER BY user_id"))
        presence = {row["user_id"]: row for row in found.mappings()}
    assert (presence["alice"]["shown_status"], presence["alice"]["online"]) == ("away", True)
    assert presence["alice"]["connections"] == {"c1": ["r1", "r2"]}
    assert (presence["bob"]["shown_status"], presence["bob"]["status"]) == ("offline", "online")

    # Down: a table again, and every projection table empty with the checkpoint at 0, for the
    # older code's runner to fold the whole log with its own folds.
    await _in_thread(migrate.downgrade, scratch_url, "0011")
    async with db_engine.connect() as conn:
        for table in ("presence", "rooms", "room_members"):
            assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one() == 0
        assert await checkpoint_of(conn) == 0
    async with db_engine.begin() as conn:  # that runner folds the whole log again
        await conn.execute(text(_CHECKPOINT_AT), {"position": 6})
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    async with db_engine.connect() as conn:
        declared = (await conn.execute(text("SELECT user_id, status FROM declared_statuses"))).all()
        assert sorted(map(tuple, declared)) == [("alice", "away"), ("bob", "online")]


_CHECKPOINT_AT = """
    INSERT INTO projector_checkpoints (name, position) VALUES ('projections', :position)
    ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position
"""


async def legacy_append(conn: AsyncConnection, items: list[NewEvent]) -> int:
    """Append as the writer before log partitions did (revision 0012 and older): under the single
    head row's lock, at the next positions; the new head."""
    head = int(
        (await conn.execute(text("SELECT position FROM log_head WHERE id = 1 FOR UPDATE"))).scalar_one()
    )
    for item in items:
        found = await conn.execute(
            text("SELECT version FROM streams WHERE stream_id = :s"), {"s": item.stream_id}
        )
        version = int(found.scalar() or 0) + 1
        head += 1
        await conn.execute(
            text(
                "INSERT INTO events (position, stream_id, stream_version, type, data, metadata, user_id, "
                "idempotency_key, recorded_at) VALUES (:p, :s, :v, :t, CAST(:d AS jsonb), CAST(:m AS jsonb), "
                ":u, :k, clock_timestamp())"
            ),
            {
                "p": head,
                "s": item.stream_id,
                "v": version,
                "t": item.type,
                "d": orjson.dumps(item.data).decode(),
                "m": orjson.dumps(item.metadata).decode(),
                "u": item.user_id,
                "k": item.idempotency_key,
            },
        )
        await conn.execute(
            text(
                "INSERT INTO streams (stream_id, version) VALUES (:s, :v) "
                "ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version"
            ),
            {"s": item.stream_id, "v": version},
        )
    await conn.execute(text("UPDATE log_head SET position = :p WHERE id = 1"), {"p": head})
    return head


async def checkpoint_of(conn: AsyncConnection) -> int:
    found = await conn.execute(text("SELECT position FROM projector_checkpoints WHERE name = 'projections'"))
    return int(found.scalar_one())


_LEGACY_EDIT = """
    WITH head AS (UPDATE log_head SET position = 1 WHERE id = 1 RETURNING clock_timestamp() AS at),
    edit AS (
        INSERT INTO events (position, stream_id, stream_version, type, data, metadata, user_id, recorded_at)
        SELECT 1, 'room:r1', 1, 'CellUpdated',
               '{"room_id": "r1", "sheet_id": "s1", "cell_id": "A1", "value": 7, "formula": null,
                 "user_id": "alice", "username": "Alice", "version": 1}'::jsonb, '{}'::jsonb, 'alice', at
        FROM head RETURNING recorded_at
    ), counter AS (INSERT INTO streams (stream_id, version) VALUES ('room:r1', 1))
    , cell AS (
        INSERT INTO cells (sheet_id, cell_id, value, formula, version, user_id, seq, position, updated_at)
        SELECT 's1', 'A1', '7'::jsonb, NULL, 1, 'alice', 1, 1, recorded_at FROM edit
    )
    INSERT INTO sheets (sheet_id, room_id, position) VALUES ('s1', 'r1', 1)
"""


async def test_a_log_from_before_partitions_becomes_partition_zero_of_a_log_of_one(
    scratch_url: str,
    db_engine: AsyncEngine,
) -> None:
    await _in_thread(migrate.upgrade, scratch_url, "0012")
    alice = Origin("n", "alice")
    async with db_engine.begin() as conn:
        head = await legacy_append(
            conn,
            [
                UserJoinedRoom("r1", "alice", "Alice", "a@x", "c1").new(alice),
                UserStatusChanged("alice", "busy").new(alice),
            ],
        )

    await _in_thread(migrate.upgrade_to_head, scratch_url)

    store = EventStore(db_engine)
    assert (await store.partitions(), await store.head()) == (1, head)
    assert [(e.partition, e.position) for e in await store.read_all()] == [(0, 1), (0, 2)]
    (appended,) = await store.append([UserStatusChanged("alice", "away").new(alice)])
    assert isinstance(appended, Committed) and (appended.position, appended.stream_version) == (3, 2)
    async with db_engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT partition FROM events UNION SELECT partition FROM streams "
                "UNION SELECT partition FROM log_head"
            )
        )
        assert found.scalars().all() == [0]

    # Down: the single head row again, at the same position; up: the same log.
    await _in_thread(migrate.downgrade, scratch_url, "0012")
    async with db_engine.connect() as conn:
        assert (await conn.execute(text("SELECT id, position FROM log_head"))).one() == (1, 3)
        keys = await conn.run_sync(
            lambda c: {
                t: inspect(c).get_pk_constraint(t)["constrained_columns"] for t in ("events", "streams")
            }
        )
        assert keys == {"events": ["position"], "streams": ["stream_id"]}
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    assert await EventStore(db_engine).head() == 3


async def test_a_log_of_several_partitions_is_not_downgraded_below_them(
    scratch_url: str,
    db_engine: AsyncEngine,
) -> None:
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    async with db_engine.begin() as conn:
        await create_partitions(conn, 4)
    with pytest.raises(RuntimeError, match="4 partitions"):
        await _in_thread(migrate.downgrade, scratch_url, "0012")
    async with db_engine.connect() as conn:  # refused before it changed anything
        assert await partition_count(conn) == 4
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one() == "0013"


async def test_checkpoints_become_partition_zeros_and_are_not_downgraded_while_others_exist(
    scratch_url: str,
    db_engine: AsyncEngine,
) -> None:
    await _in_thread(migrate.upgrade, scratch_url, "0013")
    async with db_engine.begin() as conn:
        await conn.execute(text(_CHECKPOINT_AT), {"position": 0})
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    async with db_engine.begin() as conn:
        found = await conn.execute(text("SELECT partition, name, position FROM projector_checkpoints"))
        assert found.all() == [(0, "projections", 0)]
        await conn.execute(
            text("INSERT INTO projector_checkpoints (partition, name, position) VALUES (1, 'projections', 0)")
        )
    with pytest.raises(RuntimeError, match="1 checkpoint"):
        await _in_thread(migrate.downgrade, scratch_url, "0013")
    async with db_engine.begin() as conn:
        await conn.execute(text("DELETE FROM projector_checkpoints WHERE partition = 1"))
    await _in_thread(migrate.downgrade, scratch_url, "0013")
    async with db_engine.connect() as conn:
        found = await conn.execute(text("SELECT name, position FROM projector_checkpoints"))
        assert found.all() == [("projections", 0)]


_PROJECTION_ROWS = """
    INSERT INTO rooms (room_id, seq, user_count, active_sheets, active_sheets_count, messages_sent,
                       attendance_users, attendance_past_hours, attendance_past_user_hours)
    SELECT 'room-é-' || n, 1, 0, '[]', 0, 0, '[]', 0, 0 FROM generate_series(1, 24) AS n;
    INSERT INTO room_snapshots (room_id, seq, position, state)
    SELECT 'room-é-' || n, 1, 1, '{}' FROM generate_series(1, 24) AS n;
    INSERT INTO declared_statuses (user_id, status, declared_at)
    SELECT 'user-ñ-' || n, 'busy', now() FROM generate_series(1, 24) AS n;
    INSERT INTO uploads (file_id, user_id, status, started_at, updated_at, bytes_uploaded, percentage)
    SELECT 'file-' || n, 'user-ñ-' || n, 'started', now(), now(), 0, 0 FROM generate_series(1, 24) AS n;
"""


@pytest.fixture(params=["UTF8", "LATIN1"])
def encoded_url(server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A scratch database in UTF-8, or in LATIN1, where PostgreSQL's md5() of text would hash other
    bytes than the engine's UTF-8."""
    name = f"collab_{request.param.lower()}_{uuid.uuid4().hex[:8]}"
    create = (
        f"CREATE DATABASE \"{name}\" ENCODING '{request.param}' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0"
    )
    asyncio.run(admin_execute(server_url, create))
    yield database_url_for(server_url, name)
    asyncio.run(admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_projection_rows_get_the_partition_of_their_owners_stream(encoded_url: str) -> None:
    """A log of four partitions from before the projection tables named partitions: each row gets the
    partition the engine hashes its room's or user's stream to (an upload its uploader's), the UTF-8
    bytes of a non-ASCII id included in a database of either encoding, and the downgrade gives the
    keys back."""
    db_engine = create_async_engine(encoded_url)
    try:
        await _check_projection_partitions(encoded_url, db_engine)
    finally:
        await db_engine.dispose()


async def _check_projection_partitions(scratch_url: str, db_engine: AsyncEngine) -> None:
    await _in_thread(migrate.upgrade, scratch_url, "0014")
    async with db_engine.begin() as conn:
        await create_partitions(conn, 4)
        for statement in _PROJECTION_ROWS.split(";")[:-1]:
            await conn.execute(text(statement))

    await _in_thread(migrate.upgrade_to_head, scratch_url)

    owners = {
        "rooms": ("room_id", room_stream),
        "room_snapshots": ("room_id", room_stream),
        "declared_statuses": ("user_id", user_stream),
        "uploads": ("user_id", user_stream),
    }
    async with db_engine.connect() as conn:
        for table, (column, stream) in owners.items():
            found = (await conn.execute(text(f"SELECT {column}, partition FROM {table}"))).all()
            assert len(found) == 24
            assert {owner: partition for owner, partition in found} == {
                owner: partition_of(stream(owner), 4) for owner, _ in found
            }, table
            assert len({partition for _, partition in found}) == 4, table

    await _in_thread(migrate.downgrade, scratch_url, "0014")
    async with db_engine.connect() as conn:
        key = await conn.run_sync(lambda c: inspect(c).get_pk_constraint("uploads")["constrained_columns"])
        assert key == ["file_id"]
        assert (await conn.execute(text("SELECT count(*) FROM rooms"))).scalar_one() == 24
    await _in_thread(migrate.upgrade_to_head, scratch_url)
    _, diff = await _inspect(scratch_url)
    assert diff == []


_TYPING_ROW_BEFORE_0021 = """
    INSERT INTO typing (room_id, user_id, cell_id, partition, ordinal, username, connection_id, started_at,
        position)
    SELECT 'r', 'alice', 'A1', partition, 0, 'Alice', 'c1', recorded_at, position FROM events
    WHERE type = 'TypingStarted' ORDER BY position DESC LIMIT 1
"""


async def test_typing_rows_from_before_0021_take_their_start_s_version_from_the_log(
    scratch_url: str, db_engine: AsyncEngine
) -> None:
    await _in_thread(migrate.upgrade, scratch_url, "0020")
    store = EventStore(db_engine)
    await store.append([UserJoinedRoom("r", "alice", "Alice", None, "c1").new(Origin("n", "alice"))])
    for _ in range(2):  # a start and its refresh: the row is the second's, at version 2
        await store.append([TypingStarted("r", "alice", "Alice", "A1", "c1").new(Origin("n", "alice"))])
    async with db_engine.begin() as conn:  # the row the projector of 0020 kept: no version column
        await conn.execute(text(_TYPING_ROW_BEFORE_0021))

    await _in_thread(migrate.upgrade_to_head, scratch_url)

    async with db_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT user_id, position, version FROM typing"))).all()
    assert [tuple(r) for r in rows] == [("alice", 3, 2)]  # the start's version, as a rebuild has it
