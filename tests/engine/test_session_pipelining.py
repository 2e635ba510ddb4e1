"""A connection's `cell_update`s read while its earlier ones commit: they share a commit, and the
connection's log order and replies stay in the order of its messages, errors and other messages
included."""

from __future__ import annotations

from typing import Any

import orjson

from engine.model.catalogue import CELL_UPDATED, USER_LEFT_ROOM
from engine.model.streams import room_stream
from engine.protocol.close_codes import CloseCode
from engine.service import Engine
from engine.session import MAX_IN_FLIGHT
from tests.engine.memory_engine import Client, connect, memory_engine, settle


def edit(cell: str, value: object, cmid: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "cell_update",
            "sheet_id": "s1",
            "cell_id": cell,
            "value": value,
            "client_msg_id": cmid,
            **fields,
        }
    )


async def editor_in_room(engine: Engine) -> Client:
    """Ann in room r1, with sheet s1 claimed for it by a first edit (answered in turn: it claims)."""
    client = await connect(engine, "ann")
    await client.send({"type": "join_room", "room_id": "r1"})
    await client.send(orjson.loads(edit("Z9", 0, "claim")))
    client.take()
    return client


async def room_values(engine: Engine) -> list[tuple[str, object]]:
    events = await engine.node.read_stream(room_stream("r1"))
    return [(e.data["cell_id"], e.data["value"]) for e in events if e.type == CELL_UPDATED][1:]


async def test_updates_read_back_to_back_share_one_commit_and_are_acked_in_order() -> None:
    async with memory_engine() as engine:
        client = await editor_in_room(engine)
        batches = engine.appender_stats.batches
        for n in range(5):
            assert await client.session.receive(edit(f"A{n}", n, f"m{n}")) is None
        assert client.frames == []  # each was read before the one before it was answered
        await client.session.answered()
        await settle(engine)

        frames = client.take()
        acks = [f for f in frames if f["type"] == "ack"]
        assert [a["client_msg_id"] for a in acks] == [f"m{n}" for n in range(5)]
        assert [a["seq"] for a in acks] == [3, 4, 5, 6, 7]
        updates = [f["seq"] for f in frames if f["type"] == "cell_updated"]
        assert updates == [3, 4, 5, 6, 7]
        assert engine.appender_stats.batches == batches + 1
        assert await room_values(engine) == [(f"A{n}", n) for n in range(5)]


async def test_a_refused_update_between_others_is_answered_in_its_place() -> None:
    async with memory_engine() as engine:
        client = await editor_in_room(engine)
        await client.session.receive(edit("A1", "x", "m1", version=100))
        await client.session.receive(edit("A1", "stale", "m2", version=5))  # decided in the append
        await client.session.receive(edit("B1", "y", "m3", room="elsewhere"))  # refused before queueing
        await client.session.receive(edit("C1", "z", "m4"))
        await client.session.answered()
        await settle(engine)

        answers = [
            (f["type"], f.get("code"), f["client_msg_id"])
            for f in client.take()
            if f["type"] != "cell_updated"
        ]
        assert answers == [
            ("ack", None, "m1"),
            ("error", "VERSION_CONFLICT", "m2"),
            ("error", "VALIDATION_ERROR", "m3"),
            ("ack", None, "m4"),
        ]
        assert await room_values(engine) == [("A1", "x"), ("C1", "z")]


async def test_other_messages_wait_for_the_updates_before_them() -> None:
    async with memory_engine() as engine:
        client = await editor_in_room(engine)
        await client.session.receive(edit("A1", 1, "m1"))
        await client.session.receive(orjson.dumps({"type": "ping", "client_msg_id": "p"}))
        await client.session.receive(
            orjson.dumps({"type": "leave_room", "room_id": "r1", "client_msg_id": "l"})
        )
        await client.session.receive(edit("A2", 2, "m2"))  # no longer a member: refused
        await client.session.answered()
        await settle(engine)

        answers = [
            (f["type"], f.get("client_msg_id"))
            for f in client.take()
            if f["type"] in ("ack", "pong", "error")
        ]
        assert answers == [("ack", "m1"), ("pong", "p"), ("ack", "l"), ("error", "m2")]
        assert await room_values(engine) == [("A1", 1)]


async def test_a_retried_update_in_flight_with_its_original_is_acked_with_the_original_seq() -> None:
    async with memory_engine() as engine:
        client = await editor_in_room(engine)
        await client.session.receive(edit("A1", 1, "same"))
        await client.session.receive(edit("A1", 1, "same"))
        await client.session.answered()
        await settle(engine)

        acks = [(f["client_msg_id"], f["seq"]) for f in client.take() if f["type"] == "ack"]
        assert acks == [("same", 3), ("same", 3)]
        assert await room_values(engine) == [("A1", 1)]


async def test_past_the_in_flight_bound_the_next_frame_waits_for_the_oldest() -> None:
    async with memory_engine() as engine:
        client = await editor_in_room(engine)
        batches = engine.appender_stats.batches
        for n in range(MAX_IN_FLIGHT + 1):
            await client.session.receive(edit(f"A{n}", n, f"m{n}"))
        # The last frame waited for the first to be answered: the first commit took the bound.
        assert engine.appender_stats.batches >= batches + 1
        await client.session.answered()
        await settle(engine)
        acks = [f["seq"] for f in client.take() if f["type"] == "ack"]
        assert acks == list(range(3, 3 + MAX_IN_FLIGHT + 1))


async def test_a_connection_that_ends_settles_its_updates_before_it_leaves() -> None:
    async with memory_engine() as engine:
        client = await editor_in_room(engine)
        for n in range(3):
            await client.session.receive(edit(f"A{n}", n, f"m{n}"))
        await client.session.end()

        events = await engine.node.read_stream(room_stream("r1"))
        assert [e.type for e in events][-4:] == [CELL_UPDATED] * 3 + [USER_LEFT_ROOM]


async def test_a_frame_over_the_limit_is_refused_after_the_updates_before_it_are_answered() -> None:
    async with memory_engine(max_message_bytes=1024) as engine:
        client = await editor_in_room(engine)
        await client.session.receive(edit("A1", 1, "m1"))
        verdict = await client.session.receive(edit("A2", "x" * 2000, "m2"))
        assert verdict is not None and verdict.code == CloseCode.MESSAGE_TOO_BIG
        await settle(engine)
        answers = [f.get("code", f["type"]) for f in client.take() if f["type"] in ("ack", "error")]
        assert answers == ["ack", "MESSAGE_TOO_LARGE"]
