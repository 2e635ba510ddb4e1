"""Joining rooms over a live socket: the event reaches the log, `room_state` reflects it, permissions
hold, and a closed socket leaves its rooms."""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection

from engine.log.store import EventStore
from engine.model.catalogue import USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.model.streams import room_stream
from engine.projections.rooms import project
from tests.api.conftest import Server, make_settings, receive, request, serve, wait_for_events
from tests.fault_proxy import FaultProxy


async def join(ws: ClientConnection, room_id: str, **extra: object) -> dict[str, object]:
    return await request(ws, {"type": "join_room", "room_id": room_id, **extra})


async def test_websocket_join_room_by_two_clients_persists_and_lists_both(
    server: Server, store: EventStore, room: str
) -> None:
    alice_token = server.token("alice", username="alice", email="alice@example.com")
    bob_token = server.token("bob", username="bob", email="bob@example.com", roles=["viewer"])
    async with server.connect(alice_token) as alice, server.connect(bob_token) as bob:
        alice_conn = (await receive(alice))["connection_id"]
        bob_conn = (await receive(bob))["connection_id"]

        first = await join(alice, room, client_msg_id="a-1")
        assert first["type"] == "room_state"
        assert (first["room_id"], first["total_users"], first["seq"]) == (room, 1, 1)
        assert [u["user_id"] for u in first["users"]] == ["alice"]  # type: ignore[union-attr]

        second = await join(bob, room)
        assert (second["type"], second["total_users"], second["seq"]) == ("room_state", 2, 2)
        assert second["active_sheets"] == []
        assert str(second["ts"]).endswith("Z")
        users = {u["user_id"]: u for u in second["users"]}  # type: ignore[union-attr]
        assert set(users) == {"alice", "bob"}
        assert users["bob"] == {
            "user_id": "bob",
            "username": "bob",
            "email": "bob@example.com",
            "room": room,
            "status": "online",
            "cursor": None,
            "last_seen": users["bob"]["last_seen"],
        }

        events = await store.read_stream(room_stream(room))
        assert [(e.type, e.stream_version, e.data["user_id"]) for e in events] == [
            (USER_JOINED_ROOM, 1, "alice"),
            (USER_JOINED_ROOM, 2, "bob"),
        ]
        assert events[0].data["connection_id"] == alice_conn
        assert events[1].data["connection_id"] == bob_conn
        assert events[0].metadata["user_id"] == "alice"
        assert events[0].metadata["connection_id"] == alice_conn
        assert events[0].metadata["client_msg_id"] == "a-1"
        assert events[0].metadata["node"]


async def test_websocket_closing_a_socket_appends_user_left_room(
    server: Server, store: EventStore, room: str
) -> None:
    async with server.connect(server.token("carol")) as ws:
        connection_id = (await receive(ws))["connection_id"]
        await join(ws, room)
    events = await wait_for_events(store, room_stream(room), 2)
    assert [e.type for e in events] == [USER_JOINED_ROOM, USER_LEFT_ROOM]
    assert events[1].data == {
        "room_id": room,
        "user_id": "carol",
        "connection_id": connection_id,
        "reason": "disconnected",
    }
    assert project(events).members == {}


async def test_websocket_user_with_two_connections_stays_until_both_close(
    server: Server, store: EventStore, room: str
) -> None:
    token = server.token("dave")
    async with server.connect(token) as tab1:
        await receive(tab1)
        await join(tab1, room)
        async with server.connect(token) as tab2:
            await receive(tab2)
            state = await join(tab2, room)
            assert state["total_users"] == 1  # one user, two connections
        events = await wait_for_events(store, room_stream(room), 3)
        assert set(project(events).members) == {"dave"}
    events = await wait_for_events(store, room_stream(room), 4)
    assert project(events).members == {}


async def test_websocket_rooms_claim_allows_matching_rooms_only(server: Server, room: str) -> None:
    async with server.connect(server.token("erin", rooms=["team-*"])) as ws:
        await receive(ws)
        allowed = await join(ws, f"team-{room}")
        assert allowed["type"] == "room_state"
        denied = await join(ws, f"other-{room}", client_msg_id="d-1")
        assert (denied["code"], denied["client_msg_id"]) == ("PERMISSION_DENIED", "d-1")
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_websocket_auditor_may_not_join_a_room(server: Server, store: EventStore, room: str) -> None:
    async with server.connect(server.token("frank", roles=["auditor"])) as ws:
        await receive(ws)
        assert (await join(ws, room))["code"] == "PERMISSION_DENIED"
    assert await store.read_stream(room_stream(room)) == []


async def test_websocket_store_outage_is_a_retryable_error_and_the_socket_stays_open(
    database_url: str, room: str
) -> None:
    proxy = FaultProxy(database_url)
    await proxy.start()
    try:
        async with serve(make_settings(proxy.url, append_timeout_seconds=1.0)) as server:
            ws = await server.connect(server.token("gina"))
            async with ws:
                await receive(ws)
                assert (await join(ws, room))["type"] == "room_state"
                # `room_state` goes out before the join's catch-up reads the log; a ping answered
                # means the join is done, so the cut below cannot race a connection being opened.
                assert (await request(ws, {"type": "ping"}))["type"] == "pong"

                await proxy.cut()
                reply = await join(ws, f"{room}-2", client_msg_id="g-2")
                assert reply["code"] == "INTERNAL_ERROR"
                assert (reply["retryable"], reply["client_msg_id"]) == (True, "g-2")
                assert (await request(ws, {"type": "ping"}))["type"] == "pong"

                await proxy.restore()
                assert (await join(ws, f"{room}-3"))["type"] == "room_state"
    finally:
        await proxy.cut()
