"""The seed's management endpoints against the real app: real sockets receive what an admin posts, the
log records it, a removed socket is closed and its leave recorded, and a shutdown closes every client
with 1012 and ends the server without losing an acknowledged event."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.tokens import mint_token
from engine.log.store import EventStore
from engine.model.catalogue import (
    REMOVED,
    ROOM_MESSAGE_BROADCAST,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    USER_MESSAGE_SENT,
)
from engine.model.streams import room_stream, user_stream
from tests.api.conftest import (
    SECRET,
    Server,
    free_port,
    make_settings,
    receive,
    request,
    serve,
    wait_for_events,
)
from tests.api.live_helpers import Message, greet, join, of_type, pending, resume, send, types, until

ANNOUNCEMENT = {"type": "system_announcement", "title": "Maintenance Notice", "message": "in 30 minutes"}
DIRECT = {"type": "direct_message", "from": "admin", "message": "Please review the updated document"}
NOTIFICATION = {
    "user_id": "user_123",
    "title": "New Task Assigned",
    "message": "You have been assigned a new task",
    "category": "tasks",
    "priority": "high",
    "module_name": "project_management",
}
ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = [
    ("POST", "/api/v1/ws/rooms/r1/broadcast", ANNOUNCEMENT),
    ("POST", "/api/v1/ws/users/u1/notify", DIRECT),
    ("POST", "/api/v1/ws/broadcast/notification?event_type=notification_created", NOTIFICATION),
    ("DELETE", "/api/v1/ws/connections/ws_unknown", None),
    ("POST", "/api/v1/ws/shutdown", None),
]


def bearer(server: Server, sub: str = "admin-1", roles: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(sub, roles=roles or ['admin'])}"}


async def call(
    server: Server, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        return await http.request(method, path, json=body, headers=headers)


async def admin(server: Server, method: str, path: str, body: Any = None) -> httpx.Response:
    return await call(server, method, path, body, bearer(server))


def posted(message: Message) -> dict[str, Any]:
    """The message without the envelope the server adds."""
    return {k: v for k, v in message.items() if k not in ("room_id", "seq", "ts")}


# Who may call.


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[p for _, p, _ in ENDPOINTS])
async def test_management_refuses_without_a_token_and_without_admin(
    server: Server, method: str, path: str, body: Any
) -> None:
    missing = await call(server, method, path, body)
    assert missing.status_code == 401
    assert missing.json()["code"] == "AUTHENTICATION_FAILED"
    bad = await call(server, method, path, body, {"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401
    for roles in (["editor"], ["auditor", "viewer"]):
        refused = await call(server, method, path, body, bearer(server, "someone", roles))
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("exp", ["9999999999", 10**17], ids=["exp-as-text", "exp-past-year-9999"])
async def test_management_refuses_a_signed_admin_token_whose_exp_is_no_time(server: Server, exp: Any) -> None:
    """Signed with the server's secret and naming an admin, but `exp` is no NumericDate: a bad token
    (401), never a server fault."""
    token = jwt.encode({"sub": "admin-1", "roles": ["admin"], "exp": exp}, SECRET, algorithm="HS256")
    for method, path, body in [*ENDPOINTS[:-1], ("GET", "/api/v1/ws/connections", None)]:  # not shutdown
        refused = await call(server, method, path, body, {"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401, (path, refused.text)
        assert refused.json() == {
            "error": "invalid token claims: exp "
            + ("must be a number" if isinstance(exp, str) else "is beyond the year 9999"),
            "code": "AUTHENTICATION_FAILED",
        }


# POST /ws/rooms/{room_id}/broadcast


async def test_broadcast_reaches_every_member_with_the_rooms_seq(
    server: Server, store: EventStore, room: str
) -> None:
    async with (
        server.connect(server.token("alice")) as alice,
        server.connect(server.token("bob")) as bob,
        server.connect(server.token("carol")) as carol,
    ):
        for ws in (alice, bob, carol):
            await greet(ws)
        await join(alice, room)
        await join(bob, room)
        await until(alice, of_type("user_joined"))

        response = await admin(server, "POST", f"/api/v1/ws/rooms/{room}/broadcast", ANNOUNCEMENT)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["room_id"] == room and result["seq"] == 3 and result["delivered_to"] == 2

        for ws in (alice, bob):
            got = (await until(ws, of_type("system_announcement")))[-1]
            assert got == {**ANNOUNCEMENT, "room_id": room, "seq": 3, "ts": result["ts"]}
        assert await pending(carol) == []  # not a member

    events = await store.read_stream(room_stream(room))
    assert events[2].type == ROOM_MESSAGE_BROADCAST
    assert events[2].data == {"room_id": room, "user_id": "admin-1", "message": ANNOUNCEMENT}


async def test_broadcast_is_replayed_by_join_room_since(server: Server, room: str) -> None:
    async with (
        server.connect(server.token("alice")) as alice,
        server.connect(server.token("bob")) as bob,
    ):
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        response = await admin(server, "POST", f"/api/v1/ws/rooms/{room}/broadcast", ANNOUNCEMENT)
        live = (await until(alice, of_type("system_announcement")))[-1]

        replayed = await resume(bob, room, since=1)
        announcements = [m for m in replayed if m["type"] == "system_announcement"]
        assert announcements == [live]
        assert live["seq"] == response.json()["seq"] == 2


async def test_broadcast_to_an_unknown_room_is_404_and_creates_nothing(
    server: Server, store: EventStore, room: str
) -> None:
    response = await admin(server, "POST", f"/api/v1/ws/rooms/{room}/broadcast", ANNOUNCEMENT)
    assert response.status_code == 404
    assert response.json()["code"] == "ROOM_NOT_FOUND"
    assert await store.read_stream(room_stream(room)) == []


@pytest.mark.parametrize(
    "body",
    [
        {**ANNOUNCEMENT, "type": "cell_updated"},
        {**ANNOUNCEMENT, "type": "error"},
        {**ANNOUNCEMENT, "type": "ack"},
        {**ANNOUNCEMENT, "type": "room_state"},
        {**ANNOUNCEMENT, "type": ""},
        {**ANNOUNCEMENT, "type": 7},
        {"title": "no type"},
        {**ANNOUNCEMENT, "seq": 999},
        {**ANNOUNCEMENT, "room_id": "elsewhere"},
        ["not", "an", "object"],
        {**ANNOUNCEMENT, "count": 2**70},
    ],
    ids=[
        "cell_updated",
        "error",
        "ack",
        "room_state",
        "empty",
        "number",
        "missing",
        "seq",
        "room_id",
        "list",
        "huge-integer",
    ],
)
async def test_broadcast_refuses_a_body_that_could_pass_for_a_protocol_message(
    server: Server, store: EventStore, room: str, body: Any
) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        await join(alice, room)
        response = await admin(server, "POST", f"/api/v1/ws/rooms/{room}/broadcast", body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert await pending(alice) == []
        assert [e.type for e in await store.read_stream(room_stream(room))] == ["UserJoinedRoom"]


async def test_broadcast_larger_than_a_frame_is_413(server: Server, store: EventStore, room: str) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        await join(alice, room)
    big = {**ANNOUNCEMENT, "message": "x" * server.settings.max_message_bytes}
    response = await admin(server, "POST", f"/api/v1/ws/rooms/{room}/broadcast", big)
    assert response.status_code == 413
    assert response.json()["code"] == "MESSAGE_TOO_LARGE"
    assert ROOM_MESSAGE_BROADCAST not in [e.type for e in await store.read_stream(room_stream(room))]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_a_posted_number_json_cannot_carry_is_refused_not_recorded_as_null(
    server: Server, store: EventStore, room: str, number: str
) -> None:
    """Python's JSON reader takes NaN and Infinity (and reads 1e400 as Infinity), which no JSON
    holds: recorded, they would reach clients as `null`, not as posted."""
    user = f"u-{room}"
    body = '{"type": "sensor_reading", "value": [1, {"reading": NUMBER}]}'.replace("NUMBER", number)
    headers = {**bearer(server), "Content-Type": "application/json"}
    async with server.connect(server.token("alice")) as alice, server.connect(server.token(user)) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            for path in (f"/api/v1/ws/rooms/{room}/broadcast", f"/api/v1/ws/users/{user}/notify"):
                response = await http.post(path, content=body, headers=headers)
                assert response.status_code == 422, (path, response.text)
                assert response.json() == {
                    "error": "a posted message must be plain JSON: NaN and Infinity are no JSON numbers",
                    "code": "VALIDATION_ERROR",
                }
        assert await pending(alice) == [] and await pending(bob) == []
        assert [e.type for e in await store.read_stream(room_stream(room))] == [USER_JOINED_ROOM]
        assert await store.read_stream(user_stream(user)) == []


# POST /ws/users/{user_id}/notify


async def test_notify_reaches_every_connection_of_the_user_only(
    server: Server, store: EventStore, room: str
) -> None:
    user = f"u-{room}"
    async with (
        server.connect(server.token(user)) as tab1,
        server.connect(server.token(user)) as tab2,
        server.connect(server.token("someone-else")) as other,
    ):
        for ws in (tab1, tab2, other):
            await greet(ws)
        response = await admin(server, "POST", f"/api/v1/ws/users/{user}/notify", DIRECT)
        assert response.status_code == 200, response.text
        result = response.json()
        message_id = result["notification_id"]
        assert result == {
            "user_id": user,
            "seq": 1,
            "ts": result["ts"],
            "delivered_to": 2,
            "notification_id": message_id,
        }
        for ws in (tab1, tab2):
            assert await receive(ws) == {
                **DIRECT,
                "seq": 1,
                "ts": result["ts"],
                "notification_id": message_id,
            }
        assert await pending(other) == []
    [event] = await store.read_stream(user_stream(user))
    assert event.type == USER_MESSAGE_SENT
    assert event.data.pop("message_id") == message_id and message_id.startswith("msg_")
    assert event.data == {"user_id": user, "sender_id": "admin-1", "message": DIRECT}


async def test_notify_an_offline_user_is_kept_in_their_stream(
    server: Server, store: EventStore, room: str
) -> None:
    user = f"offline-{room}"
    response = await admin(server, "POST", f"/api/v1/ws/users/{user}/notify", DIRECT)
    assert response.status_code == 200
    assert response.json()["delivered_to"] == 0
    assert [e.type for e in await store.read_stream(user_stream(user))] == [USER_MESSAGE_SENT]


async def test_notify_refuses_a_reserved_type(server: Server, store: EventStore, room: str) -> None:
    user = f"u-{room}"
    for kind in ("notification_event", "server_shutdown", "user_status_changed"):
        response = await admin(server, "POST", f"/api/v1/ws/users/{user}/notify", {**DIRECT, "type": kind})
        assert response.status_code == 422
    assert await store.read_stream(user_stream(user)) == []


# POST /ws/broadcast/notification


async def test_broadcast_notification_reaches_subscriptions_whose_filters_match(
    server: Server, store: EventStore, room: str
) -> None:
    user = f"u-{room}"
    async with (
        server.connect(server.token(user)) as tasks,
        server.connect(server.token(user)) as billing,
    ):
        for ws, category in ((tasks, "tasks"), (billing, "billing")):
            await greet(ws)
            reply = await request(ws, {"type": "subscribe_notifications", "categories": [category]})
            assert reply["type"] == "notifications_subscribed"
        path = "/api/v1/ws/broadcast/notification?event_type=notification_created"
        response = await admin(server, "POST", path, {**NOTIFICATION, "user_id": user})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["event_type"] == "notification_created" and result["user_id"] == user
        got = await receive(tasks)
        assert got["type"] == "notification_event" and got["event_type"] == "notification_created"
        assert got["notification"]["id"] == result["notification_id"]
        assert got["seq"] == result["seq"]
        assert got["notification"]["title"] == NOTIFICATION["title"]
        assert await pending(billing) == []
    events = await store.read_stream(user_stream(user))
    assert events[result["seq"] - 1].data["notification"]["id"] == result["notification_id"]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("?event_type=notification_read", NOTIFICATION),
        ("?event_type=", NOTIFICATION),
        ("?event_type=notification_created", {k: v for k, v in NOTIFICATION.items() if k != "title"}),
        ("?event_type=notification_created", {**NOTIFICATION, "priority": ""}),
        ("?event_type=notification_created", {**NOTIFICATION, "surprise": 1}),
        ("?event_type=notification_created", {**NOTIFICATION, "title": "nul\x00"}),
    ],
    ids=["other-event-type", "empty-event-type", "no-title", "empty-priority", "unknown-field", "nul"],
)
async def test_broadcast_notification_refuses_bad_input(
    server: Server, store: EventStore, room: str, query: str, body: dict[str, Any]
) -> None:
    user = f"u-{room}"
    response = await admin(
        server, "POST", f"/api/v1/ws/broadcast/notification{query}", {**body, "user_id": user}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert await store.read_stream(user_stream(user)) == []


# DELETE /ws/connections/{connection_id}


async def test_delete_connection_closes_that_socket_and_records_the_removal(
    server: Server, store: EventStore, room: str
) -> None:
    async with (
        server.connect(server.token("alice")) as alice,
        server.connect(server.token("alice")) as alice_tab2,
        server.connect(server.token("bob")) as bob,
    ):
        target = await greet(alice)
        await greet(alice_tab2)
        await greet(bob)
        await join(alice, room)
        await join(bob, room)
        await until(alice, of_type("user_joined"))

        response = await admin(server, "DELETE", f"/api/v1/ws/connections/{target}")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "connection_id": target,
            "user_id": "alice",
            "rooms_left": [room],
            "close_code": 4410,
        }
        notice = await receive(alice)
        assert notice["type"] == "error" and notice["code"] == "CONNECTION_REMOVED"
        with pytest.raises(ConnectionClosed):
            await receive(alice)
        assert alice.close_code == 4410

        seen = await until(bob, of_type("user_left"))
        assert seen[-1] == {**seen[-1], "room_id": room, "user_id": "alice"}
        assert [u["user_id"] for u in seen[-2]["users"]] == ["bob"]  # the room_state before it
        assert (await request(alice_tab2, {"type": "ping"}))["type"] == "pong"  # the other tab stays
        leave = (await wait_for_events(store, room_stream(room), 3))[2]
    assert leave.type == USER_LEFT_ROOM
    assert leave.data == {"room_id": room, "user_id": "alice", "connection_id": target, "reason": REMOVED}


async def test_delete_an_unknown_connection_is_404(server: Server) -> None:
    response = await admin(server, "DELETE", "/api/v1/ws/connections/ws_no_such_connection")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


# POST /ws/shutdown (each on a server of its own: it ends the server)


async def test_draining_server_refuses_handshakes_and_reports_unhealthy(database_url: str) -> None:
    async with serve(make_settings(database_url)) as node:
        assert (await call(node, "GET", "/api/v1/ws/health")).status_code == 200
        node.engine.begin_shutdown()
        health = await call(node, "GET", "/api/v1/ws/health")
        assert health.status_code == 503 and health.json()["status"] == "shutting_down"
        with pytest.raises(InvalidStatus) as refused:
            async with node.connect(node.token("late")):
                pass
        assert refused.value.response.status_code == 503


async def test_shutdown_closes_every_client_with_1012_and_keeps_every_acked_event(
    database_url: str, store: EventStore, room: str
) -> None:
    settings = make_settings(
        database_url, websocket_requests_per_minute=1_000_000, websocket_requests_per_hour=1_000_000
    )
    acks: dict[str, int] = {}
    async with (
        asyncio.timeout(30),
        serve(settings) as node,
        node.connect(node.token("writer")) as writer,
        node.connect(node.token("watcher")) as watcher,
    ):
        await greet(writer)
        await greet(watcher)
        await join(writer, room)
        await join(watcher, room)
        sending = asyncio.create_task(write_cells(writer, room))
        enough = asyncio.Event()
        reading = asyncio.create_task(read_until_closed(writer, acks, enough=enough))
        await enough.wait()  # some acked, more in flight

        response = await admin(node, "POST", "/api/v1/ws/shutdown")
        assert response.status_code == 202
        assert response.json() == {
            "status": "shutting_down",
            "connections": 2,
            "close_code": 1012,
            "grace_seconds": 5.0,
        }
        writer_messages = await reading
        sending.cancel()
        watcher_messages: list[Message] = []
        assert await read_until_closed(watcher, {}, watcher_messages) == watcher_messages
        for ws, seen in ((writer, writer_messages), (watcher, watcher_messages)):
            assert ws.close_code == 1012
            # What was in flight when it was queued may follow it (an ack is never held back).
            after = types(seen)[types(seen).index("server_shutdown") + 1 :]
            assert set(after) <= {"ack", "cell_updated"}, after
        [notice] = [m for m in watcher_messages if m["type"] == "server_shutdown"]
        assert notice["reason"] == "server shutdown requested by an administrator"
        await stopped_listening(node)  # by itself: `serve` sets `should_exit` only when the block ends

    events = {e.stream_version: e for e in await store.read_stream(room_stream(room))}
    assert acks
    for client_msg_id, seq in acks.items():
        assert events[seq].metadata.get("client_msg_id") == client_msg_id
    leaves = [e for e in events.values() if e.type == USER_LEFT_ROOM]
    assert sorted(e.data["user_id"] for e in leaves) == ["watcher", "writer"]


async def write_cells(ws: ClientConnection, room: str) -> None:
    """Send cell updates without waiting for their acks, until the socket closes."""
    i = 0
    try:
        while True:
            i += 1
            message = {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "A1", "value": i}
            await send(ws, {**message, "room": room, "client_msg_id": f"c{i}"})
            await asyncio.sleep(0.002)
    except ConnectionClosed:
        return


async def read_until_closed(
    ws: ClientConnection,
    acks: dict[str, int],
    seen: list[Message] | None = None,
    *,
    enough: asyncio.Event | None = None,
) -> list[Message]:
    """Every message until the close; acks recorded by `client_msg_id` as they arrive (`enough` is
    set at 20)."""
    seen = [] if seen is None else seen
    try:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            seen.append(message)
            if message["type"] == "ack":
                acks[message["client_msg_id"]] = message["seq"]
                if enough is not None and len(acks) >= 20:
                    enough.set()
    except ConnectionClosed:
        return seen


async def stopped_listening(node: Server) -> None:
    """Return once the server's port refuses connections (a receive timeout fails the test)."""
    async with asyncio.timeout(10):
        while True:
            try:
                await call(node, "GET", "/api/v1/ws/health")
            except httpx.ConnectError:
                return
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass  # accepted while the listener was closing, then dropped or reset: ask again
            await asyncio.sleep(0.05)


async def test_shutdown_ends_a_collab_serve_process(database_url: str) -> None:
    """`collab serve` hands the app its server's exit hook, so an admin shutdown ends the process like
    Ctrl-C, with status 0 (`make run` reports no error), rather than by SIGTERM (143)."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "JWT_SECRET_KEY": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", "serve", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(60):
            while "Uvicorn running on" not in output:
                line = await proc.stdout.readline()
                assert line, f"collab serve exited early:\n{output}"
                output += line.decode()
        token = mint_token(make_settings(database_url), sub="admin-1", roles=["admin"], secret=SECRET)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            response = await http.post("/api/v1/ws/shutdown", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202
        async with asyncio.timeout(30):
            await proc.wait()
        assert proc.returncode == 0, output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
