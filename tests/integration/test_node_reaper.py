"""The departures of a dead node's connections: exactly its open memberships, recorded once even when
two survivors find it at the same time, and recorded before the node, if it was only cut off, can
beat again; a join it handed over that committed late is closed by a second look; a node that
registered again is not marked stopped for its earlier run, nor its new joins closed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster.reaper import (
    NODE_LOST_ERROR,
    DeadNode,
    dead_nodes,
    leaves_for,
    mark_stopped,
    record_departures,
    record_late_departures,
)
from engine.cluster.registry import NodeRegistry
from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import (
    AI_FAILED,
    NODE_LOST,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    AiCompleted,
    AiFailed,
    AiRequestStarted,
)
from engine.model.events import AppendOutcome, Committed, Duplicate, NewEvent, Origin
from engine.model.streams import room_stream, user_stream
from engine.projections.ai_requests import end_key
from tests.api.conftest import fresh_database

HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check


def membership(kind: str, room: str, user: str, connection: str, node: str) -> NewEvent:
    return NewEvent(
        stream_id=room_stream(room),
        type=kind,
        data={"room_id": room, "user_id": user, "connection_id": connection, "reason": "left"}
        if kind == USER_LEFT_ROOM
        else {"room_id": room, "user_id": user, "username": user, "connection_id": connection},
        metadata={"user_id": user, "connection_id": connection, "node": node},
        user_id=user,
    )


async def test_open_memberships_of_a_dead_node_are_closed_once(
    store: EventStore, db_engine: AsyncEngine
) -> None:
    dead, other = f"dead-{uuid.uuid4().hex[:6]}", f"alive-{uuid.uuid4().hex[:6]}"
    room = f"room-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC) - timedelta(seconds=5)
    async with db_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES (:n, :s, :h)"),
            {"n": dead, "s": started, "h": started},
        )
    await store.append(
        [
            membership(USER_JOINED_ROOM, room, "ann", "c-ann", dead),  # still in: must leave
            membership(USER_JOINED_ROOM, room, "bob", "c-bob", dead),
            membership(USER_LEFT_ROOM, room, "bob", "c-bob", dead),  # already left: nothing to do
            membership(USER_JOINED_ROOM, room, "cy", "c-cy", other),  # another node's: untouched
        ]
    )

    found = [node for node in await dead_nodes(db_engine, other, dead_after=2.0) if node.node_id == dead]
    assert found == [DeadNode(dead, found[0].started_at)]
    async with db_engine.connect() as conn:
        first = await leaves_for(conn, found[0], reaper="survivor-1")
        second = await leaves_for(conn, found[0], reaper="survivor-2")  # found it at the same time
    assert [(e.data["user_id"], e.data["connection_id"]) for e in first] == [("ann", "c-ann")]

    outcomes = await store.append([*first, *second])
    assert [type(o) for o in outcomes] == [Committed, Duplicate]
    async with db_engine.begin() as conn:
        await mark_stopped(conn, found[0], recheck_after=60.0)
    assert dead not in {n.node_id for n in await dead_nodes(db_engine, other, dead_after=2.0)}
    async with db_engine.connect() as conn:
        assert await leaves_for(conn, found[0], reaper="survivor-3") == []  # nothing left open


async def beat(db_engine: AsyncEngine, node_id: str) -> int:
    """What a node's heartbeat writes (engine/cluster/registry.py): rows updated, 0 if marked stopped."""
    async with db_engine.begin() as conn:
        done = await conn.execute(
            text("UPDATE nodes SET heartbeat_at = now() WHERE node_id = :n AND stopped_at IS NULL"),
            {"n": node_id},
        )
        return done.rowcount


async def beats_waiting(db_engine: AsyncEngine) -> int:
    async with db_engine.connect() as conn:
        query = """SELECT count(*) FROM pg_stat_activity
                   WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE nodes SET heartbeat_at%'"""
        return int((await conn.execute(text(query))).scalar_one())


async def test_a_node_beating_again_while_its_departures_are_recorded_finds_itself_stopped(
    server_url: str,
) -> None:
    """A node taken for dead that was only cut off may beat again in the middle of it. Its beat waits
    for the survivor to finish, then finds its row stopped (so it drops its connections); had it gone
    through, the node would append on in the names of users whose departures had just been recorded."""
    async with fresh_database(server_url, 1) as url:
        db_engine = create_db_engine(url)
        store = EventStore(db_engine)
        cut, room = "cut-node", f"room-{uuid.uuid4().hex[:8]}"
        started = datetime.now(UTC) - timedelta(seconds=5)
        try:
            async with db_engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES (:n, :s, :s)"),
                    {"n": cut, "s": started},
                )
            await store.append([membership(USER_JOINED_ROOM, room, "ann", "c-ann", cut)])
            beats: list[asyncio.Task[int]] = []

            async def commit(event: NewEvent) -> AppendOutcome:
                beats.append(asyncio.create_task(beat(db_engine, cut)))  # the node is back
                async with asyncio.timeout(HANG_GUARD):  # until it waits for the survivor's claim
                    while not await beats_waiting(db_engine):  # noqa: ASYNC110 (a database's state: polled)
                        await asyncio.sleep(0.02)
                (outcome,) = await store.append([event])
                return outcome

            survivor = NodeRegistry(db_engine, "survivor", dead_after=2.0)
            await record_departures(db_engine, survivor, commit, recheck_after=60.0)
            assert [await b for b in beats] == [0]
        finally:
            await db_engine.dispose()


async def test_a_node_registered_again_is_not_marked_stopped_by_a_reaper_of_its_earlier_run(
    store: EventStore, db_engine: AsyncEngine
) -> None:
    node = f"back-{uuid.uuid4().hex[:6]}"
    earlier = datetime.now(UTC) - timedelta(seconds=5)
    async with db_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES (:n, now(), now())"),
            {"n": node},
        )
        await mark_stopped(conn, DeadNode(node, earlier), recheck_after=0.0)  # found dead in its earlier run
        row = (await conn.execute(text("SELECT stopped_at FROM nodes WHERE node_id = :n"), {"n": node})).one()
    assert row.stopped_at is None


async def committing(store: EventStore) -> Callable[[NewEvent], Awaitable[AppendOutcome]]:
    async def commit(event: NewEvent) -> AppendOutcome:
        (outcome,) = await store.append([event])
        return outcome

    return commit


async def leaves_in(store: EventStore, room: str) -> list[tuple[str, str]]:
    stream = await store.read_stream(room_stream(room))
    return [(e.data["user_id"], e.data["reason"]) for e in stream if e.type == USER_LEFT_ROOM]


async def register_dead(db_engine: AsyncEngine, *nodes: str) -> None:
    """Rows of nodes that registered 5 s ago and never beat since."""
    started = datetime.now(UTC) - timedelta(seconds=5)
    async with db_engine.begin() as conn:
        for node in nodes:
            await conn.execute(
                text("INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES (:n, :s, :s)"),
                {"n": node, "s": started},
            )


async def test_a_late_join_of_a_dead_node_is_closed_by_any_survivor_once_its_second_look_is_due(
    server_url: str,
) -> None:
    """A join the node handed to its room's writer just before it stopped appending can commit after
    the survivor read the node's memberships. The mark makes a second reading due once such a batch
    must have committed, and any survivor makes it (the one that marked the node may be gone), once;
    one that fails leaves it due for a later pass."""
    async with fresh_database(server_url, 1) as url:
        db_engine = create_db_engine(url)
        store = EventStore(db_engine)
        room, not_yet_room = f"room-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
        plain = await committing(store)

        async def failing(event: NewEvent) -> AppendOutcome:
            raise ValueError("poisoned")

        try:
            await register_dead(db_engine, "cut-node")
            marking = NodeRegistry(db_engine, "marking-survivor", dead_after=2.0)
            (dead,) = await record_departures(db_engine, marking, plain, recheck_after=0.0)
            await register_dead(db_engine, "later-node")
            marked_later = await record_departures(db_engine, marking, plain, recheck_after=60.0)
            assert [node.node_id for node in marked_later] == ["later-node"]
            await store.append(
                [
                    membership(USER_JOINED_ROOM, room, "bo", "c-bo", "cut-node"),  # committed late
                    membership(USER_JOINED_ROOM, not_yet_room, "cy", "c-cy", "later-node"),
                ]
            )
            other = NodeRegistry(db_engine, "other-survivor", dead_after=2.0)
            assert await record_late_departures(db_engine, other, failing, retry_interval=0.01) == []
            assert await leaves_in(store, room) == []

            assert await record_late_departures(db_engine, other, plain) == [dead]
            assert await leaves_in(store, room) == [("bo", NODE_LOST)]
            assert await record_late_departures(db_engine, other, plain) == []  # made once
            assert await leaves_in(store, not_yet_room) == []  # its look is not due yet
        finally:
            await db_engine.dispose()


async def test_a_dead_node_that_registered_again_gets_no_second_look(server_url: str) -> None:
    """A node taken for dead that registers again records its old connections' departures itself;
    a second look at its memberships then would close its new run's joins. So too for a node of a
    version before the look was kept in its row, whose registration leaves the look due."""
    async with fresh_database(server_url, 1) as url:
        db_engine = create_db_engine(url)
        store = EventStore(db_engine)
        rooms = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("old", "new", "earlier-version")}
        commit = await committing(store)
        try:
            await register_dead(db_engine, "cut-node", "earlier-version-node")
            survivor = NodeRegistry(db_engine, "survivor", dead_after=2.0)
            await record_departures(db_engine, survivor, commit, recheck_after=0.0)
            await store.append([membership(USER_JOINED_ROOM, rooms["old"], "bo", "c-bo", "cut-node")])
            back = NodeRegistry(db_engine, "cut-node", interval=60.0, dead_after=120.0)
            await back.start()  # registers the node's new run
            async with db_engine.begin() as conn:  # as that version registers: `recheck_at` untouched
                again = """UPDATE nodes SET started_at = now(), heartbeat_at = now(), stopped_at = NULL
                           WHERE node_id = :n"""
                await conn.execute(text(again), {"n": "earlier-version-node"})
            try:
                await store.append(
                    [
                        membership(USER_JOINED_ROOM, rooms["new"], "cy", "c-cy", "cut-node"),
                        membership(
                            USER_JOINED_ROOM, rooms["earlier-version"], "di", "c-di", "earlier-version-node"
                        ),
                    ]
                )
                assert await record_late_departures(db_engine, survivor, commit) == []
            finally:
                await back.stop()
            assert [await leaves_in(store, room) for room in rooms.values()] == [[], [], []]
        finally:
            await db_engine.dispose()


async def test_a_dead_node_whose_departures_fail_is_left_for_later_and_the_others_recorded(
    server_url: str,
) -> None:
    """One node's departures that cannot be recorded (here an error no retry mends) leave its row
    unmarked, for a later pass, and do not keep the survivor from the other dead nodes."""
    async with fresh_database(server_url, 1) as url:
        db_engine = create_db_engine(url)
        store = EventStore(db_engine)
        room = f"room-{uuid.uuid4().hex[:8]}"
        started = datetime.now(UTC) - timedelta(seconds=5)
        plain = await committing(store)

        async def commit(event: NewEvent) -> AppendOutcome:
            if event.data["user_id"] == "ann":
                raise ValueError("poisoned")
            return await plain(event)

        try:
            for node in ("node-a", "node-b"):
                async with db_engine.begin() as conn:
                    await conn.execute(
                        text("INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES (:n, :s, :s)"),
                        {"n": node, "s": started},
                    )
            await store.append(
                [
                    membership(USER_JOINED_ROOM, room, "ann", "c-ann", "node-a"),
                    membership(USER_JOINED_ROOM, room, "bo", "c-bo", "node-b"),
                ]
            )
            survivor = NodeRegistry(db_engine, "survivor", dead_after=2.0)
            marked = await record_departures(
                db_engine, survivor, commit, recheck_after=60.0, retry_interval=0.01
            )
            assert [dead.node_id for dead in marked] == ["node-b"]
            assert await leaves_in(store, room) == [("bo", NODE_LOST)]
            still_dead = {dead.node_id for dead in await dead_nodes(db_engine, "survivor", dead_after=2.0)}
            assert still_dead == {"node-a"}
        finally:
            await db_engine.dispose()


async def test_ai_requests_a_dead_node_left_running_end_in_an_error_once(server_url: str) -> None:
    """Their runs died with the node: without an end, the requester would wait for good."""
    async with fresh_database(server_url, 4) as url:
        db_engine = create_db_engine(url)
        store = EventStore(db_engine)
        ann, bob = f"ann-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
        commit = await committing(store)

        def started(user: str, request_id: str, node: str) -> NewEvent:
            return AiRequestStarted(user, request_id, "Analyse", "s1").new(
                Origin(node, user), key=f"ai:{request_id}"
            )

        try:
            await register_dead(db_engine, "dead-node")
            await store.append(
                [
                    started(ann, "running", "dead-node"),
                    started(ann, "done", "dead-node"),
                    AiCompleted(ann, "done", "ok", 0.1).new(Origin("dead-node", ann), request_id="done"),
                    started(bob, "failed", "dead-node"),
                    AiFailed(bob, "failed", "provider").new(Origin("dead-node", bob), request_id="failed"),
                    started(bob, "elsewhere", "live-node"),  # another node's run: untouched
                ]
            )
            first = NodeRegistry(db_engine, "survivor-1", dead_after=2.0)
            assert [
                n.node_id for n in await record_departures(db_engine, first, commit, recheck_after=0.0)
            ] == ["dead-node"]
            second = NodeRegistry(db_engine, "survivor-2", dead_after=2.0)
            await record_late_departures(db_engine, second, commit)  # the second look finds them ended
            ended = {user: await ai_failures(store, user) for user in (ann, bob)}
            assert ended == {ann: [("running", NODE_LOST_ERROR)], bob: [("failed", "provider")]}
            # The run, on a node only cut off, ends it too: the log keeps one ending per request.
            late = AiCompleted(ann, "running", "ok", 0.1).new(
                Origin("dead-node", ann), key=end_key("running")
            )
            assert [type(o) for o in await store.append([late])] == [Duplicate]
        finally:
            await db_engine.dispose()


async def ai_failures(store: EventStore, user: str) -> list[tuple[str, str]]:
    stream = await store.read_stream(user_stream(user))
    return [(e.data["request_id"], e.data["error"]) for e in stream if e.type == AI_FAILED]
