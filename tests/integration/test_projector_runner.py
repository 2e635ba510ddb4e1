"""The projector runner (engine/readmodels/runner.py) on a real PostgreSQL, each test on a database of its
own: it projects every read model, matches a rebuild from zero, resumes from its checkpoint without
applying anything twice, lets only one of two runners project, and stops at an event nobody knows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import SheetClaimed
from engine.model.events import CellWrite, NewEvent, Origin
from engine.readmodels.rebuild import diff_all, diff_projections, rebuild_projections
from engine.readmodels.runner import ProjectorRunner
from tests.integration.projection_helpers import caught_up, checkpoint, fresh_database, rows


@pytest.fixture
def fresh_url(server_url: str) -> Iterator[str]:
    with fresh_database(server_url, partitions=1) as url:  # step and event counts of one partition
        yield url


@pytest.fixture
async def fresh_db(fresh_url: str) -> AsyncIterator[AsyncEngine]:
    db_engine = create_db_engine(fresh_url)
    yield db_engine
    await db_engine.dispose()


def _room(room: str, event_type: str, volatile: bool = False, **data: Any) -> NewEvent:
    stream = f"volatile:room:{room}" if volatile else f"room:{room}"
    return NewEvent(stream, event_type, {"room_id": room, **data}, user_id=data.get("user_id"))


def _user(user: str, event_type: str, volatile: bool = False, **data: Any) -> NewEvent:
    stream = f"volatile:user:{user}" if volatile else f"user:{user}"
    return NewEvent(stream, event_type, {"user_id": user, **data}, user_id=user)


def _cell(room: str, sheet: str, cell: str, value: Any, user: str) -> NewEvent:
    data = {"sheet_id": sheet, "cell_id": cell, "value": value, "formula": None, "user_id": user}
    return NewEvent(
        f"room:{room}",
        "CellUpdated",
        {"room_id": room, **data},
        user_id=user,
        cells=(CellWrite(sheet, cell, room, None, value),),
    )


def session_events(room: str, tag: str = "a") -> list[NewEvent]:
    """One of every kind of event each read model folds, in a plausible order."""
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    return [
        SheetClaimed(f"sheet-{tag}", room).claim(Origin("n", alice)),  # no read model folds it
        _room(
            room, "UserJoinedRoom", user_id=alice, username="Alice", email="a@x", connection_id=f"c1-{tag}"
        ),
        _room(room, "UserJoinedRoom", user_id=bob, username="Bob", email=None, connection_id=f"c2-{tag}"),
        _cell(room, f"sheet-{tag}", "A1", 42, alice),
        _cell(room, f"sheet-{tag}", "A1", "x", bob),
        _room(room, "CursorMoved", True, user_id=alice, username="Alice", x=1, y=2.5, cell="A1"),
        _room(
            room, "TypingStarted", True, user_id=bob, username="Bob", cell_id="B2", connection_id=f"c2-{tag}"
        ),
        _room(
            room,
            "TypingStarted",
            True,
            user_id=alice,
            username="Alice",
            cell_id="C3",
            connection_id=f"c1-{tag}",
        ),
        _room(room, "TypingStopped", True, user_id=alice, username="Alice", cell_id="C3", reason="stopped"),
        _user(alice, "UserStatusChanged", status="busy"),
        _user(
            bob,
            "NotificationCreated",
            notification={"id": "n1", "title": "T", "message": "M", "priority": "high"},
        ),
        _user(bob, "NotificationCreated", notification={"id": "n2", "title": "U", "category": "tasks"}),
        _user(bob, "NotificationRead", notification_id="n1"),
        _user(
            alice,
            "FileUploadStarted",
            file_id=f"f-{tag}",
            filename="r.csv",
            file_size=10,
            mime_type="text/csv",
        ),
        _user(alice, "FileUploadProgressed", True, file_id=f"f-{tag}", bytes_uploaded=5, total_bytes=10),
        _user(
            alice,
            "AiRequestStarted",
            request_id="q1",
            query="sum",
            sheet_id=f"sheet-{tag}",
            context={"k": [1]},
        ),
        _user(alice, "AiProgressed", request_id="q1", progress=50, status="thinking"),
        _user(alice, "AiCompleted", request_id="q1", result={"answer": 42}, processing_time=0.25),
        _room(room, "UserLeftRoom", user_id=bob, connection_id=f"c2-{tag}", reason="left"),
    ]


async def head(db_engine: AsyncEngine) -> int:
    return await EventStore(db_engine).head()


async def test_runner_projects_every_read_model(fresh_db: AsyncEngine) -> None:
    await EventStore(fresh_db).append(session_events("r1"))
    runner = ProjectorRunner(fresh_db, poll_seconds=0.05)
    runner.start()
    try:
        await caught_up(fresh_db)
    finally:
        await runner.stop()
    [room] = await rows(fresh_db, "rooms", "room_id")
    assert (room["room_id"], room["seq"], room["user_count"]) == ("r1", 5, 1)
    assert room["active_sheets"] == ["sheet-a"] and room["messages_sent"] == 5
    [member] = await rows(fresh_db, "room_members", "user_id")
    assert member["user_id"] == "alice-a" and member["cursor"] == {"x": 1, "y": 2.5, "cell": "A1"}
    [declared] = await rows(fresh_db, "declared_statuses", "user_id")
    assert (declared["user_id"], declared["status"]) == ("alice-a", "busy")
    # The `presence` view lays the declared status over each user's rooms.
    presence = {r["user_id"]: r for r in await rows(fresh_db, "presence", "user_id")}
    alice = presence["alice-a"]
    assert (alice["status"], alice["shown_status"], alice["online"]) == ("busy", "busy", True)
    assert alice["connections"] == {"c1-a": ["r1"]} and alice["username"] == "Alice"
    assert alice["cursor"] == {"x": 1, "y": 2.5, "cell": "A1", "room_id": "r1"}
    assert alice["last_seen"] == max(member["last_seen"], declared["declared_at"])
    assert "bob-a" not in presence  # gone from every room, and never declared a status
    assert await rows(fresh_db, "typing", "user_id") == []  # bob's typing ended with his leave
    notes = await rows(fresh_db, "notifications", "ordinal")
    assert [(n["notification_id"], n["read_at"] is not None) for n in notes] == [("n1", True), ("n2", False)]
    [upload] = await rows(fresh_db, "uploads", "file_id")
    assert (upload["status"], upload["bytes_uploaded"], upload["percentage"]) == ("uploading", 5, 50.0)
    [ai] = await rows(fresh_db, "ai_requests", "request_id")
    assert (ai["status"], ai["progress"], ai["result"], ai["context"]) == (
        "complete",
        100.0,
        {"answer": 42},
        {"k": [1]},
    )
    assert await diff_all(fresh_db) == []


async def test_runner_resumes_from_its_checkpoint_without_applying_twice(fresh_db: AsyncEngine) -> None:
    store = EventStore(fresh_db)
    await store.append(session_events("r1")[:9])
    first = ProjectorRunner(fresh_db, poll_seconds=0.05)
    first.start()
    try:
        resumed_at = await caught_up(fresh_db)
    finally:
        await first.stop()
    await store.append(session_events("r1")[9:] + session_events("r2", "b"))
    second = ProjectorRunner(fresh_db, poll_seconds=0.05)
    second.start()
    try:
        await caught_up(fresh_db)
    finally:
        await second.stop()
    # The second runner read only what came after the first one's checkpoint, and its views of r1
    # came from the tables: a room applied twice would have raised on its seq, a notification or a
    # message counted twice would differ from the rebuild's fold.
    assert second.events_applied == await head(fresh_db) - resumed_at
    [r1, _] = await rows(fresh_db, "rooms", "room_id")
    assert (r1["seq"], r1["messages_sent"], r1["user_count"]) == (5, 5, 1)
    assert await diff_projections(fresh_db) == []


async def test_steps_on_warm_views_write_only_changed_rows_and_match_a_rebuild(fresh_db: AsyncEngine) -> None:
    # One event per step, so every step but a view's first diffs against the cached view: rows that
    # change, appear (a join), go (a leave, a typing stop) or move (ordinals after a leave) must all
    # reach the table, and rows that do not change must stay as they are.
    store = EventStore(fresh_db)
    runner = ProjectorRunner(fresh_db, poll_seconds=0.05)
    runner.start()
    try:
        carol = _room("r1", "UserJoinedRoom", user_id="carol", username="C", email=None, connection_id="c3")
        events = [*session_events("r1"), carol, *session_events("r1", "b")]
        events.append(_room("r1", "UserLeftRoom", user_id="alice-a", connection_id="c1-a", reason="left"))
        for event in events:
            await store.append([event])
            runner.wake()
            await caught_up(fresh_db)
            assert await diff_all(fresh_db) == [], event.type
        async with fresh_db.connect() as conn:
            # a cell update rewrote its writer's member row (last_seen) and left the others alone
            before = dict((await conn.execute(text("SELECT user_id, xmin::text FROM room_members"))).all())
            await store.append([_cell("r1", "sheet-a", "A2", 1, "carol")])
            runner.wake()
            await caught_up(fresh_db)
            await conn.rollback()
            after = dict((await conn.execute(text("SELECT user_id, xmin::text FROM room_members"))).all())
        assert before.keys() == after.keys() == {"carol", "alice-b"}
        assert after["alice-b"] == before["alice-b"] and after["carol"] != before["carol"]
    finally:
        await runner.stop()
    assert await diff_all(fresh_db) == []


async def test_steps_a_min_interval_apart_fold_many_commits_in_one(fresh_db: AsyncEngine) -> None:
    store = EventStore(fresh_db)
    # An interval long enough that twenty commits fit in a few of them even on a loaded machine.
    runner = ProjectorRunner(fresh_db, poll_seconds=0.05, min_interval=2.0)
    runner.start()
    try:
        events = session_events("r1")
        await store.append(events[:1])
        runner.wake()
        await caught_up(fresh_db)  # one step, then at least 2 s before the next
        started = time.monotonic()
        for event in events[1:]:  # twenty commits, each waking the runner
            await store.append([event])
            runner.wake()
        appending = time.monotonic() - started
        await caught_up(fresh_db)
        assert runner.events_applied == len(events)
        # Not one step per commit: one more step for each interval the commits spanned, and one last.
        assert runner.steps_applied <= 2 + int(appending / 2.0) < len(events)
    finally:
        await runner.stop()
    assert await diff_all(fresh_db) == []


async def test_two_runners_never_both_project(fresh_url: str, fresh_db: AsyncEngine) -> None:
    other_node = create_db_engine(fresh_url)  # a second process: its own pool and sessions
    one, two = ProjectorRunner(fresh_db, poll_seconds=0.05), ProjectorRunner(other_node, poll_seconds=0.05)
    one.start()
    two.start()
    try:
        store = EventStore(fresh_db)
        for n in range(5):
            await store.append(session_events(f"r{n}", str(n)))
            one.wake()
            two.wake()
            assert not (one.active and two.active)
        await caught_up(fresh_db)
        assert [one.active, two.active].count(True) == 1
        leader, standby = (one, two) if one.active else (two, one)
        assert standby.events_applied == 0
        await leader.stop()  # its session ends, the lock with it: the standby takes over
        await store.append(session_events("r9", "9"))
        await caught_up(fresh_db)
        assert standby.active and standby.events_applied > 0
    finally:
        await one.stop()
        await two.stop()
        await other_node.dispose()
    assert await diff_projections(fresh_db) == []


async def test_rebuild_while_the_runner_projects_keeps_them_equal(fresh_db: AsyncEngine) -> None:
    store = EventStore(fresh_db)
    runner = ProjectorRunner(fresh_db, poll_seconds=0.05)
    runner.start()
    try:
        await store.append(session_events("r1"))
        report = await rebuild_projections(fresh_db)
        assert report.rows["rooms"] == 1 and report.rows["notifications"] == 2
        await store.append(session_events("r2", "b"))
        runner.wake()
        await caught_up(fresh_db)
    finally:
        await runner.stop()
    assert await diff_projections(fresh_db) == []


async def test_diff_reports_a_corrupted_row_and_rebuild_repairs_it(fresh_db: AsyncEngine) -> None:
    await EventStore(fresh_db).append(session_events("r1"))
    await rebuild_projections(fresh_db)
    async with fresh_db.begin() as conn:
        await conn.execute(text("UPDATE rooms SET messages_sent = 99"))
        await conn.execute(text("DELETE FROM notifications WHERE notification_id = 'n2'"))
        await conn.execute(
            text("UPDATE uploads SET updated_at = :t"), {"t": datetime(2020, 1, 1).astimezone()}
        )
    differences = await diff_projections(fresh_db)
    assert "rooms r1: messages_sent is 99 in the table, 5 in the log" in differences
    assert "notifications bob-a/n2: in the log but missing from the table" in differences
    assert any(line.startswith("uploads f-a: updated_at is") for line in differences)
    assert len(differences) == 3
    await rebuild_projections(fresh_db)
    assert await diff_projections(fresh_db) == []


async def test_runner_stops_at_an_event_no_projection_knows(fresh_db: AsyncEngine) -> None:
    store = EventStore(fresh_db)
    await store.append(session_events("r1")[:3])
    good = await head(fresh_db)
    await store.append([NewEvent("room:r1", "SomethingNew", {"room_id": "r1"})])
    await store.append([NewEvent("tool:x", "Probed", {"n": 1})])  # not a room or user stream: no read model's
    runner = ProjectorRunner(fresh_db, poll_seconds=0.05, retry_seconds=0.05)
    runner.start()
    try:
        await asyncio.sleep(0.5)
        assert await checkpoint(fresh_db) == 0  # the page holding the unknown event is never committed
    finally:
        await runner.stop()
    assert good == 3
