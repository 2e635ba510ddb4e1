"""Over real sockets: a retry is answered with its original ack before any other check (a leave
retried once the room was joined again leaves it again), nothing addressed to an offline user is
lost, rate limits that fit a sheet, and the rooms listing follows the reader's `rooms` claim."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from engine.log.store import EventStore
from engine.model.catalogue import LEFT, USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.model.streams import room_stream
from tests.api.conftest import Server, make_settings, receive, request, serve
from tests.api.live_helpers import greet, join, of_type, pending, send, until
from tests.api.rest_helpers import rest
from tests.integration.projection_helpers import caught_up, fresh_database


async def test_a_retry_from_a_tab_outside_the_room_gets_the_original_ack(server: Server, room: str) -> None:
    key = f"{room}-edit"
    edit = {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "A1", "value": 1, "room": room}
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        await send(ann, {**edit, "client_msg_id": key})
        original = (await until(ann, of_type("ack", client_msg_id=key)))[-1]
    async with server.connect(server.token("ann")) as other_tab:  # never joined the room
        await greet(other_tab)
        again = await request(other_tab, {**edit, "client_msg_id": key})
        assert again == original == {"type": "ack", "client_msg_id": key, "room_id": room, "seq": 2}
        other = await request(other_tab, {**edit, "client_msg_id": f"{key}-new"})
        assert other["code"] == "PERMISSION_DENIED"  # a new message is checked as usual


async def test_a_leave_repeated_after_the_room_was_joined_again_leaves_it_again(
    server: Server, store: EventStore, room: str
) -> None:
    key = f"{room}-leave"
    leave = {"type": "leave_room", "room_id": room, "client_msg_id": key}
    async with server.connect(server.token("ann")) as ann, server.connect(server.token("bob")) as bob:
        await greet(ann)
        await greet(bob)
        await join(ann, room)
        await join(bob, room)
        await send(bob, leave)
        left, ack = await until(bob, of_type("ack"))
        assert (left["type"], left["reason"], left["seq"], ack["seq"]) == ("room_left", "left", 3, 3)
        await send(bob, leave)  # out of the room: the original ack, and nothing else
        assert await pending(bob) == [ack]
        await join(bob, room)
        await pending(ann)
        # In the room again, the spent id leaves this stay: recorded, and heard by the others.
        await send(bob, leave)
        left, ack = await until(bob, of_type("ack"))
        assert (left["type"], left["reason"], left["client_msg_id"], left["seq"]) == (
            "room_left",
            "left",
            key,
            5,
        )
        assert ack == {"type": "ack", "client_msg_id": key, "room_id": room, "seq": 5}
        heard = await pending(ann)
        assert [(m["type"], m["seq"]) for m in heard] == [("room_state", 5), ("user_left", 5)]
        [*_, last] = await store.read_stream(room_stream(room))
        assert (last.type, last.user_id, last.data["reason"], last.idempotency_key) == (
            USER_LEFT_ROOM,
            "bob",
            LEFT,
            None,
        )


async def test_an_id_is_scoped_to_its_room_so_the_same_id_in_another_room_is_another_edit(
    server: Server, room: str
) -> None:
    key, other_room = f"{room}-same", f"{room}-b"
    async with server.connect(server.token("ida")) as ida:
        await greet(ida)
        for r in (room, other_room):
            await join(ida, r)
        acks = {}
        for r in (room, other_room):
            edit = {"type": "cell_update", "sheet_id": f"s-{r}", "cell_id": "A1", "value": r, "room": r}
            await send(ida, {**edit, "client_msg_id": key})
            acks[r] = (await until(ida, of_type("ack")))[-1]
            assert acks[r]["room_id"] == r  # applied in each room
        retry = {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "A1", "value": 9, "room": room}
        assert await request(ida, {**retry, "client_msg_id": key}) == acks[room]  # not applied again
        # A cursor move acts in the room too: the same id there is the room's edit, not a new move.
        move = {"type": "cursor_move", "room": other_room, "x": 1, "y": 2, "client_msg_id": key}
        assert (await request(ida, move))["type"] == "ack"
        volatile = await server.engine.node.read_stream(f"volatile:room:{other_room}")
        assert [e.idempotency_key for e in volatile if e.user_id == "ida"] == []
        sheet = await request(ida, {"type": "load_sheet", "sheet_id": f"s-{room}"})
        assert sheet["cells"]["A1"]["value"] == room and sheet["cells"]["A1"]["version"] == 1


async def test_a_refused_edit_reusing_another_room_s_id_gets_its_error_not_that_room_s_ack(
    server: Server, room: str
) -> None:
    key, elsewhere = f"{room}-reused", f"{room}-other"
    async with server.connect(server.token("joe")) as joe, server.connect(server.token("kit")) as kit:
        await greet(joe)
        await greet(kit)
        await join(joe, room)
        await send(
            joe,
            {
                "type": "cell_update",
                "sheet_id": f"s-{room}",
                "cell_id": "A1",
                "value": 1,
                "client_msg_id": key,
            },
        )
        await until(joe, of_type("ack"))
        await join(kit, elsewhere)  # kit's sheet in another room, which joe never joined
        await send(kit, {"type": "cell_update", "sheet_id": f"s-{elsewhere}", "cell_id": "A1", "value": 1})
        await until(kit, of_type("cell_updated"))
        # No `room`: it acts in its sheet's room, where the id was never used.
        refused = await request(
            joe,
            {
                "type": "cell_update",
                "sheet_id": f"s-{elsewhere}",
                "cell_id": "B1",
                "value": 2,
                "client_msg_id": key,
            },
        )
        assert refused["type"] == "error" and refused["code"] == "PERMISSION_DENIED"


async def test_a_retry_past_the_rate_limit_gets_the_original_ack(database_url: str, room: str) -> None:
    settings = make_settings(
        database_url, websocket_requests_per_minute=2, websocket_block_duration_minutes=1
    )
    async with serve(settings) as node, node.connect(node.token(f"limited-{room}")) as ws:
        await greet(ws)
        await join(ws, room)
        await send(ws, {"type": "status_update", "status": "busy", "client_msg_id": f"{room}-s"})
        original = (await until(ws, of_type("ack")))[-1]
        blocked = await request(ws, {"type": "status_update", "status": "away"})
        assert blocked["code"] == "RATE_LIMIT_EXCEEDED"
        retry = await request(ws, {"type": "status_update", "status": "busy", "client_msg_id": f"{room}-s"})
        assert retry == original
        # Blocked for durable messages, never for the mouse.
        moved = await request(
            ws, {"type": "cursor_move", "room": room, "x": 1, "y": 1, "client_msg_id": f"{room}-m"}
        )
        assert moved["type"] == "ack"
        assert (await request(ws, {"type": "load_sheet", "sheet_id": "s"}))["type"] == "sheet_state"


async def test_past_the_rate_limit_a_join_retried_from_a_new_tab_is_acked_there_with_its_own_seq(
    database_url: str, room: str
) -> None:
    """The new tab's retry is a join of its own; its repeats past the limit get its ack, not the first
    tab's, and append nothing. A tab that never joined under the id is refused."""
    settings = make_settings(
        database_url, websocket_requests_per_minute=2, websocket_block_duration_minutes=1
    )
    user, j1 = f"rejoiner-{room}", f"{room}-j1"
    async with serve(settings) as node:
        async with node.connect(node.token(user)) as first:
            await greet(first)
            await join(first, room, client_msg_id=j1)  # its ack is lost with the socket, say
        async with node.connect(node.token(user)) as tab, node.connect(node.token(user)) as third:
            cid = await greet(tab)
            await greet(third)
            await join(tab, room, client_msg_id=j1)
            ack = await receive(tab)
            for _ in range(3):
                assert await request(tab, {"type": "join_room", "room_id": room, "client_msg_id": j1}) == ack
            refused = await request(third, {"type": "join_room", "room_id": room, "client_msg_id": j1})
            assert refused["code"] == "RATE_LIMIT_EXCEEDED"
            events = await node.engine.node.read_stream(room_stream(room))
            joins = [e for e in events if e.type == USER_JOINED_ROOM]
            assert [e.data["connection_id"] for e in joins][1:] == [cid]
            assert ack == {
                "type": "ack",
                "client_msg_id": j1,
                "room_id": room,
                "seq": joins[1].stream_version,
            }


async def test_a_paste_counts_as_one_message(database_url: str, room: str) -> None:
    settings = make_settings(database_url, websocket_requests_per_minute=3)
    cells = [{"cell_id": f"{column}{row}", "value": row} for column in "ABCDEFGHIJ" for row in range(1, 11)]
    async with serve(settings) as node, node.connect(node.token(f"paster-{room}")) as ws:
        await greet(ws)
        await join(ws, room)
        paste = {"type": "cells_update", "sheet_id": f"s-{room}", "room": room, "cells": cells}
        for n in range(2):  # the join and two pastes of 100 cells: three messages
            await send(ws, {**paste, "client_msg_id": f"{room}-p{n}"})
            answer = await until(ws, lambda m: m["type"] in ("ack", "error"))
            assert [m["type"] for m in answer] == ["cells_updated", "ack"]
            assert len(answer[0]["cells"]) == 100
        limited = await request(ws, {**paste, "client_msg_id": f"{room}-p2"})
        assert limited["code"] == "RATE_LIMIT_EXCEEDED"  # the fourth message


async def test_a_message_to_an_offline_user_waits_unread_in_their_inbox(server: Server, room: str) -> None:
    user = f"offline-{room}"
    sent = await rest(
        server, "POST", f"/ws/users/{user}/notify", json={"type": "direct_message", "message": "hi"}
    )
    assert sent.status_code == 200 and sent.json()["delivered_to"] == 0
    inbox = await rest(server, "GET", "/notifications", sub=user, roles=["editor"])
    [waiting] = inbox.json()["notifications"]
    assert (waiting["title"], waiting["message"], waiting["category"]) == (
        "direct_message",
        "hi",
        "direct_message",
    )
    assert waiting["read"] is False and inbox.json()["unread_count"] == 1
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        subscribed = await request(ws, {"type": "subscribe_notifications"})
        assert [n["id"] for n in subscribed["unread"]] == [waiting["id"]]
        await send(
            ws, {"type": "notification_read", "notification_id": waiting["id"], "client_msg_id": f"{room}-r"}
        )
        await until(ws, of_type("ack", client_msg_id=f"{room}-r"))
    after = await rest(server, "GET", "/notifications", sub=user, roles=["editor"])
    assert after.json()["unread_count"] == 0


async def test_a_live_direct_message_carries_its_inbox_id_so_it_can_be_marked_read(
    server: Server, room: str
) -> None:
    user = f"online-{room}"
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        body = {"type": "direct_message", "message": "hi"}
        forged = await rest(server, "POST", f"/ws/users/{user}/notify", json={**body, "notification_id": "n"})
        assert forged.status_code == 422 and "notification_id" in forged.json()["error"]
        sent = await rest(server, "POST", f"/ws/users/{user}/notify", json=body)
        assert sent.status_code == 200 and sent.json()["delivered_to"] == 1
        [live] = await until(ws, of_type("direct_message"))
        assert live["notification_id"] == sent.json()["notification_id"] and live["seq"] == 1
        await send(
            ws,
            {"type": "notification_read", "notification_id": live["notification_id"], "client_msg_id": "r"},
        )
        await until(ws, of_type("ack", client_msg_id="r"))
    inbox = await rest(server, "GET", "/notifications", sub=user, roles=["editor"])
    [read] = inbox.json()["notifications"]
    assert read["id"] == live["notification_id"] and read["read"] is True
    assert inbox.json()["unread_count"] == 0


@pytest.fixture(scope="module")
def listing_url(server_url: str) -> Iterator[str]:
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
async def listing_server(listing_url: str) -> AsyncIterator[Server]:
    async with serve(make_settings(listing_url)) as running:
        yield running


async def test_the_rooms_listing_follows_the_readers_rooms_claim(listing_server: Server) -> None:
    node = listing_server
    rooms = ["team-a", "team-b", "other", "x.y"]
    for room in rooms:
        async with node.connect(node.token("maker")) as ws:
            await greet(ws)
            await join(ws, room)
    await caught_up(node.engine.node.db_engine)

    async def listed(**claims: object) -> list[str]:
        response = await rest(node, "GET", "/ws/rooms", **claims)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return sorted(room["room_id"] for room in response.json())

    assert await listed(roles=["editor"]) == sorted(rooms)  # no claim: any room
    assert await listed(roles=["viewer"], rooms=["team-*"]) == ["team-a", "team-b"]
    assert await listed(roles=["auditor"], rooms=["x.y", "team-?"]) == ["team-a", "team-b", "x.y"]
    assert await listed(roles=["editor"], rooms=["x?y"]) == ["x.y"]
    assert await listed(roles=["admin"], rooms=["nothing"]) == sorted(rooms)  # admins see every room
