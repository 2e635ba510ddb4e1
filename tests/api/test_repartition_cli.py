"""`collab repartition` as an operator runs it: a real server writes a log of one partition and stops,
the command copies it into an empty database as a log of four, and a server on the copy carries every
room on where it was: the same seqs, cells, members and retried `client_msg_id`s."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import asyncpg

from engine.log import migrate
from engine.log.embedded_postgres import database_url_for
from engine.log.store import create_db_engine, libpq_dsn
from engine.model.streams import room_stream
from engine.readmodels.rebuild import diff_all
from tests.api.conftest import fresh_database, make_settings, request, serve
from tests.api.live_helpers import greet, join, send, until, write_cell
from tests.cli_runner import assert_explained, collab
from tests.conftest import (
    create_empty_database,
    drop_database,
    make_read_only,
    transactions_spanning_partitions,
)
from tests.integration.projection_helpers import all_tables, caught_up

ROOMS = 6
# Columns that hold a position or a partition: numbered again by the move.
RENUMBERED = {"partition", "position"}


def settings_for(url: str) -> Any:
    return make_settings(url, websocket_requests_per_minute=1_000_000, websocket_requests_per_hour=1_000_000)


async def write_rooms(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Two users in ROOMS rooms: joins, an edit each (with a client_msg_id), a cursor, a status, and
    one leaving; bo's edit ack per room. The projection tables are caught up when the server stops."""
    acks = {}
    async with serve(settings_for(url)) as server:
        async with server.connect(server.token("ann", username="Ann")) as ann:
            await greet(ann)
            async with server.connect(server.token("bo", username="Bo")) as bo:
                await greet(bo)
                for n in range(ROOMS):
                    room = f"{prefix}-{n}"
                    await join(ann, room)
                    await join(bo, room)
                    await write_cell(ann, room, f"s-{room}", "A1", n, cmid=f"{room}-a")
                    acks[room] = await write_cell(bo, room, f"s-{room}", "B1", f"b{n}", cmid=f"{room}-b")
                    await send(bo, {"type": "cursor_move", "room": room, "x": n, "y": 1})
                assert (await request(ann, {"type": "status_update", "status": "away"}))["type"] != "error"
            await until(ann, lambda m: m["type"] == "user_left")  # bo's departures are recorded
        await caught_up(server.engine.node.db_engine)
    return acks


@contextlib.asynccontextmanager
async def another_empty_database(server_url: str) -> AsyncIterator[str]:
    url = await create_empty_database(server_url)
    try:
        yield url
    finally:
        await drop_database(server_url, url)


async def repartition(source: str, target: str, partitions: int, data_dir: Path) -> CompletedProcess[str]:
    """`collab repartition` run as an operator runs it, with DATABASE_URL set to the source."""
    return await asyncio.to_thread(
        collab,
        "repartition",
        "--partitions",
        str(partitions),
        "--into",
        target,
        data_dir=data_dir,
        DATABASE_URL=source,
    )


def comparable(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Every row without its partition and positions, in a stable order."""
    out = {}
    for name, rows in tables.items():
        kept = [{k: v for k, v in row.items() if k not in RENUMBERED} for row in rows]
        out[name] = sorted(kept, key=repr)
    return out


async def tables_of(url: str) -> dict[str, list[dict[str, Any]]]:
    db_engine = create_db_engine(url)
    try:
        return await all_tables(db_engine)
    finally:
        await db_engine.dispose()


async def test_a_moved_log_serves_its_rooms_on_from_where_they_were(
    server_url: str, empty_database: str, tmp_path: Path
) -> None:
    prefix = f"moved-{uuid.uuid4().hex[:6]}"
    async with fresh_database(server_url, partitions=1) as source:
        acks = await write_rooms(source, prefix)
        done = await repartition(source, empty_database, 4, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "from a log of 1 partition(s) into one of 4: positions 0:" in done.stdout, done.stdout
        assert "point DATABASE_URL at the new database" in done.stdout
        assert comparable(await tables_of(empty_database)) == comparable(await tables_of(source))
        moved_engine = create_db_engine(empty_database)
        try:
            assert await diff_all(moved_engine) == []
        finally:
            await moved_engine.dispose()
        assert await transactions_spanning_partitions(empty_database) == []

        edits: dict[str, dict[str, Any]] = {}
        async with serve(settings_for(empty_database)) as server:
            assert await server.engine.node.store.partitions() == 4
            async with server.connect(server.token("bo", username="Bo")) as bo:
                await greet(bo)
                for room, ack in acks.items():
                    # A retry of an edit acked before the move gets its original ack.
                    retry = {
                        "type": "cell_update",
                        "sheet_id": f"s-{room}",
                        "cell_id": "B1",
                        "value": "again",
                    }
                    assert await request(bo, {**retry, "room": room, "client_msg_id": f"{room}-b"}) == ack
                    # The room goes on from its seq: joins 1 and 2, edits 3 and 4 (the ack's), the
                    # cursor (volatile, no seq), the two leaves 5 and 6; this join is 7.
                    state = await join(bo, room)
                    assert (state["seq"], ack["seq"]) == (7, 4)
                    sheet = await request(bo, {"type": "load_sheet", "sheet_id": f"s-{room}"})
                    assert {c: (v["value"], v["version"]) for c, v in sheet["cells"].items()} == {
                        "A1": (int(room.rsplit("-", 1)[1]), 1),
                        "B1": (f"b{room.rsplit('-', 1)[1]}", 1),
                    }
                    edit = await write_cell(bo, room, f"s-{room}", "B1", "after", cmid=f"{room}-c")
                    assert edit["seq"] == 8
                    edits[room] = edit
            await caught_up(server.engine.node.db_engine)

        # Moved again, from its four partitions into three: the rooms' events come from several source
        # partitions now, merged, and the copy serves on as the first did.
        async with another_empty_database(server_url) as second:
            again = await repartition(empty_database, second, 3, tmp_path)
            assert again.returncode == 0, again.stderr
            assert "from a log of 4 partition(s) into one of 3" in again.stdout, again.stdout
            assert comparable(await tables_of(second)) == comparable(await tables_of(empty_database))
            assert await transactions_spanning_partitions(second) == []
            conn = await asyncpg.connect(libpq_dsn(second))
            try:
                versions = dict(await conn.fetch("SELECT stream_id, version FROM streams"))
            finally:
                await conn.close()
            async with serve(settings_for(second)) as server, server.connect(server.token("bo")) as bo:
                await greet(bo)
                for room, edit in edits.items():
                    retry = {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "B1", "value": "x"}
                    assert await request(bo, {**retry, "room": room, "client_msg_id": f"{room}-c"}) == edit
                    state = await join(bo, room)
                    # bo's join 7, edit 8 and leave 9 on the first copy: this join is 10.
                    assert state["seq"] == versions[room_stream(room)] + 1 == 10


async def test_the_command_explains_what_it_refuses(
    server_url: str, empty_database: str, tmp_path: Path
) -> None:
    async with fresh_database(server_url, partitions=1) as source:
        same = await repartition(source, source, 2, tmp_path)
        assert_explained(same, "nothing moved: the target is the source database", "Create an empty database")
        async with serve(settings_for(source)):
            served = await repartition(source, empty_database, 2, tmp_path)
        assert_explained(served, "1 node(s) serve the source log", "Stop every collab serve")
        missing = database_url_for(server_url, f"collab_none_{uuid.uuid4().hex[:6]}")
        absent = await repartition(source, missing, 2, tmp_path)
        # Named as the user gave it: the fix points at the --into URL, not at DATABASE_URL.
        lines = assert_explained(absent, "does not exist", "fix the database name in the --into URL")
        assert "DATABASE_URL" not in "\n".join(lines)


async def test_a_target_failing_midway_is_named_as_the_target(
    server_url: str, empty_database: str, tmp_path: Path
) -> None:
    """The target refuses the events' insert (a real PostgreSQL error, from a trigger): the command
    blames the target, not DATABASE_URL, and the source is as it was."""
    await asyncio.to_thread(migrate.upgrade_to_head, empty_database, 2)  # an empty log: accepted
    conn = await asyncpg.connect(libpq_dsn(empty_database))
    try:
        await conn.execute(_REFUSE_EVENTS)
    finally:
        await conn.close()
    lines = await _moved_into_failing_target(
        server_url,
        empty_database,
        tmp_path,
        "the disk for events is full",
        "The source is unchanged; see that server's log, then drop and create the target again and move",
    )
    assert "DATABASE_URL" not in "\n".join(lines)


async def test_a_target_failing_before_the_copy_says_nothing_was_copied(
    server_url: str, empty_database: str, tmp_path: Path
) -> None:
    """The target is read-only (as a standby is), so its schema cannot be made: the command blames the
    target and says nothing reached it, so there is nothing to drop before moving again."""
    await make_read_only(server_url, empty_database)
    lines = await _moved_into_failing_target(
        server_url,
        empty_database,
        tmp_path,
        "read-only transaction",
        "The source is unchanged and nothing was copied; see that server's log and move again once it",
    )
    assert "drop and create" not in "\n".join(lines)


async def _moved_into_failing_target(
    server_url: str, target: str, tmp_path: Path, cause: str, fix: str
) -> list[str]:
    """Move a source with rooms into `target`, which fails: the command names the target, `cause` and
    `fix`, never says "nothing moved" (the source's refusal), and leaves the source as it was."""
    async with fresh_database(server_url, partitions=1) as source:
        await write_rooms(source, f"failing-{uuid.uuid4().hex[:6]}")
        before = await tables_of(source)
        failed = await repartition(source, target, 2, tmp_path)
        lines = assert_explained(failed, "the move failed on the target database collab_empty_", cause, fix)
        assert "nothing moved" not in failed.stderr
        assert await tables_of(source) == before
    return lines


_REFUSE_EVENTS = """
    CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the disk for events is full'; END $$;
    CREATE TRIGGER refuse_events BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION refuse_events();
"""
