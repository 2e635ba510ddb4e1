"""cell_update between real clients: the server's version rule (docs/protocol.md, `cell_update`),
decided inside the append, so a stale base version or a lost race changes nothing and says why."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.log.store import EventStore
from engine.model.catalogue import CELL_UPDATED
from engine.model.streams import room_stream
from tests.api.conftest import Server, receive, request
from tests.api.live_helpers import greet, join, of_type, pending, send, types, until


@pytest.fixture
def sheet() -> str:
    return f"sheet-{uuid.uuid4().hex[:12]}"


def update(sheet: str, **fields: object) -> dict[str, object]:
    return {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1", "value": "Hello World", **fields}


async def test_cell_update_reaches_every_member_with_the_seed_version(
    server: Server, store: EventStore, room: str, sheet: str
) -> None:
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        await join(bob, room)
        await pending(alice)
        seed = update(sheet, formula="=CONCATENATE('Hello', ' ', 'World')", version=1642161000000)
        await send(alice, {**seed, "client_msg_id": "m-1"})

        mine = await until(alice, of_type("ack"))
        assert types(mine) == ["cell_updated", "ack"]
        updated, ack = mine
        assert updated["version"] == 1642161000001
        assert {
            k: updated[k] for k in ("sheet_id", "cell_id", "value", "formula", "user_id", "username")
        } == {
            "sheet_id": sheet,
            "cell_id": "A1",
            "value": "Hello World",
            "formula": "=CONCATENATE('Hello', ' ', 'World')",
            "user_id": "alice",
            "username": "alice",
        }
        assert (updated["room_id"], updated["seq"], updated["client_msg_id"]) == (room, 3, "m-1")
        assert (ack["client_msg_id"], ack["room_id"], ack["seq"]) == ("m-1", room, 3)

        theirs = await receive(bob)
        assert theirs == updated  # every member sees the same message, sender included

    events = await store.read_stream(room_stream(room))
    assert [e.data["version"] for e in events if e.type == CELL_UPDATED] == [1642161000001]


async def test_stale_version_gets_version_conflict_with_the_current_cell_and_changes_nothing(
    server: Server, store: EventStore, room: str, sheet: str
) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        await join(alice, room)
        await send(alice, update(sheet, version=10))
        assert (await receive(alice))["version"] == 11
        reply = await request(alice, update(sheet, value="late", version=5, client_msg_id="m-2"))
        assert (reply["type"], reply["code"], reply["client_msg_id"]) == ("error", "VERSION_CONFLICT", "m-2")
        assert reply["current"] == {
            "value": "Hello World",
            "formula": None,
            "version": 11,
            "user_id": "alice",
        }
        assert await pending(alice) == []
    values = [e.data["value"] for e in await store.read_stream(room_stream(room)) if e.type == CELL_UPDATED]
    assert values == ["Hello World"]


async def test_two_connections_racing_one_base_version_exactly_one_wins(
    server: Server, store: EventStore, room: str, sheet: str
) -> None:
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        await join(bob, room)
        await pending(alice)
        await send(alice, update(sheet, version=1))
        base = (await receive(alice))["version"]
        await receive(bob)

        await asyncio.gather(
            send(alice, update(sheet, value="alice's", version=base, client_msg_id="a")),
            send(bob, update(sheet, value="bob's", version=base, client_msg_id="b")),
        )
        answers = [await until(ws, lambda m: m["type"] in ("ack", "error")) for ws in (alice, bob)]
    last = [a[-1] for a in answers]
    assert sorted(m["type"] for m in last) == ["ack", "error"]
    loser = next(m for m in last if m["type"] == "error")
    assert loser["code"] == "VERSION_CONFLICT" and loser["current"]["version"] == base + 1
    values = [e.data["value"] for e in await store.read_stream(room_stream(room)) if e.type == CELL_UPDATED]
    assert len(values) == 2 and values[1] in ("alice's", "bob's")


async def test_cell_update_refusals(server: Server, room: str, sheet: str) -> None:
    async with (
        server.connect(server.token("viewer", roles=["viewer"])) as viewer,
        server.connect(server.token("carol")) as carol,
    ):
        await greet(viewer)
        await greet(carol)
        await join(viewer, room)
        assert (await request(viewer, update(sheet)))["code"] == "PERMISSION_DENIED"  # viewers read only
        assert (await request(carol, update(sheet, room=room)))["code"] == "PERMISSION_DENIED"  # not joined
        await join(carol, room)
        await join(carol, f"{room}-2")
        reply = await request(carol, update(sheet))  # a new sheet, two rooms: which one?
        assert reply["code"] == "VALIDATION_ERROR" and reply["details"][0]["loc"] == ["room"]
        await send(carol, update(sheet, room=room))
        assert (await until(carol, of_type("cell_updated")))[-1]["room_id"] == room
        moved = await request(carol, update(sheet, room=f"{room}-2"))  # the sheet belongs to `room`
        assert moved["code"] == "VALIDATION_ERROR"
        assert (await request(carol, {"type": "ping"}))["type"] == "pong"


async def test_a_new_sheets_first_edit_without_room_names_the_message_sent(
    server: Server, room: str, sheet: str
) -> None:
    """The sender is in two rooms and the sheet has none yet: the refusal asks for `room` and names
    the message that lacked it, a `cells_update` as well as a `cell_update`."""
    cells = [{"cell_id": "A1", "value": 1}, {"cell_id": "B1", "value": 2}]
    async with server.connect(server.token("carol")) as carol:
        await greet(carol)
        await join(carol, room)
        await join(carol, f"{room}-2")
        for kind, message in (
            ("cell_update", update(sheet)),
            ("cells_update", {"type": "cells_update", "sheet_id": sheet, "cells": cells}),
        ):
            reply = await request(carol, {**message, "client_msg_id": kind})
            assert (reply["code"], reply["client_msg_id"]) == ("VALIDATION_ERROR", kind)
            assert reply["error"].startswith(f"{kind} of new sheet {sheet!r} needs 'room'"), reply["error"]
            assert reply["details"][0]["loc"] == ["room"]


async def test_repeated_client_msg_id_is_acked_again_and_not_applied_twice(
    server: Server, store: EventStore, room: str, sheet: str
) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        await join(alice, room)
        await send(alice, update(sheet, client_msg_id="once"))
        first = (await until(alice, of_type("ack")))[-1]
        again = await request(alice, update(sheet, value="changed", client_msg_id="once"))
        assert (again["type"], again["seq"]) == ("ack", first["seq"])
        assert await pending(alice) == []
    values = [e.data["value"] for e in await store.read_stream(room_stream(room)) if e.type == CELL_UPDATED]
    assert values == ["Hello World"]


async def test_updates_sent_back_to_back_are_applied_and_answered_in_the_order_sent(
    server: Server, store: EventStore, room: str, sheet: str
) -> None:
    """A busy editor's updates are read while the ones before them commit (engine/session.py): a
    stale one, a refused one and a repeat among them change nothing of the order."""
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        await join(bob, room)
        await send(alice, update(sheet, cell_id="Z1", version=100, client_msg_id="claim"))
        claimed = (await until(alice, of_type("ack", client_msg_id="claim")))[-1]
        first = claimed["seq"] + 1
        await pending(bob)
        sent = [update(sheet, cell_id=f"A{n}", value=n, client_msg_id=f"m{n}") for n in range(40)]
        sent[10] = update(sheet, cell_id="Z1", value="stale", version=5, client_msg_id="m10")
        sent[20] = update(sheet, cell_id="A20", room="another-room", client_msg_id="m20")
        sent[30] = update(sheet, cell_id="A29", value="repeat", client_msg_id="m29")
        for message in sent:
            await send(alice, message)
        seen = await until(alice, lambda m: m.get("client_msg_id") == "m39" and m["type"] == "ack")

        replies = [
            (m["type"], m.get("code"), m["client_msg_id"]) for m in seen if m["type"] in ("ack", "error")
        ]
        expected = [("ack", None, f"m{n}") for n in range(40)]
        expected[10] = ("error", "VERSION_CONFLICT", "m10")
        expected[20] = ("error", "VALIDATION_ERROR", "m20")
        expected[30] = ("ack", None, "m29")
        assert replies == expected
        acks = [m["seq"] for m in seen if m["type"] == "ack"]
        assert acks == [*range(first, first + 28), first + 27, *range(first + 28, first + 37)]
        theirs = await until(bob, of_type("cell_updated", client_msg_id="m39"))
        assert [m["seq"] for m in theirs] == list(range(first, first + 37))

    applied = [n for n in range(40) if n not in (10, 20, 30)]
    events = [e for e in await store.read_stream(room_stream(room)) if e.type == CELL_UPDATED]
    assert [e.data["value"] for e in events][1:] == applied
