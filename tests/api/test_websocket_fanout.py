"""Messages between real clients: joins, leaves, cursors, typing and status reach the members docs/protocol.md
names and nobody else, with `seq` on room events and acks for `client_msg_id`."""

from __future__ import annotations

from engine.log.store import EventStore
from engine.model.catalogue import LEFT, USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.model.streams import room_stream
from tests.api.conftest import Server, receive, request, wait_for_events
from tests.api.live_helpers import greet, join, of_type, pending, send, types, until


async def test_join_by_two_clients_tells_the_first_with_room_state_and_user_joined(
    server: Server, room: str
) -> None:
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        assert (await join(alice, room))["seq"] == 1
        state = await join(bob, room)
        assert (state["total_users"], state["seq"]) == (2, 2)

        heard = await pending(alice)
        assert types(heard) == ["room_state", "user_joined"]
        assert (heard[0]["total_users"], heard[0]["seq"]) == (2, 2)
        assert heard[1]["user"]["user_id"] == "bob"
        assert (heard[1]["room_id"], heard[1]["seq"]) == (room, 2)
        assert await pending(bob) == []  # the joiner's own copy is not sent twice


async def test_leave_sends_room_left_to_the_leaver_and_user_left_to_the_others(
    server: Server, room: str
) -> None:
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        await join(bob, room)
        await pending(alice)

        left = await request(bob, {"type": "leave_room", "room_id": room})
        assert left == {"type": "room_left", "room_id": room, "reason": "left", "seq": 3, "ts": left["ts"]}
        heard = await pending(alice)
        assert types(heard) == ["room_state", "user_left"]
        assert (heard[0]["total_users"], heard[1]["user_id"], heard[1]["seq"]) == (1, "bob", 3)
        assert await pending(bob) == []  # no longer a member: nothing more of the room


async def test_room_left_answering_a_leave_room_says_left_and_echoes_its_id(
    server: Server, store: EventStore, room: str
) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        await join(alice, room)
        await send(alice, {"type": "leave_room", "room_id": room, "client_msg_id": "bye"})
        left, ack = await until(alice, of_type("ack"))
        assert (left["type"], left["reason"], left["seq"], left["client_msg_id"]) == (
            "room_left",
            "left",
            2,
            "bye",
        )
        assert (ack["client_msg_id"], ack["seq"]) == ("bye", 2)
    [_, leave] = await store.read_stream(room_stream(room))
    assert (leave.type, leave.data["reason"]) == (USER_LEFT_ROOM, LEFT)


async def test_leave_of_a_room_not_joined_is_room_not_found(server: Server, room: str) -> None:
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        reply = await request(bob, {"type": "leave_room", "room_id": room, "client_msg_id": "x-1"})
        assert (reply["code"], reply["client_msg_id"]) == ("ROOM_NOT_FOUND", "x-1")
        assert await pending(alice) == []


async def test_cursor_move_reaches_the_other_member_but_not_the_sender(server: Server, room: str) -> None:
    async with (
        server.connect(server.token("alice")) as alice,
        server.connect(server.token("bob", username="B")) as bob,
    ):
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        await join(bob, room)
        await pending(alice)

        await send(bob, {"type": "cursor_move", "room": room, "x": 10, "y": 20.5, "cell": "B2"})
        moved = await receive(alice)
        assert moved == {
            "type": "cursor_moved",
            "room": room,
            "user_id": "bob",
            "username": "B",
            "cursor": {"x": 10, "y": 20.5, "cell": "B2"},
        }
        assert await pending(bob) == []
        # The next room_state shows it.
        async with server.connect(server.token("carol")) as carol:
            await greet(carol)
            users = {u["user_id"]: u for u in (await join(carol, room))["users"]}
            assert users["bob"]["cursor"] == {"x": 10, "y": 20.5, "cell": "B2"}


async def test_cursor_move_in_a_room_not_joined_is_permission_denied(server: Server, room: str) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        reply = await request(alice, {"type": "cursor_move", "room": room, "x": 1, "y": 2})
        assert reply["code"] == "PERMISSION_DENIED"


async def test_typing_start_and_stop_reach_the_other_member(server: Server, room: str) -> None:
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        await join(bob, room)
        await pending(alice)

        await send(bob, {"type": "typing_start", "room": room, "cell_id": "C3"})
        await send(bob, {"type": "typing_stop", "room": room, "cell_id": "C3"})
        started, stopped = await receive(alice), await receive(alice)
        expected = {"room": room, "user_id": "bob", "username": "bob", "cell_id": "C3"}
        assert started == {"type": "user_typing_start", **expected}
        assert stopped == {"type": "user_typing_stop", **expected}
        assert await pending(bob) == []


async def test_status_update_reaches_another_tab_and_room_members(server: Server, room: str) -> None:
    alice_id = f"alice-{room}"  # a user stream of its own, so its seq starts at 1
    token = server.token(alice_id)
    async with (
        server.connect(token) as tab1,
        server.connect(token) as tab2,
        server.connect(server.token("bob")) as bob,
    ):
        for ws in (tab1, tab2, bob):
            await greet(ws)
        await join(tab1, room)
        await join(bob, room)
        await pending(tab1)

        ack = await request(tab2, {"type": "status_update", "status": "away", "client_msg_id": f"{room}-s1"})
        assert (ack["type"], ack["client_msg_id"], ack["seq"]) == ("ack", f"{room}-s1", 1)
        assert "room_id" not in ack
        other_tab = await receive(tab1)
        assert other_tab["type"] == "user_status_changed"
        assert (other_tab["user_id"], other_tab["status"], other_tab["seq"]) == (alice_id, "away", 1)
        member = await receive(bob)
        assert (member["type"], member["user_id"], member["status"]) == (
            "user_status_changed",
            alice_id,
            "away",
        )
        assert await pending(tab2) == []

        async with server.connect(server.token("carol")) as carol:
            await greet(carol)
            users = {u["user_id"]: u for u in (await join(carol, room))["users"]}
            assert (users[alice_id]["status"], users["bob"]["status"]) == ("away", "online")


async def test_ack_carries_seq_and_a_repeated_client_msg_id_is_re_acked_not_re_delivered(
    server: Server, store: EventStore, room: str
) -> None:
    b1, c1 = f"{room}-b1", f"{room}-c1"  # keys are per user, and the test database is shared
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        state = await join(bob, room, client_msg_id=b1)
        assert await receive(bob) == {"type": "ack", "client_msg_id": b1, "room_id": room, "seq": 2}
        assert state["seq"] == 2
        heard = await pending(alice)
        # room_state, then user_joined with the sender's id so it can match its own echo
        assert [m.get("client_msg_id") for m in heard] == [None, b1]

        again = await join(bob, room, client_msg_id=b1)
        assert again["total_users"] == 2
        assert await receive(bob) == {"type": "ack", "client_msg_id": b1, "room_id": room, "seq": 2}
        assert await pending(alice) == []
        assert len(await store.read_stream(room_stream(room))) == 2

        await send(bob, {"type": "cursor_move", "room": room, "x": 1, "y": 1, "client_msg_id": c1})
        assert await receive(bob) == {"type": "ack", "client_msg_id": c1, "room_id": room}
        assert (await receive(alice))["client_msg_id"] == c1
        await send(bob, {"type": "cursor_move", "room": room, "x": 1, "y": 1, "client_msg_id": c1})
        assert await receive(bob) == {"type": "ack", "client_msg_id": c1, "room_id": room}
        assert await pending(alice) == []


async def test_join_retried_from_a_new_connection_makes_that_connection_a_member(
    server: Server, store: EventStore, room: str
) -> None:
    token, j1 = server.token("bob"), f"{room}-j1"
    async with server.connect(token) as first:
        await greet(first)
        await join(first, room, client_msg_id=j1)
        assert (await receive(first))["seq"] == 1
    await wait_for_events(store, room_stream(room), 2)  # the first connection's leave
    async with server.connect(token) as second, server.connect(server.token("alice")) as alice:
        cid = await greet(second)
        await greet(alice)
        state = await join(second, room, client_msg_id=j1)
        ack = await receive(second)
        assert (ack["type"], ack["seq"]) == ("ack", 3)
        assert [u["user_id"] for u in state["users"]] == ["bob"]
        events = await store.read_stream(room_stream(room))
        assert (events[2].type, events[2].data["connection_id"]) == (USER_JOINED_ROOM, cid)
        assert (events[2].idempotency_key, events[2].metadata["client_msg_id"]) == (f"{j1}@{cid}", j1)
        # ... so it is a member: the room's events reach it.
        await join(alice, room)
        heard = await until(second, of_type("user_joined"))
        assert heard[-1]["user"]["user_id"] == "alice"
        # A repeat there (its ack lost too) is that join's repeat: the same ack, nothing appended.
        for _ in range(3):
            await join(second, room, client_msg_id=j1)
            assert await receive(second) == ack
        joins = [e for e in await store.read_stream(room_stream(room)) if e.type == USER_JOINED_ROOM]
        assert [e.data["connection_id"] for e in joins].count(cid) == 1


async def test_closing_a_socket_tells_the_other_member_user_left(server: Server, room: str) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        await join(alice, room)
        async with server.connect(server.token("bob")) as bob:
            await greet(bob)
            await join(bob, room)
        heard = await until(alice, of_type("user_left"))
        assert types(heard) == ["room_state", "user_joined", "room_state", "user_left"]
        assert (heard[-1]["user_id"], heard[-1]["seq"], heard[2]["total_users"]) == ("bob", 3, 1)
