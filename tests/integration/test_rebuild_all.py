"""Rebuild equals live: a scripted session over real WebSocket clients against the real app (joins in
two rooms, cell updates, a cursor, a status, typing that expires and typing that stops, notifications
created and read, an upload, an AI request, a tab closing and a leave), then the projector runner's
tables are compared with a fold of the log from zero, row for row, and rebuilt to the same rows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from engine.log.partitions import partition_count, partition_of
from engine.log.store import EventStore, create_db_engine
from engine.model.events import RecordedEvent
from engine.model.streams import room_stream
from engine.projections import presence
from engine.readmodels.rebuild import diff_all, rebuild_all
from engine.service import Engine
from tests.api.conftest import Server, make_settings, serve, wait_for_events
from tests.api.live_helpers import greet, join, of_type, send, until
from tests.integration.projection_helpers import all_tables, caught_up, checkpoints, fresh_database, rows

ROOT = Path(__file__).resolve().parents[2]
TYPING_TIMEOUT = 1.0  # long enough for the end of the session to find alice still typing


@pytest.fixture
def fresh_url(server_url: str) -> Iterator[str]:
    with fresh_database(server_url) as url:
        yield url


async def update(ws: ClientConnection, room: str, sheet: str, cell: str, value: Any, cmid: str) -> None:
    message = {"type": "cell_update", "room": room, "sheet_id": sheet, "cell_id": cell, "value": value}
    await send(ws, {**message, "client_msg_id": cmid})
    await until(ws, of_type("ack", client_msg_id=cmid))


async def scripted_session(server: Server, then: Callable[[], Awaitable[None]] | None = None) -> None:
    """The session; `then` runs once it is over, before the clients close."""
    engine: Engine = server.engine
    async with (
        server.connect(server.token("alice", username="Alice", email="alice@example.com")) as alice,
        server.connect(server.token("alice", username="Alice")) as alice_tab,
        server.connect(server.token("bob", username="Bob")) as bob,
        server.connect(server.token("carol", username="Carol", roles=["viewer"])) as carol,
    ):
        for ws in (alice, alice_tab, bob, carol):
            await greet(ws)
        await join(alice, "room-a")
        await join(alice_tab, "room-a")
        await join(bob, "room-a")
        await join(bob, "room-b")
        await join(carol, "room-b")

        await update(alice, "room-a", "sheet-1", "A1", 10, "u1")
        await update(bob, "room-a", "sheet-1", "A2", "Sales", "u2")
        await update(alice, "room-a", "sheet-1", "A1", 12.5, "u3")
        await update(bob, "room-b", "sheet-2", "B1", True, "u4")
        await send(alice, {"type": "cursor_move", "room": "room-a", "x": 3, "y": 4.5, "cell": "A1"})
        await until(bob, of_type("cursor_moved"))
        await send(alice, {"type": "status_update", "status": "busy", "client_msg_id": "s1"})
        await until(alice, of_type("ack", client_msg_id="s1"))

        await send(bob, {"type": "typing_start", "room": "room-a", "cell_id": "C3"})  # never stopped: expires
        await send(carol, {"type": "typing_start", "room": "room-b", "cell_id": "D4"})
        await send(carol, {"type": "typing_stop", "room": "room-b", "cell_id": "D4"})
        await until(alice, of_type("user_typing_stop", user_id="bob"))
        await until(bob, of_type("user_typing_stop", user_id="carol"))

        await engine.create_notification(
            "bob", {"id": "n1", "title": "Hi", "priority": "high"}, created_by="t"
        )
        await engine.create_notification(
            "bob", {"id": "n2", "title": "Task", "category": "tasks"}, created_by="t"
        )
        await send(bob, {"type": "notification_read", "notification_id": "n1", "client_msg_id": "r1"})
        await until(bob, of_type("ack", client_msg_id="r1"))

        await send(
            alice, {"type": "file_upload_start", "file_id": "f1", "filename": "a.csv", "file_size": 100}
        )
        await until(alice_tab, of_type("file_upload_started"))  # the user's other connections hear it
        await send(
            alice,
            {
                "type": "file_upload_progress",
                "file_id": "f1",
                "bytes_uploaded": 40,
                "total_bytes": 100,
                "percentage": 40,
            },
        )
        await until(alice_tab, of_type("file_upload_progress"))

        await send(
            alice, {"type": "ai_request", "request_id": "q1", "query": "Analyse", "sheet_id": "sheet-1"}
        )
        await until(alice, lambda m: m.get("event_type") in ("ai_complete", "ai_error"))

        await send(alice, {"type": "typing_start", "room": "room-a", "cell_id": "E5"})  # typing at the end
        await until(bob, of_type("user_typing_start", user_id="alice"))
        await alice_tab.close()  # alice stays in room-a through her other tab
        await send(bob, {"type": "leave_room", "room_id": "room-b", "client_msg_id": "l1"})
        await until(bob, of_type("ack", client_msg_id="l1"))
        await wait_for_events(engine.store, "room:room-a", 7)  # 3 joins, 3 updates, the closed tab's leave
        if then is not None:
            await then()


async def everyone_gone(db_engine: AsyncEngine) -> None:
    """Once the leaves of the closed connections are recorded and projected."""
    async with asyncio.timeout(10):
        while True:
            await caught_up(db_engine)
            if all(room["user_count"] == 0 for room in await rows(db_engine, "rooms", "room_id")):
                return
            await asyncio.sleep(0.02)


async def test_rebuild_from_zero_equals_the_live_tables(fresh_url: str) -> None:
    settings = make_settings(fresh_url, typing_timeout_seconds=TYPING_TIMEOUT)
    async with serve(settings) as server:
        db_engine = server.engine.store.db_engine
        live: dict[str, Any] = {}

        async def while_connected() -> None:
            await caught_up(db_engine)
            live.update(await all_tables(db_engine))
            assert await diff_all(db_engine) == []

        await scripted_session(server, while_connected)

        # What the session left behind, as the runner projected it.
        room_a = next(r for r in live["rooms"] if r["room_id"] == "room-a")
        assert (room_a["user_count"], room_a["active_sheets"]) == (2, ["sheet-1"])
        members = {m["user_id"]: m for m in live["room_members"] if m["room_id"] == "room-a"}
        assert members["alice"]["cursor"] == {"x": 3, "y": 4.5, "cell": "A1"}
        assert len(members["alice"]["connections"]) == 1  # the other tab closed
        assert [(t["room_id"], t["user_id"], t["cell_id"]) for t in live["typing"]] == [
            ("room-a", "alice", "E5")
        ]
        assert [(d["user_id"], d["status"]) for d in live["declared_statuses"]] == [("alice", "busy")]
        presence = {p["user_id"]: p for p in await rows(db_engine, "presence", "user_id")}
        assert presence["alice"]["status"] == "busy" and presence["carol"]["online"] is True
        notes = [(n["notification_id"], n["read_at"] is None) for n in live["notifications"]]
        assert notes == [("n1", False), ("n2", True)]
        assert [(u["file_id"], u["status"], u["bytes_uploaded"]) for u in live["uploads"]] == [
            ("f1", "uploading", 40)
        ]
        assert [(a["request_id"], a["status"]) for a in live["ai_requests"]] == [("q1", "complete")]

        # Every client gone: the tables follow, and still equal the fold.
        await everyone_gone(db_engine)
        assert await diff_all(db_engine) == []
        after = await all_tables(db_engine)
        assert after["typing"] == [] and after["room_members"] == []
        gone = await rows(db_engine, "presence", "user_id")
        assert [(p["user_id"], p["shown_status"], p["status"]) for p in gone] == [
            ("alice", "offline", "busy")
        ]

        # A rebuild from zero, while the runner runs, writes exactly the rows the runner wrote.
        report = await rebuild_all(db_engine)
        assert report.projections.rows["rooms"] == 2 and report.cells.cells == 3
        assert await all_tables(db_engine) == after
        assert await diff_all(db_engine) == []


async def presence_pairs(db_engine: AsyncEngine) -> tuple[list[str], list[tuple[dict[str, Any], ...]]]:
    """The users the `presence` view has rows for, and (its row, the fold of the whole log) for each
    user, as far as the checkpoint. An offline user's name is not compared: the view only knows the
    names of users in a room."""
    await caught_up(db_engine)
    store = EventStore(db_engine)
    events: list[RecordedEvent] = []
    for partition, upto in (await checkpoints(db_engine)).items():  # a user's rooms may be in several
        read: list[RecordedEvent] = []
        while page := await store.read_all(after=read[-1].position if read else 0, partition=partition):
            read.extend(page)
        events.extend(event for event in read if event.position <= upto)
    events.sort(key=lambda event: (event.recorded_at, event.partition, event.position))
    viewed = {row["user_id"]: row for row in await rows(db_engine, "presence", "user_id")}
    pairs = []
    for user_id in ("alice", "bob", "carol"):
        folded = presence.project(events, user_id)
        row = viewed.get(user_id, {"online": False, "shown_status": "offline", "connections": {}})
        pairs.append(
            (
                {
                    "online": row["online"],
                    "shown": row["shown_status"],
                    "connections": row["connections"],
                    "username": row["username"] if row["online"] else None,
                },
                {
                    "online": folded.online,
                    "shown": folded.shown_status,
                    "connections": {cid: sorted(rooms) for cid, rooms in folded.connections.items()},
                    "username": folded.username if folded.online else None,
                },
            )
        )
    return sorted(viewed), pairs


async def test_the_presence_view_says_what_the_fold_of_the_log_says(fresh_url: str) -> None:
    async with serve(make_settings(fresh_url, typing_timeout_seconds=TYPING_TIMEOUT)) as server:
        db_engine = server.engine.store.db_engine
        seen: list[tuple[list[str], list[tuple[dict[str, Any], ...]]]] = []

        async def while_connected() -> None:
            seen.append(await presence_pairs(db_engine))

        await scripted_session(server, while_connected)
        await everyone_gone(db_engine)
        seen.append(await presence_pairs(db_engine))
    (connected_users, connected), (gone_users, gone) = seen
    for viewed, folded in connected + gone:
        assert viewed == folded
    assert connected_users == ["alice", "bob", "carol"] and gone_users == ["alice"]  # she declared one
    assert [viewed["shown"] for viewed, _ in connected] == ["busy", "online", "online"]
    assert [viewed["username"] for viewed, _ in connected] == ["Alice", "Bob", "Carol"]
    assert len(connected[0][0]["connections"]) == 1 and connected[1][0]["connections"] != {}
    assert [viewed["shown"] for viewed, _ in gone] == ["offline"] * 3


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "rebuild", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_checks_and_rebuilds_every_table(fresh_url: str) -> None:
    async with serve(make_settings(fresh_url, typing_timeout_seconds=TYPING_TIMEOUT)) as server:
        await scripted_session(server)
    # The server is gone; the tables are as far as its runner got, and --check compares them there.
    db_engine = create_db_engine(fresh_url)
    try:
        equal = await asyncio.to_thread(cli, fresh_url, "--check")
        assert equal.returncode == 0, equal.stdout + equal.stderr
        assert "0 difference(s)" in equal.stdout
        async with db_engine.begin() as conn:
            await conn.execute(text("UPDATE rooms SET messages_sent = -1 WHERE room_id = 'room-b'"))
        differs = await asyncio.to_thread(cli, fresh_url, "--check")
        assert differs.returncode == 1
        assert "rooms room-b: messages_sent is -1 in the table, 4 in the log" in differs.stdout
        rebuilt = await asyncio.to_thread(cli, fresh_url)
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert "rebuilt projection tables at position" in rebuilt.stdout
        assert (await asyncio.to_thread(cli, fresh_url, "--check")).returncode == 0

        # One partition: room-b's alone is checked and rebuilt.
        async with db_engine.begin() as conn:
            count = await partition_count(conn)
            await conn.execute(text("UPDATE rooms SET messages_sent = -1 WHERE room_id = 'room-b'"))
        partition = str(partition_of(room_stream("room-b"), count))
        differs = await asyncio.to_thread(cli, fresh_url, "--check", "--partition", partition)
        assert differs.returncode == 1 and "rooms room-b: messages_sent is -1" in differs.stdout
        rebuilt = await asyncio.to_thread(cli, fresh_url, "--partition", partition)
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert f"rebuilt projection tables at partition {partition} position" in rebuilt.stdout
        assert (await asyncio.to_thread(cli, fresh_url, "--check")).returncode == 0
        beyond = await asyncio.to_thread(cli, fresh_url, "--partition", str(count))
        assert beyond.returncode == 2 and f"--partition must be 0 to {count - 1}" in beyond.stderr
    finally:
        await db_engine.dispose()
