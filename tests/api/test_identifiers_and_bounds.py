"""One identifier rule and bounded integers on every way in: REST paths and queries, WebSocket
messages and token claims. Whatever breaks them is refused with a clear error (422, VALIDATION_ERROR,
AUTHENTICATION_FAILED) and reaches neither the database nor the log."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from engine.model.identifiers import MAX_ID_LENGTH
from engine.model.numbers import MAX_INT64
from tests.api.conftest import Server, receive, request
from tests.api.live_helpers import greet, join, write_cell
from tests.api.rest_helpers import rest

BAD_IDS = {
    "nul": "a\x00b",
    "newline": "a\nb",
    "escape": "a\x1b[31mb",
    "c1": "a\x85b",
    "too-long": "r" * (MAX_ID_LENGTH + 1),
    # A `/` or `%` is allowed in an id; the control character next to it still is not.
    "slash-and-nul": "a/%2F\x00b",
}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def seeded_room(server: Server) -> tuple[str, str]:
    """A room with one written cell: (room_id, sheet_id)."""
    room, sheet = new_id("bounds-room"), new_id("bounds-sheet")
    async with server.connect(server.token(new_id("seeder"))) as ws:
        await greet(ws)
        await join(ws, room)
        await write_cell(ws, room, sheet)
    return room, sheet


def integer_queries(room: str, sheet: str) -> list[tuple[str, str]]:
    """Every REST query parameter that is an unbounded-looking integer: (path, parameter)."""
    return [
        (f"/rooms/{room}/events", "cursor"),
        (f"/rooms/{room}/events", "after_seq"),
        ("/events", "after_position"),
        (f"/rooms/{room}/state", "seq"),
        (f"/sheets/{sheet}/cells", "seq"),
        (f"/sheets/{sheet}/cells/A1/history", "after_seq"),
        ("/ws/rooms", "offset"),
        ("/notifications", "cursor"),
    ]


async def test_rest_integers_beyond_bigint_are_422_never_500(server: Server) -> None:
    room, sheet = await seeded_room(server)
    for path, name in integer_queries(room, sheet):
        too_big = await rest(server, "GET", path, params={name: str(MAX_INT64 + 1)})
        assert too_big.status_code == 422, (path, name, too_big.text)
        body = too_big.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert name in str(body["details"]), (path, body)
        largest = await rest(server, "GET", path, params={name: str(MAX_INT64)})
        assert largest.status_code < 500, (path, name, largest.text)
        assert largest.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
async def test_rest_path_ids_follow_the_identifier_rule(server: Server, bad: str) -> None:
    segment = quote(bad, safe="")
    for method, path in [
        ("GET", f"/rooms/{segment}/events"),
        ("GET", f"/rooms/{segment}/state"),
        ("GET", f"/sheets/{segment}/cells"),
        ("GET", f"/sheets/s/cells/{segment}/history"),
        ("GET", f"/ws/rooms/{segment}"),
        ("POST", f"/notifications/{segment}/read"),
        ("DELETE", f"/ws/connections/{segment}"),
    ]:
        response = await rest(server, method, path)
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR"
    for path in [f"/ws/rooms/{segment}/broadcast", f"/ws/users/{segment}/notify"]:
        response = await rest(server, "POST", path, json={"type": "announcement", "text": "hi"})
        assert response.status_code == 422, (path, response.text)


async def test_rest_paths_reach_ids_holding_a_slash_or_a_percent_sign(server: Server) -> None:
    """`/` and `%` are allowed in ids, so REST reaches such an id written as one encoded segment
    (`encodeURIComponent`), as it reaches any other: its sheet, its cell's history, its room."""
    tag = uuid.uuid4().hex[:8]
    room, sheet, cell, user = f"team/{tag} 50%", f"q3/{tag}%2F", "A/1%", f"org/{tag}"
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        await write_cell(ws, room, sheet, cell_id=cell, value="kept")
    room_seg, sheet_seg, cell_seg, user_seg = (quote(i, safe="") for i in (room, sheet, cell, user))

    async def read(method: str, path: str, **options: Any) -> dict[str, Any]:
        response = await rest(server, method, path, **options)
        assert response.status_code == 200, (path, response.text)
        found: dict[str, Any] = response.json()
        return found

    cells = await read("GET", f"/sheets/{sheet_seg}/cells")
    assert (cells["sheet_id"], cells["room_id"]) == (sheet, room)
    assert cells["cells"][cell]["value"] == "kept"
    history = await read("GET", f"/sheets/{sheet_seg}/cells/{cell_seg}/history")
    assert [(v["cell_id"], v["value"]) for v in history["versions"]] == [(cell, "kept")]
    assert (await read("GET", f"/rooms/{room_seg}/state"))["room_id"] == room
    events = (await read("GET", f"/rooms/{room_seg}/events"))["events"]
    assert {e["stream_id"] for e in events} == {f"room:{room}"}
    assert (await read("GET", f"/ws/rooms/{room_seg}"))["room_id"] == room
    posted = {"type": "announcement", "text": "hi"}
    assert (await read("POST", f"/ws/rooms/{room_seg}/broadcast", json=posted))["room_id"] == room
    assert (await read("POST", f"/ws/users/{user_seg}/notify", json=posted))["user_id"] == user


@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "a\x7fb", ""], ids=["nul", "newline", "del", "empty"])
async def test_a_file_shared_with_a_room_id_that_is_no_identifier_is_refused_and_not_stored(
    server: Server, bad: str
) -> None:
    file_id, user = new_id("f"), new_id("uploader")
    headers = {"Authorization": f"Bearer {server.token(user)}", "Content-Type": "text/plain"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        put = await http.put(
            f"/api/v1/files/{file_id}",
            content=b"hello",
            headers=headers,
            params={"filename": "a.txt", "room_id": bad},
        )
        assert put.status_code == 422, put.text
        assert put.json()["code"] == "VALIDATION_ERROR"
        assert (await http.get(f"/api/v1/files/{file_id}", headers=headers)).status_code == 404
    history = await rest(
        server, "GET", "/events", params={"types": "file_upload_started,file_upload_completed"}
    )
    assert file_id not in history.text


CLAIMS_BREAKING_THE_RULE: dict[str, dict[str, Any]] = {
    "sub-nul": {"sub": "user\x00x"},
    "sub-newline": {"sub": "user\nx"},
    "sub-too-long": {"sub": "u" * (MAX_ID_LENGTH + 1)},
    "username-escape": {"username": "eve\x1b[2J"},
    "email-nul": {"email": "e\x00@example.com"},
    "rooms-control": {"rooms": ["room-\x07"]},
}


@pytest.mark.parametrize("claims", CLAIMS_BREAKING_THE_RULE.values(), ids=CLAIMS_BREAKING_THE_RULE.keys())
async def test_a_token_whose_claims_break_the_identifier_rule_fails_authentication(
    server: Server, claims: dict[str, Any]
) -> None:
    token = server.token("claims-user", extra_claims=claims)
    async with server.connect(token) as ws:
        refused = await receive(ws)
        assert refused["code"] == "AUTHENTICATION_FAILED"
        assert "invalid token claims" in refused["error"]
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        assert ws.close_code == 4401
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.get("/api/v1/notifications", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_FAILED"


@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
async def test_websocket_ids_follow_the_same_rule(server: Server, bad: str) -> None:
    async with server.connect(server.token(new_id("ws-ids"))) as ws:
        await receive(ws)
        for message in [
            {"type": "join_room", "room_id": bad},
            {"type": "load_sheet", "sheet_id": bad},
            {"type": "notification_read", "notification_id": bad},
            {"type": "cell_update", "sheet_id": "s", "cell_id": bad, "value": 1, "room": "r"},
        ]:
            reply = await request(ws, {**message, "client_msg_id": "bad-id"})
            assert reply["type"] == "error", message
            assert reply["code"] == "VALIDATION_ERROR", (message, reply)
            assert reply["client_msg_id"] == "bad-id"
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_rest_escapes_that_are_not_utf8_are_422_never_read_as_another_id(server: Server) -> None:
    """`%FF` decodes to no character. Read as U+FFFD it would name another id, one that may exist: the
    room `...\\ufffd` would be read, the notification `...\\ufffd` marked read, a file shared with the
    room `...\\ufffd`. Such a path or query string is refused whole, and nothing changes."""
    tag = uuid.uuid4().hex[:8]
    room, user, file_id = f"room-{tag}\ufffd", new_id("reader"), new_id("f")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
    await server.engine.create_notification(user, {"id": f"n-{tag}\ufffd", "title": "t"}, created_by="test")
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        for method, url in [
            ("GET", f"/api/v1/rooms/room-{tag}%FF/events"),
            ("GET", f"/api/v1/rooms/room-{tag}%C3/state"),
            ("POST", f"/api/v1/notifications/n-{tag}%FF/read"),
            ("GET", "/api/v1/notifications?cursor=1&x=%ED%A0%80"),
        ]:
            response = await http.request(method, url, headers=headers)
            assert response.status_code == 422, (url, response.text)
            assert response.json()["code"] == "VALIDATION_ERROR"
            assert "UTF-8" in response.json()["error"]
        put = await http.put(
            f"/api/v1/files/{file_id}?filename=a.txt&room_id=room-{tag}%FF",
            content=b"hello",
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert put.status_code == 422, put.text
        assert (await http.get(f"/api/v1/files/{file_id}", headers=headers)).status_code == 404
        assert (
            await http.get(f"/api/v1/rooms/{quote(room, safe='')}/events", headers=headers)
        ).status_code == 200
    assert (await server.engine.inbox(user)).notifications[f"n-{tag}\ufffd"].read is False
