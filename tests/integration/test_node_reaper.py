"""The departures of a dead node's connections: exactly its open memberships, recorded once even when
two survivors find it at the same time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster.reaper import DeadNode, dead_nodes, leaves_for, mark_stopped
from engine.log.store import EventStore
from engine.model.catalogue import USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.model.events import Committed, Duplicate, NewEvent
from engine.model.streams import room_stream


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
    first = await leaves_for(db_engine, found[0], reaper="survivor-1")
    second = await leaves_for(db_engine, found[0], reaper="survivor-2")  # found it at the same time
    assert [(e.data["user_id"], e.data["connection_id"]) for e in first] == [("ann", "c-ann")]

    outcomes = await store.append([*first, *second])
    assert [type(o) for o in outcomes] == [Committed, Duplicate]
    await mark_stopped(db_engine, found[0])
    assert dead not in {n.node_id for n in await dead_nodes(db_engine, other, dead_after=2.0)}
    assert await leaves_for(db_engine, found[0], reaper="survivor-3") == []  # nothing left open
